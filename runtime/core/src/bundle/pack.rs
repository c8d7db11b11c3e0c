//! Gathering an integration's files for signing: the manifest byte for byte, the component
//! under [`COMPONENT`], and every schema the manifest names under its relative path; then
//! signed, and checked against the signer's own key before anyone else sees it.

use std::collections::BTreeSet;
use std::path::PathBuf;

use crate::manifest::LoadedManifest;
use airlock_bundle::{
    BundleError, COMPONENT, MANIFEST, PublicKey, SigningKey, Trust, VerifiedBundle, is_bundle_path,
    sign, verify,
};

/// Why an integration directory cannot be bundled.
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    #[error("cannot read {what} {}: {source}{hint}", path.display())]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
        hint: &'static str,
    },
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error(
        "schema path {0:?} cannot be bundled: use a path inside the integration directory made of \
         letters, digits, '.', '_', '-' and '/'"
    )]
    SchemaPath(String),
}

/// The files of the integration whose manifest is `manifest`, ready for [`airlock_bundle::sign`].
pub fn collect(manifest: &LoadedManifest) -> Result<Vec<(String, Vec<u8>)>, PackError> {
    let m = &manifest.manifest;
    let read = |what, path: PathBuf, hint| {
        std::fs::read(&path).map_err(|source| PackError::Read {
            what,
            path,
            source,
            hint,
        })
    };
    let mut files = vec![(
        MANIFEST.to_string(),
        read("the manifest", manifest.path.clone(), "")?,
    )];
    let component = manifest.resolve(&m.integration.component);
    let hint = " (build it first: `airlock build <dir>`)";
    files.push((
        COMPONENT.to_string(),
        read("the component", component, hint)?,
    ));
    let mut schemas = BTreeSet::new();
    if let Some(config) = &m.config {
        schemas.insert(config.schema.as_str());
    }
    for action in m.actions.values() {
        schemas.insert(action.input.as_str());
        schemas.insert(action.output.as_str());
    }
    for rel in schemas {
        if !is_bundle_path(rel) || rel == MANIFEST || rel == COMPONENT {
            return Err(PackError::SchemaPath(rel.to_string()));
        }
        files.push((rel.to_string(), read("schema", manifest.dir.join(rel), "")?));
    }
    Ok(files)
}

/// A bundle just signed: its bytes, and what verifying them gives.
pub struct SignedBundle {
    pub bytes: Vec<u8>,
    pub verified: VerifiedBundle,
}

/// Signs the integration of `manifest` with `key` for its declared publisher, id and version.
pub fn sign_dir(manifest: &LoadedManifest, key: &SigningKey) -> Result<SignedBundle, PackError> {
    let m = &manifest.manifest;
    let files = collect(manifest)?;
    let publisher = &m.publisher.name;
    let bytes = sign(
        files,
        m.integration.id.as_str(),
        &m.integration.version.to_string(),
        publisher,
        key,
    )?;
    let public = PublicKey::from_verifying_key(key.verifying_key());
    let verified = verify(&bytes, |_| Trust::Trusted {
        key: &public,
        publisher,
    })?;
    Ok(SignedBundle { bytes, verified })
}
