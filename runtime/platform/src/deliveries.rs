//! Inbound webhook deliveries (docs/api.md, "Webhooks"): verified on their raw bytes under the
//! endpoint's live secrets, run at most once per delivery id (the first writer wins, for as
//! long as the scheme's senders may retry), and given back when the run failed on our side, so
//! the sender's retry runs. Refusals are security events. The server's `POST /v1/hooks/{id}`
//! is a door over these steps: it reads the body, takes an admission slot and runs the action.

use airlock_audit::AuditTrail;
use airlock_host_api::audit::{AuditEvent, AuditUnavailable};
use airlock_policy::webhook::{self, Refusal};
use airlock_runtime::ids::EndpointId;
use airlock_store::{EndpointInfo, Storage, StoreError};
use http::HeaderMap;

/// A delivery whose signature verified: what it is for, and the id its sender gave it.
#[derive(Debug)]
pub struct Verified {
    pub id: EndpointId,
    pub endpoint: EndpointInfo,
    pub delivery: String,
}

/// Why a delivery does not run.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// No such endpoint (or it was deleted while the body arrived).
    #[error("webhook endpoint not found")]
    Unknown,
    /// The signature, its age or its delivery id was refused; [`record_refusal`] records it.
    #[error("{refusal}")]
    Refused {
        endpoint: Box<EndpointInfo>,
        refusal: Refusal,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Verifies `body` as a delivery to `endpoint` at `now`, under the secrets live now (read after
/// the body arrived, so a rotation or deletion meanwhile counts).
pub fn verify(
    store: &dyn Storage,
    endpoint: &EndpointId,
    headers: &HeaderMap,
    body: &[u8],
    now: u64,
) -> Result<Verified, DeliveryError> {
    let (info, keys) = store
        .webhook_keys(endpoint, now)?
        .ok_or(DeliveryError::Unknown)?;
    match webhook::verify::verify(info.scheme, &keys, headers, body, now) {
        Ok(verified) => Ok(Verified {
            id: endpoint.clone(),
            endpoint: info,
            delivery: verified.delivery,
        }),
        Err(refusal) => Err(DeliveryError::Refused {
            endpoint: Box::new(info),
            refusal,
        }),
    }
}

/// Claims the delivery id for one run: a copy that arrives while the id is kept (the scheme's
/// retention) is refused as [`Refusal::Replayed`], however the two raced.
pub fn claim(store: &dyn Storage, verified: &Verified, now: u64) -> Result<(), DeliveryError> {
    let retention = webhook::retention(verified.endpoint.scheme).as_secs();
    if store.first_delivery(&verified.id, &verified.delivery, retention, now)? {
        Ok(())
    } else {
        Err(DeliveryError::Refused {
            endpoint: Box::new(verified.endpoint.clone()),
            refusal: Refusal::Replayed,
        })
    }
}

/// Gives a claimed delivery id back: its run failed on our side, and the sender's retry must
/// run rather than meet a replay refusal.
pub fn release(store: &dyn Storage, verified: &Verified) -> Result<(), StoreError> {
    store.release_delivery(&verified.id, &verified.delivery)
}

/// Records a refused delivery: the endpoint, the reason and the sender's address, never the
/// body.
pub async fn record_refusal(
    trail: &AuditTrail,
    endpoint: &EndpointInfo,
    refusal: &Refusal,
    peer: &str,
) -> Result<u64, AuditUnavailable> {
    trail
        .append(AuditEvent::WebhookRefused {
            tenant: endpoint.tenant.clone(),
            endpoint: endpoint.id.clone(),
            reason: refusal.reason(),
            peer: peer.to_string(),
        })
        .await
}

#[cfg(test)]
mod tests {
    use airlock_audit::{AuditDir, Query};
    use airlock_policy::webhook::{Scheme, WebhookSecret};
    use airlock_runtime::ids::{InstallationId, TenantId};
    use airlock_store::{NewEndpoint, Store, Tenants, Webhooks};
    use hmac::{Hmac, Mac};
    use sha2::Sha256;
    use tempfile::TempDir;

    use super::*;

    const NOW: u64 = 1_800_000_000;

    /// A GitHub-scheme endpoint `hook` of tenant `acme`, its secret, the store and the trail.
    fn endpoint(dirs: &(TempDir, TempDir)) -> (Store, AuditTrail, EndpointId, WebhookSecret) {
        let store = Store::open(dirs.0.path(), None).expect("store");
        let trail = AuditTrail::open(
            &store,
            AuditDir::open(dirs.1.path(), dirs.0.path()).expect("audit dir"),
        )
        .expect("trail");
        let tenant: TenantId = "acme".parse().expect("tenant");
        let installation: InstallationId = "mapper".parse().expect("installation");
        let id: EndpointId = "hook".parse().expect("endpoint id");
        store.create_tenant(&tenant).expect("tenant");
        let secret = WebhookSecret::for_scheme(Scheme::Github, None).expect("secret");
        let new = NewEndpoint {
            id: &id,
            tenant: &tenant,
            installation: &installation,
            action: "map-contact",
            scheme: Scheme::Github,
        };
        store.create_webhook(new, &secret, NOW).expect("endpoint");
        (store, trail, id, secret)
    }

    fn signed(secret: &WebhookSecret, body: &[u8], delivery: &str) -> HeaderMap {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes()).expect("key");
        mac.update(body);
        let signature = hex::encode(mac.finalize().into_bytes());
        let mut headers = HeaderMap::new();
        headers.insert("x-github-delivery", delivery.parse().expect("header"));
        let value = format!("sha256={signature}");
        headers.insert("x-hub-signature-256", value.parse().expect("header"));
        headers
    }

    #[test]
    fn a_delivery_runs_once_until_released_and_only_as_signed() {
        let dirs = (TempDir::new().expect("temp"), TempDir::new().expect("temp"));
        let (store, _trail, id, secret) = endpoint(&dirs);
        let body = br#"{"action":"opened"}"#;
        let headers = signed(&secret, body, "d-1");

        let verified = verify(&store, &id, &headers, body, NOW).expect("verifies");
        assert_eq!(verified.endpoint.action, "map-contact");
        claim(&store, &verified, NOW).expect("first claim");
        let again = verify(&store, &id, &headers, body, NOW).expect("still verifies");
        assert!(matches!(
            claim(&store, &again, NOW),
            Err(DeliveryError::Refused {
                refusal: Refusal::Replayed,
                ..
            })
        ));
        release(&store, &verified).expect("released");
        claim(&store, &again, NOW).expect("the sender's retry runs");

        let tampered = verify(&store, &id, &headers, br#"{"action":"closed"}"#, NOW);
        assert!(matches!(
            tampered,
            Err(DeliveryError::Refused {
                refusal: Refusal::Signature,
                ..
            })
        ));
        let other: EndpointId = "other".parse().expect("endpoint id");
        assert!(matches!(
            verify(&store, &other, &headers, body, NOW),
            Err(DeliveryError::Unknown)
        ));
    }

    #[tokio::test]
    async fn a_refusal_is_recorded_with_its_reason_and_sender_not_its_body() {
        let dirs = (TempDir::new().expect("temp"), TempDir::new().expect("temp"));
        let (store, trail, id, secret) = endpoint(&dirs);
        let body = br#"{"customer":"canary-7d1e"}"#;
        let mut headers = signed(&secret, body, "d-2");
        headers.insert("x-hub-signature-256", "sha256=00".parse().expect("header"));
        let Err(DeliveryError::Refused { endpoint, refusal }) =
            verify(&store, &id, &headers, body, NOW)
        else {
            panic!("a bad signature is refused");
        };
        record_refusal(&trail, &endpoint, &refusal, "192.0.2.7")
            .await
            .expect("recorded");
        let page = trail.page(&Query::default(), 10).expect("page");
        let lines: Vec<String> = page
            .entries
            .iter()
            .filter_map(|e| match e {
                airlock_audit::Entry::Record { line, .. } => {
                    Some(String::from_utf8_lossy(line).into_owned())
                }
                airlock_audit::Entry::Damaged { .. } => None,
            })
            .collect();
        let refused: Vec<&String> = lines
            .iter()
            .filter(|l| l.contains("webhook-refused"))
            .collect();
        assert_eq!(refused.len(), 1, "{lines:?}");
        assert!(refused[0].contains("192.0.2.7"), "{}", refused[0]);
        assert!(refused[0].contains("\"acme\""), "{}", refused[0]);
        assert!(!lines.iter().any(|l| l.contains("canary-7d1e")));
    }
}
