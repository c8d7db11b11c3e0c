//! Signature checks on the raw body as received, before anything parses it (WH-02, WH-12).
//!
//! Each scheme signs a string built from the body and, except GitHub's, a timestamp that must
//! be within [`TOLERANCE`] of now in either direction (WH-03). Comparison is `Mac::verify_slice`,
//! constant-time (WH-07). Headers are parsed strictly: a duplicated header, a non-decimal
//! timestamp, a signature of the wrong length or case, an algorithm other than SHA-256 (WH-06),
//! or more than [`MAX_SIGNATURES`] candidates are refused without computing anything.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use http::HeaderMap;
use sha2::Sha256;

use super::{Refusal, Scheme, SigningKey};

/// How far a signed timestamp may be from now, either way.
pub const TOLERANCE: Duration = Duration::from_secs(300);
/// Signatures parsed from one header at most (several are sent during a key rotation).
pub const MAX_SIGNATURES: usize = 16;
/// Longest delivery id kept for replay protection.
const MAX_ID_LEN: usize = 128;

/// How long a delivery id is remembered: past the timestamp tolerance on both sides for the
/// timestamped schemes; for GitHub, which signs no timestamp, past its redelivery horizon.
pub fn retention(scheme: Scheme) -> Duration {
    match scheme {
        Scheme::Standard | Scheme::Slack => TOLERANCE * 2,
        Scheme::Github => Duration::from_secs(7 * 24 * 3600),
    }
}

/// A delivery whose signature verified, and the id it is deduplicated by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub delivery: String,
}

type HmacSha256 = Hmac<Sha256>;

/// Verifies `body` as signed under `scheme` by any of `keys`, at `now` (Unix seconds).
pub fn verify(
    scheme: Scheme,
    keys: &[SigningKey],
    headers: &HeaderMap,
    body: &[u8],
    now: u64,
) -> Result<Verified, Refusal> {
    match scheme {
        Scheme::Standard => standard(keys, headers, body, now),
        Scheme::Github => github(keys, headers, body),
        Scheme::Slack => slack(keys, headers, body, now),
    }
}

/// The `webhook-signature` Airlock's own Standard Webhooks deliveries carry (alert
/// notifications): `v1,<base64 HMAC-SHA256 of {id}.{timestamp}.{body}>`.
pub fn sign_standard(key: &SigningKey, id: &str, timestamp: u64, body: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(key.bytes()).expect("HMAC takes a key of any length");
    for part in [
        id.as_bytes(),
        b".",
        timestamp.to_string().as_bytes(),
        b".",
        body,
    ] {
        mac.update(part);
    }
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// Standard Webhooks 1.0: `webhook-signature: v1,<base64> …` over `{id}.{timestamp}.{body}`.
fn standard(
    keys: &[SigningKey],
    headers: &HeaderMap,
    body: &[u8],
    now: u64,
) -> Result<Verified, Refusal> {
    let id = header(headers, "webhook-id")?;
    if id.is_empty() || id.len() > MAX_ID_LEN || id.contains('.') {
        return Err(Refusal::Malformed("webhook-id"));
    }
    let timestamp = header(headers, "webhook-timestamp")?;
    let seconds = fresh(timestamp, now, "webhook-timestamp")?;
    let entries: Vec<&str> = header(headers, "webhook-signature")?
        .split(' ')
        .filter(|s| !s.is_empty())
        .collect();
    if entries.is_empty() || entries.len() > MAX_SIGNATURES {
        return Err(Refusal::Malformed("webhook-signature"));
    }
    let mut candidates = Vec::new();
    for entry in entries {
        let (version, signature) = entry
            .split_once(',')
            .ok_or(Refusal::Malformed("webhook-signature"))?;
        // `v1a` (Ed25519) and future versions are not ours to check: skip them, as the spec says.
        if version != "v1" {
            continue;
        }
        let signature = STANDARD
            .decode(signature)
            .map_err(|_| Refusal::Malformed("webhook-signature"))?;
        candidates.push(signature);
    }
    if candidates.is_empty() {
        return Err(Refusal::Algorithm);
    }
    let seconds = seconds.to_string();
    let signed = [id.as_bytes(), b".", seconds.as_bytes(), b".", body];
    matches(keys, &signed, &candidates)?;
    Ok(Verified {
        delivery: id.to_string(),
    })
}

/// GitHub: `X-Hub-Signature-256: sha256=<hex>` over the body. GitHub signs neither a timestamp
/// nor its `X-GitHub-Delivery` id, so a replay could carry any id: deliveries are deduplicated
/// by the signature itself, fixed for a body under a key.
fn github(keys: &[SigningKey], headers: &HeaderMap, body: &[u8]) -> Result<Verified, Refusal> {
    let delivery = header(headers, "x-github-delivery")?;
    if delivery.is_empty()
        || delivery.len() > MAX_ID_LEN
        || !delivery
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Err(Refusal::Malformed("x-github-delivery"));
    }
    let signature = match header(headers, "x-hub-signature-256") {
        Ok(value) => value,
        // Only the SHA-1 header: a downgrade, never accepted.
        Err(Refusal::Missing(_)) if headers.contains_key("x-hub-signature") => {
            return Err(Refusal::Algorithm);
        }
        Err(e) => return Err(e),
    };
    let hex = signature
        .strip_prefix("sha256=")
        .ok_or(Refusal::Algorithm)?;
    let signature = lower_hex(hex, "x-hub-signature-256")?;
    matches(keys, &[body], &[signature])?;
    Ok(Verified {
        delivery: format!("sha256={hex}"),
    })
}

