//! airlock-host-api's parsers: what upstream responses carry (`Retry-After`, bodies the
//! broker decodes and redacts) and the kv keys guests name.

use std::io::Read as _;
use std::time::{Duration, SystemTime};

use airlock_host_api::egress::redact::{BodyFilter, Encoding, Redactor, SecretForms};
use airlock_host_api::kv::{MAX_KEY_BYTES, check_key};

use super::{chunks, decode};

/// An upstream's `Retry-After`: any bytes, any status; at most a day, never a panic.
pub fn retry_after(data: &[u8]) {
    let Some((status, value, now)) = decode::<(u16, Vec<u8>, u32)>(data) else {
        return;
    };
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(u64::from(now));
    if let Some(wait) = airlock_host_api::egress::event::retry_after(status, Some(&value), now) {
        assert!(wait <= 24 * 3600);
    }
}

/// A response that echoes a secret. Layout: secret length (1 byte), chunk sizes (4 bytes),
/// the secret, the body.
fn echoing(data: &[u8]) -> Option<(Redactor, &str, [u8; 4], &[u8])> {
    let (&len, rest) = data.split_first()?;
    let sizes: [u8; 4] = rest.get(..4)?.try_into().ok()?;
    let rest = &rest[4..];
    let secret = std::str::from_utf8(rest.get(..usize::from(len).max(1))?).ok()?;
    let body = &rest[secret.len()..];
    Some((
        Redactor::new(&SecretForms::token(secret))?,
        secret,
        sizes,
        body,
    ))
}

/// The response redactor, differentially: streamed in any chunks it gives what redacting the
/// whole body gives, and what it releases never holds the secret verbatim (a secret with a
/// bracket, or inside the mark itself, can be re-assembled next to a mark: a documented limit).
pub fn redactor(data: &[u8]) {
    let Some((redactor, secret, sizes, body)) = echoing(data) else {
        return;
    };
    let (whole, count) = redactor.redact(body);
    let mut stream = redactor.stream();
    let mut streamed = Vec::new();
    for chunk in chunks(body, &sizes) {
        streamed.extend(stream.push(chunk));
    }
    streamed.extend(stream.finish());
    assert_eq!(streamed, whole, "chunking changes nothing");
    assert_eq!(stream.count(), count);

    let mut filter = BodyFilter::new(&redactor, Encoding::Identity, u64::MAX);
    let mut filtered = Vec::new();
    for chunk in chunks(body, &sizes) {
        filtered.extend(filter.push(chunk).expect("identity never fails"));
    }
    filtered.extend(filter.finish().expect("identity never fails"));
    assert_eq!(
        filtered, whole,
        "the body filter redacts as the redactor does"
    );

    let mark = std::str::from_utf8(Redactor::MARK).expect("ASCII");
    if !secret.contains(['[', ']']) && !mark.contains(secret) {
        assert!(
            !whole.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "the secret is never released"
        );
    }
}

/// Compressed response bodies under the decoded-size limit. Layout: encoding (1 byte), limit
/// in KiB (1 byte), chunk sizes (4 bytes), the body. Whatever the decoder releases is the
/// redacted reference decoding, never more than the limit allows, and a refusal is final.
pub fn body_decoding(data: &[u8]) {
    let [kind, limit, a, b, c, d, body @ ..] = data else {
        return;
    };
    let encoding = match kind % 3 {
        0 => Encoding::Identity,
        1 => Encoding::Gzip,
        _ => Encoding::Deflate,
    };
    let limit = u64::from(*limit) * 1024;
    let redactor = Redactor::new(&SecretForms::token("s3cr3t-t0ken")).expect("a secret");
    let mut filter = BodyFilter::new(&redactor, encoding, limit);
    let mut released = Vec::new();
    let mut result = Ok(());
    for chunk in chunks(body, &[*a, *b, *c, *d]) {
        match filter.push(chunk) {
            Ok(out) => released.extend(out),
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    let result = result.and_then(|()| filter.finish().map(|out| released.extend(out)));
    if result.is_err() {
        assert!(filter.push(b"x").is_err(), "a refused body stays refused");
        return;
    }
    if body.is_empty() {
        assert!(released.is_empty(), "an empty body is empty");
        return;
    }
    let mut decoded = Vec::new();
    let reference = match encoding {
        Encoding::Identity => {
            decoded.extend_from_slice(body);
            Ok(())
        }
        Encoding::Gzip => flate2::read::GzDecoder::new(body)
            .read_to_end(&mut decoded)
            .map(drop),
        Encoding::Deflate => flate2::read::ZlibDecoder::new(body)
            .read_to_end(&mut decoded)
            .map(drop),
    };
    reference.expect("what the filter accepts, a reference decoder decodes");
    assert!(decoded.len() as u64 <= limit, "the limit holds");
    assert_eq!(released, redactor.redact(&decoded).0);
}

/// Keys a guest names for kv: accepted keys are 1 to the most bytes of text without a control
/// character, and nothing else is.
pub fn kv_key(data: &[u8]) {
    let Ok(key) = std::str::from_utf8(data) else {
        return;
    };
    let valid = !key.is_empty() && key.len() <= MAX_KEY_BYTES && !key.contains(char::is_control);
    assert_eq!(check_key(key).is_ok(), valid);
}
