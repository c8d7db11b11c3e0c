//! Signed checkpoints: the external anchor that a hash chain alone lacks.
//!
//! Anyone who can write the database can recompute every hash in the chain, and can cut records
//! off its end. A checkpoint (record count and head hash) signed with an Ed25519 key kept in the
//! audit dir, outside the data dir, catches both (catalogue AL-04/05): the rewritten chain no
//! longer matches a signed head, and a cut chain is shorter than a signed count. Checkpoints are
//! appended to `<audit dir>/<chain id>.checkpoints`, one JSON line each, fsynced.
//!
//! The audit dir also keeps each chain's target key (`<chain id>.target-key`), which keys the
//! hashes recorded in place of egress targets.

use std::fs::{self, OpenOptions};
use std::io::{self, BufRead, Write};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, Signer as _, SigningKey};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::AuditError;
use airlock_bundle::keys::{self, KeyError, PublicKey};

/// The checkpoint signing key, in the audit dir.
pub const KEY_FILE: &str = "audit.key";
/// Its public half, for `airlock audit verify` (pin it elsewhere too).
pub const PUBLIC_FILE: &str = "audit.pub";

/// Domain separation: a checkpoint signature can never be mistaken for a bundle signature.
const CONTEXT: &str = "airlock-audit-checkpoint v1";

/// A signed statement that the chain `chain` had `count` records ending in `head`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub chain: String,
    pub count: u64,
    /// Hex hash of record `count - 1`.
    pub head: String,
    pub time: String,
    /// Key id of the signing key.
    pub key: String,
    /// Base64 Ed25519 signature over [`Checkpoint::message`].
    pub signature: String,
}

impl Checkpoint {
    /// The signed bytes: every field but the signature, one per line, after a context line.
    fn message(chain: &str, count: u64, head: &str, time: &str, key: &str) -> String {
        format!("{CONTEXT}\n{chain}\n{count}\n{head}\n{time}\n{key}\n")
    }

    /// Whether `public` signed exactly this checkpoint.
    pub fn is_signed_by(&self, public: &PublicKey) -> bool {
        let message = Self::message(&self.chain, self.count, &self.head, &self.time, &self.key);
        self.key == public.key_id() && verifies(public, message.as_bytes(), &self.signature)
    }
}

/// Whether `signature` (base64) is `public`'s Ed25519 signature over `message`.
pub(crate) fn verifies(public: &PublicKey, message: &[u8], signature: &str) -> bool {
    let Ok(raw) = STANDARD.decode(signature) else {
        return false;
    };
    let Ok(signature) = Signature::from_slice(&raw) else {
        return false;
    };
    public
        .verifying_key()
        .verify_strict(message, &signature)
        .is_ok()
}

/// The audit dir: the checkpoint key and the checkpoint files, kept away from the data dir.
pub struct AuditDir {
    dir: PathBuf,
}

impl AuditDir {
    /// Opens `dir` (created 0700 if missing), refusing one inside `data_dir`: a key stored next
    /// to the records it protects protects nothing.
    pub fn open(dir: &Path, data_dir: &Path) -> Result<Self, AuditError> {
        let io = |source| AuditError::Io {
            path: dir.to_path_buf(),
            source,
        };
        create_private_dir(dir).map_err(io)?;
        let canonical = dir.canonicalize().map_err(io)?;
        let data = data_dir.canonicalize().map_err(|source| AuditError::Io {
            path: data_dir.to_path_buf(),
            source,
        })?;
        if canonical.starts_with(&data) {
            return Err(AuditError::InsideDataDir {
                dir: dir.to_path_buf(),
            });
        }
        Ok(Self { dir: canonical })
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// The signing key, created (0600) with its public file on first use.
    pub fn signer(&self) -> Result<CheckpointSigner, AuditError> {
        let path = self.dir.join(KEY_FILE);
        let key = match keys::load_signing_key(&path) {
            Ok(key) => key,
            Err(KeyError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                let public = match keys::generate(&path) {
                    Ok(public) => public,
                    // Another process created it first: use theirs.
                    Err(KeyError::Exists { .. }) => return self.signer(),
                    Err(e) => return Err(e.into()),
                };
                airlock_runtime::fsutil::write_atomic(
                    &self.dir.join(PUBLIC_FILE),
                    format!("{}\n", public.to_line()).as_bytes(),
                )
                .map_err(|source| AuditError::Io {
                    path: self.dir.join(PUBLIC_FILE),
                    source,
                })?;
                keys::load_signing_key(&path)?
            }
            Err(e) => return Err(e.into()),
        };
        Ok(CheckpointSigner {
            public: PublicKey::from_verifying_key(key.verifying_key()),
            key,
        })
    }

    /// The public key stored in the audit dir.
    pub fn public_key(&self) -> Result<PublicKey, AuditError> {
        let path = self.dir.join(PUBLIC_FILE);
        let line = fs::read_to_string(&path).map_err(|source| AuditError::Io { path, source })?;
        Ok(PublicKey::parse_line(&line)?)
    }

    /// The key of `chain`'s target hashes (32 random bytes, 0600 in the audit dir, created on
    /// first use): kept apart from the records, so that no one holding only the data dir can
    /// test guesses of a path against them.
    pub fn target_key(&self, chain: &str) -> Result<Zeroizing<[u8; 32]>, AuditError> {
        let path = self.dir.join(format!("{chain}.target-key"));
        let io = |source| AuditError::Io {
            path: path.clone(),
            source,
        };
        let fresh = Zeroizing::new(rand::random::<[u8; 32]>());
        match airlock_runtime::fsutil::write_private_new(&path, fresh.as_slice()) {
            Ok(()) => return Ok(fresh),
            // There already is one (or another process just wrote it): use it.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io(e)),
        }
        let bytes = Zeroizing::new(fs::read(&path).map_err(io)?);
        let key: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| AuditError::TargetKey { path: path.clone() })?;
        Ok(Zeroizing::new(key))
    }

