//! Signature schemes against hand-built deliveries (catalogue WH-01…03, WH-06).

use http::{HeaderMap, HeaderName, HeaderValue};
use zeroize::Zeroizing;

use super::verify::verify;
use super::*;

const NOW: u64 = 1_767_225_600;
const BODY: &[u8] = br#"{"event":"ping"}"#;

fn mac(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("any key length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().to_vec()
}

fn headers(pairs: &[(&str, String)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).expect("name"),
            HeaderValue::from_str(value).expect("value"),
        );
    }
    map
}

/// Standard Webhooks headers signing `body` at `ts` under `secret`.
fn standard(secret: &WebhookSecret, id: &str, ts: u64, body: &[u8]) -> Vec<(&'static str, String)> {
    let key = secret.signing_key(Scheme::Standard);
    let signed = mac(
        key.bytes(),
        &[id.as_bytes(), b".", ts.to_string().as_bytes(), b".", body],
    );
    vec![
        ("webhook-id", id.to_string()),
        ("webhook-timestamp", ts.to_string()),
        (
            "webhook-signature",
            format!("v1,{}", STANDARD.encode(signed)),
        ),
    ]
}

fn generated() -> WebhookSecret {
    WebhookSecret::for_scheme(Scheme::Standard, None).expect("generated")
}

#[test]
fn generated_secrets_are_32_random_bytes_and_never_repeat() {
    let a = generated();
    let b = generated();
    assert!(a.expose().starts_with("whsec_"));
    assert_eq!(a.signing_key(Scheme::Standard).bytes().len(), 32);
    assert!(!a.same_as(&b));
    assert!(!format!("{a:?}").contains(&a.expose()[6..]));
    // Only Slack imports its secret, and only a long one (WH-09).
    let offered = || Some(Zeroizing::new("x".repeat(40)));
    assert_eq!(
        WebhookSecret::for_scheme(Scheme::Standard, offered()).map(|_| ()),
        Err(SecretRefused::NotImported("standard"))
    );
    assert_eq!(
        WebhookSecret::for_scheme(Scheme::Slack, None).map(|_| ()),
        Err(SecretRefused::Required("slack"))
    );
    assert_eq!(
        WebhookSecret::for_scheme(Scheme::Slack, Some(Zeroizing::new("abc123".into()))).map(|_| ()),
        Err(SecretRefused::Shape)
    );
    assert!(WebhookSecret::for_scheme(Scheme::Slack, offered()).is_ok());
}

#[test]
fn standard_webhooks_accept_a_valid_delivery_and_refuse_every_tampering() {
    let secret = generated();
    let keys = [secret.signing_key(Scheme::Standard)];
    let check = |h: &[(&str, String)], body: &[u8], now: u64| {
        verify(Scheme::Standard, &keys, &headers(h), body, now)
    };
    let valid = standard(&secret, "msg_1", NOW, BODY);
    assert_eq!(
        check(&valid, BODY, NOW),
        Ok(Verified {
            delivery: "msg_1".into()
        })
    );
    // WH-02: any change to the body as received.
    for body in [
        &br#"{"event":"pinG"}"#[..],
        br#"{ "event": "ping" }"#,
        b"\xef\xbb\xbf{\"event\":\"ping\"}",
        b"",
    ] {
        assert_eq!(check(&valid, body, NOW), Err(Refusal::Signature));
    }
    // WH-03: 301 s either way is refused, 299 s accepted; the timestamp is signed.
    assert_eq!(check(&valid, BODY, NOW + 301), Err(Refusal::Stale));
    assert_eq!(check(&valid, BODY, NOW - 301), Err(Refusal::Stale));
    assert!(check(&valid, BODY, NOW + 299).is_ok());
    let mut moved = valid.clone();
    moved[1].1 = (NOW + 10).to_string();
    assert_eq!(check(&moved, BODY, NOW), Err(Refusal::Signature));
    // Another endpoint's secret does not verify.
    let other = standard(&generated(), "msg_1", NOW, BODY);
    assert_eq!(check(&other, BODY, NOW), Err(Refusal::Signature));
}

