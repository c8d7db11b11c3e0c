//! Compiled-component cache: compile once per component digest, reuse across processes.
//!
//! `Component::deserialize` loads machine code, so an entry must never come from anyone but
//! this host: every entry carries an HMAC under a key created in the data dir (0600) and is
//! deserialized only after the MAC verifies. An entry that fails is recompiled and replaced.

use std::fs;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use sha2::{Digest as _, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use crate::digest::Digest;
use crate::fsutil::Confined;

type HmacSha256 = Hmac<Sha256>;

const KEY_FILE: &str = "cache.key";
const DIR: &str = "compiled";
const MAC_LEN: usize = 32;
/// A compiled artifact is a few times its component, which a bundle caps at 128 MiB.
const MAX_ENTRY_BYTES: u64 = 1 << 30;
const DOMAIN: &[u8] = b"airlock compiled component v1\0";

/// Where a component came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CacheOutcome {
    /// Deserialized from a verified entry.
    Hit,
    /// Compiled now (no entry yet) and stored.
    Compiled,
    /// An entry existed but failed verification; compiled now and replaced.
    Replaced,
}

impl std::fmt::Display for CacheOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Hit => "loaded from the verified compile cache",
            Self::Compiled => "compiled now and cached",
            Self::Replaced => "recompiled: the cache entry failed verification",
        })
    }
}

/// The compiled-artifact cache under one data dir.
pub struct CompileCache {
    dir: Confined,
    key: [u8; 32],
    engine_fingerprint: String,
}

/// The cache's own files could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("cannot use the compile cache at {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the cache key {path} is not 32 bytes; remove it to start a new cache")]
    BadKey { path: PathBuf },
}

impl CompileCache {
    /// Opens (creating if needed) the cache under `data_dir`.
    pub fn open(data_dir: &Path, engine: &Engine) -> Result<Self, CacheError> {
        let path = data_dir.join(DIR);
        let dir =
            Confined::create(&path, 0o700).map_err(|source| CacheError::Io { path, source })?;
        let key = load_or_create_key(&data_dir.join(KEY_FILE))?;
        Ok(Self {
            dir,
            key,
            engine_fingerprint: fingerprint(engine),
        })
    }

    /// Returns the compiled component for `bytes`, from the cache when a verified entry exists.
    ///
    /// Compilation errors (invalid or unsupported wasm) are returned as they are; cache I/O
    /// failures never fail the load, they only cost a compile.
    pub fn load_or_compile(
        &self,
        engine: &Engine,
        digest: &Digest,
        bytes: &[u8],
    ) -> wasmtime::Result<(Component, CacheOutcome)> {
        let name = self.entry_name(digest);
        let path = self.dir.path_of(&name);
        let mut outcome = CacheOutcome::Compiled;
        if let Ok(Some(entry)) = self.dir.read(&name, MAX_ENTRY_BYTES) {
            match self.verify(digest, &entry) {
                Some(artifact) => {
                    // SAFETY: the artifact carries a MAC under this host's key over this engine's
                    // fingerprint and the component digest, so it is bytes this host serialized
                    // for a compatible engine; wasmtime also checks compatibility itself.
                    if let Ok(component) = unsafe { Component::deserialize(engine, artifact) } {
                        return Ok((component, CacheOutcome::Hit));
                    }
                    outcome = CacheOutcome::Replaced;
                }
                None => {
                    tracing::warn!(path = %path.display(), "compiled cache entry failed verification; recompiling");
                    outcome = CacheOutcome::Replaced;
                }
            }
        }
        let component = Component::new(engine, bytes)?;
        if let Err(error) = self.store(&name, digest, &component) {
            tracing::warn!(path = %path.display(), %error, "could not write compiled cache entry");
        }
        Ok((component, outcome))
    }

    fn entry_name(&self, digest: &Digest) -> String {
        format!("{}-{}.cwasm", digest.hex(), self.engine_fingerprint)
    }

    fn mac(&self, digest: &Digest, artifact: &[u8]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes keys of any length");
        mac.update(DOMAIN);
        mac.update(self.engine_fingerprint.as_bytes());
        mac.update(digest.bytes());
        mac.update(artifact);
        mac
    }

    fn verify<'a>(&self, digest: &Digest, entry: &'a [u8]) -> Option<&'a [u8]> {
        let (tag, artifact) = entry.split_at_checked(MAC_LEN)?;
        self.mac(digest, artifact).verify_slice(tag).ok()?;
        Some(artifact)
    }

    fn store(&self, name: &str, digest: &Digest, component: &Component) -> anyhow::Result<()> {
        let artifact = component.serialize()?;
        let mut entry = self.mac(digest, &artifact).finalize().into_bytes().to_vec();
        entry.extend_from_slice(&artifact);
        self.dir.write_atomic(name, &entry)?;
        Ok(())
    }
}

fn load_or_create_key(path: &Path) -> Result<[u8; 32], CacheError> {
    let io = |source| CacheError::Io {
        path: path.to_path_buf(),
        source,
    };
    match fs::read(path) {
        Ok(bytes) => bytes
            .try_into()
            .map_err(|_| CacheError::BadKey { path: path.into() }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key: [u8; 32] = rand::random();
            crate::fsutil::write_private_new(path, &key).map_err(io)?;
            Ok(key)
        }
        Err(e) => Err(io(e)),
    }
}

/// A short name for the engine's compatibility class: wasmtime version and compile settings.
fn fingerprint(engine: &Engine) -> String {
    struct Sha(Sha256);
    impl Hasher for Sha {
        fn finish(&self) -> u64 {
            0
        }
        fn write(&mut self, bytes: &[u8]) {
            self.0.update(bytes);
        }
    }
    let mut hasher = Sha(Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut hasher);
    hex::encode(&hasher.0.finalize()[..8])
}
