//! Webhook verification (slack): headers and body from the sender, any bytes; a refusal,
//! never a panic, and never a pass without the key.
#![no_main]

use airlock_policy::webhook::{Scheme, WebhookSecret};
use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (Vec<(String, Vec<u8>)>, Vec<u8>, u64)| {
    let (fields, body, now) = input;
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
    let key = secret.signing_key(Scheme::Slack);
    let _ = airlock_policy::webhook::verify::verify(Scheme::Slack, &[key], &headers, &body, now);
});
