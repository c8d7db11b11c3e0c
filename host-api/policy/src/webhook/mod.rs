//! Inbound webhooks: signed deliveries that trigger an installation's action.
//!
//! An endpoint (`/v1/hooks/{id}`) belongs to one tenant's installation and action, and has its
//! own signing secret: generated (32 random bytes, `whsec_` base64, shown once) for the Standard
//! Webhooks and GitHub schemes; for Slack, the app's signing secret, which Slack generates.
//! Secrets are sealed at rest with the tenant's data key. A delivery is verified on its raw
//! bytes ([`verify`]), deduplicated by its delivery id, and only then handed to the action as
//! its input, where the action's schema validates it like any other.
//!
//! # Layout
//! - [`verify`]: the three signature schemes, strict header parsing, timestamp tolerance.

pub mod verify;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rand_core::{OsRng, RngCore};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

pub use verify::{TOLERANCE, Verified, retention, sign_standard};

/// Random bytes in a generated secret (Standard Webhooks allows 24 to 64).
const SECRET_BYTES: usize = 32;
/// The Standard Webhooks prefix of a secret.
const SECRET_PREFIX: &str = "whsec_";
/// Shortest imported secret (a Slack signing secret is 32 hex characters).
const MIN_IMPORTED: usize = 32;
/// Longest imported secret.
const MAX_IMPORTED: usize = 256;

/// How a sender signs its deliveries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scheme {
    /// Standard Webhooks 1.0: `webhook-id`, `webhook-timestamp`, `webhook-signature`.
    Standard,
    /// GitHub: `X-Hub-Signature-256`, deduplicated by `X-GitHub-Delivery`.
    Github,
    /// Slack: `X-Slack-Signature` (`v0`) over the request timestamp and body.
    Slack,
}

impl Scheme {
    /// Every scheme, in the order help texts list them.
    pub const ALL: [Scheme; 3] = [Self::Standard, Self::Github, Self::Slack];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Standard => "standard",
            Self::Github => "github",
            Self::Slack => "slack",
        }
    }

    /// Whether the sender generates the secret (Slack), so it is imported, not generated.
    pub fn imports_secret(self) -> bool {
        self == Self::Slack
    }
}

impl std::str::FromStr for Scheme {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|scheme| scheme.as_str() == name)
            .ok_or_else(|| format!("unknown webhook scheme {name:?} (standard, github or slack)"))
    }
}

/// Why a delivery was refused. Carries header names, never values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the `{0}` header is missing")]
    Missing(&'static str),
    #[error("the `{0}` header is malformed or repeated")]
    Malformed(&'static str),
    #[error("no signature made with an accepted algorithm (HMAC-SHA256)")]
    Algorithm,
    #[error("the signed timestamp is more than 300 s from now")]
    Stale,
    #[error("no signature matches the endpoint's secret")]
    Signature,
    #[error("this delivery id was already received")]
    Replayed,
}

impl Refusal {
    /// The reason code recorded in the audit trail and returned to the sender.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Missing(_) => "missing-header",
            Self::Malformed(_) => "malformed-header",
            Self::Algorithm => "algorithm-not-accepted",
            Self::Stale => "timestamp-outside-tolerance",
            Self::Signature => "signature-mismatch",
            Self::Replayed => "replayed",
        }
    }

    /// The code and, for header problems, which header (a name, never a value).
    pub fn reason(&self) -> String {
        match self {
            Self::Missing(h) | Self::Malformed(h) => format!("{} {h}", self.code()),
            _ => self.code().to_string(),
        }
    }
}

/// Why a secret offered for an endpoint was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretRefused {
    #[error(
        "{0} endpoints use a secret Airlock generates (at least 32 random bytes, shown once); do not pass one"
    )]
    NotImported(&'static str),
    #[error("{0} endpoints need the sender's signing secret (from the provider's app settings)")]
    Required(&'static str),
    #[error("the signing secret must be {MIN_IMPORTED} to {MAX_IMPORTED} visible ASCII characters")]
    Shape,
    #[error("a Standard Webhooks secret is `whsec_` and the base64 of 24 to 64 bytes")]
    StandardShape,
    #[error("another endpoint of this tenant already uses this signing secret")]
    InUse,
}

/// An endpoint's signing secret: the text the sender is configured with.
#[derive(Clone)]
pub struct WebhookSecret(Zeroizing<String>);

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(redacted)")
    }
}

impl WebhookSecret {
    /// A new secret for `scheme`: generated, or `offered` (which only Slack takes).
    pub fn for_scheme(
        scheme: Scheme,
        offered: Option<Zeroizing<String>>,
    ) -> Result<Self, SecretRefused> {
        match (scheme.imports_secret(), offered) {
            (false, None) => Ok(Self::generate()),
            (false, Some(_)) => Err(SecretRefused::NotImported(scheme.as_str())),
            (true, None) => Err(SecretRefused::Required(scheme.as_str())),
            (true, Some(text)) => {
                let text = Zeroizing::new(text.trim().to_string());
                if !(MIN_IMPORTED..=MAX_IMPORTED).contains(&text.len())
                    || !text.bytes().all(|b| b.is_ascii_graphic())
                {
                    return Err(SecretRefused::Shape);
                }
                Ok(Self(text))
            }
        }
    }

    /// `whsec_` and the base64 of 32 bytes from the OS CSPRNG.
    fn generate() -> Self {
        let mut bytes = Zeroizing::new([0u8; SECRET_BYTES]);
        OsRng.fill_bytes(&mut *bytes);
        Self(Zeroizing::new(format!(
            "{SECRET_PREFIX}{}",
            STANDARD.encode(*bytes)
        )))
    }

    /// A Standard Webhooks secret the operator gives (`whsec_` and the base64 of 24 to 64
    /// bytes), for Airlock's own signed deliveries (alert notifications).
    pub fn standard(text: Zeroizing<String>) -> Result<Self, SecretRefused> {
        let text = Zeroizing::new(text.trim().to_string());
        let decoded = text
            .strip_prefix(SECRET_PREFIX)
            .and_then(|b| STANDARD.decode(b).ok())
            .map(Zeroizing::new);
        match decoded {
            Some(bytes) if (24..=64).contains(&bytes.len()) => Ok(Self(text)),
            _ => Err(SecretRefused::StandardShape),
        }
    }

    /// A stored secret, as opened.
    pub fn from_stored(text: Zeroizing<String>) -> Self {
        Self(text)
    }

    /// The text, to show once on creation and to seal.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The HMAC key `scheme` signs with: the decoded bytes after `whsec_` for Standard
    /// Webhooks, the text itself for GitHub and Slack.
    pub fn signing_key(&self, scheme: Scheme) -> SigningKey {
        let decoded = match scheme {
            Scheme::Standard => self
                .0
                .strip_prefix(SECRET_PREFIX)
                .and_then(|b| STANDARD.decode(b).ok()),
            Scheme::Github | Scheme::Slack => None,
        };
        SigningKey(Zeroizing::new(
            decoded.unwrap_or_else(|| self.0.as_bytes().to_vec()),
        ))
    }

    /// Constant-time equality, for the per-tenant uniqueness check (WH-09).
    pub fn same_as(&self, other: &Self) -> bool {
        self.0.as_bytes().ct_eq(other.0.as_bytes()).into()
    }
}

/// An HMAC key, wiped on drop.
pub struct SigningKey(Zeroizing<Vec<u8>>);

impl SigningKey {
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

#[cfg(test)]
mod tests;
