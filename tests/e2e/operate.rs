//! Operating `airlock serve`: one config file, JSON logs (docs/deploy.md).

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::operator::Operator;
use crate::serving::{Body, Server};
use crate::support::stderr;

#[tokio::test]
async fn serve_takes_its_settings_from_one_file_and_the_flags_win() {
    let op = Operator::new();
    let file = op.keys.path().join("airlock.serve.toml");
    std::fs::write(
        &file,
        "# settings the command line does not give\n\
         listen = \"127.0.0.1:1\"\n\
         no-console = true\n\
         max-body = \"1KiB\"\n\
         log-format = \"json\"\n\
         trusted-proxy = [\"10.1.0.0/16\", \"10.2.0.0/16\"]\n",
    )
    .expect("config written");
    let config = file.display().to_string();
    // `--listen 127.0.0.1:0` on the command line wins over the file's port 1.
    let server = Server::start(&op, &[], &["--config", &config]);

    let console = server.call(Method::GET, "/console", None, Body::None).await;
    assert_eq!(console.status, StatusCode::NOT_FOUND, "no-console = true");
    let large = server
        .call(
            Method::POST,
            "/v1/tenants",
            Some(&server.admin),
            Body::Raw(vec![b' '; 2048]),
        )
        .await;
    assert_eq!(
        large.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        large.body
    );
    let small = server
        .post("/v1/tenants", &server.admin, json!({"id": "initech"}))
        .await;
    assert_eq!(small.status, StatusCode::CREATED, "{}", small.body);

    let log = server.log();
    let lines: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let said = |text: &str| {
        lines.iter().any(|l| {
            l["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(text))
        })
    };
    assert!(said("store checked"), "{log}");
    assert!(
        said("10.1.0.0/16,10.2.0.0/16"),
        "both proxies from the file: {log}"
    );
    assert!(
        lines
            .iter()
            .all(|l| l["level"].is_string() && l["timestamp"].is_string())
    );
    server.stop();
}

#[test]
fn a_config_file_is_checked_whole_and_its_errors_name_file_line_and_key() {
    let op = Operator::new();
    let check = |name: &str, text: &str| {
        let file = op.keys.path().join(name);
        std::fs::write(&file, text).expect("config written");
        let path = file.display().to_string();
        let out = op.airlock(&["serve", "--config", &path, "--check-config"]);
        (out.status.code(), stderr(&out), path)
    };

    let (code, said, _) = check(
        "good.toml",
        "listen = \"127.0.0.1:8443\"\nmax-concurrent = 16\nheartbeat = \"2s\"\n",
    );
    assert_eq!(code, Some(0), "{said}");

    let (code, said, path_typo) = check("typo.toml", "# ops\n\nmax-concurent = 16\n");
    assert_eq!(code, Some(2));
    assert!(
        said.contains(&format!("{path_typo}:3: max-concurent: not a setting")),
        "{said}"
    );
    assert!(said.contains("did you mean `max-concurrent`"), "{said}");

    let (code, said, path_value) = check("value.toml", "workers = 2\nmax-body = \"lots\"\n");
    assert_eq!(code, Some(2));
    assert!(
        said.contains(&format!("{path_value}:2: max-body:")),
        "{said}"
    );
    assert!(said.contains("lots"), "{said}");

    let (code, said, _) = check("shape.toml", "no-console = \"yes\"\n");
    assert_eq!(code, Some(2));
    assert!(
        said.contains("no-console: a string, where true or false is expected"),
        "{said}"
    );

    let (code, said, _) = check("itself.toml", "config = \"other.toml\"\n");
    assert_eq!(code, Some(2));
    assert!(said.contains("config: not a setting"), "{said}");

    let (code, said, _) = check("broken.toml", "listen = [\n");
    assert_eq!(code, Some(2));
    assert!(
        said.contains("not TOML") && said.contains("line 1"),
        "{said}"
    );

    // A dev switch in the file is still refused unless confirmed, as on the command line.
    let (code, said, _) = check("loose.toml", "allow-private = [\"127.0.0.0/8\"]\n");
    assert_eq!(code, Some(2));
    assert!(said.contains("--dev-insecure"), "{said}");

    // The command line wins: the file's non-loopback address is not used.
    let file = op.keys.path().join("wide.toml");
    std::fs::write(&file, "listen = \"0.0.0.0:8080\"\n").expect("config written");
    let wide = file.display().to_string();
    let out = op.airlock(&["serve", "--config", &wide, "--check-config"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let out = op.airlock(&[
        "serve",
        "--config",
        &wide,
        "--listen",
        "127.0.0.1:8080",
        "--check-config",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}
