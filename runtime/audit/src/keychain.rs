//! Rotating the checkpoint key (docs/audit.md, "Rotating the checkpoint key"): the new key is
//! introduced by the old one, in a line signed with it in `<audit dir>/audit.keys`, and
//! `audit.pub` keeps the first key, the anchor operators pin elsewhere. Verifying follows the
//! introductions from the anchor: a checkpoint or seal counts when a key of that chain signed
//! it, and a retired key's signatures only up to its retirement (and a minute's grace for a
//! server that signs with it before it reads the new key).

use std::io;

use serde::{Deserialize, Serialize};

use super::AuditError;
use crate::checkpoint::{AuditDir, Checkpoint, KEY_FILE, append_line, read_lines, verifies};
use airlock_bundle::keys::{self, KeyError, PublicKey};
use airlock_runtime::clock;

/// The introductions of new checkpoint keys, one JSON line each.
pub const KEYS_FILE: &str = "audit.keys";
/// The next key while a rotation is under way.
const NEXT_KEY_FILE: &str = "audit.key.next";
/// Domain separation: an introduction is never a checkpoint's or a seal's signature.
const CONTEXT: &str = "airlock-audit-key v1";
/// How long after its retirement a key's checkpoints still count: servers read the new key
/// at their next checkpoint after the rotation.
const GRACE_MS: u64 = 60_000;

/// A new checkpoint key, signed by the key before it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyIntroduction {
    /// The new public key, as `airlock keygen` prints one.
    pub key: String,
    /// The id of the key that signed this, retired by it.
    pub by: String,
    /// When (RFC 3339, milliseconds).
    pub time: String,
    /// Base64 Ed25519 signature by `by` over the context line and the fields above.
    pub signature: String,
}

impl KeyIntroduction {
    fn message(key: &str, by: &str, time: &str) -> String {
        format!("{CONTEXT}\n{key}\n{by}\n{time}\n")
    }
}

/// One key of the chain: when a later key retired it, if one did (Unix ms).
#[derive(Debug, Clone)]
struct Link {
    public: PublicKey,
    retired: Option<u64>,
}

/// The keys checkpoints and seals may be signed by, from an anchor.
#[derive(Debug, Clone)]
pub struct KeyChain {
    links: Vec<Link>,
    /// Introductions that do not follow from the anchor: forged, altered or unreadable.
    pub problems: Vec<String>,
}

impl KeyChain {
    /// `anchor` alone (a key pinned elsewhere, with no introductions to follow).
    pub fn single(anchor: PublicKey) -> Self {
        Self {
            links: vec![Link {
                public: anchor,
                retired: None,
            }],
            problems: Vec::new(),
        }
    }

    /// The chain from `anchor` through `introductions`, in order: each must be signed by the
    /// newest key so far.
    pub fn follow(anchor: PublicKey, introductions: &[Result<KeyIntroduction, usize>]) -> Self {
        let mut chain = Self::single(anchor);
        for (i, introduction) in introductions.iter().enumerate() {
            let n = i + 1;
            let introduction = match introduction {
                Ok(introduction) => introduction,
                Err(line) => {
                    chain
                        .problems
                        .push(format!("key introduction line {line} is unreadable"));
                    continue;
                }
            };
            let newest = &chain.links[chain.links.len() - 1];
            let message =
                KeyIntroduction::message(&introduction.key, &introduction.by, &introduction.time);
            let signed = introduction.by == newest.public.key_id()
                && verifies(&newest.public, message.as_bytes(), &introduction.signature);
            let parsed = PublicKey::parse_line(&introduction.key);
            let time = clock::parse_rfc3339_ms(&introduction.time);
            match (signed, parsed, time) {
                (true, Ok(public), Some(time)) => {
                    let last = chain.links.len() - 1;
                    chain.links[last].retired = Some(time);
                    chain.links.push(Link {
                        public,
                        retired: None,
                    });
                }
                _ => chain.problems.push(format!(
                    "key introduction {n} is not signed by key {}, the newest before it: forged \
                     or altered",
                    newest.public.key_id()
                )),
            }
        }
        chain
    }

    /// Whether a key of the chain signed `checkpoint`, while it was not yet retired.
    pub fn signed(&self, checkpoint: &Checkpoint) -> bool {
        let time = clock::parse_rfc3339_ms(&checkpoint.time);
        self.links.iter().any(|link| {
            checkpoint.is_signed_by(&link.public)
                && match (link.retired, time) {
                    (None, _) => true,
                    (Some(retired), Some(time)) => time <= retired.saturating_add(GRACE_MS),
                    (Some(_), None) => false,
                }
        })
    }

    /// The keys, oldest first (seals name theirs; any of them may have made one).
    pub fn keys(&self) -> impl Iterator<Item = &PublicKey> {
        self.links.iter().map(|link| &link.public)
    }

    /// The newest key's id.
    pub fn newest(&self) -> &str {
        self.links[self.links.len() - 1].public.key_id()
    }
}

impl AuditDir {
    /// The chain of keys from `anchor` through this dir's introductions.
    pub fn key_chain(&self, anchor: PublicKey) -> Result<KeyChain, AuditError> {
        Ok(KeyChain::follow(anchor, &self.introductions()?))
    }

    /// Every introduction, in file order; a line that does not parse is its line number.
    pub fn introductions(&self) -> Result<Vec<Result<KeyIntroduction, usize>>, AuditError> {
        read_lines(&self.path().join(KEYS_FILE))
    }

    /// Replaces the checkpoint key with a new one, introduced by the old: the new key is made
    /// beside it (`audit.key.next`, 0600), its introduction appended to `audit.keys`, and it
    /// is renamed over `audit.key`. Run again after a crash, it finishes with the same new key.
    /// Returns the old key's id and the new public key.
    pub fn rotate_key(&self) -> Result<(String, PublicKey), AuditError> {
        let old = self.signer()?;
        let next_path = self.path().join(NEXT_KEY_FILE);
        let next = match keys::load_signing_key(&next_path) {
            Ok(key) => PublicKey::from_verifying_key(key.verifying_key()),
            Err(KeyError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                keys::generate(&next_path)?
            }
            Err(e) => return Err(e.into()),
        };
        let introduced = self
            .introductions()?
            .into_iter()
            .flatten()
            .any(|i| PublicKey::parse_line(&i.key).is_ok_and(|k| k.key_id() == next.key_id()));
        if !introduced {
            let key = next.to_line();
            let by = old.public().key_id().to_string();
            let time = clock::rfc3339_ms(clock::now_unix_ms());
            let message = KeyIntroduction::message(&key, &by, &time);
            let introduction = KeyIntroduction {
                signature: old.signature(message.as_bytes()),
                key,
                by,
                time,
            };
            let line = serde_json::to_vec(&introduction).expect("introductions serialize");
            append_line(&self.path().join(KEYS_FILE), line)?;
        }
        let key_path = self.path().join(KEY_FILE);
        // Owned as the old key was: a rotation run as root leaves the service its key. The old
        // key's bytes are overwritten once the new one is in place (docs/audit.md).
        airlock_runtime::fsutil::same_owner(&next_path, &key_path)
            .and_then(|()| airlock_runtime::fsutil::rename_shredding(&next_path, &key_path))
            .map_err(|source| AuditError::Io {
                path: key_path,
                source,
            })?;
        Ok((old.public().key_id().to_string(), next))
    }
}
