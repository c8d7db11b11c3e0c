//! The stand-ins against a plain rustls/hyper client (fast: no guests, no binary).

use std::io::{Read as _, Write as _};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use airlock_testkit::{LoopbackError, Reply, TestCa, Upstream};
use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;

const PUBLIC: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

type Error = Box<dyn std::error::Error + Send + Sync>;

/// A client config that trusts `ca` and nothing else, offering HTTP/1.1 by ALPN.
fn client_config(ca: &TestCa) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.cert_der()).expect("CA certificate parses");
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("ring supports the default TLS versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config
}

/// One request over a fresh TLS connection with `server_name` as SNI and verified name.
async fn send(
    config: rustls::ClientConfig,
    addr: SocketAddr,
    server_name: &str,
    request: Request<Full<Bytes>>,
) -> Result<(StatusCode, HeaderMap, Bytes), Error> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = ServerName::try_from(server_name.to_owned())?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await?;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
    tokio::spawn(connection);
    let response = sender.send_request(request).await?;
    let (parts, body) = response.into_parts();
    Ok((
        parts.status,
        parts.headers,
        body.collect().await?.to_bytes(),
    ))
}

fn get(path: &str, host: &str) -> Request<Full<Bytes>> {
    Request::get(path)
        .header("host", host)
        .body(Full::default())
        .expect("request builds")
}

#[tokio::test]
async fn records_request_and_sni_on_127_0_0_2() {
    let ca = TestCa::new().expect("CA");
    let upstream = Upstream::start(&ca, &["api.allowed.test"], PUBLIC, |_| {
        Reply::json(201, serde_json::json!({"ok": true})).header("x-mock", "1")
    })
    .expect("upstream starts");
    assert_eq!(upstream.addr().ip(), PUBLIC);
    let request = Request::post("/v1/items?limit=2")
        .header("host", "api.allowed.test")
        .header("authorization", "Bearer canary")
        .header("X-Multi", "a")
        .header("x-multi", "b")
        .body(Full::new(Bytes::from_static(b"{\"n\":1}")))
        .expect("request builds");
    let (status, headers, body) = send(
        client_config(&ca),
        upstream.addr(),
        "api.allowed.test",
        request,
    )
    .await
    .expect("trusted client gets an answer");
    assert_eq!(status, 201);
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(headers["x-mock"], "1");
    assert_eq!(headers["content-length"], body.len().to_string().as_str());
    let json: serde_json::Value = serde_json::from_slice(&body).expect("JSON body");
    assert_eq!(json, serde_json::json!({"ok": true}));

    let requests = upstream.requests();
    assert_eq!(requests.len(), 1);
    let seen = &requests[0];
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.path_and_query, "/v1/items?limit=2");
    assert_eq!(seen.header("Authorization"), ["Bearer canary"]);
    assert_eq!(seen.header("x-multi"), ["a", "b"]);
    assert_eq!(seen.header("host"), ["api.allowed.test"]);
    assert!(seen.headers.iter().all(|(n, _)| *n == n.to_lowercase()));
    assert_eq!(seen.body, b"{\"n\":1}");
    assert_eq!(seen.sni.as_deref(), Some("api.allowed.test"));
    assert_eq!(upstream.accepts(), 1);
}

#[tokio::test]
async fn untrusted_or_misnamed_handshake_fails_but_is_counted() {
    let ca = TestCa::new().expect("CA");
    let upstream = Upstream::start(&ca, &["api.allowed.test"], PUBLIC, |_| Reply::status(204))
        .expect("upstream starts");
    // A client trusting a different CA.
    let stranger = TestCa::new().expect("CA");
    let error = send(
        client_config(&stranger),
        upstream.addr(),
        "api.allowed.test",
        get("/", "api.allowed.test"),
    )
    .await
    .expect_err("a certificate from an untrusted CA must fail");
    assert!(
        error.to_string().contains("UnknownIssuer"),
        "unexpected error: {error}"
    );
    // The right CA, but a name the certificate does not cover.
    let error = send(
        client_config(&ca),
        upstream.addr(),
        "evil.test",
        get("/", "evil.test"),
    )
    .await
    .expect_err("a certificate for another name must fail");
    assert!(
        error.to_string().contains("not valid for name"),
        "unexpected error: {error}"
    );
    assert_eq!(upstream.accepts(), 2);
    assert!(upstream.requests().is_empty());
}

