//! The security catalogue's credential-secrecy cases (§5.3) beyond `credentials.rs`: redirect
//! follow-ups to other origins and to plain http (CR-03, CR-18, EG-17), every failure path of a
//! credentialed request with the binary tracing at TRACE and backtraces on (CR-09, CR-10), a
//! panic with a secret in scope (CR-09), and core dumps of a running server (CR-15).

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::os::unix::process::{CommandExt as _, ExitStatusExt as _};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;

use airlock_host_api::audit::{Subject, Trigger};
use airlock_host_api::credentials::{
    BoxFuture, CredentialBroker, CredentialError, CredentialScope, CredentialSpec, CredentialType,
    Secret, SecretSource,
};
use airlock_runtime::engine::EgressOptions;
use airlock_runtime::{Caller, EngineSettings, Runtime};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::canary::contains;
use crate::egress::{UPSTREAM_IP, outcomes, reasons, upstreams};
use crate::mock::{Stall, Tarpit};
use crate::support::{
    airlock_command, airlock_with, custom_integration, dev_switches, example, read_example, stderr,
    stdout,
};
use airlock_testkit::{Reply, TestCa, Upstream};

const TOKEN: &str = "canary-cr03-9d1e5b7a-token";
const QUERY_KEY: &str = "canary-cr06-44c0f1e2-key";

/// CR-03, EG-17, CR-18, CR-06: the credentialed host redirects to another allowed host, to
/// itself on another port, and (with HSTS) to plain http; a query-key host redirects elsewhere.
/// The host follows none of them. The guest's own follow-ups go out without the credential, its
/// encodings or a `Referer`, and the plain-http one is refused before anything is sent.
#[tokio::test]
async fn redirect_follow_ups_never_carry_the_credential_elsewhere() {
    let (mock, egress) = upstreams(
        &[
            "vault.allowed.test",
            "api.allowed.test",
            "query.allowed.test",
        ],
        |request| match request.path_and_query.split('?').next() {
            Some("/to-other") => Reply::redirect(307, "https://api.allowed.test/landing"),
            Some("/to-port") => Reply::redirect(302, "https://vault.allowed.test:8443/landing"),
            Some("/to-http") => Reply::redirect(301, "http://vault.allowed.test/landing")
                .header("strict-transport-security", "max-age=31536000"),
            _ => Reply::status(200),
        },
    );
    let secrets = [("token", TOKEN), ("query-key", QUERY_KEY)];
    let follow = |url: &str| {
        egress.run_as(
            CredentialScope::local(),
            "exfil",
            "follow-redirect",
            json!({ "url": url }),
            &secrets,
        )
    };
    for (url, second) in [
        ("https://vault.allowed.test/to-other", "ok 200"),
        ("https://vault.allowed.test/to-port", "ok 200"),
        ("https://query.allowed.test/to-other", "ok 200"),
        ("https://vault.allowed.test/to-http", "HttpRequestDenied"),
    ] {
        let ran = follow(url).await;
        let code = if url.ends_with("to-http") { 301 } else { 302 };
        let code = if url.ends_with("to-other") { 307 } else { code };
        assert_eq!(
            outcomes(&ran),
            [format!("ok {code}"), second.to_string()],
            "{url}: {:?}",
            ran.result
        );
        if second == "HttpRequestDenied" {
            assert_eq!(reasons(&ran)[1], "scheme-not-allowed");
        }
    }
    let seen = mock.requests();
    assert_eq!(
        seen.len(),
        7,
        "three follow-ups went out, the http one did not"
    );
    let forms = [
        TOKEN.to_string(),
        QUERY_KEY.to_string(),
        QUERY_KEY.replace('-', "%2D"),
        STANDARD.encode(TOKEN),
    ];
    for request in &seen {
        let first_hop = ["/to-other", "/to-port", "/to-http"]
            .iter()
            .any(|p| request.path_and_query.starts_with(p));
        assert!(request.header("referer").is_empty(), "{request:?}");
        if first_hop {
            continue;
        }
        assert_eq!(request.path_and_query, "/landing", "{request:?}");
        assert!(request.header("authorization").is_empty(), "{request:?}");
        let everything = format!("{:?}{}", request.headers, request.path_and_query);
        for form in &forms {
            assert!(!everything.contains(form.as_str()), "{request:?}");
        }
    }
    // The credentialed first hops did carry theirs: the test sees what it must.
    assert_eq!(seen[0].header("authorization"), [format!("Bearer {TOKEN}")]);
    assert!(seen[4].path_and_query.contains("api_key="), "{:?}", seen[4]);
}