#[test]
fn standard_signature_headers_parse_strictly() {
    let secret = generated();
    let keys = [secret.signing_key(Scheme::Standard)];
    let valid = standard(&secret, "msg_1", NOW, BODY);
    let good = valid[2].1.clone();
    let with = |signature: String| {
        let mut h = valid.clone();
        h[2].1 = signature;
        verify(Scheme::Standard, &keys, &headers(&h), BODY, NOW)
    };
    // Several signatures (a rotation): any match passes, v1a entries are skipped.
    assert!(with(format!("v1,AAAA {good} v1a,xyz")).is_ok());
    assert_eq!(with("v1a,AAAA".into()), Err(Refusal::Algorithm));
    assert_eq!(with("v1,".into()), Err(Refusal::Signature));
    assert_eq!(
        with("v1,@@@".into()),
        Err(Refusal::Malformed("webhook-signature"))
    );
    assert_eq!(
        with("nocomma".into()),
        Err(Refusal::Malformed("webhook-signature"))
    );
    // At most 16 candidates are looked at: 1,000 is refused before any MAC is computed.
    let flood = vec!["v1,AAAA"; 1000].join(" ");
    assert_eq!(with(flood), Err(Refusal::Malformed("webhook-signature")));
    let sixteen = format!("{} {good}", vec!["v1,AAAA"; 15].join(" "));
    assert!(with(sixteen).is_ok());

    let mut repeated = valid.clone();
    repeated.push(("webhook-timestamp", (NOW - 1).to_string()));
    assert_eq!(
        verify(Scheme::Standard, &keys, &headers(&repeated), BODY, NOW),
        Err(Refusal::Malformed("webhook-timestamp"))
    );
    for (index, value, refusal) in [
        (0, "a.b", Refusal::Malformed("webhook-id")),
        (1, "1e9", Refusal::Malformed("webhook-timestamp")),
        (1, "-5", Refusal::Malformed("webhook-timestamp")),
        (1, "1767225600.5", Refusal::Malformed("webhook-timestamp")),
    ] {
        let mut h = valid.clone();
        h[index].1 = value.to_string();
        assert_eq!(
            verify(Scheme::Standard, &keys, &headers(&h), BODY, NOW),
            Err(refusal),
            "{value}"
        );
    }
    let missing = &valid[1..];
    assert_eq!(
        verify(Scheme::Standard, &keys, &headers(missing), BODY, NOW),
        Err(Refusal::Missing("webhook-id"))
    );
}

#[test]
fn github_signatures_need_sha256_in_lowercase_hex_and_a_delivery_id() {
    let secret = WebhookSecret::for_scheme(Scheme::Github, None).expect("generated");
    let keys = [secret.signing_key(Scheme::Github)];
    let hex = hex::encode(mac(secret.expose().as_bytes(), &[BODY]));
    let check = |signature: (&'static str, String), delivery: Option<&str>| {
        let mut h = vec![signature];
        if let Some(d) = delivery {
            h.push(("x-github-delivery", d.to_string()));
        }
        verify(Scheme::Github, &keys, &headers(&h), BODY, 0)
    };
    let good = ("x-hub-signature-256", format!("sha256={hex}"));
    // The unsigned delivery id is not the dedupe key: any id gives the same key.
    for id in ["72d3162e-cc78-11e3-81ab-4c9367dc0958", "another-id"] {
        assert_eq!(
            check(good.clone(), Some(id)),
            Ok(Verified {
                delivery: format!("sha256={hex}")
            })
        );
    }
    assert_eq!(
        check(good, None),
        Err(Refusal::Missing("x-github-delivery"))
    );
    let d = Some("d1");
    assert_eq!(
        check(
            (
                "x-hub-signature-256",
                format!("sha256={}", hex.to_uppercase())
            ),
            d
        ),
        Err(Refusal::Malformed("x-hub-signature-256"))
    );
    assert_eq!(
        check(("x-hub-signature-256", format!("sha1={hex}")), d),
        Err(Refusal::Algorithm)
    );
    assert_eq!(
        check(("x-hub-signature", format!("sha1={}", &hex[..40])), d),
        Err(Refusal::Algorithm)
    );
    assert_eq!(
        check(
            ("x-hub-signature-256", format!("sha256={}", "0".repeat(64))),
            d
        ),
        Err(Refusal::Signature)
    );
}

