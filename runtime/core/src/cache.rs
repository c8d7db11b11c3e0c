//! Compiled-component cache: compile once per component digest, reuse across processes.
//!
//! `Component::deserialize` loads machine code, so an entry must never come from anyone but
//! this host: every entry is sealed with AES-256-GCM under a key derived from one created in
//! the data dir (0600), bound to the engine fingerprint and the component digest, and is
//! deserialized only after it opens. An entry that fails is recompiled and replaced. Sealing
//! rather than an HMAC because it is the faster check: opening the 500 KB artifact of a typical
//! connector takes about a fifth of the time HMAC-SHA256 over it did (docs/benchmarks.md).

use std::fs;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use sha2::{Digest as _, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use crate::digest::Digest;
use crate::fsutil::Confined;

const KEY_FILE: &str = "cache.key";
const DIR: &str = "compiled";
/// A compiled artifact is a few times its component, which a bundle caps at 128 MiB.
const MAX_ENTRY_BYTES: u64 = 1 << 30;
/// Binds an entry to this format, ahead of the engine fingerprint and component digest.
const DOMAIN: &[u8] = b"airlock compiled component v2\0";
/// Derives the sealing key from the key file, so the file's key is used for nothing else.
const KEY_LABEL: &[u8] = b"airlock compile cache aes-256-gcm\0";

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
    key: LessSafeKey,
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
        let file_key = load_or_create_key(&data_dir.join(KEY_FILE))?;
        let derived: [u8; 32] = Sha256::new()
            .chain_update(KEY_LABEL)
            .chain_update(file_key)
            .finalize()
            .into();
        let key = LessSafeKey::new(
            UnboundKey::new(&AES_256_GCM, &derived).expect("AES-256 takes a 32-byte key"),
        );
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
        if let Ok(Some(mut entry)) = self.dir.read(&name, MAX_ENTRY_BYTES) {
            match self.unseal(digest, &mut entry) {
                Some(artifact) => {
                    // SAFETY: the artifact opened under this host's key, bound to this engine's
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
        format!("{}-{}.v2.cwasm", digest.hex(), self.engine_fingerprint)
    }

    /// What an entry is bound to besides its key: this format, the engine, the component.
    fn aad(&self, digest: &Digest) -> Vec<u8> {
        let mut aad = DOMAIN.to_vec();
        aad.extend_from_slice(self.engine_fingerprint.as_bytes());
        aad.push(0);
        aad.extend_from_slice(digest.bytes());
        aad
    }

    /// Opens an entry (`nonce ‖ sealed artifact ‖ tag`) in place; `None` if it does not open.
    fn unseal<'a>(&self, digest: &Digest, entry: &'a mut [u8]) -> Option<&'a [u8]> {
        let (nonce, sealed) = entry.split_at_mut_checked(NONCE_LEN)?;
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let aad = self.aad(digest);
        let artifact = self
            .key
            .open_in_place(nonce, Aad::from(&aad), sealed)
            .ok()?;
        Some(artifact)
    }

    fn store(&self, name: &str, digest: &Digest, component: &Component) -> anyhow::Result<()> {
        // A fresh random nonce per entry: far below GCM's 2^32 random-nonce bound per key.
        let nonce: [u8; NONCE_LEN] = rand::random();
        let mut entry = nonce.to_vec();
        let mut sealed = component.serialize()?;
        let aad = self.aad(digest);
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&aad),
                &mut sealed,
            )
            .map_err(|_| anyhow::anyhow!("cannot seal the compiled artifact"))?;
        entry.extend_from_slice(&sealed);
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