/// What a secret is seen as in output: the value, and the forms the injection sends (a query
/// parameter percent-encodes every `-`).
fn forms(secrets: &[&str], basic: (&str, &str)) -> Vec<String> {
    let mut forms: Vec<String> = secrets.iter().map(|s| s.to_string()).collect();
    forms.extend(secrets.iter().map(|s| s.replace('-', "%2D")));
    forms.push(basic.1.to_string());
    forms.push(STANDARD.encode(format!("{}:{}", basic.0, basic.1)));
    forms
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    TcpListener::bind((UPSTREAM_IP, 0))
        .expect("bind")
        .local_addr()
        .expect("address")
        .port()
}

/// CR-09, CR-10: credentialed requests that fail every way a request can (name not found or
/// timing out, connection refused, an untrusted certificate, a response head over the limit, an
/// invocation timeout mid-request, a decompression bomb, input refused by its schema), plus one
/// that succeeds with its echo redacted, each in the `airlock` binary tracing everything
/// (`AIRLOCK_LOG=trace`) with `RUST_BACKTRACE=1`. No form of any secret is on stdout or stderr;
/// each refusal is a typed error code.
#[test]
fn every_failure_path_keeps_secrets_out_of_errors_and_trace_logs() {
    let token = "canary-cr09-b81f27c4-token";
    let key = "canary-cr09-6a02d9e3-apikey";
    let (user, password) = ("svc-cr09", "canary-cr09-f0c3e815-pw");
    let client = json!({"client_id": "canary-cr09-client", "client_secret": "canary-cr09-5e7a-cs",
                        "refresh_token": "canary-cr09-2b94-rt"})
    .to_string();
    let ca = TestCa::new().expect("test CA");
    let untrusted = TestCa::new().expect("test CA");
    let echo = Upstream::start(
        &ca,
        &["vault.allowed.test", "query.allowed.test"],
        UPSTREAM_IP,
        |request| match request.path_and_query.as_str() {
            "/big-head" => Reply::status(200).header("x-filler", &"a".repeat(70 << 10)),
            "/bomb" => {
                use std::io::Write as _;
                let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
                gz.write_all(&vec![0u8; 16 << 20]).expect("gzip");
                Reply::bytes(200, gz.finish().expect("gzip")).header("content-encoding", "gzip")
            }
            _ => Reply::echo_headers(request),
        },
    )
    .expect("upstream starts");
    let impostor = Upstream::start(&untrusted, &["basic.allowed.test"], UPSTREAM_IP, |_| {
        Reply::status(200)
    })
    .expect("upstream starts");
    let tarpit = Tarpit::start(&ca, &["keyed.allowed.test"], UPSTREAM_IP, Stall::Silent);
    let closed = closed_port();
    let dir = TempDir::new().expect("temp");
    let data = dir.path().join("data");
    // exfil with a 2 s timeout, so the tarpit ends it quickly.
    let exfil = custom_integration(
        "exfil",
        "exfil.wasm",
        &read_example("exfil", "airlock.toml")
            .replace(
                "component = \"../target/wasm32-wasip2/release/exfil.wasm\"",
                "component = \"component.wasm\"",
            )
            .replace("timeout = \"10s\"", "timeout = \"2s\""),
    );
    let env = [
        ("AIRLOCK_LOG", "trace"),
        ("RUST_BACKTRACE", "1"),
        ("CR09_TOKEN", token),
        ("CR09_KEY", key),
        ("CR09_LOGIN", &format!("{user}:{password}")),
        ("CR09_OAUTH", &client),
    ];
    let secrets = [
        "--secret",
        "token=env:CR09_TOKEN",
        "--secret",
        "key=env:CR09_KEY",
        "--secret",
        "query-key=env:CR09_TOKEN",
        "--secret",
        "login=env:CR09_LOGIN",
        "--secret",
        "service=env:CR09_OAUTH",
    ];
    let run = |pins: &[String], input: Value| -> Output {
        let mut args = ["run", "--allow-unsigned"].map(String::from).to_vec();
        args.extend(dev_switches(
            pins,
            &ca.write_pem(dir.path()).expect("CA written"),
        ));
        args.push(exfil.path().display().to_string());
        args.extend(["--action", "fetch", "--input"].map(String::from));
        args.push(input.to_string());
        args.extend(secrets.map(String::from));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        airlock_with(&data, &args, "", &env)
    };
    let pin = |name: &str, addr: String| format!("{name}={addr}");
    let echo_pins = vec![
        pin("vault.allowed.test", echo.addr().to_string()),
        pin("query.allowed.test", echo.addr().to_string()),
    ];
    /// What a run must show: the guest's outcome on stdout, its exit code, or just no success.
    enum Expect {
        Outcome(&'static str),
        Exit(i32),
        NotOk,
    }
    let cases = [
        (
            "echo, redacted",
            echo_pins.clone(),
            json!({"url": "https://vault.allowed.test/headers"}),
            Expect::Outcome("ok 200"),
        ),
        (
            "query key, echoed",
            echo_pins.clone(),
            json!({"url": "https://query.allowed.test/headers?page=2"}),
            Expect::Outcome("ok 200"),
        ),
        (
            "connection refused",
            vec![pin("vault.allowed.test", format!("{UPSTREAM_IP}:{closed}"))],
            json!({"url": "https://vault.allowed.test/"}),
            Expect::Outcome("ConnectionRefused"),
        ),
        (
            "untrusted certificate",
            vec![pin("basic.allowed.test", impostor.addr().to_string())],
            json!({"url": "https://basic.allowed.test/"}),
            Expect::Outcome("TlsCertificateError"),
        ),
        (
            "response head too large",
            echo_pins.clone(),
            json!({"url": "https://vault.allowed.test/big-head"}),
            Expect::Outcome("HttpResponseHeaderSectionSize"),
        ),
        (
            "decompression bomb",
            echo_pins.clone(),
            json!({"url": "https://vault.allowed.test/bomb"}),
            Expect::NotOk,
        ),
        (
            "token endpoint without an answer (no pin: the system resolver)",
            vec![pin("oauth.allowed.test", echo.addr().to_string())],
            json!({"url": "https://oauth.allowed.test/"}),
            Expect::NotOk,
        ),
        (
            "invocation timeout mid-request",
            vec![pin("keyed.allowed.test", tarpit.addr().to_string())],
            json!({"url": "https://keyed.allowed.test/"}),
            Expect::Exit(5),
        ),
        (
            "input refused by its schema",
            echo_pins.clone(),
            json!({"url": 5}),
            Expect::Exit(3),
        ),
    ];
    // Compiled (and cached) without tracing first: compiling at TRACE writes a gigabyte of
    // Cranelift's notes, none of it about a request.
    let exfil_dir = exfil.path().display().to_string();
    let warm = airlock_with(&data, &["check", &exfil_dir], "", &[]);
    assert_eq!(warm.status.code(), Some(0), "{}", stderr(&warm));
    let hidden = forms(
        &[token, key, "canary-cr09-5e7a-cs", "canary-cr09-2b94-rt"],
        (user, password),
    );
    for (what, pins, input, expected) in cases {
        let out = run(&pins, input);
        let (text_out, text_err) = (stdout(&out), stderr(&out));
        let tail = &text_err[text_err.len().saturating_sub(4000)..];
        let outcome = serde_json::from_str::<Value>(&text_out)
            .ok()
            .and_then(|report| report["attempts"][0]["outcome"].as_str().map(String::from));
        match expected {
            Expect::Outcome(want) => {
                assert_eq!(outcome.as_deref(), Some(want), "{what}\n{text_out}\n{tail}")
            }
            Expect::Exit(code) => assert_eq!(out.status.code(), Some(code), "{what}: {tail}"),
            Expect::NotOk => assert!(
                !outcome.as_deref().unwrap_or_default().starts_with("ok"),
                "{what}: {text_out}"
            ),
        }
        assert!(text_err.contains("TRACE"), "{what}: tracing was on: {tail}");
        for form in &hidden {
            assert!(
                !contains(&out.stdout, form) && !contains(&out.stderr, form),
                "{what}: {form} reached the output"
            );
        }
    }
}

/// The child of [`a_panic_with_a_secret_in_scope_prints_no_secret`]: a credential broker that
/// panics with the secret in its message, under the binary's panic hook and `RUST_BACKTRACE=1`.
struct PanickingBroker;

const PANIC_CANARY: &str = "canary-cr09-panic-c4f1a7";
const PANIC_CHILD: &str = "AIRLOCK_TEST_PANIC_CHILD";

impl CredentialBroker for PanickingBroker {
    fn current<'a>(
        &'a self,
        name: &'a str,
        spec: &'a CredentialSpec,
        _origin: &'a str,
    ) -> BoxFuture<'a, Result<Secret, CredentialError>> {
        Box::pin(async move {
            let secret = Secret::new(spec.credential_type(), PANIC_CANARY.to_string())
                .map_err(|e| CredentialError::Malformed(name.to_string(), e))?;
            panic!("bug while injecting {}", secret.expose());
        })
    }
}

