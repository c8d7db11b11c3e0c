//! The security catalogue's SSRF and egress cases (§5.2) that need the live broker beyond
//! `egress.rs`: every spelling of an internal address aimed at a listening victim, the dialed
//! port, redirects of every kind, the `Host` a guest cannot choose, no connection reuse, the
//! server's own listener, concurrency per invocation and per tenant, and huge or compressed
//! responses against the host's memory.

use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use airlock_host_api::audit::{Subject, Trigger};
use airlock_host_api::credentials::{CredentialScope, NoCredentials};
use airlock_host_api::egress::ABORTED;
use airlock_runtime::{Caller, Integration, Invocation};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::egress::{Egress, UPSTREAM_IP, outcomes, reasons, upstreams};
use crate::mock::{Stall, Tarpit, Victim, sockets_to};
use crate::operator::Operator;
use crate::serving::{Server, TENANT_SCOPES, records_of};
use crate::support::{
    airlock_command, custom_integration, dev_switches, outcome, read_example, stderr, stdout,
};
use airlock_testkit::{Reply, TestCa, Upstream};

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const SINK: &str = "sink.hostile.test";

/// `example`'s manifest with `component.wasm` as its component and each `(from, to)` applied.
fn manifest(example: &str, wasm: &str, edits: &[(&str, &str)]) -> TempDir {
    let mut text = read_example(example, "airlock.toml").replace(
        &format!("component = \"../target/wasm32-wasip2/release/{wasm}\""),
        "component = \"component.wasm\"",
    );
    for (from, to) in edits {
        assert!(text.contains(from), "{example} manifest has no {from:?}");
        text = text.replace(from, to);
    }
    custom_integration(example, wasm, &text)
}

/// Runs `action` of `integration` for `tenant`, without credentials.
async fn invoke_for(
    egress: &Egress,
    integration: &Integration,
    tenant: &str,
    action: &str,
    input: Value,
) -> Invocation {
    let config = integration.validate_config(None).expect("no config");
    let caller = Caller {
        subject: Subject::new(tenant, "egress"),
        trigger: Trigger::Cli,
        credentials: Arc::new(NoCredentials),
        kv: None,
    };
    egress
        .runtime
        .invoke_as(integration, &config, &caller, action, &input.to_string())
        .await
}

/// EG-01, EG-02, EG-03, EG-07, EG-15: every literal, encoding and embedding of the loopback
/// address that the catalogue lists, aimed at a victim listening on it, with loopback allowed
/// (the loosest development setting). Each is refused; the victim accepts nothing.
#[tokio::test]
async fn every_spelling_of_an_internal_address_is_refused_before_any_connect() {
    let victim = Victim::start(LOOPBACK);
    let port = victim.addr().port();
    let egress = Egress::new(&[], true, None);
    let hosts = [
        "127.0.0.1",
        "0.0.0.0",
        "0",
        "2130706433",
        "2130706433.",
        "0x7f000001",
        "0177.0.0.1",
        "0x7f.1",
        "127.1",
        "017700000001",
        "0x7f.0x0.0x0.0x1",
        "\u{ff11}\u{ff12}\u{ff17}.\u{ff10}.\u{ff10}.\u{ff11}",
        "[::1]",
        "[::]",
        "[::ffff:127.0.0.1]",
        "[::ffff:7f00:1]",
        "[::127.0.0.1]",
        "[64:ff9b::7f00:1]",
        "[64:ff9b:1::7f00:1]",
        "[2002:7f00:1::]",
        "localhost",
        "api.allowed.test@127.0.0.1",
        "api.allowed.test:443@127.0.0.1",
    ];
    for host in hosts {
        for scheme in ["https", "http"] {
            let url = format!("{scheme}://{host}:{port}/latest/meta-data/");
            let ran = egress.fetch(&url).await;
            let got = outcomes(&ran);
            assert_eq!(got.len(), 1, "{url}");
            assert!(!got[0].starts_with("ok"), "{url}: {got:?}");
        }
    }
    assert_eq!(
        victim.accepts(),
        0,
        "nothing connected to the internal victim"
    );
}

