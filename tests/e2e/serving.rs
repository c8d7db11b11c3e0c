//! A running `airlock serve` for end-to-end tests: the real binary on 127.0.0.1 (port 0) over
//! an operator's data dir, with the admin key and a real HTTP client.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};

use crate::operator::Operator;
use crate::support::{read_example, stderr, stdout};

/// Every scope a tenant key can have.
pub const TENANT_SCOPES: [&str; 4] = [
    "invoke",
    "installations:read",
    "installations:write",
    "audit:read",
];

/// A running server over an operator's data dir, with the admin key.
pub struct Server {
    child: Child,
    pub base: String,
    pub admin: String,
    pub http: Client,
    log: std::path::PathBuf,
}

/// A response: status, headers we look at, and the JSON body (or `Null`).
pub struct Reply {
    pub status: StatusCode,
    pub retry_after: Option<String>,
    pub authenticate: Option<String>,
    pub record: Option<u64>,
    pub body: Value,
}

impl Server {
    /// Makes the admin key with the CLI (the server holds the store once it runs), then starts
    /// `airlock serve --listen 127.0.0.1:0 SWITCHES… EXTRA…`.
    pub fn start(op: &Operator, switches: &[&str], extra: &[&str]) -> Self {
        Self::start_on(op, switches, "127.0.0.1:0", extra)
    }

    /// As [`Server::start`], listening on `listen`.
    pub fn start_on(op: &Operator, switches: &[&str], listen: &str, extra: &[&str]) -> Self {
        let mut args = vec!["--listen", listen];
        args.extend(switches);
        args.extend(extra);
        Self::start_in(op, op.data(), &args)
    }

    /// One node of a cluster: a server on the operator's store (`--store`) with a data dir
    /// of its own, named `node`, started with `extra` arguments.
    pub fn node(op: &Operator, data: &Path, node: &str, extra: &[&str]) -> Self {
        let mut args = vec!["--listen", "127.0.0.1:0", "--node", node];
        args.extend(extra);
        Self::start_in(op, data, &args)
    }

