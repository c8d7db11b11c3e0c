//! Envelope encryption of tenant credentials.
//!
//! A [`MasterKey`] kept outside the database (key file or `AIRLOCK_MASTER_KEY`)
//! wraps one random [`DataKey`] per tenant; the data key seals that tenant's
//! secrets. Deleting a tenant's [`WrappedKey`] therefore crypto-shreds every
//! secret it sealed, and a database dump alone reveals nothing.
//!
//! Every ciphertext is bound by its associated data to where it belongs, so a
//! ciphertext copied into another record (or another tenant) fails to open.
//!
//! Names that are themselves data (kv keys, end-user ids) are never stored in
//! clear: records are filed under a keyed hash of the name ([`DataKey::index`],
//! under a key derived from the tenant's DEK) and carry the name sealed
//! ([`NameAad`]), so destroying the DEK also makes the names unlinkable.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::rand_core::RngCore;
use chacha20poly1305::aead::{Aead, KeyInit, OsRng, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

#[cfg(test)]
mod tests;

/// Length in bytes of master and data keys (256 bits).
pub const KEY_LEN: usize = 32;
/// XChaCha20 nonces are long enough to be drawn at random without collisions.
const NONCE_LEN: usize = 24;
/// Environment variable that overrides the key file, e.g. for containers.
const ENV_VAR: &str = "AIRLOCK_MASTER_KEY";
/// Version recorded in every wrapped key, so a later master-key rotation can
/// tell which master key wrapped which DEK.
const MASTER_KEY_VERSION: u32 = 1;
/// A valid key file holds 44 base64 characters plus a newline; anything much
/// larger is certainly not a key and is refused before being read.
const MAX_KEY_FILE_LEN: u64 = 128;
/// Domain-separation labels: a secret's AAD can never equal a wrapped DEK's.
const SECRET_LABEL: &[u8] = b"airlock/secret/v1";
const DEK_LABEL: &[u8] = b"airlock/dek/v1";
const KV_LABEL: &[u8] = b"airlock/kv/v1";
const WEBHOOK_LABEL: &[u8] = b"airlock/webhook/v1";
const CONNECTION_LABEL: &[u8] = b"airlock/oauth-connection/v1";
const NAME_LABEL: &[u8] = b"airlock/name/v1";
const CONFIG_LABEL: &[u8] = b"airlock/installation-config/v1";
const RUN_INPUT_LABEL: &[u8] = b"airlock/run-input/v1";
const SCHEDULE_INPUT_LABEL: &[u8] = b"airlock/schedule-input/v1";
/// Derives the DEK's index key, so the AEAD key is never used as a MAC key too.
const INDEX_KEY_LABEL: &[u8] = b"airlock/index-key/v1";
const INDEX_LABEL: &[u8] = b"airlock/index/v1";
/// Length in bytes of a keyed index ([`DataKey::index`]).
pub const INDEX_LEN: usize = 32;

/// Everything that can go wrong; no variant ever carries key material or plaintext.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("key file {} has mode {mode:04o}; it must be 0600 (chmod 600 {})", path.display(), path.display())]
    KeyFileMode { path: PathBuf, mode: u32 },
    #[error("key file {} is not a regular file", path.display())]
    KeyFileNotRegular { path: PathBuf },
    #[error("cannot use key file {}: {source}", path.display())]
    KeyFile { path: PathBuf, source: io::Error },
    #[error(
        "{what} does not hold a valid master key: expected standard base64 (with padding) of exactly {KEY_LEN} bytes"
    )]
    KeyFormat { what: String },
    #[error(
        "key file {} already exists; refusing to overwrite it (replacing the master key makes every stored secret unreadable)",
        path.display()
    )]
    KeyExists { path: PathBuf },
    #[error(
        "data key was wrapped by master key version {found}, but the loaded master key is version {loaded}"
    )]
    MasterVersion { found: u32, loaded: u32 },
    /// Deliberately one opaque error: telling apart a wrong key, tampering and
    /// a moved ciphertext would only help an attacker.
    #[error("decryption failed: wrong key, tampered data, or data moved from another record")]
    Decrypt,
}

/// Where [`MasterKey::resolve`] found the key, so the CLI can tell the operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeySource {
    Env,
    File,
    Generated,
}

