//! Signed integration bundles (`.airlock` files).
//!
//! A bundle is one file, `<id with / replaced by _>-<version>.airlock`, that
//! carries an integration and proves who published it. It is a plain ustar
//! archive, entries in byte order of name, with the signature last:
//!
//! ```text
//! airlock.toml        the manifest, byte-identical to the author's
//! component.wasm      the component, under this fixed name
//! schemas/in.json     every schema the manifest names, at its relative path
//! ...
//! SIGNATURE           JSON (see verify::SignatureFile); always the last entry
//! ```
//!
//! The signature is pure Ed25519 over a small text [`Statement`] listing the
//! identity fields and each file's SHA-256, length and name. Why this design:
//! a bundle can be audited with standard tools and no airlock code:
//!
//! ```sh
//! mkdir x && tar -xf acme_db-1.0.0.airlock -C x && cd x
//! { printf 'airlock-bundle-v1\nid %s\nversion %s\npublisher %s\nkey-id %s\n' \
//!     "$(jq -r .id SIGNATURE)" "$(jq -r .version SIGNATURE)" \
//!     "$(jq -r .publisher SIGNATURE)" "$(jq -r .key_id SIGNATURE)"
//!   find . -type f ! -path ./SIGNATURE | sed 's|^\./||' | LC_ALL=C sort |
//!   while IFS= read -r f; do
//!     printf 'file %s %d %s\n' "$(sha256sum < "$f" | cut -d' ' -f1)" "$(wc -c < "$f")" "$f"
//!   done; } > ../statement.txt
//! jq -r .signature SIGNATURE | base64 -d > ../sig.bin
//! openssl pkeyutl -verify -pubin -inkey pub.pem -rawin -in ../statement.txt -sigfile ../sig.bin
//! ```
//! (`pub.pem` comes from [`PublicKey::to_pem`].)
//!
//! Layout: [`archive`] (container), [`statement`](mod@statement) (what is signed),
//! [`keys`] (key files, key ids), [`verify`](mod@verify) (sign and verify), [`paths`]
//! (which entry names a bundle may hold). Packing an integration directory and loading a
//! verified bundle into the engine live in `airlock-runtime`, which knows manifests.
//! The format, for people: docs/bundle-format.md.
//!
//! This crate must never depend on wasmtime, tokio or storage: a reviewer can read and
//! verify a bundle with it alone, and nothing here can run a guest.

pub mod archive;
pub mod keys;
pub mod paths;
pub mod statement;
pub mod verify;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

pub use archive::{ArchiveError, ArchiveLimits};
pub use ed25519_dalek::SigningKey;
pub use keys::{KeyError, PublicKey, generate, key_id, load_signing_key, write_signing_key};
pub use statement::{Statement, StatementError, statement};
pub use verify::{BundleError, SignatureFile, Trust, VerifiedBundle, sign, verify};

/// Name of the signature entry.
pub const SIGNATURE: &str = "SIGNATURE";
/// Name of the manifest entry.
pub const MANIFEST: &str = "airlock.toml";
/// Fixed name of the component entry.
pub const COMPONENT: &str = "component.wasm";
/// File extension of a bundle.
pub const EXTENSION: &str = "airlock";

/// Conventional bundle file name: `<id, / replaced by _>-<version>.airlock`.
/// Why: ids are namespaced with `/`, which cannot appear in a file name.
pub fn file_name(id: &str, version: &str) -> String {
    format!("{}-{version}.{EXTENSION}", id.replace('/', "_"))
}

/// Whether `name` may be an entry of a bundle (the same rule the reader applies).
pub fn is_bundle_path(name: &str) -> bool {
    paths::check_path(name.as_bytes()).is_ok()
}

/// The files and signature block of a bundle whose archive is well formed, without checking
/// the signature: for showing an operator what an untrusted bundle asks for, never for running.
pub fn read_unverified(
    bytes: &[u8],
) -> Result<(BTreeMap<String, Vec<u8>>, SignatureFile), BundleError> {
    let mut entries = archive::read(bytes, &ArchiveLimits::default())?;
    match entries.pop() {
        Some((name, signature)) if name == SIGNATURE => {
            let (signature, _) = SignatureFile::parse(&signature)?;
            Ok((entries.into_iter().collect(), signature))
        }
        _ => Err(BundleError::Unsigned),
    }
}