/// EG-14: the port the broker dials is the port it checked. The rule allows the mock's port
/// only, the name is pinned without a port, and the mock is the only listener: a request it
/// answers was dialed on exactly that port, and `Host` names it canonically.
#[tokio::test]
async fn the_dialed_port_is_the_checked_port() {
    let ca = TestCa::new().expect("test CA");
    let mock = Upstream::start(&ca, &["api.allowed.test"], UPSTREAM_IP, |_| {
        Reply::status(204)
    })
    .expect("upstream starts");
    let other = Victim::start(UPSTREAM_IP);
    let port = mock.addr().port();
    let exfil = manifest(
        "exfil",
        "exfil.wasm",
        &[(
            "url = \"https://api.allowed.test\"",
            &format!("url = \"https://api.allowed.test:{port}\""),
        )],
    );
    let egress = Egress::new(
        &[format!("api.allowed.test={UPSTREAM_IP}")],
        true,
        Some(&ca),
    );
    let exfil = egress
        .runtime
        .load(exfil.path())
        .expect("custom exfil loads");
    let fetch = |url: String| {
        let exfil = &exfil;
        let egress = &egress;
        async move { invoke_for(egress, exfil, "acme", "fetch", json!({ "url": url })).await }
    };
    for url in [
        format!("https://api.allowed.test:{port}/x"),
        format!("https://api.allowed.test:0{port}/x"),
        format!("https://API.allowed.test.:{port}/x"),
    ] {
        let ran = fetch(url.clone()).await;
        assert_eq!(outcomes(&ran), ["ok 204"], "{url}: {:?}", ran.result);
        assert_eq!(
            ran.egress[0].target.as_deref(),
            Some(format!("https://api.allowed.test:{port}/x").as_str())
        );
    }
    for request in mock.requests() {
        assert_eq!(request.header("host"), [format!("api.allowed.test:{port}")]);
    }
    for url in [
        format!("https://api.allowed.test:{}/", other.addr().port()),
        "https://api.allowed.test/".to_string(),
    ] {
        let ran = fetch(url.clone()).await;
        assert_eq!(reasons(&ran), ["port-not-allowed"], "{url}");
    }
    // Ports no parser agrees on never make a request.
    for url in [
        format!("https://api.allowed.test:{}/", u32::from(port) + 65536),
        format!("https://api.allowed.test:+{port}/"),
        format!("https://api.allowed.test:{port}:80/"),
    ] {
        let ran = fetch(url.clone()).await;
        let got = outcomes(&ran);
        assert!(
            got.len() == 1 && !got[0].starts_with("ok"),
            "{url}: {got:?}"
        );
    }
    assert_eq!(
        mock.accepts(),
        1,
        "one connection, reused by each allowed request"
    );
    assert_eq!(other.accepts(), 0, "another port is never dialed");
}

/// EG-16: no redirect status is followed by the host, absolute or scheme-relative; the guest's
/// follow-up to an internal address is a new request, refused, and nothing reaches the victim.
#[tokio::test]
async fn no_redirect_is_followed_by_the_host_and_internal_targets_stay_unreached() {
    let victim = Victim::start(LOOPBACK);
    let port = victim.addr().port();
    let (mock, egress) = upstreams(&["api.allowed.test"], move |request| {
        let (code, location) = request
            .path_and_query
            .trim_start_matches('/')
            .split_once('/')
            .map(|(code, rest)| (code.parse().expect("status"), rest.to_string()))
            .expect("/CODE/KIND");
        let location = match location.as_str() {
            "absolute" => format!("https://127.0.0.1:{port}/latest/meta-data/"),
            "relative" => format!("//127.0.0.1:{port}/latest/meta-data/"),
            "metadata" => "http://169.254.169.254/latest/meta-data/".to_string(),
            _ => format!("https://[::ffff:127.0.0.1]:{port}/"),
        };
        Reply::redirect(code, &location)
    });
    let mut first_hops = 0;
    for code in [301, 302, 303, 307, 308] {
        for kind in ["absolute", "relative", "metadata", "mapped"] {
            let url = format!("https://api.allowed.test/{code}/{kind}");
            let ran = egress
                .run("exfil", "follow-redirect", json!({ "url": url }))
                .await;
            assert_eq!(
                outcomes(&ran),
                [format!("ok {code}"), "HttpRequestDenied".to_string()],
                "{url}: {:?}",
                ran.result
            );
            first_hops += 1;
        }
    }
    assert_eq!(
        mock.requests().len(),
        first_hops,
        "the host followed nothing"
    );
    assert_eq!(victim.accepts(), 0);
}