/// The master key. Never Debug-prints its bytes ("MasterKey(..)").
pub struct MasterKey {
    bytes: Zeroizing<[u8; KEY_LEN]>,
    version: u32,
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl MasterKey {
    /// Loads a key file, refusing one that group or others could read: a
    /// leaked master key unlocks every tenant's secrets.
    pub fn load(path: &Path) -> Result<Self, VaultError> {
        let io_err = |source| VaultError::KeyFile {
            path: path.to_path_buf(),
            source,
        };
        // Check the opened handle, not the path, so the file read is the one checked.
        let mut file = File::open(path).map_err(io_err)?;
        let meta = file.metadata().map_err(io_err)?;
        if !meta.is_file() {
            return Err(VaultError::KeyFileNotRegular {
                path: path.to_path_buf(),
            });
        }
        let mode = meta.permissions().mode() & 0o7777;
        if mode != 0o600 {
            return Err(VaultError::KeyFileMode {
                path: path.to_path_buf(),
                mode,
            });
        }
        let what = || format!("key file {}", path.display());
        if meta.len() > MAX_KEY_FILE_LEN {
            return Err(VaultError::KeyFormat { what: what() });
        }
        // Bounded above, so the cast cannot truncate; a fixed-size buffer means
        // no reallocation leaves unzeroized copies of the key text behind.
        let mut text = Zeroizing::new(vec![0u8; meta.len() as usize]);
        file.read_exact(&mut text).map_err(io_err)?;
        let text =
            std::str::from_utf8(&text).map_err(|_| VaultError::KeyFormat { what: what() })?;
        Self::parse(text, what)
    }

    /// Parses the env-var form: same base64 text as the key file.
    pub fn from_env_value(value: &str) -> Result<Self, VaultError> {
        Self::parse(value, || ENV_VAR.to_string())
    }

    /// Decodes base64 text; `what` names the source in errors, which never
    /// echo the text itself since even a malformed key may be mostly right.
    fn parse(text: &str, what: impl Fn() -> String) -> Result<Self, VaultError> {
        let text = text
            .strip_suffix("\r\n")
            .or_else(|| text.strip_suffix('\n'))
            .unwrap_or(text);
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        match STANDARD.decode_slice(text, &mut *bytes) {
            Ok(KEY_LEN) => Ok(Self {
                bytes,
                version: MASTER_KEY_VERSION,
            }),
            _ => Err(VaultError::KeyFormat { what: what() }),
        }
    }

    /// Creates a new random key file with mode 0600. `create_new` never
    /// replaces an existing key, which would orphan every wrapped DEK.
    pub fn generate(path: &Path) -> Result<Self, VaultError> {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|source| match source.kind() {
                io::ErrorKind::AlreadyExists => VaultError::KeyExists {
                    path: path.to_path_buf(),
                },
                _ => VaultError::KeyFile {
                    path: path.to_path_buf(),
                    source,
                },
            })?;
        let key = Self {
            bytes: random_key(),
            version: MASTER_KEY_VERSION,
        };
        // Sized up front so no reallocation leaves an unzeroized copy behind.
        let mut text = Zeroizing::new(String::with_capacity(MAX_KEY_FILE_LEN as usize));
        STANDARD.encode_string(key.bytes.as_slice(), &mut text);
        text.push('\n');
        let written = write_durably(&mut file, path, text.as_bytes());
        if let Err(source) = written {
            // A half-written key file would fail every later load; remove it so
            // the next start can try again. Best effort: the write error matters more.
            let _ = fs::remove_file(path);
            return Err(VaultError::KeyFile {
                path: path.to_path_buf(),
                source,
            });
        }
        Ok(key)
    }

    /// Resolution order used by the CLI: non-empty `AIRLOCK_MASTER_KEY`, else
    /// the key file at `path`, else a new key generated at `path`.
    pub fn resolve(path: &Path) -> Result<(Self, KeySource), VaultError> {
        Self::resolve_from(Self::env()?.as_deref().map(String::as_str), path)
    }

    /// [`Self::resolve`] that never makes a key: where only the key that sealed what is
    /// there can open it (a restore from a backup), a missing key is an error, not a new one.
    pub fn resolve_existing(path: &Path) -> Result<Self, VaultError> {
        match Self::env()?.as_deref().filter(|value| !value.is_empty()) {
            Some(value) => Self::from_env_value(value),
            None => Self::load(path),
        }
    }

    /// Whether the key comes from `AIRLOCK_MASTER_KEY` (set and not empty) rather than a file:
    /// then no file holds it, and there is none to rotate or read again.
    pub fn in_environment() -> bool {
        std::env::var_os(ENV_VAR).is_some_and(|value| !value.is_empty())
    }

