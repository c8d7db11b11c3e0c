//! Validating newtypes for manifest strings. Each rejects bad input in `FromStr`, and
//! deserializes through it, so `toml` attaches the offending value's span to the error.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use serde::de::{self, Visitor};

/// Longest accepted publisher or name part of an [`IntegrationId`], and [`ActionName`].
pub const MAX_NAME_CHARS: usize = 64;

/// A value that failed validation; the message names the value and the rule it broke.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidValue(String);

pub(super) fn invalid(message: impl Into<String>) -> InvalidValue {
    InvalidValue(message.into())
}

/// Implements `Display`, `AsRef<str>`, `Serialize` (as the string) and `Deserialize` (from a
/// string, through `FromStr`) for a string newtype with an `as_str` method.
macro_rules! string_newtype_serde {
    ($ty:ty, $expecting:literal) => {
        impl ::std::fmt::Display for $ty {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl AsRef<str> for $ty {
            fn as_ref(&self) -> &str {
                self.as_str()
            }
        }

        impl ::serde::Serialize for $ty {
            fn serialize<S: ::serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $ty {
            fn deserialize<D: ::serde::Deserializer<'de>>(
                deserializer: D,
            ) -> Result<Self, D::Error> {
                deserializer.deserialize_str($crate::manifest::fields::FromStrVisitor::<$ty>::new(
                    $expecting,
                ))
            }
        }
    };
}
pub(super) use string_newtype_serde;

/// Deserializes a string through `T::from_str`, so its error message reaches the user as is.
pub(super) struct FromStrVisitor<T> {
    expecting: &'static str,
    marker: std::marker::PhantomData<T>,
}

impl<T> FromStrVisitor<T> {
    pub(super) fn new(expecting: &'static str) -> Self {
        Self {
            expecting,
            marker: std::marker::PhantomData,
        }
    }
}

impl<T> Visitor<'_> for FromStrVisitor<T>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        v.parse().map_err(E::custom)
    }
}

fn is_name_char(c: char) -> bool {
    matches!(c, 'a'..='z' | '0'..='9' | '-')
}

/// Checks one `[a-z0-9-]` name: 1..=64 chars, no leading/trailing `-`.
fn check_id_part(what: &str, part: &str) -> Result<(), String> {
    if part.is_empty() {
        return Err(format!("{what} is empty"));
    }
    if part.chars().count() > MAX_NAME_CHARS {
        return Err(format!("{what} is longer than {MAX_NAME_CHARS} characters"));
    }
    if let Some(c) = part.chars().find(|&c| !is_name_char(c)) {
        return Err(format!(
            "{what} {part:?} contains {c:?}; only lowercase letters a-z, digits and '-' are allowed"
        ));
    }
    if part.starts_with('-') || part.ends_with('-') {
        return Err(format!("{what} {part:?} must not start or end with '-'"));
    }
    Ok(())
}

/// `publisher/name`, each part lowercase `[a-z0-9-]`, 1 to 64 characters, no leading or
/// trailing `-`. Example: `acme/contact-mapper`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IntegrationId {
    id: String,
    slash: usize,
}

impl IntegrationId {
    /// The whole id, `publisher/name`.
    pub fn as_str(&self) -> &str {
        &self.id
    }

    /// The part before the `/`.
    pub fn publisher(&self) -> &str {
        &self.id[..self.slash]
    }

    /// The part after the `/`.
    pub fn name(&self) -> &str {
        &self.id[self.slash + 1..]
    }
}

impl FromStr for IntegrationId {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let fail = |why: String| invalid(format!("invalid integration id {s:?}: {why}"));
        let Some((publisher, name)) = s.split_once('/') else {
            return Err(fail(
                "expected \"publisher/name\", e.g. \"acme/contact-mapper\"".into(),
            ));
        };
        if name.contains('/') {
            return Err(fail(
                "expected exactly one '/' between publisher and name".into(),
            ));
        }
        check_id_part("publisher", publisher).map_err(fail)?;
        check_id_part("name", name).map_err(fail)?;
        Ok(IntegrationId {
            id: s.to_owned(),
            slash: publisher.len(),
        })
    }
}

string_newtype_serde!(
    IntegrationId,
    "an integration id like \"acme/contact-mapper\""
);

/// An action's name: lowercase `[a-z0-9-]`, starting with a letter, 1 to 64 characters.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ActionName(String);

impl ActionName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for ActionName {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        check_kebab_name("action name", s)?;
        Ok(ActionName(s.to_owned()))
    }
}

