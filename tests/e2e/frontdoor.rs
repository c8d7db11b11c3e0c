//! The server's front door, end to end against the real `airlock serve`: which client a request
//! comes from (the peer, or behind `--trusted-proxy` the forwarding header), failure limits
//! that stop the client or key id that fails and never a key that verifies, and connections
//! that are capped and let go of slow or idle clients.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::operator::Operator;
use crate::serving::{Server, TENANT_SCOPES, assert_trail_verifies, mapper_input, records_of};

/// What a request got back.
struct Answer {
    status: StatusCode,
    retry_after: Option<String>,
    body: Value,
}

/// `method path` with `key` (as a Bearer key, if any) and `headers` as given.
async fn call(
    server: &Server,
    method: Method,
    path: &str,
    key: Option<&str>,
    headers: &[(&str, &str)],
) -> Answer {
    let mut request = server
        .http
        .request(method.clone(), format!("{}{path}", server.base));
    if let Some(key) = key {
        request = request.header("authorization", format!("Bearer {key}"));
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if method == Method::POST {
        request = request
            .header("content-type", "application/json")
            .body(mapper_input().to_string());
    }
    let response = request.send().await.expect("the server answers");
    let status = response.status();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let bytes = response.bytes().await.expect("body");
    Answer {
        status,
        retry_after,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    }
}

/// `GET /v1/installations` as the client `headers` make it, with `key`.
async fn list(server: &Server, key: Option<&str>, headers: &[(&str, &str)]) -> Answer {
    call(server, Method::GET, "/v1/installations", key, headers).await
}

/// A well-formed key that does not verify: `id` (16 hex) with a made-up secret.
fn wrong_key(id: &str) -> String {
    format!("airlock_{id}_{}", "A".repeat(43))
}

/// The id of a real key.
fn key_id(key: &str) -> &str {
    key.split('_').nth(1).expect("key id")
}

/// Bad attempts (wrong well-formed keys, each claiming its own id, malformed keys, no key)
/// with `headers` until one is answered 429; asserts the first ten were 401.
async fn fail_until_limited(server: &Server, headers: &[(&str, &str)], tag: u8) -> Answer {
    for i in 0..12u8 {
        let wrong = wrong_key(&format!("{tag:02x}{i:02x}{}", "0".repeat(12)));
        let key = match i % 3 {
            0 => Some(wrong.as_str()),
            1 => Some("airlock_nonsense"),
            _ => None,
        };
        let answer = list(server, key, headers).await;
        if answer.status == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(i, 10, "limited after ten failures, not {i}");
            return answer;
        }
        assert_eq!(
            answer.status,
            StatusCode::UNAUTHORIZED,
            "attempt {i}: {}",
            answer.body
        );
    }
    panic!("never limited within 12 failures");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_trusted_proxy_bad_keys_limit_their_client_and_key_and_no_one_else() {
    let op = Operator::new();
    let mapper = op.example("contact-mapper", "contact_mapper.wasm");
    let server = Server::start(&op, &[], &["--trusted-proxy", "127.0.0.1/32"]);
    let digest = server.upload(&mapper).await;
    let acme = server.tenant("acme", &TENANT_SCOPES).await;
    let installed = server.install_mapper(&acme, &digest).await;
    assert_eq!(installed.status, StatusCode::CREATED, "{}", installed.body);
    let action = "/v1/installations/mapper/actions/map-contact";

    // One client behind the proxy fails ten times and is limited...
    let attacker = [("x-forwarded-for", "203.0.113.7")];
    let limited = fail_until_limited(&server, &attacker, 1).await;
    assert!(limited.retry_after.is_some());
    assert_eq!(limited.body["error"]["code"], "too-many-failures");
    // ...however it words its headers: what it writes left of the proxy's hop, or the hop of
    // a second trusted proxy, does not make it someone else.
    for headers in [
        [("x-forwarded-for", "198.51.100.99, 203.0.113.7")],
        [("x-forwarded-for", "203.0.113.7, 127.0.0.1")],
        [("forwarded", "for=198.51.100.99, for=203.0.113.7")],
    ] {
        let answer = list(&server, Some("airlock_nonsense"), &headers).await;
        assert_eq!(answer.status, StatusCode::TOO_MANY_REQUESTS, "{headers:?}");
    }
    // A valid key is never refused for failures, not even from the limited client: the
    // tenant's and the admin's keys work from there and from everywhere else.
    let from_attacker = call(&server, Method::POST, action, Some(&acme), &attacker).await;
    assert_eq!(
        from_attacker.status,
        StatusCode::OK,
        "{}",
        from_attacker.body
    );
    assert_eq!(from_attacker.body["email"], "ada@example.com");
    let tenants = call(
        &server,
        Method::GET,
        "/v1/tenants",
        Some(&server.admin),
        &attacker,
    )
    .await;
    assert_eq!(tenants.status, StatusCode::OK, "{}", tenants.body);
    for headers in [&[][..], &[("x-forwarded-for", "198.51.100.1")][..]] {
        assert_eq!(
            list(&server, Some(&acme), headers).await.status,
            StatusCode::OK
        );
        let admin = call(
            &server,
            Method::GET,
            "/v1/tenants",
            Some(&server.admin),
            headers,
        )
        .await;
        assert_eq!(admin.status, StatusCode::OK, "{headers:?}");
    }
    // Other clients' failures are still answered, each counted against its own address (the
    // proxy itself, with no header, is a client of its own).
    for headers in [
        &[("x-forwarded-for", "198.51.100.1")][..],
        &[("forwarded", "for=\"[2001:db8::7]:4711\"")][..],
        &[][..],
    ] {
        let answer = list(&server, Some("airlock_nonsense"), headers).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{headers:?}");
    }

    // Guesses at one key id from ten clients limit that key id, wherever the next guess comes
    // from; its holder's key still works.
    let acme_id = key_id(&acme);
    for i in 1..=10 {
        let client = format!("192.0.2.{i}");
        let guess = list(
            &server,
            Some(&wrong_key(acme_id)),
            &[("x-forwarded-for", &client)],
        )
        .await;
        assert_eq!(guess.status, StatusCode::UNAUTHORIZED, "guess {i}");
    }
    let next = list(
        &server,
        Some(&wrong_key(acme_id)),
        &[("x-forwarded-for", "192.0.2.200")],
    )
    .await;
    assert_eq!(next.status, StatusCode::TOO_MANY_REQUESTS, "{}", next.body);
    let other_key = list(
        &server,
        Some(&wrong_key("00000000000000aa")),
        &[("x-forwarded-for", "192.0.2.200")],
    )
    .await;
    assert_eq!(other_key.status, StatusCode::UNAUTHORIZED);
    let holder = list(&server, Some(&acme), &[("x-forwarded-for", "192.0.2.200")]).await;
    assert_eq!(holder.status, StatusCode::OK);

    server.stop();
    assert_trail_verifies(&op);
    let refused = records_of(&op, "access-refused");
    let peers: Vec<&str> = refused.iter().filter_map(|r| r["peer"].as_str()).collect();
    for client in [
        "203.0.113.7",
        "198.51.100.1",
        "2001:db8::7",
        "127.0.0.1",
        "192.0.2.1",
    ] {
        assert!(peers.contains(&client), "{client} in {peers:?}");
    }
    assert!(
        !peers.contains(&"198.51.100.99"),
        "a client-written hop is never recorded"
    );
    let crossed: Vec<&str> = refused
        .iter()
        .filter_map(|r| r["reason"].as_str())
        .filter(|r| r.contains("now limited"))
        .collect();
    assert_eq!(crossed.len(), 2, "{crossed:?}");
    assert!(crossed[0].contains("client reached"), "{crossed:?}");
    assert!(crossed[1].contains("key reached"), "{crossed:?}");
    assert!(
        refused
            .iter()
            .filter(|r| r["peer"] == "203.0.113.7")
            .count()
            == 10,
        "limited refusals are not recorded"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_trusted_proxy_forwarding_headers_are_ignored_and_valid_keys_still_pass() {
    // No --trusted-proxy at all, and a trusted range the loopback peer is not in.
    for extra in [&[][..], &["--trusted-proxy", "192.0.2.0/24"][..]] {
        let op = Operator::new();
        let server = Server::start(&op, &[], extra);
        let acme = server.tenant("acme", &TENANT_SCOPES).await;
        // The header is the client's own words: the peer is the client, and it is limited
        // whatever address it names next.
        let limited = fail_until_limited(&server, &[("x-forwarded-for", "203.0.113.7")], 2).await;
        assert!(limited.retry_after.is_some(), "{extra:?}");
        for headers in [
            &[("x-forwarded-for", "198.51.100.1")][..],
            &[("forwarded", "for=198.51.100.1")][..],
            &[][..],
        ] {
            let answer = list(&server, Some("airlock_nonsense"), headers).await;
            assert_eq!(
                answer.status,
                StatusCode::TOO_MANY_REQUESTS,
                "{extra:?} {headers:?}"
            );
        }
        // Valid keys from that very peer still pass.
        for headers in [&[][..], &[("x-forwarded-for", "198.51.100.1")][..]] {
            let tenant = list(&server, Some(&acme), headers).await;
            assert_eq!(tenant.status, StatusCode::OK, "{extra:?} {}", tenant.body);
            let admin = call(
                &server,
                Method::GET,
                "/v1/tenants",
                Some(&server.admin),
                headers,
            )
            .await;
            assert_eq!(admin.status, StatusCode::OK, "{extra:?} {}", admin.body);
        }
        server.stop();
        let refused = records_of(&op, "access-refused");
        assert!(!refused.is_empty());
        assert!(
            refused.iter().all(|r| r["peer"] == "127.0.0.1"),
            "{extra:?}: {refused:?}"
        );
    }
}

/// The address of `server`, for raw connections.
fn address(server: &Server) -> String {
    server.base.trim_start_matches("http://").to_string()
}

/// Reads from `stream` until `within` has passed or the peer closes: what arrived, and
/// whether it closed.
async fn read_for(stream: &mut TcpStream, within: Duration) -> (String, bool) {
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&got).into_owned(), true),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => return (String::from_utf8_lossy(&got).into_owned(), false),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_capped_and_idle_or_slow_clients_are_let_go() {
    let op = Operator::new();
    let server = Server::start(&op, &[], &["--max-connections", "3"]);
    let address = address(&server);
    let healthz = "GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n";

    // Three connections that send nothing hold every slot: a fourth waits, unanswered, until
    // one of them goes.
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(TcpStream::connect(&address).await.expect("connect"));
    }
    let mut fourth = TcpStream::connect(&address).await.expect("backlog");
    fourth.write_all(healthz.as_bytes()).await.expect("send");
    let (early, closed) = read_for(&mut fourth, Duration::from_secs(1)).await;
    assert!(
        early.is_empty() && !closed,
        "answered past the cap: {early:?}"
    );
    drop(held.pop());
    let (answer, _) = read_for(&mut fourth, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
    drop(fourth);
    drop(held);

    let started = Instant::now();
    // An idle kept-alive connection is closed within the header timeout (10 s).
    let mut idle = TcpStream::connect(&address).await.expect("connect");
    idle.write_all(healthz.as_bytes()).await.expect("send");
    let idle = async {
        let (answer, closed) = read_for(&mut idle, Duration::from_secs(15)).await;
        (answer, closed, started.elapsed())
    };
    // A body sent a byte every 2 s (never idle for long) still has to end within 30 s.
    let mut slow = TcpStream::connect(&address).await.expect("connect");
    let head = format!(
        "POST /v1/tenants HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\n\
         content-type: application/json\r\ncontent-length: 100\r\n\r\n{{",
        server.admin
    );
    slow.write_all(head.as_bytes()).await.expect("send");
    let slow = async {
        for _ in 0..40 {
            let (answer, closed) = read_for(&mut slow, Duration::from_secs(2)).await;
            if !answer.is_empty() || closed {
                return (answer, started.elapsed());
            }
            if slow.write_all(b" ").await.is_err() {
                let (answer, _) = read_for(&mut slow, Duration::from_secs(2)).await;
                return (answer, started.elapsed());
            }
        }
        (String::new(), started.elapsed())
    };
    // A client that pipelines requests (no key needed) and never reads the answers: once the
    // server's writes make no progress for 30 s, it drops the connection, and the client's
    // own writes fail.
    let unread = TcpSocket::new_v4().expect("socket");
    unread.set_recv_buffer_size(4096).expect("small buffer");
    let mut unread = unread
        .connect(address.parse().expect("address"))
        .await
        .expect("connect");
    let unread = async {
        let pipelined = healthz.repeat(1_000);
        for _ in 0..1_000 {
            let sent = tokio::time::timeout(
                Duration::from_secs(60),
                unread.write_all(pipelined.as_bytes()),
            )
            .await;
            match sent {
                Ok(Ok(())) => continue,
                Ok(Err(_)) => return Some(started.elapsed()),
                Err(_) => return None,
            }
        }
        None
    };
    let ((idle_answer, idle_closed, idle_after), (slow_answer, slow_after), unread_after) =
        tokio::join!(idle, slow, unread);
    assert!(idle_answer.starts_with("HTTP/1.1 200"), "{idle_answer:?}");
    assert!(
        idle_closed,
        "an idle connection is let go within the header timeout"
    );
    assert!(idle_after < Duration::from_secs(15), "{idle_after:?}");
    assert!(
        slow_answer.starts_with("HTTP/1.1 408"),
        "{slow_answer:?} after {slow_after:?}"
    );
    assert!(
        slow_answer.contains("did not arrive within 30 s"),
        "{slow_answer:?}"
    );
    assert!(slow_after < Duration::from_secs(40), "{slow_after:?}");
    let unread_after = unread_after.expect("the server let go of a client that reads nothing");
    assert!(unread_after < Duration::from_secs(45), "{unread_after:?}");
    server.stop();
}
