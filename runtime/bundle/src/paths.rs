//! Entry path policy, shared by the archive reader and the signer.
//!
//! Why here and not in each caller: the rule for what a bundle may contain
//! must be one rule, or a signer could produce what a verifier refuses.

use std::collections::BTreeSet;

/// Longest stored path: the ustar `name` field (the `prefix` field is never used).
pub const MAX_NAME: usize = 100;

/// Checks the path grammar: relative, `/`-separated segments of
/// `[A-Za-z0-9._-]+`, no `.`/`..`/empty segment, at most 100 bytes.
/// Returns a short reason on failure. Why so narrow: such a path means the
/// same thing to every tar, every filesystem and every shell.
pub fn check_path(name: &[u8]) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("empty");
    }
    if name.len() > MAX_NAME {
        return Err("longer than 100 bytes");
    }
    if name.first() == Some(&b'/') {
        return Err("absolute path");
    }
    for seg in name.split(|&b| b == b'/') {
        if seg.is_empty() {
            return Err("empty path segment");
        }
        if seg == b"." || seg == b".." {
            return Err("`.` or `..` segment");
        }
        if !seg
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            return Err("character outside [A-Za-z0-9._-]");
        }
    }
    Ok(())
}

/// Tracks names seen so far. Besides exact duplicates it refuses names that
/// differ only in ASCII case and file/directory collisions (`a` and `a/b`),
/// because extraction would silently overwrite or fail on some filesystems,
/// leaving on disk something other than what was verified.
#[derive(Default)]
pub(crate) struct NameSet {
    exact: BTreeSet<String>,
    files: BTreeSet<String>,
    dirs: BTreeSet<String>,
}

impl NameSet {
    pub(crate) fn insert(&mut self, name: &str) -> Result<(), &'static str> {
        let lower = name.to_ascii_lowercase();
        if self.exact.contains(name) {
            return Err("appears more than once");
        }
        if self.files.contains(&lower) {
            return Err("differs only in case from an earlier entry");
        }
        if self.dirs.contains(&lower) {
            return Err("is also a directory of an earlier entry");
        }
        let ancestors: Vec<&str> = lower
            .match_indices('/')
            .map(|(i, _)| lower.get(..i).unwrap_or_default())
            .collect();
        if ancestors.iter().any(|a| self.files.contains(*a)) {
            return Err("has an earlier file entry as a parent directory");
        }
        self.dirs.extend(ancestors.into_iter().map(str::to_owned));
        self.files.insert(lower);
        self.exact.insert(name.to_owned());
        Ok(())
    }
}
