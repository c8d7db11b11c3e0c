//! What the server does when an alert rule trips (docs/operate.md, "Alerts"): records an
//! `alert-raised` security event, quarantines the installation when the rule says so, and sends
//! a signed notification (Standard Webhooks) to each of the operator's endpoints, retried with
//! backoff.
//!
//! The rules run on the trail's writers ([`airlock_audit::Observer`]); each alert is handed to
//! one task here, so nothing on a request's path waits for a notification.

use std::sync::{Arc, Weak};
use std::time::Duration;

use airlock_host_api::egress::EgressSettings;
use airlock_host_api::egress::host::{self, HostRequestError};
use airlock_host_api::egress::ip::AllowRanges;
use airlock_platform::alerts::{Alert, Alerts, Rule};
use airlock_platform::api_keys;
use airlock_policy::webhook::{Scheme, WebhookSecret, sign_standard};
use airlock_runtime::clock::{now_unix, now_unix_ms, rfc3339_ms};
use airlock_runtime::ids::{InstallationId, TenantId};
use axum::body::Bytes;
use http::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use http::{HeaderMap, Method};
use serde_json::json;
use tokio::sync::mpsc;

use crate::app::App;

/// Waits between the attempts of a notification: seven attempts over about a minute.
const BACKOFF: [Duration; 6] = [
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(4),
    Duration::from_secs(8),
    Duration::from_secs(16),
    Duration::from_secs(32),
];
/// The most of an endpoint's answer read (its body is ignored).
const MAX_ANSWER: usize = 64 * 1024;

/// One of the operator's endpoints for alert notifications (the config file's `[[notify]]`).
pub struct NotifyEndpoint {
    /// An https:// URL.
    pub url: String,
    /// Signs each notification (Standard Webhooks).
    pub secret: WebhookSecret,
    /// Private ranges this endpoint may be in (an operator's endpoint may be internal).
    pub allow_private: AllowRanges,
}

/// The alert rules and where their notifications go.
pub struct AlertSettings {
    pub rules: Vec<Rule>,
    pub notify: Vec<NotifyEndpoint>,
}

/// An endpoint with the egress settings its requests go out with.
struct Endpoint {
    url: String,
    /// What logs name it by: its origin (a webhook URL's path often holds a token).
    origin: String,
    secret: WebhookSecret,
    egress: Arc<EgressSettings>,
}

/// Starts evaluating `settings.rules` on every record `app`'s trail writes, and the task that
/// acts on what trips. Call it inside the server's runtime, once.
pub fn start(app: &Arc<App>, settings: AlertSettings) -> Result<(), String> {
    let endpoints = settings
        .notify
        .into_iter()
        .map(|endpoint| {
            let egress = app
                .runtime
                .host_egress(&endpoint.allow_private)
                .map_err(|e| e.to_string())?;
            let origin = url::Url::parse(&endpoint.url)
                .map(|u| u.origin().ascii_serialization())
                .unwrap_or_default();
            Ok(Arc::new(Endpoint {
                origin,
                url: endpoint.url,
                secret: endpoint.secret,
                egress,
            }))
        })
        .collect::<Result<Vec<_>, String>>()?;
    let (raised, mut alerts) = mpsc::unbounded_channel();
    let observer = Alerts::new(settings.rules, move |alert| {
        let _ = raised.send(alert);
    });
    if !app.trail.observe(Arc::new(observer)) {
        return Err("the audit trail already has an observer".into());
    }
    // Weakly held: the trail inside the app holds the sender, so a strong handle here would
    // keep the app alive for ever.
    let app = Arc::downgrade(app);
    tokio::spawn(async move {
        while let Some(alert) = alerts.recv().await {
            act(&app, &endpoints, alert).await;
        }
    });
    Ok(())
}

