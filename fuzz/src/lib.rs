//! What several fuzz targets share.

use airlock_policy::webhook::{Scheme, WebhookSecret};
use http::{HeaderMap, HeaderName, HeaderValue};

/// A webhook delivery as a fuzzer makes it: header fields, body, the receiver's clock.
pub type Delivery = (Vec<(String, Vec<u8>)>, Vec<u8>, u64);

/// Verifies `delivery` under `scheme` with a fixed key, as the server does: a refusal, never
/// a panic.
pub fn verify_delivery(scheme: Scheme, delivery: Delivery) {
    let (fields, body, now) = delivery;
    let mut headers = HeaderMap::new();
    for (name, value) in fields.into_iter().take(32) {
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(name), HeaderValue::from_bytes(&value))
        {
            headers.append(name, value);
        }
    }
    let secret = WebhookSecret::from_stored(
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw/HoRBzaO4fk="
            .to_string()
            .into(),
    );
    let key = secret.signing_key(scheme);
    let _ = airlock_policy::webhook::verify::verify(scheme, &[key], &headers, &body, now);
}
