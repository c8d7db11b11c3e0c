//! The demo's credential step: `github-issues` lists issues from a loopback stand-in for
//! api.github.com with a token the operator stored encrypted. The host injects it; the
//! stand-in echoes it back; the guest sees only `[REDACTED]`. Without a stored credential the
//! same request never leaves.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use airlock_host_api::audit::{Subject, Trigger};
use airlock_host_api::credentials::{CredentialScope, CredentialType, Secret};
use airlock_host_api::egress::EgressEvent;
use airlock_testkit::{TestCa, Upstream};
use bytes::Bytes;
use http::{Request, Response, StatusCode};

use super::{Demo, LOOPBACK, Signer, pinned_to};
use airlock_audit::AuditTrail;
use airlock_runtime::engine::EngineSettings;
use airlock_runtime::ids::{InstallationId, TenantId};
use airlock_runtime::invoke::Caller;
use airlock_runtime::runtime::Runtime;
use airlock_store::Storage;

const GITHUB: &str = "api.github.com";

/// Runs the step; failures are recorded in `demo`.
pub(super) async fn show(
    demo: &mut Demo,
    signer: &Signer,
    examples: &Path,
    data: &Path,
    (store, trail): (&dyn Storage, &AuditTrail),
    settings: &EngineSettings,
) -> anyhow::Result<()> {
    let token = format!("ghp_demo{}", hex::encode(rand::random::<[u8; 12]>()));
    let authorized = Arc::new(AtomicUsize::new(0));
    let ca = TestCa::new()?;
    let api = Upstream::start_http(
        &ca,
        &[GITHUB],
        LOOPBACK,
        stand_in(&token, authorized.clone()),
    )?;
    println!(
        "  a stand-in for {GITHUB} listens on {} (TLS, its own CA); this runtime pins the name to it",
        api.addr()
    );
    let settings = pinned_to(settings, GITHUB, (api.addr(), &ca), data)?;
    let runtime = Runtime::new(data, settings)?.with_audit(trail.clone());
    let github = signer.load(&runtime, &examples.join("github-issues"))?;
    let none = github.validate_config(None)?;

    let tenant: TenantId = "demo".parse()?;
    let installation: InstallationId = "github-issues".parse()?;
    let secret = Secret::new(CredentialType::Bearer, token.clone())?;
    let origins = github.manifest().manifest.credential_origins("github");
    store.set_credential(
        &tenant,
        &installation,
        "github",
        origins,
        &secret,
        CredentialType::Bearer,
    )?;
    println!("  the operator stored the `github` token for tenant demo, encrypted at rest");

    let scope = CredentialScope::new(tenant.to_string(), installation.to_string());
    let caller = Caller {
        subject: Subject::new(tenant.to_string(), installation.to_string()),
        trigger: Trigger::Cli,
        credentials: runtime.credentials(scope, store.secrets(&tenant, &installation)),
        kv: None,
    };
    let input = r#"{"owner": "acme", "repo": "widgets"}"#;
    let ran = runtime
        .invoke_as(&github, &none, &caller, "list-open", input)
        .await;
    demo.expect(&ran, "ok");
    print_events(&ran.egress);
    let output = ran
        .result
        .as_ref()
        .map(|o| o.to_value().to_string())
        .unwrap_or_default();
    println!(
        "  the stand-in saw the token {} time(s) and echoed it back; the guest saw `[REDACTED]` \
         ({} redaction(s)), never the token",
        authorized.load(Ordering::Relaxed),
        ran.redactions
    );
    let leaked = output.contains(&token) || format!("{:?}", ran.log).contains(&token);
    if leaked || authorized.load(Ordering::Relaxed) != 1 || ran.redactions == 0 {
        demo.failed("the credential was not injected exactly once and redacted");
    }

    println!("  the same request with no stored credential is refused before it leaves:");
    let refused = runtime.invoke(&github, &none, "list-open", input).await;
    demo.expect(&refused, "guest-error");
    print_events(&refused.egress);
    let reasons: Vec<_> = refused
        .egress
        .iter()
        .filter_map(|e| e.reason.as_deref())
        .collect();
    if reasons != ["credential-missing"] || authorized.load(Ordering::Relaxed) != 1 {
        demo.failed("a request without its credential was not refused");
    }
    Ok(())
}

/// The stand-in: issues for a request bearing `token` (counted), 401 otherwise; either way it
/// echoes the `Authorization` it received, as careless APIs do.
fn stand_in(
    token: &str,
    authorized: Arc<AtomicUsize>,
) -> impl Fn(&Request<Bytes>) -> Response<Bytes> + Send + Sync + 'static {
    let expected = format!("Bearer {token}");
    move |request: &Request<Bytes>| {
        let auth = request
            .headers()
            .get_all("authorization")
            .iter()
            .collect::<Vec<_>>();
        let ok = auth.len() == 1 && auth[0] == expected.as_str();
        if ok {
            authorized.fetch_add(1, Ordering::Relaxed);
        }
        let echo = auth
            .first()
            .and_then(|v| v.to_str().ok())
            .unwrap_or("none")
            .to_string();
        let (status, body) = if ok {
            let issues = serde_json::json!([
                {"number": 7, "title": "Sync stalls on 429", "html_url": "https://github.com/acme/widgets/issues/7"},
                {"number": 9, "title": "Support custom fields", "html_url": "https://github.com/acme/widgets/issues/9"}
            ]);
            (StatusCode::OK, issues.to_string())
        } else {
            (
                StatusCode::UNAUTHORIZED,
                r#"{"message":"Bad credentials"}"#.to_string(),
            )
        };
        Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .header("x-echo-authorization", echo)
            .body(Bytes::from(body))
            .unwrap_or_default()
    }
}

fn print_events(events: &[EgressEvent]) {
    for e in events {
        let target = e.target.as_deref().unwrap_or("(refused URL)");
        let credential = e
            .credential
            .as_deref()
            .map_or(String::new(), |c| format!(", credential `{c}`"));
        match (&e.status, &e.reason) {
            (Some(status), _) => println!(
                "      {:?} {} {target} → {status}{credential} injected by the host",
                e.decision, e.method
            ),
            (None, reason) => println!(
                "      {:?} {} {target}{credential}: {}",
                e.decision,
                e.method,
                reason.as_deref().unwrap_or("?")
            ),
        }
    }
}