/// Records `alert`, quarantines what it names if its rule says so, and notifies.
async fn act(app: &Weak<App>, endpoints: &[Arc<Endpoint>], alert: Alert) {
    let Some(app) = app.upgrade() else {
        return;
    };
    let record = match app.trail.append(alert.event()).await {
        Ok(seq) => Some(seq),
        Err(e) => {
            tracing::error!(rule = %alert.rule, error = %e, "an alert could not be recorded");
            None
        }
    };
    let quarantined = match (alert.quarantine, &alert.installation, &alert.key) {
        (true, Some(_), _) => quarantine(&app, &alert).await,
        (true, None, Some(key)) => suspend(&app, key, &alert.rule).await,
        _ => false,
    };
    tracing::warn!(
        rule = %alert.rule,
        tenant = alert.tenant.as_deref().unwrap_or(""),
        installation = alert.installation.as_deref().unwrap_or(""),
        key = alert.key.as_deref().unwrap_or(""),
        count = alert.count,
        quarantined,
        "alert raised"
    );
    let body = Bytes::from(
        json!({
            "type": "airlock.alert",
            "timestamp": rfc3339_ms(now_unix_ms()),
            "data": {
                "rule": alert.rule,
                "tenant": alert.tenant,
                "installation": alert.installation,
                "key": alert.key,
                "count": alert.count,
                "window_s": alert.window.as_secs(),
                "quarantined": quarantined,
                "record": record,
                "node": app.trail.node().to_string(),
            }
        })
        .to_string(),
    );
    let id = format!("msg_{}", hex::encode(rand::random::<[u8; 16]>()));
    for endpoint in endpoints {
        tokio::spawn(deliver(endpoint.clone(), id.clone(), body.clone()));
    }
}

/// Quarantines the alert's installation; whether it is quarantined now by this alert.
async fn quarantine(app: &Arc<App>, alert: &Alert) -> bool {
    let ids = alert
        .tenant
        .as_deref()
        .and_then(|t| t.parse::<TenantId>().ok())
        .zip(
            alert
                .installation
                .as_deref()
                .and_then(|i| i.parse::<InstallationId>().ok()),
        );
    let Some((tenant, installation)) = ids else {
        return false;
    };
    let rule = alert.rule.clone();
    let (t, i) = (tenant.clone(), installation.clone());
    let quarantined = app
        .installing(move |installer| installer.quarantine(&t, &i, &rule))
        .await;
    app.forget_installation(&tenant, &installation);
    done(quarantined, "an installation could not be quarantined").unwrap_or(false)
}

/// Suspends API key `key` for `rule`; whether it is suspended now by this alert.
async fn suspend(app: &Arc<App>, key: &str, rule: &str) -> bool {
    let (key, rule) = (key.to_string(), rule.to_string());
    let suspended = app
        .blocking(move |app| api_keys::suspend(&*app.store, &app.trail, &key, Some(&rule)))
        .await;
    done(suspended, "an API key could not be suspended")
        .flatten()
        .is_some_and(|(_, changed)| changed)
}

/// What an action taken on a blocking thread returned, or `None` with the failure logged.
fn done<T, E: std::fmt::Display>(
    result: Result<Result<T, E>, crate::error::ApiError>,
    failed: &str,
) -> Option<T> {
    match result {
        Ok(Ok(value)) => Some(value),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "{failed}");
            None
        }
        Err(e) => {
            tracing::error!(error = ?e.code(), "{failed}");
            None
        }
    }
}

/// Sends one notification to `endpoint`, signed afresh for each attempt, until it answers 2xx
/// or the attempts run out.
async fn deliver(endpoint: Arc<Endpoint>, id: String, body: Bytes) {
    let key = endpoint.secret.signing_key(Scheme::Standard);
    let mut waits = BACKOFF.iter();
    loop {
        let timestamp = now_unix();
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let mut put = |name: &'static str, value: &str| {
            if let Ok(value) = HeaderValue::from_str(value) {
                headers.insert(HeaderName::from_static(name), value);
            }
        };
        put("webhook-id", &id);
        put("webhook-timestamp", &timestamp.to_string());
        put(
            "webhook-signature",
            &sign_standard(&key, &id, timestamp, &body),
        );
        let sent = host::send(
            &endpoint.egress,
            Method::POST,
            &endpoint.url,
            headers,
            body.clone(),
            MAX_ANSWER,
        )
        .await;
        let failure = match sent {
            Ok((status, _)) if status.is_success() => return,
            Ok((status, _)) => format!("HTTP {}", status.as_u16()),
            Err(HostRequestError::Unreadable) => "answer unreadable".to_string(),
            Err(e) => e.to_string(),
        };
        let Some(wait) = waits.next() else {
            tracing::error!(endpoint = %endpoint.origin, id, failure, "an alert notification was given up");
            return;
        };
        tracing::warn!(endpoint = %endpoint.origin, id, failure, "an alert notification failed; retrying");
        tokio::time::sleep(*wait).await;
    }
}
