//! The audit key's seal on a backup (docs/deploy.md, "Backup and restore").
//!
//! A restored trail ends where its backup was taken, while the audit dir's checkpoints may
//! sign records the original wrote after it: to verify, a restore sets those checkpoints aside
//! ([`crate::verify::verify_restored`]). That must not let anyone who can write a backup file
//! cut records off a trail and call it a backup. So a backup is sealed with the key that signs
//! checkpoints: its digest (which covers every record in it) and the time it holds, signed
//! under a context line of its own, so a seal is never mistaken for a checkpoint.

use super::checkpoint::{CheckpointSigner, verifies};
use airlock_bundle::keys::PublicKey;

/// Domain separation: a seal can never be taken for a checkpoint or a bundle signature.
const CONTEXT: &str = "airlock-backup v1";

fn message(digest: &str, created: &str, key: &str) -> String {
    format!("{CONTEXT}\n{digest}\n{created}\n{key}\n")
}

/// Seals a backup's `digest` and `created` time: `<key id> <base64 signature>`.
pub fn seal(signer: &CheckpointSigner, digest: &str, created: &str) -> String {
    let key = signer.public().key_id();
    let signature = signer.signature(message(digest, created, key).as_bytes());
    format!("{key} {signature}")
}

/// Whether `seal` is `key`'s seal over `digest` and `created`.
pub fn is_sealed_by(seal: &str, digest: &str, created: &str, key: &PublicKey) -> bool {
    let Some((id, signature)) = seal.split_once(' ') else {
        return false;
    };
    id == key.key_id() && verifies(key, message(digest, created, id).as_bytes(), signature)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::AuditDir;

    #[test]
    fn a_seal_verifies_for_its_digest_time_and_key_only() {
        let (data, audit) = (
            tempfile::tempdir().expect("temp"),
            tempfile::tempdir().expect("temp"),
        );
        let dir = AuditDir::open(audit.path(), data.path()).expect("audit dir");
        let signer = dir.signer().expect("signer");
        let key = dir.public_key().expect("public key");
        let sealed = seal(&signer, "ab", "2026-01-01T00:00:00.000Z");
        assert!(is_sealed_by(
            &sealed,
            "ab",
            "2026-01-01T00:00:00.000Z",
            &key
        ));
        assert!(!is_sealed_by(
            &sealed,
            "ac",
            "2026-01-01T00:00:00.000Z",
            &key
        ));
        assert!(!is_sealed_by(
            &sealed,
            "ab",
            "2026-01-01T00:00:00.001Z",
            &key
        ));
        assert!(!is_sealed_by(
            "garbage",
            "ab",
            "2026-01-01T00:00:00.000Z",
            &key
        ));
        let other = tempfile::tempdir().expect("temp");
        let other = AuditDir::open(other.path(), data.path()).expect("audit dir");
        other.signer().expect("another key");
        let other = other.public_key().expect("public key");
        assert!(!is_sealed_by(
            &sealed,
            "ab",
            "2026-01-01T00:00:00.000Z",
            &other
        ));
        // A checkpoint's signature over the same words is not a seal.
        let checkpoint = signer.sign("ab", 1, "2026-01-01T00:00:00.000Z", "t");
        let forged = format!("{} {}", key.key_id(), checkpoint.signature);
        assert!(!is_sealed_by(
            &forged,
            "ab",
            "2026-01-01T00:00:00.000Z",
            &key
        ));
    }
}
