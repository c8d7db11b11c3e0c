//! `airlock sign <dir> --key FILE`: packs an integration into one signed bundle.
//!
//! The bundle holds the manifest byte for byte, the component, and every schema the manifest
//! names; the signature covers all of them plus the publisher, id and version
//! (docs/bundle-format.md).

use std::path::PathBuf;

use clap::Args;

use super::build::BuildFirst;
use super::exit::{Exit, fail};
use airlock_runtime::bundle::{self, load_signing_key};
use airlock_runtime::fsutil::write_atomic;
use airlock_runtime::manifest::LoadedManifest;

#[derive(Debug, Args)]
pub(crate) struct SignArgs {
    /// Integration directory, or the path of its airlock.toml
    path: PathBuf,
    /// The publisher's private key (from `airlock keygen`)
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    /// Where to write the bundle [default: ./<id>-<version>.airlock]
    #[arg(long, value_name = "PATH")]
    out: Option<PathBuf>,
    /// Replace the bundle at the output path if there is one
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    build: BuildFirst,
}

pub(crate) fn sign(args: SignArgs) -> anyhow::Result<Exit> {
    let invalid = |e: anyhow::Error| fail(Exit::Usage, e);
    let manifest = LoadedManifest::load(&args.path).map_err(|e| invalid(e.into()))?;
    let m = &manifest.manifest;
    let key = load_signing_key(&args.key).map_err(|e| invalid(e.into()))?;
    let out = args.out.unwrap_or_else(|| {
        let (id, version) = (&m.integration.id, &m.integration.version);
        PathBuf::from(bundle::file_name(id.as_ref(), &version.to_string()))
    });
    // Before the build: a bundle already published under this name is not replaced by accident.
    if out.exists() && !args.force {
        return Err(invalid(anyhow::anyhow!(
            "{} exists: pass --force to replace it, or --out another path",
            out.display()
        )));
    }
    args.build.fresh(&manifest)?;
    let signed = bundle::sign_dir(&manifest, &key).map_err(|e| invalid(e.into()))?;
    let v = &signed.verified;
    write_atomic(&out, &signed.bytes)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", out.display()))?;
    eprintln!(
        "signed {} {} for {:?} with key {} ({} files)",
        v.id,
        v.version,
        m.publisher.name,
        v.key_id,
        v.files.len()
    );
    eprintln!("digest sha256:{}", hex::encode(v.digest));
    println!("{}", out.display());
    Ok(Exit::Success)
}