/// Lowercase `[a-z0-9-]`, starting with a letter, 1 to [`MAX_NAME_CHARS`] characters.
fn check_kebab_name(what: &str, s: &str) -> Result<(), InvalidValue> {
    let fail = |why: String| invalid(format!("invalid {what} {s:?}: {why}"));
    if s.is_empty() {
        return Err(fail("must not be empty".into()));
    }
    if s.chars().count() > MAX_NAME_CHARS {
        return Err(fail(format!("longer than {MAX_NAME_CHARS} characters")));
    }
    if let Some(c) = s.chars().find(|&c| !is_name_char(c)) {
        return Err(fail(format!(
            "contains {c:?}; only lowercase letters a-z, digits and '-' are allowed"
        )));
    }
    if !s.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err(fail("must start with a lowercase letter".into()));
    }
    Ok(())
}

string_newtype_serde!(ActionName, "an action name like \"map-contact\"");

/// The code of an error an action returns (the WIT `error.code`), as a manifest names it:
/// the same rules as an action name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ErrorCode(String);

impl ErrorCode {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for ErrorCode {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        check_kebab_name("error code", s)?;
        Ok(ErrorCode(s.to_owned()))
    }
}

string_newtype_serde!(ErrorCode, "an error code like \"rate-limited\"");

/// A path relative to the manifest's directory. May contain `..` (e.g.
/// `../target/wasm32-wasip2/release/x.wasm`); must not be empty, absolute (`/x`, `\x`, `C:x`),
/// or contain NUL or other control characters. Resolve it with
/// [`LoadedManifest::resolve`](super::LoadedManifest::resolve).
///
/// It is not a sandbox: `..` can point anywhere relative to the manifest's directory.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RelativePath(String);

impl RelativePath {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn as_path(&self) -> &Path {
        Path::new(&self.0)
    }
}

impl AsRef<Path> for RelativePath {
    fn as_ref(&self) -> &Path {
        self.as_path()
    }
}

impl FromStr for RelativePath {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let fail = |why: &str| invalid(format!("invalid path {s:?}: {why}"));
        if s.trim().is_empty() {
            return Err(fail("must not be empty"));
        }
        if s.contains('\0') {
            return Err(fail("must not contain NUL"));
        }
        if s.chars().any(char::is_control) {
            return Err(fail("must not contain control characters"));
        }
        // Absolute on any platform, so a manifest means the same everywhere.
        let bytes = s.as_bytes();
        let windows_drive = bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':';
        if s.starts_with(['/', '\\']) || windows_drive || Path::new(s).is_absolute() {
            return Err(fail(
                "must be relative to the manifest's directory, not absolute",
            ));
        }
        Ok(RelativePath(s.to_owned()))
    }
}

string_newtype_serde!(RelativePath, "a path relative to the manifest");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integration_id_accepts_valid_and_exposes_parts() {
        for (id, publisher, name) in [
            ("acme/contact-mapper", "acme", "contact-mapper"),
            ("a/b", "a", "b"),
            ("0day/x-1-y", "0day", "x-1-y"),
        ] {
            let parsed: IntegrationId = id.parse().expect(id);
            assert_eq!((parsed.publisher(), parsed.name()), (publisher, name));
            assert_eq!(parsed.to_string(), id);
        }
        let long = format!("{}/{}", "a".repeat(64), "b".repeat(64));
        assert!(long.parse::<IntegrationId>().is_ok());
    }

    #[test]
    fn integration_id_rejects_invalid() {
        let too_long = format!("{}/x", "a".repeat(65));
        for id in [
            "Acme/Contact",
            "acme",
            "acme/-x",
            "acme/x-",
            "a/b/c",
            "/x",
            "acme/",
            "acme/contact_mapper",
            "acme/contact mapper",
            "",
            too_long.as_str(),
        ] {
            let err = id.parse::<IntegrationId>().expect_err(id);
            assert!(
                err.to_string().starts_with("invalid integration id"),
                "{err}"
            );
        }
    }

    #[test]
    fn action_name_rules() {
        for ok in ["map-contact", "a", "x1", "a-", &"a".repeat(64)] {
            assert!(ok.parse::<ActionName>().is_ok(), "{ok}");
        }
        for bad in [
            "",
            "1st",
            "-a",
            "Map",
            "map_contact",
            "map.contact",
            &"a".repeat(65),
        ] {
            assert!(bad.parse::<ActionName>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn relative_path_rules() {
        for ok in ["x.wasm", "../target/x.wasm", "schemas/a.json", "./a", ".."] {
            assert!(ok.parse::<RelativePath>().is_ok(), "{ok}");
        }
        for bad in [
            "",
            " ",
            "/etc/passwd",
            "\\\\server\\share",
            "C:\\x",
            "c:x",
            "a\0b",
            "a\nb",
        ] {
            assert!(bad.parse::<RelativePath>().is_err(), "{bad:?}");
        }
    }
}