/// EG-22 (and EG-10 through the broker): `Host` and the authority come from the checked URL
/// only. A guest's own `Host` is refused, `:authority` is not a field name, and a host only
/// Unicode-aware parsers read never becomes a request.
#[tokio::test]
async fn host_and_authority_come_from_the_checked_url_only() {
    let (mock, egress) = upstreams(&["api.allowed.test"], Reply::echo_headers);
    for (name, value, expected) in [
        ("Host", "169.254.169.254", "HeaderForbidden"),
        ("host", "api.allowed.test:8443", "HeaderForbidden"),
        (":authority", "169.254.169.254", "HeaderInvalidSyntax"),
        ("X-Forwarded-Host", "169.254.169.254", "HeaderForbidden"),
    ] {
        let input = json!({"url": "https://api.allowed.test/", "headers": [[name, value]]});
        let ran = egress.run("exfil", "fetch", input).await;
        assert_eq!(outcomes(&ran), [expected], "{name}");
    }
    for url in [
        "https://api.allowed\u{3002}test/",
        "https://\u{430}pi.allowed.test/",
        "https://xn--api-.allowed.test/",
        "https://api.allowed.test%2e/",
    ] {
        let ran = egress.fetch(url).await;
        let got = outcomes(&ran);
        assert!(
            !got.is_empty() && !got[0].starts_with("ok"),
            "{url}: {got:?}"
        );
    }
    assert_eq!(mock.accepts(), 0, "none of them went out");
    let ran = egress.fetch("https://API.Allowed.Test./").await;
    assert_eq!(outcomes(&ran), ["ok 200"]);
    let seen = &mock.requests()[0];
    assert_eq!(seen.header("host"), ["api.allowed.test"]);
    assert_eq!(seen.sni.as_deref(), Some("api.allowed.test"));
}

/// EG-24: a pooled connection never outlives a policy. Every request is judged and resolved on
/// its own (two requests of one installation share one connection), and an integration loaded
/// without the rule is refused at once, though the pool holds a connection to the host.
#[tokio::test]
async fn each_request_is_judged_on_its_own_even_on_a_pooled_connection() {
    let (mock, egress) = upstreams(&["api.allowed.test"], |request| {
        if request.path_and_query == "/start" {
            Reply::redirect(302, "/again")
        } else {
            Reply::status(200)
        }
    });
    let ran = egress
        .run(
            "exfil",
            "follow-redirect",
            json!({"url": "https://api.allowed.test/start"}),
        )
        .await;
    assert_eq!(outcomes(&ran), ["ok 302", "ok 200"], "{:?}", ran.result);
    assert_eq!(
        mock.accepts(),
        1,
        "the second request reused the connection"
    );
    // The same integration with the rule revoked, on the same runtime.
    let revoked = manifest(
        "exfil",
        "exfil.wasm",
        &[(
            "url = \"https://api.allowed.test\"",
            "url = \"https://elsewhere.allowed.test\"",
        )],
    );
    let revoked = egress.runtime.load(revoked.path()).expect("loads");
    let ran = invoke_for(
        &egress,
        &revoked,
        "local",
        "fetch",
        json!({"url": "https://api.allowed.test/again"}),
    )
    .await;
    assert_eq!(reasons(&ran), ["no-matching-rule"]);
    assert_eq!(mock.accepts(), 1);
    assert_eq!(
        mock.requests().len(),
        2,
        "nothing more reached the upstream"
    );
}