#[tokio::test]
#[ignore = "run in its own process by a_panic_with_a_secret_in_scope_prints_no_secret"]
async fn panic_child() {
    if std::env::var_os(PANIC_CHILD).is_none() {
        return;
    }
    airlock::hardening::install_panic_hook();
    let (_mock, egress) = upstreams(&["vault.allowed.test"], |_| Reply::status(200));
    let egress = Arc::new(egress);
    let exfil = Arc::new(egress.load("exfil"));
    let task = {
        let (egress, exfil) = (egress.clone(), exfil.clone());
        tokio::spawn(async move {
            let config = exfil.validate_config(None).expect("no config");
            let caller = Caller {
                subject: Subject::local(),
                trigger: Trigger::Cli,
                credentials: Arc::new(PanickingBroker),
                kv: None,
            };
            let input = r#"{"url": "https://vault.allowed.test/"}"#;
            egress
                .runtime
                .invoke_as(&exfil, &config, &caller, "fetch", input)
                .await
        })
    };
    // The panic ends the invocation's task (or the request's); either way the child goes on.
    let _ = task.await;
    eprintln!("panic child: done");
}

/// CR-09: a panic inside the host call, with the secret in scope and in the panic's own
/// message, under `RUST_BACKTRACE=1`: the binary's hook reports where it happened and withholds
/// the message, so the secret is not on stderr.
#[test]
fn a_panic_with_a_secret_in_scope_prints_no_secret() {
    let out = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "secrecy::panic_child",
            "--ignored",
            "--nocapture",
        ])
        .env(PANIC_CHILD, "1")
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("the child test runs");
    let err = stderr(&out);
    assert!(err.contains("panic child: done"), "{}\n{err}", stdout(&out));
    assert!(
        err.contains("airlock panicked at") && err.contains("message withheld"),
        "{err}"
    );
    assert!(
        err.contains("stack backtrace") || err.contains("backtrace"),
        "{err}"
    );
    assert!(!contains(&out.stderr, PANIC_CANARY), "{err}");
    assert!(!contains(&out.stdout, PANIC_CANARY), "{}", stdout(&out));
}