#[tokio::test]
async fn echo_chunked_redirect_and_ip_names() {
    let ca = TestCa::new().expect("CA");
    let upstream = Upstream::start(&ca, &["127.0.0.2"], PUBLIC, |request| {
        match request.path_and_query.as_str() {
            "/echo" => Reply::echo_headers(request),
            "/big" => Reply::bytes(200, vec![7; 1 << 20]).chunked(),
            _ => Reply::redirect(302, "http://127.0.0.1:1/latest/meta-data"),
        }
    })
    .expect("upstream starts");
    // An IP-address certificate name: rustls verifies the IP SAN and sends no SNI.
    let request = Request::get("/echo")
        .header("host", "127.0.0.2")
        .header("x-api-key", "canary-1")
        .body(Full::default())
        .expect("request builds");
    let (status, _, body) = send(client_config(&ca), upstream.addr(), "127.0.0.2", request)
        .await
        .expect("echo answers");
    assert_eq!(status, 200);
    let json: serde_json::Value = serde_json::from_slice(&body).expect("JSON body");
    assert_eq!(json["method"], "GET");
    assert_eq!(json["path"], "/echo");
    assert_eq!(
        json["headers"]["x-api-key"],
        serde_json::json!(["canary-1"])
    );

    let (status, headers, body) = send(
        client_config(&ca),
        upstream.addr(),
        "127.0.0.2",
        get("/big", "127.0.0.2"),
    )
    .await
    .expect("big body answers");
    assert_eq!(status, 200);
    assert!(headers.get("content-length").is_none());
    assert_eq!(headers["transfer-encoding"], "chunked");
    assert_eq!(body.len(), 1 << 20);

    let (status, headers, _) = send(
        client_config(&ca),
        upstream.addr(),
        "127.0.0.2",
        get("/go", "127.0.0.2"),
    )
    .await
    .expect("redirect answers");
    assert_eq!(status, 302);
    assert_eq!(headers["location"], "http://127.0.0.1:1/latest/meta-data");
    assert!(upstream.requests().iter().all(|r| r.sni.is_none()));
}

/// A handler over `http` types (the demo's stand-ins, the fixture server) gets the request as
/// sent and its response goes out exactly as made: every header value, no `Date` added.
#[tokio::test]
async fn an_http_handler_answers_exactly_what_it_made() {
    let ca = TestCa::new().expect("CA");
    let upstream = Upstream::start_http(
        &ca,
        &["api.github.com"],
        Ipv4Addr::LOCALHOST.into(),
        |request| {
            let body = format!("{} {}", request.method(), request.uri());
            http::Response::builder()
                .status(StatusCode::ACCEPTED)
                .header("x-seen", request.headers()["x-sent"].clone())
                .header("set-cookie", "a=1")
                .header("set-cookie", "b=2")
                .body(Bytes::from(body))
                .expect("response builds")
        },
    )
    .expect("upstream starts");
    let request = Request::put("/repos?x=1")
        .header("host", "api.github.com")
        .header("x-sent", "here")
        .body(Full::default())
        .expect("request builds");
    let (status, headers, body) = send(
        client_config(&ca),
        upstream.addr(),
        "api.github.com",
        request,
    )
    .await
    .expect("handler answers");
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(headers["x-seen"], "here");
    let cookies: Vec<_> = headers.get_all("set-cookie").iter().collect();
    assert_eq!(cookies, ["a=1", "b=2"]);
    assert!(headers.get("date").is_none(), "{headers:?}");
    assert_eq!(body, "PUT /repos?x=1");
    assert_eq!(upstream.requests()[0].path_and_query, "/repos?x=1");
}

/// A plain `#[test]` with blocking I/O, as a CLI test running the binary would be: the
/// upstream answers from its own runtime, and closes once dropped.
#[test]
fn a_blocking_client_is_answered_and_a_dropped_upstream_closes() {
    let ca = TestCa::new().expect("CA");
    let upstream = Upstream::start(&ca, &["api.allowed.test"], PUBLIC, |_| {
        Reply::status(200).body("hello")
    })
    .expect("upstream starts");
    let name = ServerName::try_from("api.allowed.test").expect("valid name");
    let connection = rustls::ClientConnection::new(Arc::new(client_config(&ca)), name)
        .expect("client connection");
    let tcp = TcpStream::connect(upstream.addr()).expect("upstream listens");
    let mut tls = rustls::StreamOwned::new(connection, tcp);
    tls.write_all(b"GET / HTTP/1.1\r\nhost: api.allowed.test\r\nconnection: close\r\n\r\n")
        .expect("request sent");
    let mut response = String::new();
    tls.read_to_string(&mut response).expect("response read");
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert!(response.ends_with("\r\n\r\nhello"), "{response}");

    let addr = upstream.addr();
    drop(upstream);
    // The listener closes once its accept loop sees the shutdown.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while TcpStream::connect(addr).is_ok() {
        assert!(std::time::Instant::now() < deadline, "{addr} still open");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn only_loopback_addresses_are_served() {
    let ca = TestCa::new().expect("CA");
    let refused = Upstream::start(&ca, &["x.test"], Ipv4Addr::UNSPECIFIED.into(), |_| {
        Reply::status(200)
    });
    assert!(matches!(refused, Err(LoopbackError::NotLoopback(_))));
}

#[test]
fn write_pem_writes_the_ca_certificate() {
    let ca = TestCa::new().expect("CA");
    let dir = tempfile::TempDir::new().expect("temp dir");
    let path = ca.write_pem(dir.path()).expect("PEM written");
    assert_eq!(path, dir.path().join("ca.pem"));
    let written = std::fs::read_to_string(&path).expect("PEM read");
    assert!(written.starts_with("-----BEGIN CERTIFICATE-----"));
    assert_eq!(written, ca.cert_pem());
}