    /// `AIRLOCK_MASTER_KEY`, if set.
    fn env() -> Result<Option<Zeroizing<String>>, VaultError> {
        match std::env::var(ENV_VAR) {
            Ok(value) => Ok(Some(Zeroizing::new(value))),
            // Falling back to the file (or a fresh key) here would silently
            // ignore the key the operator meant to use.
            Err(std::env::VarError::NotUnicode(_)) => Err(VaultError::KeyFormat {
                what: ENV_VAR.to_string(),
            }),
            Err(std::env::VarError::NotPresent) => Ok(None),
        }
    }

    /// [`Self::resolve`] with the environment value passed in, so tests need
    /// not mutate process-wide environment variables.
    fn resolve_from(env: Option<&str>, path: &Path) -> Result<(Self, KeySource), VaultError> {
        if let Some(value) = env.filter(|v| !v.is_empty()) {
            return Ok((Self::from_env_value(value)?, KeySource::Env));
        }
        match Self::load(path) {
            Err(VaultError::KeyFile { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                Ok((Self::generate(path)?, KeySource::Generated))
            }
            loaded => loaded.map(|key| (key, KeySource::File)),
        }
    }

    /// Recorded in each [`WrappedKey`] so a future rotation knows which key to use.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Encrypts a tenant's DEK; the AAD binds it to the tenant so a wrapped
    /// key copied to another tenant's row will not unwrap.
    pub fn wrap(&self, tenant: &str, dek: &DataKey) -> WrappedKey {
        let aad = encode_aad(DEK_LABEL, &[tenant], self.version);
        let (nonce, ciphertext) = encrypt(&self.bytes, &aad, &dek.0[..]);
        WrappedKey {
            master_version: self.version,
            nonce,
            ciphertext,
        }
    }

    /// Recovers a tenant's DEK; fails with [`VaultError::Decrypt`] under the
    /// wrong master key or tenant, or if the wrapped key was altered.
    pub fn unwrap(&self, tenant: &str, wrapped: &WrappedKey) -> Result<DataKey, VaultError> {
        if wrapped.master_version != self.version {
            return Err(VaultError::MasterVersion {
                found: wrapped.master_version,
                loaded: self.version,
            });
        }
        let aad = encode_aad(DEK_LABEL, &[tenant], self.version);
        let plain = decrypt(&self.bytes, &aad, &wrapped.nonce, &wrapped.ciphertext)?;
        if plain.len() != KEY_LEN {
            return Err(VaultError::Decrypt);
        }
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        key.copy_from_slice(&plain);
        Ok(DataKey(key))
    }
}

/// A tenant's data encryption key (DEK). Never Debug-prints its bytes.
pub struct DataKey(Zeroizing<[u8; KEY_LEN]>);

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey(..)")
    }
}

impl DataKey {
    /// A fresh DEK for a new tenant (or a DEK rotation).
    pub fn generate() -> Self {
        Self(random_key())
    }

    /// Encrypts a secret under a fresh random nonce, bound to `aad`.
    ///
    /// # Panics
    /// Only if `plaintext` exceeds XChaCha20-Poly1305's limit of ~256 GiB.
    pub fn seal(&self, aad: &impl Aad, plaintext: &[u8]) -> Sealed {
        let (nonce, ciphertext) = encrypt(&self.0, &aad.encode(), plaintext);
        Sealed {
            key_version: aad.key_version(),
            nonce,
            ciphertext,
        }
    }

    /// Decrypts a secret; fails with [`VaultError::Decrypt`] unless `aad`
    /// matches the one it was sealed with exactly.
    pub fn open(&self, aad: &impl Aad, sealed: &Sealed) -> Result<Zeroizing<Vec<u8>>, VaultError> {
        decrypt(&self.0, &aad.encode(), &sealed.nonce, &sealed.ciphertext)
    }

    /// A keyed hash of `fields` in `domain` (HMAC-SHA256 under a key derived
    /// from this DEK): the same name always files under the same index, and
    /// nobody without the DEK can tell which name an index stands for, nor
    /// test a guess.
    pub fn index(&self, domain: &str, fields: &[&str], key_version: u32) -> [u8; INDEX_LEN] {
        let mut derive = <Hmac<Sha256> as Mac>::new_from_slice(&self.0[..])
            .expect("HMAC takes keys of any length");
        derive.update(INDEX_KEY_LABEL);
        let index_key = Zeroizing::new(<[u8; INDEX_LEN]>::from(derive.finalize().into_bytes()));
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&index_key[..])
            .expect("HMAC takes keys of any length");
        let mut all = Vec::with_capacity(fields.len() + 1);
        all.push(domain);
        all.extend_from_slice(fields);
        mac.update(&encode_aad(INDEX_LABEL, &all, key_version));
        mac.finalize().into_bytes().into()
    }
}