/// CR-15: a running `airlock serve` started with an unlimited core size has lowered it to 0
/// (and marked itself non-dumpable); killed with SIGABRT it leaves no core. A process started
/// the same way without that hardening does dump, where the kernel writes cores to files.
#[test]
fn a_crashing_server_leaves_no_core_file() {
    let data = TempDir::new().expect("temp");
    let cwd = TempDir::new().expect("temp");
    let unlimited = || {
        let limit = libc::rlimit {
            rlim_cur: libc::RLIM_INFINITY,
            rlim_max: libc::RLIM_INFINITY,
        };
        // SAFETY: setrlimit in the forked child, before exec, on its own limits.
        if unsafe { libc::setrlimit(libc::RLIMIT_CORE, &limit) } == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    };
    let mut command = airlock_command(data.path(), &["serve", "--listen", "127.0.0.1:0"]);
    command
        .current_dir(cwd.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    // SAFETY: the closure only calls setrlimit, which is async-signal-safe.
    unsafe { command.pre_exec(unlimited) };
    let mut server = command.spawn().expect("airlock serve starts");
    let mut line = String::new();
    BufReader::new(server.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("the address");
    assert!(line.starts_with("listening on"), "{line}");
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", server.id())).expect("limits");
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .expect("a core limit line");
    let fields: Vec<&str> = core.split_whitespace().collect();
    assert_eq!(fields[4..6], ["0", "0"], "{core}");
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(server.id() as libc::pid_t, libc::SIGABRT) };
    let status = server.wait().expect("exits");
    assert_eq!(status.signal(), Some(libc::SIGABRT), "{status}");
    assert!(!status.core_dumped(), "the kernel dumped the server's core");
    let cores = || {
        std::fs::read_dir(cwd.path())
            .expect("cwd")
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with("core"))
            .count()
    };
    assert_eq!(cores(), 0);

    // The control: the same start without the hardening.
    let mut control = Command::new("sh");
    control
        .args(["-c", "kill -ABRT $$"])
        .current_dir(cwd.path());
    // SAFETY: as above.
    unsafe { control.pre_exec(unlimited) };
    let status = control.status().expect("sh runs");
    let pattern = std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap_or_default();
    if !pattern.starts_with('|') && !pattern.trim().is_empty() {
        assert!(
            status.core_dumped() && cores() > 0,
            "an unhardened process dumps here ({pattern:?}), so the check above means something"
        );
    } else {
        eprintln!("core_pattern {pattern:?} pipes cores away: only the limits were checked");
    }
}