/// A port nothing listens on (bound, then released).
fn free_port() -> u16 {
    let listener = TcpListener::bind((LOOPBACK, 0)).expect("bind");
    listener.local_addr().expect("address").port()
}

/// EG-19: with loopback allowed, a guest whose upstream name points at the server's own
/// listener is refused by address before a connection is made (other loopback spellings of the
/// same port: `host-api` `egress::ip::tests`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_never_dials_its_own_listener() {
    let op = Operator::new();
    let ca = TestCa::new().expect("test CA");
    let port = free_port();
    let pem = ca.write_pem(op.keys.path()).expect("CA written");
    let pins = [format!("{SINK}=127.0.0.1:{port}")];
    let switches = dev_switches(&pins, &pem);
    let switches: Vec<&str> = switches.iter().map(String::as_str).collect();
    let server = Server::start_on(
        &op,
        &switches,
        &format!("127.0.0.1:{port}"),
        &["--dev-insecure"],
    );
    let hostile = op.example("hostile", "hostile.wasm");
    let digest = server.upload(&hostile).await;
    let key = server.tenant("acme", &TENANT_SCOPES).await;
    let grant = json!({"egress": [{"url": "https://sink.hostile.test", "methods": ["GET"]}]});
    let reply = server
        .post(
            "/v1/installations",
            &key,
            json!({"bundle": digest, "installation": "hostile", "grant": grant}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    let reply = server
        .post(
            "/v1/installations/hostile/actions/await-response",
            &key,
            json!({"url": "https://sink.hostile.test/v1/api-keys"}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY, "{}", reply.body);
    let message = reply.body["error"]["message"].to_string();
    assert!(message.contains("DestinationIpProhibited"), "{message}");
    server.stop();
    let records = records_of(&op, "invocation");
    let refused = &records.last().expect("the invocation is recorded")["egress"][0];
    assert_eq!(
        refused["reason"], "destination-ip-prohibited:self-address",
        "{refused}"
    );
}

/// A hostile manifest in a temp dir with `timeout` in place of its own.
fn hostile_with_timeout(timeout: &str) -> TempDir {
    manifest(
        "hostile",
        "hostile.wasm",
        &[("timeout = \"1s\"", &format!("timeout = \"{timeout}\""))],
    )
}

/// The reasons of `ran`'s egress events, counted.
fn count(ran: &Invocation, reason: &str) -> usize {
    reasons(ran).iter().filter(|r| r.as_str() == reason).count()
}

/// EG-26, per invocation: twenty requests at once against an upstream that never answers; eight
/// are in flight (eight connections), the other twelve fail at once with `concurrency-limit`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_invocation_has_at_most_eight_requests_in_flight() {
    let ca = TestCa::new().expect("test CA");
    let tarpit = Tarpit::start(&ca, &[SINK], UPSTREAM_IP, Stall::Silent);
    let egress = Egress::new(&[format!("{SINK}={}", tarpit.addr())], true, Some(&ca));
    let hostile = egress.load("hostile");
    let input = json!({"url": "https://sink.hostile.test/", "count": 20});
    let ran = invoke_for(&egress, &hostile, "acme", "hoard-responses", input).await;
    assert_eq!(outcome(&ran), "limit-timeout", "{:?}", ran.result);
    assert_eq!(count(&ran, "concurrency-limit"), 12, "{:?}", ran.egress);
    assert_eq!(count(&ran, ABORTED), 8, "{:?}", ran.egress);
    assert_eq!(tarpit.accepts(), 8);
}

/// EG-26, per tenant: nine invocations of one tenant each open eight requests to an upstream
/// that never answers. The tenant holds 64 connections, no more (the rest wait, and end with
/// their invocations); meanwhile another tenant's request goes straight through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_tenant_has_at_most_64_requests_in_flight_and_others_still_get_through() {
    let ca = TestCa::new().expect("test CA");
    let tarpit = Tarpit::start(&ca, &[SINK], UPSTREAM_IP, Stall::Silent);
    let mock = Upstream::start(&ca, &["api.allowed.test"], UPSTREAM_IP, |_| {
        Reply::status(200)
    })
    .expect("upstream starts");
    let pins = [
        format!("{SINK}={}", tarpit.addr()),
        format!("api.allowed.test={}", mock.addr()),
    ];
    let egress = Arc::new(Egress::new(&pins, true, Some(&ca)));
    let dir = hostile_with_timeout("4s");
    let hostile = Arc::new(egress.runtime.load(dir.path()).expect("loads"));
    let mut acme = tokio::task::JoinSet::new();
    for _ in 0..9 {
        let (egress, hostile) = (egress.clone(), hostile.clone());
        let input = json!({"url": "https://sink.hostile.test/", "count": 8});
        acme.spawn(
            async move { invoke_for(&egress, &hostile, "acme", "hoard-responses", input).await },
        );
    }
    // Connections open at once, sampled until the last invocation ends: one ending frees its
    // slots for requests of another still waiting, so the count of accepts may pass 64.
    let sampler = {
        let tarpit = tarpit.addr();
        tokio::spawn(async move {
            let mut peak = 0;
            let until = Instant::now() + Duration::from_secs(6);
            while Instant::now() < until {
                peak = peak.max(sockets_to(tarpit));
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            peak
        })
    };
    let until = Instant::now() + Duration::from_secs(3);
    while sockets_to(tarpit.addr()) < 64 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // While acme holds every slot it has, globex is not held up.
    let globex = egress
        .run_as(
            CredentialScope::new("globex", "exfil"),
            "exfil",
            "fetch",
            json!({"url": "https://api.allowed.test/"}),
            &[],
        )
        .await;
    assert_eq!(outcomes(&globex), ["ok 200"], "{:?}", globex.result);
    let mut requests = 0;
    while let Some(ran) = acme.join_next().await {
        let ran = ran.expect("invocation task");
        assert_eq!(outcome(&ran), "limit-timeout", "{:?}", ran.result);
        assert_eq!(count(&ran, ABORTED), 8, "{:?}", ran.egress);
        requests += ran.egress.len();
    }
    assert_eq!(
        requests, 72,
        "every request was made and ended with its invocation"
    );
    let peak = sampler.await.expect("sampler");
    assert_eq!(
        peak, 64,
        "acme never held more than 64 connections, and reached 64"
    );
    assert!(tarpit.accepts() >= 64);
}

/// Runs the `airlock` binary with `args` and `env`; returns its output and its peak resident
/// memory in bytes (from `wait4`, so other processes of the test run do not count).
fn run_measured(data: &Path, args: &[String], env: &[(&str, &str)]) -> (std::process::Output, u64) {
    let out = TempDir::new().expect("temp");
    let (stdout_path, stderr_path) = (out.path().join("out"), out.path().join("err"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    #[expect(
        clippy::zombie_processes,
        reason = "reaped by wait4 below, which also reports its peak memory"
    )]
    let child = airlock_command(data, &args)
        .envs(env.iter().copied())
        .env_remove("AIRLOCK_LOG")
        .stdout(std::fs::File::create(&stdout_path).expect("stdout file"))
        .stderr(std::fs::File::create(&stderr_path).expect("stderr file"))
        .spawn()
        .expect("airlock starts");
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid; wait4 fills it in for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child, writing into the locals above.
    let pid = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as libc::pid_t, "wait4");
    use std::os::unix::process::ExitStatusExt as _;
    let output = std::process::Output {
        status: std::process::ExitStatus::from_raw(status),
        stdout: std::fs::read(&stdout_path).expect("stdout"),
        stderr: std::fs::read(&stderr_path).expect("stderr"),
    };
    // ru_maxrss is in KiB on Linux.
    (output, usage.ru_maxrss as u64 * 1024)
}

