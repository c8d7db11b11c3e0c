//! [`Node`]: the name of the process that writes records, so a trail that several `airlock
//! serve` processes share says which one wrote each record (docs/audit.md, "Many nodes").
//!
//! A name is the operator's (`--node`) or the host's, never a caller's: it is short and of a
//! fixed alphabet, so it cannot carry customer data or split a line.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize, Serializer};

/// The longest name: a DNS label's length.
pub const MAX_LEN: usize = 63;

/// The name a host without a usable hostname goes by.
const FALLBACK: &str = "node";

/// A validated node name: 1 to [`MAX_LEN`] of `a-z`, `0-9`, `.`, `_` and `-`. Cheap to clone
/// (every record carries it).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Node(Arc<str>);

/// A node name outside the alphabet or the length.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a node name is 1 to {MAX_LEN} characters of a-z, 0-9, '.', '_' and '-'")]
pub struct InvalidNode;

impl Node {
    /// This host's name, lower-cased, every other character outside the alphabet made `-`, cut
    /// to [`MAX_LEN`]; `node` when the host has none.
    pub fn host() -> Self {
        let name: String = hostname()
            .unwrap_or_default()
            .chars()
            .map(|c| c.to_ascii_lowercase())
            .map(|c| if allowed(c) { c } else { '-' })
            .take(MAX_LEN)
            .collect();
        Self::try_from(name).unwrap_or_else(|_| Self(Arc::from(FALLBACK)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn allowed(c: char) -> bool {
    matches!(c, 'a'..='z' | '0'..='9' | '.' | '_' | '-')
}

impl TryFrom<String> for Node {
    type Error = InvalidNode;

    fn try_from(name: String) -> Result<Self, InvalidNode> {
        if name.is_empty() || name.len() > MAX_LEN || !name.chars().all(allowed) {
            return Err(InvalidNode);
        }
        Ok(Self(Arc::from(name)))
    }
}

impl FromStr for Node {
    type Err = InvalidNode;

    fn from_str(name: &str) -> Result<Self, InvalidNode> {
        Self::try_from(name.to_string())
    }
}

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// As a plain string, without the copy that `into = "String"` would make per record.
impl Serialize for Node {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

/// The kernel's host name (`gethostname`), if it has one that is UTF-8.
fn hostname() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: `buf` is writable for its length; gethostname writes at most that many bytes.
    if unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } != 0 {
        return None;
    }
    let len = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    String::from_utf8(buf[..len].to_vec()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        for good in ["a", "node-1", "web.eu_2", &"x".repeat(MAX_LEN)] {
            assert_eq!(good.parse::<Node>().map(|n| n.to_string()), Ok(good.into()));
        }
        for bad in [
            "",
            "Node",
            "a b",
            "a\nb",
            "é",
            "a/b",
            &"x".repeat(MAX_LEN + 1),
        ] {
            assert_eq!(bad.parse::<Node>(), Err(InvalidNode), "{bad:?}");
        }
    }

    #[test]
    fn the_host_name_is_always_a_valid_name() {
        let host = Node::host();
        assert_eq!(host.as_str().parse::<Node>(), Ok(host.clone()));
    }

    #[test]
    fn a_stored_name_is_checked_when_read() {
        assert!(serde_json::from_str::<Node>("\"ok\"").is_ok());
        assert!(serde_json::from_str::<Node>("\"\\u001b[2J\"").is_err());
    }
}
