//! [`Secret`]: a credential value, validated once on entry and never printable.
//!
//! Values are checked when they are saved (catalogue CR-05, CR-17), not when they are used: a
//! value that could split a header (CR, LF, NUL), smuggle non-ASCII bytes, or make a basic-auth
//! user ambiguous is refused with an error that names the rule and never echoes the value.

use std::fmt;

use zeroize::Zeroizing;

use super::CredentialType;

/// Longest credential value, in bytes.
pub const MAX_SECRET_LEN: usize = 8 * 1024;

/// A credential value. `Debug` and `Display` print `Secret(..)`; the bytes are zeroed on drop.
#[derive(Clone)]
pub struct Secret(Zeroizing<String>);

/// Why a value was refused. Never carries the value itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("the value is empty")]
    Empty,
    #[error("the value is {len} bytes; the most is {MAX_SECRET_LEN}")]
    TooLong { len: usize },
    #[error(
        "the value has a {what} at byte {at}; only visible ASCII is allowed (no spaces, CR, LF or NUL)"
    )]
    Character { what: &'static str, at: usize },
    #[error("a basic-auth value is `user:password`; {0}")]
    Basic(&'static str),
    #[error("an oauth2 value is a JSON object {0}")]
    OAuth2(String),
}

impl Secret {
    /// Validates `value` for a credential of type `kind`.
    pub fn new(kind: CredentialType, value: String) -> Result<Self, SecretError> {
        let value = Zeroizing::new(value);
        if value.is_empty() {
            return Err(SecretError::Empty);
        }
        if value.len() > MAX_SECRET_LEN {
            return Err(SecretError::TooLong { len: value.len() });
        }
        match kind {
            CredentialType::Bearer | CredentialType::ApiKey => {
                visible_ascii(&value, 0, false)?;
            }
            // A JSON object the host parses; its strings travel form-encoded, never raw.
            CredentialType::OAuth2 => visible_ascii(&value, 0, true)?,
            CredentialType::Basic => {
                let (user, password) = value
                    .split_once(':')
                    .ok_or(SecretError::Basic("there is no `:`"))?;
                if user.is_empty() {
                    return Err(SecretError::Basic("the user is empty"));
                }
                visible_ascii(user, 0, false)?;
                // RFC 7617 passwords may hold spaces; they travel base64-encoded.
                visible_ascii(password, user.len() + 1, true)?;
            }
        }
        let secret = Self(value);
        if kind == CredentialType::OAuth2 {
            super::oauth2::OAuthClient::parse(&secret)?;
        }
        Ok(secret)
    }

    /// Reads a value the way the CLI receives it: one line from stdin or a file, with one
    /// trailing newline (LF or CRLF) removed, so `echo token |` works.
    pub fn from_line(kind: CredentialType, mut value: String) -> Result<Self, SecretError> {
        if value.ends_with('\n') {
            value.pop();
            if value.ends_with('\r') {
                value.pop();
            }
        }
        Self::new(kind, value)
    }

    /// The value, for building the injected header. Keep the borrow short.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// Checks every byte of `s` is visible ASCII (and a space, when `spaces`); `offset` places the
/// reported position within the whole value.
fn visible_ascii(s: &str, offset: usize, spaces: bool) -> Result<(), SecretError> {
    for (i, b) in s.bytes().enumerate() {
        let what = match b {
            0x21..=0x7e => continue,
            b' ' if spaces => continue,
            b'\r' => "carriage return",
            b'\n' => "line feed",
            0 => "NUL byte",
            b' ' => "space",
            0x80.. => "non-ASCII byte",
            _ => "control character",
        };
        return Err(SecretError::Character {
            what,
            at: offset + i,
        });
    }
    Ok(())
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[secret]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use CredentialType as T;

    #[test]
    fn values_are_checked_per_type_and_never_echoed() {
        let long = "a".repeat(MAX_SECRET_LEN + 1);
        let cases: &[(T, &str, Result<(), SecretError>)] = &[
            (T::Bearer, "ghp_abc123", Ok(())),
            (T::Bearer, "", Err(SecretError::Empty)),
            (
                T::Bearer,
                "abc\r\nX-Evil: 1",
                Err(SecretError::Character {
                    what: "carriage return",
                    at: 3,
                }),
            ),
            (
                T::ApiKey,
                "abc\n",
                Err(SecretError::Character {
                    what: "line feed",
                    at: 3,
                }),
            ),
            (
                T::ApiKey,
                "abc\0",
                Err(SecretError::Character {
                    what: "NUL byte",
                    at: 3,
                }),
            ),
            (
                T::Bearer,
                "caf\u{e9}",
                Err(SecretError::Character {
                    what: "non-ASCII byte",
                    at: 3,
                }),
            ),
            (
                T::Bearer,
                "two words",
                Err(SecretError::Character {
                    what: "space",
                    at: 3,
                }),
            ),
            (T::Bearer, &long, Err(SecretError::TooLong { len: 8193 })),
            (T::Basic, "alice:s3cret pass:word", Ok(())),
            (T::OAuth2, r#"{"client_id": "a", "client_secret": "b"}"#, Ok(())),
            (
                T::OAuth2,
                r#"{"client_id": "a"}"#,
                Err(SecretError::OAuth2(
                    "with client_id, client_secret and optionally refresh_token (invalid at column 18)".into(),
                )),
            ),
            (T::Basic, "alice:", Ok(())),
            (
                T::Basic,
                "alice",
                Err(SecretError::Basic("there is no `:`")),
            ),
            (
                T::Basic,
                ":pw",
                Err(SecretError::Basic("the user is empty")),
            ),
            (
                T::Basic,
                "alice:p\u{e9}",
                Err(SecretError::Character {
                    what: "non-ASCII byte",
                    at: 7,
                }),
            ),
        ];
        for (kind, value, want) in cases {
            let got = Secret::new(*kind, value.to_string()).map(|_| ());
            assert_eq!(&got, want, "{kind:?} {value:?}");
            if let Err(e) = got
                && value.len() > 3
            {
                assert!(!e.to_string().contains(value), "{e} echoes the value");
            }
        }
    }

    #[test]
    fn one_trailing_newline_is_dropped_from_a_line() {
        let s = Secret::from_line(T::Bearer, "tok\r\n".into()).expect("valid");
        assert_eq!(s.expose(), "tok");
        assert!(Secret::from_line(T::Bearer, "tok\n\n".into()).is_err());
    }

    #[test]
    fn formatting_never_shows_the_value() {
        let s = Secret::new(T::Bearer, "canary-8d1e".into()).expect("valid");
        assert_eq!(format!("{s:?}"), "Secret(..)");
        assert!(!format!("{s} {s:#?}").contains("canary"));
    }
}