    /// Gives chain `to` the target key of chain `from`, if it has one: a trail restored from a
    /// backup goes on as a new chain ([`crate::AuditTrail::open_restored`]), and its targets
    /// hash as the records it continues do.
    pub(crate) fn share_target_key(&self, from: &str, to: &str) -> Result<(), AuditError> {
        let path = self.dir.join(format!("{from}.target-key"));
        let key = match fs::read(&path) {
            Ok(key) => Zeroizing::new(key),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(source) => return Err(AuditError::Io { path, source }),
        };
        let to = self.dir.join(format!("{to}.target-key"));
        airlock_runtime::fsutil::write_private_new(&to, &key)
            .map_err(|source| AuditError::Io { path: to, source })
    }

    fn file(&self, chain: &str) -> PathBuf {
        self.dir.join(format!("{chain}.checkpoints"))
    }

    /// Appends `checkpoint` to its chain's file and syncs it.
    ///
    /// Every node that shares the audit dir appends to the same file: the line goes out in one
    /// `write` on a file opened `O_APPEND`, which a local file system never interleaves with
    /// another process's (a short write is an error, never finished by a second `write` that
    /// another line could precede).
    pub fn append(&self, checkpoint: &Checkpoint) -> Result<(), AuditError> {
        let line = serde_json::to_vec(checkpoint).expect("checkpoints always serialize");
        append_line(&self.file(&checkpoint.chain), line)
    }

    /// Every checkpoint of `chain`, in file order; a line that does not parse is reported as
    /// its line number.
    pub fn checkpoints(&self, chain: &str) -> Result<Vec<Result<Checkpoint, usize>>, AuditError> {
        read_lines(&self.file(chain))
    }
}

/// Signs checkpoints. Holds the private key; lives only in the process that appends.
pub struct CheckpointSigner {
    key: SigningKey,
    public: PublicKey,
}

impl CheckpointSigner {
    pub fn public(&self) -> &PublicKey {
        &self.public
    }

    pub fn sign(&self, chain: &str, count: u64, head: &str, time: &str) -> Checkpoint {
        let key = self.public.key_id();
        let message = Checkpoint::message(chain, count, head, time, key);
        Checkpoint {
            chain: chain.to_string(),
            count,
            head: head.to_string(),
            time: time.to_string(),
            key: key.to_string(),
            signature: self.signature(message.as_bytes()),
        }
    }

    /// The base64 signature over `message`, which starts with its own context line, so it
    /// is never mistaken for a checkpoint's ([`crate::seal`]).
    pub(crate) fn signature(&self, message: &[u8]) -> String {
        STANDARD.encode(self.key.sign(message).to_bytes())
    }
}

/// Every line of the JSON-lines file at `path` (none if there is no file), in file order; a
/// line that does not parse as a `T` is its line number.
pub(crate) fn read_lines<T: serde::de::DeserializeOwned>(
    path: &Path,
) -> Result<Vec<Result<T, usize>>, AuditError> {
    let file = match fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(AuditError::Io {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    io::BufReader::new(file)
        .lines()
        .enumerate()
        .map(|(i, line)| {
            let line = line.map_err(|source| AuditError::Io {
                path: path.to_path_buf(),
                source,
            })?;
            Ok(serde_json::from_str(&line).map_err(|_| i + 1))
        })
        .collect()
}

/// Appends `line` and a newline to the file at `path` (created 0600) in one `write`, synced;
/// a line that cannot be written whole and durable is cut off again (a full disk, a read-only
/// one), so the file never holds half a line.
pub(crate) fn append_line(path: &Path, mut line: Vec<u8>) -> Result<(), AuditError> {
    line.push(b'\n');
    let mut options = OpenOptions::new();
    options.append(true).create(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
        .open(path)
        .and_then(|mut file| {
            let before = file.metadata()?.len();
            let written = match file.write(&line) {
                Ok(n) if n == line.len() => file.sync_all(),
                Ok(_) => Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "the line was written in part",
                )),
                Err(e) => Err(e),
            };
            if written.is_err() {
                let _ = file.set_len(before);
            }
            written
        })
        .map_err(|source| AuditError::Io {
            path: path.to_path_buf(),
            source,
        })
}

fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}