    /// `airlock serve ARGS…` on the data dir `data` with the operator's environment, after
    /// making an admin key with the CLI.
    fn start_in(op: &Operator, data: &Path, args: &[&str]) -> Self {
        let out = op.ok(&["api-key", "create", "--admin"]);
        let admin = stdout(&out).trim().to_string();
        // Beside the operator's keys, not in the data dir: a test may fill that disk.
        let name = data.file_name().unwrap_or_default().to_string_lossy();
        let log = op.keys.path().join(format!("serve-{name}.log"));
        let mut child = op
            .command(data, &["serve"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("airlock serve starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped stdout"))
            .read_line(&mut line)
            .expect("read the address");
        let base = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| {
                panic!(
                    "no address: {line:?}\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                )
            })
            .to_string();
        Self {
            child,
            base,
            admin,
            http: Client::new(),
            log,
        }
    }

    /// Starts `airlock serve` on the data dir `data` expecting it to refuse: returns how it
    /// ended, or panics with what it said if it is still running after 60 s (it served).
    pub fn refused(op: &Operator, data: &Path) -> Output {
        let mut child = op
            .command(data, &["serve", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("airlock serve starts");
        let until = Instant::now() + Duration::from_secs(60);
        while child.try_wait().expect("wait").is_none() {
            if Instant::now() > until {
                let _ = child.kill();
                let out = child.wait_with_output().expect("output");
                panic!("airlock serve served\n{}\n{}", stdout(&out), stderr(&out));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        child.wait_with_output().expect("output")
    }

    /// The server process's memory, from `/proc/PID/status`: (resident now, resident peak),
    /// in bytes.
    pub fn resident(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("the server's /proc status");
        let kib = |field: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .unwrap_or_else(|| panic!("no {field} in /proc status"))
        };
        (kib("VmRSS:") * 1024, kib("VmHWM:") * 1024)
    }

    pub async fn call(&self, method: Method, path: &str, key: Option<&str>, body: Body) -> Reply {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(key) = key {
            request = request.header("authorization", format!("Bearer {key}"));
        }
        request = match body {
            Body::None => request,
            Body::Json(v) => request
                .header("content-type", "application/json")
                .body(v.to_string()),
            Body::Raw(bytes) => request.body(bytes),
        };
        let response = request.send().await.expect("the server answers");
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let status = response.status();
        let retry_after = header("retry-after");
        let authenticate = header("www-authenticate");
        let record = header("airlock-audit-record").and_then(|v| v.parse().ok());
        let bytes = response.bytes().await.expect("body");
        Reply {
            status,
            retry_after,
            authenticate,
            record,
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        }
    }

    pub async fn get(&self, path: &str, key: &str) -> Reply {
        self.call(Method::GET, path, Some(key), Body::None).await
    }

    pub async fn post(&self, path: &str, key: &str, body: Value) -> Reply {
        self.call(Method::POST, path, Some(key), Body::Json(body))
            .await
    }

    /// Uploads a bundle file with the admin key; returns its digest.
    pub async fn upload(&self, bundle: &Path) -> String {
        let bytes = std::fs::read(bundle).expect("bundle");
        let reply = self
            .call(
                Method::POST,
                "/v1/bundles",
                Some(&self.admin),
                Body::Raw(bytes),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
        reply.body["bundle"].as_str().expect("digest").to_string()
    }

    /// Creates tenant `id` and a key for it with `scopes`; returns the key.
    pub async fn tenant(&self, id: &str, scopes: &[&str]) -> String {
        let reply = self
            .post("/v1/tenants", &self.admin, json!({"id": id}))
            .await;
        assert!(
            reply.status == StatusCode::CREATED || reply.status == StatusCode::CONFLICT,
            "{}",
            reply.body
        );
        self.key(id, scopes, None).await
    }

    pub async fn key(&self, tenant: &str, scopes: &[&str], expires: Option<&str>) -> String {
        let mut request = json!({"tenant": tenant, "scopes": scopes});
        if let Some(span) = expires {
            request["expires"] = json!(span);
        }
        let reply = self.post("/v1/api-keys", &self.admin, request).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
        reply.body["key"].as_str().expect("key").to_string()
    }

    /// Installs the uploaded contact-mapper bundle `digest` as `mapper`, with its sample
    /// config, for the tenant of `key`.
    pub async fn install_mapper(&self, key: &str, digest: &str) -> Reply {
        self.post(
            "/v1/installations",
            key,
            json!({"bundle": digest, "installation": "mapper", "config": mapper_config()}),
        )
        .await
    }

    /// What the server wrote on stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stops the server with SIGTERM and asserts it drained and exited cleanly.
    pub fn stop(mut self) {
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let status = self.child.wait().expect("server exits");
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        assert!(status.success(), "server exit {status}\n{log}");
        assert!(log.contains("audit checkpoint signed"), "{log}");
    }

    /// Kills the server with SIGKILL, as a crash or an OOM kill would: no drain, no final
    /// checkpoint. Waits for it and asserts the signal is what ended it.
    pub fn kill(mut self) {
        use std::os::unix::process::ExitStatusExt as _;
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGKILL);
        }
        let status = self.child.wait().expect("server exits");
        assert_eq!(status.signal(), Some(libc::SIGKILL), "server exit {status}");
    }
}

impl Drop for Server {
    /// Kills the server; when a test failed, prints the end of its log, which goes with its
    /// data dir.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(40)..].join("\n");
            eprintln!("--- the end of airlock serve's log:\n{tail}\n---");
        }
    }
}

pub enum Body {
    None,
    Json(Value),
    Raw(Vec<u8>),
}

/// The mapper's sample input.
pub fn mapper_input() -> Value {
    serde_json::from_str(&read_example("contact-mapper", "sample-input.json")).expect("JSON")
}

pub fn mapper_config() -> Value {
    serde_json::from_str(&read_example("contact-mapper", "sample-config.json")).expect("JSON")
}

/// `audit verify` on the data dir (after the server stopped) exits 0.
pub fn assert_trail_verifies(op: &Operator) {
    op.ok(&["audit", "verify"]);
}

/// The records of `type` in the trail, read with the CLI after the server stopped.
pub fn records_of(op: &Operator, kind: &str) -> Vec<Value> {
    let out = op.ok(&["audit", "export"]);
    stdout(&out)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("record"))
        .filter(|r| r["type"] == kind)
        .collect()
}