/// EG-25: a 5 GiB response body and a gzip bomb (64 MiB of zeros in 64 KiB, decoded because a
/// credential went out) each end at the 10 MiB response cap while the guest reads on, and the
/// host process's peak resident memory stays within 32 MiB of a run that read a small body.
#[test]
fn huge_and_compressed_responses_stay_within_the_memory_bound() {
    use std::io::Write as _;
    let zeros = vec![0u8; 64 << 20];
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&zeros).expect("gzip");
    let bomb = gz.finish().expect("gzip");
    drop(zeros);
    let ca = TestCa::new().expect("test CA");
    let mock = Upstream::start(&ca, &[SINK], UPSTREAM_IP, move |request| {
        match request.path_and_query.as_str() {
            "/huge" => Reply::bytes(200, vec![b'x'; 1 << 20]).repeated(5 << 10),
            "/bomb" => Reply::bytes(200, bomb.clone())
                .header("content-encoding", "gzip")
                .chunked(),
            _ => Reply::bytes(200, vec![b'x'; 1024]),
        }
    })
    .expect("upstream starts");
    let data = TempDir::new().expect("temp");
    let hostile = manifest(
        "hostile",
        "hostile.wasm",
        &[
            ("timeout = \"1s\"", "timeout = \"20s\""),
            (
                "url = \"https://sink.hostile.test\"\nmethods = [\"GET\", \"POST\"]\n",
                "url = \"https://sink.hostile.test\"\nmethods = [\"GET\", \"POST\"]\n\
                 credential = \"token\"\n\n[credentials.token]\ntype = \"bearer\"\n",
            ),
        ],
    );
    let pins = [format!("{SINK}={}", mock.addr())];
    let run = |path: &str| {
        let mut args = [
            "run",
            "--allow-unsigned",
            &hostile.path().display().to_string(),
            "--action",
            "await-response",
            "--secret",
            "token=env:AIRLOCK_TEST_TOKEN",
            "--json",
            "--input",
            &json!({ "url": format!("https://sink.hostile.test{path}") }).to_string(),
        ]
        .map(String::from)
        .to_vec();
        args.extend(dev_switches(
            &pins,
            &ca.write_pem(data.path()).expect("CA written"),
        ));
        let (out, peak) = run_measured(
            data.path(),
            &args,
            &[("AIRLOCK_TEST_TOKEN", "canary-eg25-token")],
        );
        assert_eq!(out.status.code(), Some(0), "{path}: {}", stderr(&out));
        let document: Value = serde_json::from_str(&stdout(&out)).expect("JSON on stdout");
        let (report, summary) = (document["output"].clone(), &document["summary"]);
        let received = summary["egress"][0]["bytes_in"].as_u64().expect("bytes_in");
        (report, received, peak)
    };
    // Compiles and caches the component; the second run is the baseline.
    run("/small");
    let (small, _, baseline) = run("/small");
    assert_eq!(small["bytes"], 1024, "{small}");
    for path in ["/huge", "/bomb"] {
        let (report, received, peak) = run(path);
        // The host stopped reading soon after the cap, never draining the rest.
        assert!(
            received < 12 << 20,
            "{path}: the host read {received} bytes"
        );
        // The guest read no more than the cap, then its stream failed.
        assert!(report["error"].is_string(), "{path}: {report}");
        let read = report["bytes"].as_u64().expect("bytes");
        assert!(read <= 10 << 20, "{path}: the guest read {read} bytes");
        eprintln!(
            "EG-25 {path}: peak resident {} MiB, baseline {} MiB",
            peak >> 20,
            baseline >> 20
        );
        assert!(
            peak <= baseline + (32 << 20),
            "{path}: peak {} MiB over a baseline of {} MiB",
            peak >> 20,
            baseline >> 20
        );
    }
}
