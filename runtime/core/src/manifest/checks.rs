//! Rules for manifest fields that are plain types (`String`, `ByteSize`, the actions map).
//! They run inside deserialization, as `deserialize_with` functions, so a rejected value's error
//! carries its span like the newtypes' do.

use std::collections::BTreeMap;

use serde::de::{self, Deserialize, Deserializer};

use super::{Action, ActionName, ByteSize, MAX_ATTEMPTS, RelativePath};

/// Longest accepted `description` (integration and actions), in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 500;

pub(super) fn description<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    let s = String::deserialize(deserializer)?;
    if s.trim().is_empty() {
        return Err(de::Error::custom("description must not be empty"));
    }
    let chars = s.chars().count();
    if chars > MAX_DESCRIPTION_CHARS {
        return Err(de::Error::custom(format!(
            "description is {chars} characters long; at most {MAX_DESCRIPTION_CHARS} are allowed"
        )));
    }
    if let Some(c) = s
        .chars()
        .find(|&c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(de::Error::custom(format!(
            "description must not contain control character {c:?}"
        )));
    }
    Ok(s)
}

pub(super) fn publisher_name<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<String, D::Error> {
    let s = String::deserialize(deserializer)?;
    if s.trim().is_empty() {
        return Err(de::Error::custom("publisher name must not be empty"));
    }
    if let Some(c) = s.chars().find(|c| c.is_control()) {
        return Err(de::Error::custom(format!(
            "publisher name must not contain control character {c:?}"
        )));
    }
    Ok(s)
}

pub(super) fn command<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    let s = String::deserialize(deserializer)?;
    if s.trim().is_empty() {
        return Err(de::Error::custom("build command must not be empty"));
    }
    Ok(s)
}

pub(super) fn component<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<RelativePath, D::Error> {
    let path = RelativePath::deserialize(deserializer)?;
    // `extension()` is `None` for a bare ".wasm" file name, which is not a component name.
    let is_wasm = path.as_str().ends_with(".wasm")
        && path.as_path().extension() == Some(std::ffi::OsStr::new("wasm"));
    if !is_wasm {
        return Err(de::Error::custom(format!(
            "invalid component path {:?}: must name a .wasm file",
            path.as_str()
        )));
    }
    Ok(path)
}

/// `ByteSize` itself accepts zero; a limit must not.
pub(super) fn positive_size<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<ByteSize>, D::Error> {
    required_positive_size(deserializer).map(Some)
}

/// [`positive_size`] for a key that must be present.
pub(super) fn required_positive_size<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<ByteSize, D::Error> {
    let size = ByteSize::deserialize(deserializer)?;
    if size.bytes() == 0 {
        return Err(de::Error::custom(format!(
            "invalid byte size {:?}: must be greater than zero",
            size.to_string()
        )));
    }
    Ok(size)
}

pub(super) fn max_attempts<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<u32>, D::Error> {
    let n = u32::deserialize(deserializer)?;
    if !(1..=MAX_ATTEMPTS).contains(&n) {
        return Err(de::Error::custom(format!(
            "max-attempts is {n}; it must be 1 to {MAX_ATTEMPTS}"
        )));
    }
    Ok(Some(n))
}

pub(super) fn actions<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeMap<ActionName, Action>, D::Error> {
    let actions = BTreeMap::<ActionName, Action>::deserialize(deserializer)?;
    if actions.is_empty() {
        return Err(de::Error::custom(
            "at least one action is required: add an [actions.<name>] table",
        ));
    }
    Ok(actions)
}

/// `semver` is used without its `serde` feature, so (de)serialize through strings here.
pub(super) mod semver_version {
    use serde::{Deserializer, Serializer};

    use crate::manifest::fields::FromStrVisitor;

    pub fn serialize<S: Serializer>(v: &semver::Version, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<semver::Version, D::Error> {
        d.deserialize_str(FromStrVisitor::<VersionString>::new(
            "a semantic version like \"0.1.0\"",
        ))
        .map(|v| v.0)
    }

    struct VersionString(semver::Version);

    impl std::str::FromStr for VersionString {
        type Err = String;

        fn from_str(s: &str) -> Result<Self, String> {
            semver::Version::parse(s).map(VersionString).map_err(|e| {
                format!("invalid version {s:?}: {e} (expected a semantic version like \"0.1.0\")")
            })
        }
    }
}
