//! Opening a bundle to run it: read once into memory, verify against the trust store, then
//! load from those same bytes (no second read a swapped file could slip into: ST-08).

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::loader::{Integration, LoadError, SchemaCompile};
use crate::runtime::Runtime;
use crate::trust::TrustStore;
use airlock_bundle::{BundleError, VerifiedBundle, verify};

/// Largest bundle read.
pub const MAX_BUNDLE_BYTES: u64 = 128 << 20;

/// Why a bundle was not loaded.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot read bundle {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("bundle {} refused ({}): {source}", path.display(), source.reason())]
    Refused { path: PathBuf, source: BundleError },
    #[error(transparent)]
    Load(#[from] LoadError),
}

impl OpenError {
    /// The trust failure's reason code, when the refusal is about trust (CLI exit code 6).
    pub fn trust_reason(&self) -> Option<&'static str> {
        match self {
            Self::Refused { source, .. } => Some(source.reason()),
            Self::Load(LoadError::Identity { .. }) => Some("publisher-mismatch"),
            _ => None,
        }
    }
}

/// Reads the bundle at `path` into memory, once, refusing more than [`MAX_BUNDLE_BYTES`].
pub fn read_bundle(path: &Path) -> Result<Vec<u8>, OpenError> {
    let io = |source| OpenError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .map_err(io)?
        .take(MAX_BUNDLE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > MAX_BUNDLE_BYTES {
        return Err(io(std::io::Error::other(format!(
            "larger than {MAX_BUNDLE_BYTES} bytes"
        ))));
    }
    Ok(bytes)
}

/// Verifies bundle `bytes` (read from `path`) against the trust store; nothing is compiled.
pub fn verify_trusted(
    path: &Path,
    bytes: &[u8],
    trust: &TrustStore,
) -> Result<VerifiedBundle, OpenError> {
    verify(bytes, |key_id| trust.lookup(key_id)).map_err(|source| OpenError::Refused {
        path: path.to_path_buf(),
        source,
    })
}

/// Verifies the bundle at `path` and loads it into `runtime`.
pub fn load_trusted(
    runtime: &Runtime,
    path: &Path,
    trust: &TrustStore,
) -> Result<(Integration, VerifiedBundle), OpenError> {
    load_verified(runtime, path, &read_bundle(path)?, trust)
}

/// Verifies bundle `bytes` (read from `path`) against the trust store and loads them, every
/// schema compiled: for a bundle being checked or installed.
pub fn load_verified(
    runtime: &Runtime,
    path: &Path,
    bytes: &[u8],
    trust: &TrustStore,
) -> Result<(Integration, VerifiedBundle), OpenError> {
    let verified = verify_trusted(path, bytes, trust)?;
    let integration = runtime.load_bundle(path, &verified, SchemaCompile::AtLoad)?;
    Ok((integration, verified))
}

/// Verifies an installed bundle's `bytes` again and loads them to run: each action's schemas
/// compile on its first use, since they all compiled when the bundle was installed.
pub fn load_installed(
    runtime: &Runtime,
    path: &Path,
    bytes: &[u8],
    trust: &TrustStore,
) -> Result<Integration, OpenError> {
    let verified = verify_trusted(path, bytes, trust)?;
    Ok(runtime.load_bundle(path, &verified, SchemaCompile::OnFirstUse)?)
}
