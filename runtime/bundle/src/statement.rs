//! The statement: the exact text an Ed25519 signature covers.
//!
//! Why a line-based text rather than the archive bytes or JSON: anyone can
//! rebuild it from an extracted bundle with `sha256sum`, `wc -c` and `printf`,
//! and check the signature with `openssl pkeyutl -rawin`, without trusting
//! airlock code. Every file (name, length, SHA-256) and the identity fields are
//! bound, so neither contents nor the set of files can change unnoticed.
//!
//! ```text
//! airlock-bundle-v1
//! id <id>
//! version <version>
//! publisher <publisher>
//! key-id <key_id>
//! file <sha256hex> <len> <name>      (one per file, sorted by name bytes)
//! ```
//! Every line, including the last, ends with a single LF.

use std::collections::BTreeSet;
use std::fmt;

use sha2::{Digest, Sha256};

use super::SIGNATURE;

/// First line of every statement; also the `format` of a signature file.
pub const FORMAT: &str = "airlock-bundle-v1";

/// The signed statement of a bundle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Statement {
    pub id: String,
    pub version: String,
    pub publisher: String,
    pub key_id: String,
    /// `(name, sha256, length)`, sorted by name in byte order.
    pub files: Vec<(String, [u8; 32], u64)>,
}

/// Why a statement could not be built. Field values are never echoed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StatementError {
    #[error("statement field `{field}` is empty")]
    Empty { field: &'static str },
    #[error("statement field `{field}` contains LF, CR or NUL")]
    BadChar { field: &'static str },
    #[error("file {index} has an empty name or one containing LF, CR or NUL")]
    BadFileName { index: usize },
    #[error("file \"{name}\" is listed more than once")]
    DuplicateFile { name: String },
}

/// A field may not contain the line separator (or CR/NUL, which tools
/// mangle), or one field could forge another line.
fn check_field(field: &'static str, value: &str) -> Result<(), StatementError> {
    if value.is_empty() {
        return Err(StatementError::Empty { field });
    }
    if value.bytes().any(|b| matches!(b, b'\n' | b'\r' | 0)) {
        return Err(StatementError::BadChar { field });
    }
    Ok(())
}

/// Builds the statement over `files` (any order; sorted here). An entry named
/// `SIGNATURE` is skipped: the signature cannot cover itself.
pub fn statement(
    id: &str,
    version: &str,
    publisher: &str,
    key_id: &str,
    files: &[(String, Vec<u8>)],
) -> Result<Statement, StatementError> {
    check_field("id", id)?;
    check_field("version", version)?;
    check_field("publisher", publisher)?;
    check_field("key-id", key_id)?;
    let mut seen = BTreeSet::new();
    let mut listed = Vec::with_capacity(files.len());
    for (index, (name, data)) in files.iter().enumerate() {
        if name == SIGNATURE {
            continue;
        }
        if check_field("file", name).is_err() {
            return Err(StatementError::BadFileName { index });
        }
        if !seen.insert(name.as_str()) {
            let name = name.as_bytes().escape_ascii().to_string();
            return Err(StatementError::DuplicateFile { name });
        }
        let len = u64::try_from(data.len()).unwrap_or(u64::MAX);
        listed.push((name.clone(), Sha256::digest(data).into(), len));
    }
    listed.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    Ok(Statement {
        id: id.to_owned(),
        version: version.to_owned(),
        publisher: publisher.to_owned(),
        key_id: key_id.to_owned(),
        files: listed,
    })
}

impl Statement {
    /// The exact signed text (see module docs).
    pub fn to_text(&self) -> String {
        self.to_string()
    }

    /// SHA-256 of [`Statement::to_text`]: a short, stable fingerprint of
    /// everything the signature covers.
    pub fn digest(&self) -> [u8; 32] {
        Sha256::digest(self.to_text().as_bytes()).into()
    }
}

impl fmt::Display for Statement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{FORMAT}")?;
        writeln!(f, "id {}", self.id)?;
        writeln!(f, "version {}", self.version)?;
        writeln!(f, "publisher {}", self.publisher)?;
        writeln!(f, "key-id {}", self.key_id)?;
        for (name, hash, len) in &self.files {
            writeln!(f, "file {} {len} {name}", hex::encode(hash))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files() -> Vec<(String, Vec<u8>)> {
        vec![
            ("b".into(), b"bee".to_vec()),
            ("a".into(), Vec::new()),
            (SIGNATURE.into(), b"x".to_vec()),
        ]
    }

    #[test]
    fn exact_text_sorted_without_signature() {
        let st = statement("acme/x", "1.0.0", "Acme Inc", "0123456789abcdef", &files())
            .expect("statement");
        let expected = "airlock-bundle-v1\nid acme/x\nversion 1.0.0\npublisher Acme Inc\nkey-id 0123456789abcdef\n\
            file e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855 0 a\n\
            file 62cb81b5904a262ffaeed02abef36bfc540b09f964b8b0b636662f77ffce6714 3 b\n";
        let text = st.to_text();
        assert_eq!(text, expected);
        assert_eq!(
            st.digest(),
            <[u8; 32]>::from(Sha256::digest(text.as_bytes()))
        );
    }

    #[test]
    fn rejects_line_breaks_nul_and_duplicates() {
        for bad in ["a\nb", "a\rb", "a\0b", ""] {
            assert!(statement(bad, "1", "p", "k", &[]).is_err());
            assert!(statement("i", bad, "p", "k", &[]).is_err());
            assert!(statement("i", "1", bad, "k", &[]).is_err());
            assert!(statement("i", "1", "p", bad, &[]).is_err());
            assert!(statement("i", "1", "p", "k", &[(bad.into(), vec![])]).is_err());
        }
        let dup = vec![("a".to_string(), vec![1]), ("a".to_string(), vec![2])];
        assert!(matches!(
            statement("i", "1", "p", "k", &dup),
            Err(StatementError::DuplicateFile { .. })
        ));
    }
}
