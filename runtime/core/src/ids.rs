//! Typed identifiers, so an invocation id can never be passed where another id is expected.

use std::fmt;

/// Identifies one invocation in summaries, logs and (later) the audit trail.
#[derive(Clone, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct InvocationId(String);

impl InvocationId {
    /// A fresh random id (128 bits, hex).
    pub fn new() -> Self {
        // Encoded into a buffer rather than through `hex::encode`'s char iterator: one of these
        // is made per invocation, on the hot path (docs/benchmarks.md).
        let mut text = [0u8; 32];
        hex::encode_to_slice(rand::random::<[u8; 16]>(), &mut text)
            .expect("32 hex digits encode 16 bytes");
        Self(String::from_utf8(text.to_vec()).expect("hex digits are ASCII"))
    }
}

impl Default for InvocationId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for InvocationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for InvocationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InvocationId({})", self.0)
    }
}

/// Why a tenant or installation id was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{kind} id {value:?} is invalid: use 1 to 64 lowercase letters, digits and '-', starting with a letter or digit"
)]
pub struct IdError {
    kind: &'static str,
    value: String,
}

/// Checks the shared id grammar: short, lowercase, and free of the separators store keys use.
fn check_id(kind: &'static str, value: &str) -> Result<(), IdError> {
    let valid = (1..=64).contains(&value.len())
        && value.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if valid {
        Ok(())
    } else {
        Err(IdError {
            kind,
            value: value.chars().take(80).collect(),
        })
    }
}

/// Declares a validated string id type.
macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;

            fn from_str(s: &str) -> Result<Self, IdError> {
                check_id($kind, s).map(|()| Self(s.to_string()))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

string_id!(
    /// A tenant: the unit of isolation, with its own data key and credentials.
    TenantId,
    "tenant"
);
string_id!(
    /// One installation of an integration for one tenant.
    InstallationId,
    "installation"
);
string_id!(
    /// A webhook endpoint: `/v1/hooks/{id}`. Random, so one endpoint's id says nothing about
    /// another's; the signature, not the id, authenticates a delivery.
    EndpointId,
    "webhook endpoint"
);

impl EndpointId {
    /// A fresh id: `wh-` and 128 random bits in hex.
    pub fn generate() -> Self {
        Self(format!("wh-{}", hex::encode(rand::random::<[u8; 16]>())))
    }
}

/// An end user of a tenant (the platform's own id for them, such as `U024BE7LH` or an email
/// address): whose per-user credentials an invocation uses. Never a tenant's: user ids are
/// looked up only within the tenant of the key that names them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct UserId(String);

impl UserId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for UserId {
    type Err = UserIdError;

    fn from_str(s: &str) -> Result<Self, UserIdError> {
        let valid = (1..=128).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._@+-".contains(&b));
        if valid {
            Ok(Self(s.to_string()))
        } else {
            Err(UserIdError(s.chars().take(80).collect()))
        }
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a user id was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("user id {0:?} is invalid: use 1 to 128 ASCII letters, digits and `.`, `_`, `@`, `+`, `-`")]
pub struct UserIdError(String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_one_grammar() {
        for ok in ["acme", "a", "0day", "acme-prod-2", &"a".repeat(64)] {
            assert!(ok.parse::<TenantId>().is_ok(), "{ok}");
        }
        for bad in [
            "",
            "-acme",
            "Acme",
            "a b",
            "a/b",
            "a\0b",
            "ä",
            &"a".repeat(65),
        ] {
            let e = bad.parse::<InstallationId>().expect_err(bad);
            assert!(e.to_string().starts_with("installation id"), "{e}");
        }
    }
}