/// Slack: `X-Slack-Signature: v0=<hex>` over `v0:{X-Slack-Request-Timestamp}:{body}`. Slack
/// sends no delivery id; a replay is the same timestamp and signature again.
fn slack(
    keys: &[SigningKey],
    headers: &HeaderMap,
    body: &[u8],
    now: u64,
) -> Result<Verified, Refusal> {
    let timestamp = header(headers, "x-slack-request-timestamp")?;
    let seconds = fresh(timestamp, now, "x-slack-request-timestamp")?;
    let signature = header(headers, "x-slack-signature")?;
    let hex = signature.strip_prefix("v0=").ok_or(Refusal::Algorithm)?;
    let decoded = lower_hex(hex, "x-slack-signature")?;
    let seconds = seconds.to_string();
    matches(keys, &[b"v0:", seconds.as_bytes(), b":", body], &[decoded])?;
    Ok(Verified {
        delivery: format!("{seconds}:{hex}"),
    })
}

/// The one value of header `name` as visible ASCII; a repeated header is refused, since which
/// copy a proxy or a library would pick is not ours to guess.
fn header<'a>(headers: &'a HeaderMap, name: &'static str) -> Result<&'a str, Refusal> {
    let mut values = headers.get_all(name).iter();
    let value = values.next().ok_or(Refusal::Missing(name))?;
    if values.next().is_some() {
        return Err(Refusal::Malformed(name));
    }
    value
        .to_str()
        .map(str::trim)
        .map_err(|_| Refusal::Malformed(name))
}

/// A decimal Unix timestamp within [`TOLERANCE`] of `now`.
fn fresh(timestamp: &str, now: u64, name: &'static str) -> Result<u64, Refusal> {
    if timestamp.is_empty()
        || timestamp.len() > 12
        || !timestamp.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(Refusal::Malformed(name));
    }
    let seconds: u64 = timestamp.parse().map_err(|_| Refusal::Malformed(name))?;
    if seconds.abs_diff(now) > TOLERANCE.as_secs() {
        return Err(Refusal::Stale);
    }
    Ok(seconds)
}

/// A SHA-256 MAC in lowercase hex, as both providers send it.
fn lower_hex(text: &str, name: &'static str) -> Result<Vec<u8>, Refusal> {
    if text.len() != 64 || !text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(Refusal::Malformed(name));
    }
    hex::decode(text).map_err(|_| Refusal::Malformed(name))
}

/// Ok if any candidate is the MAC of the concatenated `parts` under any key.
fn matches(keys: &[SigningKey], parts: &[&[u8]], candidates: &[Vec<u8>]) -> Result<(), Refusal> {
    for key in keys {
        let mut mac = HmacSha256::new_from_slice(key.bytes()).map_err(|_| Refusal::Signature)?;
        for part in parts {
            mac.update(part);
        }
        // `verify_slice` compares in constant time; a candidate of the wrong length just fails.
        if candidates
            .iter()
            .any(|c| mac.clone().verify_slice(c).is_ok())
        {
            return Ok(());
        }
    }
    Err(Refusal::Signature)
}