/// The mask the CR-14 canary travels under, so that no process holds it in plain text but
/// where the host decrypts it.
const MASK: u8 = 0xa5;
const MEMORY_CHILD: &str = "AIRLOCK_TEST_MEMORY_CHILD";

/// A store that keeps its one value masked and unmasks it into a fresh [`Secret`] on every
/// read, as the sealed store decrypts one: the only plain copies are the host's own.
struct MaskedSource(Vec<u8>);

impl SecretSource for MaskedSource {
    fn get(&self, _name: &str, kind: CredentialType) -> Result<Option<Secret>, CredentialError> {
        // Sized up front: a growing string would leave partial copies behind.
        let mut plain = String::with_capacity(self.0.len());
        plain.extend(self.0.iter().map(|b| char::from(b ^ MASK)));
        Ok(Some(Secret::new(kind, plain).expect("a valid token")))
    }

    fn replace(&self, _: &str, _: &Secret) -> Result<(), CredentialError> {
        Ok(())
    }
}

/// Where this process's readable memory holds the value `masked` masks: each hit's region and
/// up to 80 bytes before it (a clue to whose buffer it is). Reads `/proc/self/mem` through a
/// buffer mapped apart (and skipped), so the scan never finds its own copies.
fn scan_own_memory(masked: &[u8]) -> Vec<String> {
    use std::io::{Read as _, Seek as _, SeekFrom};
    const CHUNK: usize = 1 << 20;
    let size = CHUNK + masked.len();
    // SAFETY: a fresh anonymous private mapping, unmapped below.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(base, libc::MAP_FAILED, "mmap");
    // SAFETY: the mapping is `size` bytes, readable and writable, and ours alone.
    let buf = unsafe { std::slice::from_raw_parts_mut(base.cast::<u8>(), size) };
    let own = base as u64;
    let maps = std::fs::read_to_string("/proc/self/maps").expect("maps");
    let mut mem = std::fs::File::open("/proc/self/mem").expect("/proc/self/mem");
    let first = masked[0] ^ MASK;
    let mut hits = Vec::new();
    for line in maps.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let name = fields.get(5).copied().unwrap_or("[anon]");
        if !fields[1].starts_with('r') || name.starts_with("[v") {
            continue;
        }
        let (lo, hi) = fields[0].split_once('-').expect("a range");
        let lo = u64::from_str_radix(lo, 16).expect("hex");
        let hi = u64::from_str_radix(hi, 16).expect("hex");
        if lo == own {
            continue;
        }
        let mut at = lo;
        while at < hi {
            let len = usize::try_from(hi - at).unwrap_or(usize::MAX).min(size);
            let read = mem
                .seek(SeekFrom::Start(at))
                .and_then(|_| mem.read(&mut buf[..len]));
            let n = match read {
                Ok(n) if n > 0 => n,
                _ => break,
            };
            // Matches starting in the overlap are the next chunk's.
            for i in 0..n.min(CHUNK) {
                let found = buf[i] == first
                    && i + masked.len() <= n
                    && masked.iter().zip(&buf[i..]).all(|(m, b)| b ^ MASK == *m);
                if found {
                    let before = String::from_utf8_lossy(&buf[i.saturating_sub(80)..i]);
                    hits.push(format!("{name}: {before:?}"));
                }
            }
            buf[..n].fill(0);
            at += CHUNK as u64;
        }
    }
    // SAFETY: unmaps the mapping made above; `buf` is not used again.
    unsafe { libc::munmap(base, size) };
    hits
}