#[test]
fn slack_signs_version_timestamp_and_body() {
    let secret = WebhookSecret::for_scheme(
        Scheme::Slack,
        Some(Zeroizing::new("8f742231b10e8888abcd99yyyzzz85a5".into())),
    )
    .expect("imported");
    let keys = [secret.signing_key(Scheme::Slack)];
    let ts = NOW.to_string();
    let hex = hex::encode(mac(
        secret.expose().as_bytes(),
        &[b"v0:", ts.as_bytes(), b":", BODY],
    ));
    let h = |sig: String, ts: &str| {
        headers(&[
            ("x-slack-signature", sig),
            ("x-slack-request-timestamp", ts.to_string()),
        ])
    };
    let verified = verify(
        Scheme::Slack,
        &keys,
        &h(format!("v0={hex}"), &ts),
        BODY,
        NOW,
    )
    .expect("valid");
    assert_eq!(verified.delivery, format!("{ts}:{hex}"));
    assert_eq!(
        verify(
            Scheme::Slack,
            &keys,
            &h(format!("v0={hex}"), &ts),
            BODY,
            NOW + 301
        ),
        Err(Refusal::Stale)
    );
    assert_eq!(
        verify(
            Scheme::Slack,
            &keys,
            &h(format!("v1={hex}"), &ts),
            BODY,
            NOW
        ),
        Err(Refusal::Algorithm)
    );
    let other_ts = (NOW + 1).to_string();
    assert_eq!(
        verify(
            Scheme::Slack,
            &keys,
            &h(format!("v0={hex}"), &other_ts),
            BODY,
            NOW
        ),
        Err(Refusal::Signature)
    );
}

#[test]
fn a_rotated_endpoint_verifies_under_either_live_secret() {
    let old = generated();
    let new = generated();
    let keys = [
        new.signing_key(Scheme::Standard),
        old.signing_key(Scheme::Standard),
    ];
    for secret in [&old, &new] {
        let h = standard(secret, "msg_2", NOW, BODY);
        assert!(verify(Scheme::Standard, &keys, &headers(&h), BODY, NOW).is_ok());
    }
    let only_new = [new.signing_key(Scheme::Standard)];
    let h = standard(&old, "msg_2", NOW, BODY);
    assert_eq!(
        verify(Scheme::Standard, &only_new, &headers(&h), BODY, NOW),
        Err(Refusal::Signature)
    );
}

#[test]
fn airlocks_own_deliveries_are_signed_as_the_standard_verifies_them() {
    let secret = generated();
    let parsed =
        WebhookSecret::standard(Zeroizing::new(format!("{}\n", secret.expose()))).expect("valid");
    assert!(parsed.same_as(&secret));
    let key = parsed.signing_key(Scheme::Standard);
    let signature = sign_standard(&key, "alert_7", NOW, BODY);
    assert_eq!(
        vec![("webhook-signature", signature.clone())],
        standard(&secret, "alert_7", NOW, BODY)[2..].to_vec()
    );
    let delivered = headers(&[
        ("webhook-id", "alert_7".to_string()),
        ("webhook-timestamp", NOW.to_string()),
        ("webhook-signature", signature),
    ]);
    assert!(verify(Scheme::Standard, &[key], &delivered, BODY, NOW).is_ok());
    for bad in ["whsec_short", "not-a-secret", "whsec_!!!!"] {
        assert_eq!(
            WebhookSecret::standard(Zeroizing::new(bad.to_string())).err(),
            Some(SecretRefused::StandardShape)
        );
    }
}