/// Binds a ciphertext to where it belongs.
#[derive(Clone, Copy, Debug)]
pub struct SecretAad<'a> {
    pub tenant: &'a str,
    pub installation: &'a str,
    pub credential: &'a str,
    pub key_version: u32,
}

/// What a sealed value is bound to: a domain label, where it lives, and the DEK version.
pub trait Aad {
    fn encode(&self) -> Vec<u8>;
    fn key_version(&self) -> u32;
}

impl Aad for SecretAad<'_> {
    fn encode(&self) -> Vec<u8> {
        encode_aad(
            SECRET_LABEL,
            &[self.tenant, self.installation, self.credential],
            self.key_version,
        )
    }

    fn key_version(&self) -> u32 {
        self.key_version
    }
}

/// Binds a kv value to its tenant, installation and key (a domain of its own: a kv value can
/// never open as a credential, nor the reverse).
#[derive(Clone, Copy, Debug)]
pub struct KvAad<'a> {
    pub tenant: &'a str,
    pub installation: &'a str,
    pub key: &'a str,
    pub key_version: u32,
}

impl Aad for KvAad<'_> {
    fn encode(&self) -> Vec<u8> {
        encode_aad(
            KV_LABEL,
            &[self.tenant, self.installation, self.key],
            self.key_version,
        )
    }

    fn key_version(&self) -> u32 {
        self.key_version
    }
}

/// Binds a webhook signing secret to its tenant and endpoint (a domain of its own).
#[derive(Clone, Copy, Debug)]
pub struct WebhookAad<'a> {
    pub tenant: &'a str,
    pub endpoint: &'a str,
    pub key_version: u32,
}

impl Aad for WebhookAad<'_> {
    fn encode(&self) -> Vec<u8> {
        encode_aad(
            WEBHOOK_LABEL,
            &[self.tenant, self.endpoint],
            self.key_version,
        )
    }

    fn key_version(&self) -> u32 {
        self.key_version
    }
}

/// Binds an OAuth connection's sealed values to their tenant, installation, credential and user
/// (empty for the installation's own), and to their purpose (the tokens, or a PKCE verifier
/// waiting for its callback), so neither opens as the other or anywhere else.
#[derive(Clone, Copy, Debug)]
pub struct ConnectionAad<'a> {
    pub tenant: &'a str,
    pub installation: &'a str,
    pub credential: &'a str,
    pub user: &'a str,
    pub purpose: &'a str,
    pub key_version: u32,
}

impl Aad for ConnectionAad<'_> {
    fn encode(&self) -> Vec<u8> {
        encode_aad(
            CONNECTION_LABEL,
            &[
                self.purpose,
                self.tenant,
                self.installation,
                self.credential,
                self.user,
            ],
            self.key_version,
        )
    }

    fn key_version(&self) -> u32 {
        self.key_version
    }
}

/// Binds a sealed name (a kv key, an end-user id) to its tenant and
/// installation and to the keyed index its record is filed under, so a name
/// copied beside another record does not open there.
#[derive(Clone, Copy, Debug)]
pub struct NameAad<'a> {
    /// What the name is (`kv-key`, `oauth-user`…): one domain per kind.
    pub kind: &'a str,
    pub tenant: &'a str,
    pub installation: &'a str,
    /// The record's index, hex-encoded.
    pub index: &'a str,
    pub key_version: u32,
}

impl Aad for NameAad<'_> {
    fn encode(&self) -> Vec<u8> {
        encode_aad(
            NAME_LABEL,
            &[self.kind, self.tenant, self.installation, self.index],
            self.key_version,
        )
    }

    fn key_version(&self) -> u32 {
        self.key_version
    }
}

/// Binds an installation's config to its tenant and installation.
#[derive(Clone, Copy, Debug)]
pub struct ConfigAad<'a> {
    pub tenant: &'a str,
    pub installation: &'a str,
    pub key_version: u32,
}