/// The child of [`decrypted_secrets_do_not_pile_up_in_host_memory`]: a thousand invocations
/// sending the masked token to the parent's mock, then a scan of its own memory.
#[tokio::test]
#[ignore = "run in its own process by decrypted_secrets_do_not_pile_up_in_host_memory"]
async fn memory_child() {
    let Ok(upstream) = std::env::var(MEMORY_CHILD) else {
        return;
    };
    let var = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name}"));
    let masked: Vec<u8> = var("CR14_MASKED")
        .as_bytes()
        .chunks(2)
        .map(|h| u8::from_str_radix(std::str::from_utf8(h).expect("hex"), 16).expect("hex"))
        .collect();
    {
        let options = EgressOptions {
            resolve: vec![
                format!("vault.allowed.test={upstream}")
                    .parse()
                    .expect("pin"),
            ],
            allow_private: "127.0.0.0/8".parse().expect("range"),
            extra_roots: vec![var("CR14_CA").into()],
            ..EgressOptions::default()
        };
        let data = TempDir::new().expect("temp");
        let settings = EngineSettings {
            egress: options,
            ..EngineSettings::default()
        };
        let runtime = Runtime::new(data.path(), settings).expect("runtime");
        let exfil = runtime.load(&example("exfil")).expect("exfil loads");
        let config = exfil.validate_config(None).expect("no config");
        let source = Arc::new(MaskedSource(masked.clone()));
        let caller = runtime.local_caller(runtime.credentials(CredentialScope::local(), source));
        for _ in 0..1_000 {
            let input = r#"{"url": "https://vault.allowed.test/"}"#;
            let ran = runtime
                .invoke_as(&exfil, &config, &caller, "fetch", input)
                .await;
            assert_eq!(ran.redactions, 0);
            assert!(ran.result.is_ok(), "{:?}", ran.result);
        }
    }
    let after = scan_own_memory(&masked);
    // The control: a live secret is found, so the scan sees the heap.
    let live = MaskedSource(masked.clone())
        .get("token", CredentialType::Bearer)
        .expect("unmasks");
    let with_live = scan_own_memory(&masked);
    drop(live);
    println!(
        "CR-14 after={} with-live={}\n{}",
        after.len(),
        with_live.len(),
        after.join("\n")
    );
}

/// CR-14: after a thousand invocations that each decrypt a token and send it, the host
/// process's memory holds at most two copies of it, not one per use: the heads of the last
/// requests, in buffers hyper freed without zeroing (the next request's head takes the place
/// of one; under load the one before is still held when the last is allocated, so two chunks
/// take turns). Decrypted values, injected headers' redactors and the OAuth cache are zeroed
/// or dropped.
#[test]
fn decrypted_secrets_do_not_pile_up_in_host_memory() {
    let ca = TestCa::new().expect("test CA");
    let dir = TempDir::new().expect("temp");
    let mock = Upstream::start(&ca, &["vault.allowed.test"], UPSTREAM_IP, |_| {
        Reply::status(204)
    })
    .expect("upstream starts");
    // Made at run time, so this test's binary does not hold it as a literal.
    let canary = ["canary", "cr14", "0f3b9e2d7c41a8"].join("-");
    let masked: String = canary
        .bytes()
        .map(|b| format!("{:02x}", b ^ MASK))
        .collect();
    let out = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "secrecy::memory_child",
            "--ignored",
            "--nocapture",
        ])
        .env(MEMORY_CHILD, mock.addr().to_string())
        .env("CR14_CA", ca.write_pem(dir.path()).expect("CA written"))
        .env("CR14_MASKED", &masked)
        .output()
        .expect("the child test runs");
    let report = stdout(&out);
    let line = report
        .lines()
        .find(|l| l.starts_with("CR-14"))
        .unwrap_or_else(|| panic!("no report\n{report}\n{}", stderr(&out)));
    let count = |key: &str| -> usize {
        line.split_whitespace()
            .find_map(|f| f.strip_prefix(key)?.parse().ok())
            .expect("a count")
    };
    let (after, with_live) = (count("after="), count("with-live="));
    assert_eq!(mock.requests().len(), 1_000);
    assert!(with_live >= 1, "the scan finds a live secret\n{report}");
    assert!(
        after <= 2,
        "{after} copies left after the runtime was dropped\n{report}"
    );
}