impl Aad for ConfigAad<'_> {
    fn encode(&self) -> Vec<u8> {
        encode_aad(
            CONFIG_LABEL,
            &[self.tenant, self.installation],
            self.key_version,
        )
    }

    fn key_version(&self) -> u32 {
        self.key_version
    }
}

/// What a kept action input belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputOwner {
    /// A queued run.
    Run,
    /// A schedule, whose ticks queue runs with it.
    Schedule,
}

/// Binds a kept action input to its tenant, installation and owner (a run or a schedule),
/// so one cannot be swapped for another's.
#[derive(Clone, Copy, Debug)]
pub struct InputAad<'a> {
    pub owner: InputOwner,
    pub tenant: &'a str,
    pub installation: &'a str,
    /// The run's or the schedule's id.
    pub id: &'a str,
    pub key_version: u32,
}

impl Aad for InputAad<'_> {
    fn encode(&self) -> Vec<u8> {
        let label = match self.owner {
            InputOwner::Run => RUN_INPUT_LABEL,
            InputOwner::Schedule => SCHEDULE_INPUT_LABEL,
        };
        encode_aad(
            label,
            &[self.tenant, self.installation, self.id],
            self.key_version,
        )
    }

    fn key_version(&self) -> u32 {
        self.key_version
    }
}

/// A DEK encrypted under the master key, as stored in the tenant's key file.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WrappedKey {
    pub master_version: u32,
    pub nonce: [u8; NONCE_LEN],
    pub ciphertext: Vec<u8>,
}

/// A secret encrypted under a DEK, as stored in the database. `key_version`
/// says which DEK sealed it, which matters once DEKs are rotated.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Sealed {
    pub key_version: u32,
    pub nonce: [u8; NONCE_LEN],
    pub ciphertext: Vec<u8>,
}

/// Encodes AAD as label, then each field as u32-BE length + bytes, then the
/// version as u32 BE. Length prefixes make the encoding injective, so
/// ("ab", "c") and ("a", "bc") can never authenticate as each other.
/// Changing this format makes existing ciphertexts unreadable.
///
/// # Panics
/// If a field exceeds 4 GiB, which no tenant or credential name does.
fn encode_aad(label: &[u8], fields: &[&str], version: u32) -> Vec<u8> {
    let mut out =
        Vec::with_capacity(label.len() + fields.iter().map(|f| 4 + f.len()).sum::<usize>() + 4);
    out.extend_from_slice(label);
    for field in fields {
        let len = u32::try_from(field.len()).expect("AAD field longer than 4 GiB");
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(field.as_bytes());
    }
    out.extend_from_slice(&version.to_be_bytes());
    out
}

/// Draws key bytes straight from the OS CSPRNG.
fn random_key() -> Zeroizing<[u8; KEY_LEN]> {
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    OsRng.fill_bytes(&mut *key);
    key
}

/// Encrypts under a random 24-byte nonce; returns (nonce, ciphertext || tag).
fn encrypt(key: &[u8; KEY_LEN], aad: &[u8], msg: &[u8]) -> ([u8; NONCE_LEN], Vec<u8>) {
    let mut nonce = [0u8; NONCE_LEN];
    OsRng.fill_bytes(&mut nonce);
    let ciphertext = XChaCha20Poly1305::new(Key::from_slice(key))
        .encrypt(XNonce::from_slice(&nonce), Payload { msg, aad })
        .expect("XChaCha20-Poly1305 only fails on plaintexts over 256 GiB");
    (nonce, ciphertext)
}

fn decrypt(
    key: &[u8; KEY_LEN],
    aad: &[u8],
    nonce: &[u8; NONCE_LEN],
    ciphertext: &[u8],
) -> Result<Zeroizing<Vec<u8>>, VaultError> {
    XChaCha20Poly1305::new(Key::from_slice(key))
        .decrypt(
            XNonce::from_slice(nonce),
            Payload {
                msg: ciphertext,
                aad,
            },
        )
        .map(Zeroizing::new)
        .map_err(|_| VaultError::Decrypt)
}

/// Writes and fsyncs the file and its directory entry: a key lost in a crash
/// after DEKs were wrapped with it would make every secret unrecoverable.
fn write_durably(file: &mut File, path: &Path, data: &[u8]) -> io::Result<()> {
    // Enforce 0600 even if a restrictive umask stripped owner bits at creation.
    file.set_permissions(fs::Permissions::from_mode(0o600))?;
    file.write_all(data)?;
    file.sync_all()?;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}
