//! `airlock inspect <bundle>`: what an operator must see before trusting or installing a
//! bundle — who signed it with which key, its digest, and every capability it declares.
//! Nothing is compiled. Exit 0 when the signature verifies against a trusted key, and when the
//! key is one this host does not know yet (inspecting comes before trusting); 6 when the bundle
//! is refused for anything else (a changed byte, a revoked key, another publisher). Unverified
//! capabilities are still shown, read from the bundle and marked so.

use std::path::PathBuf;

use airlock_host_api::policy::Limits;
use clap::Args;
use serde_json::json;

use super::check::print_capabilities;
use super::engine_args::CeilingArgs;
use super::exit::{Exit, fail};
use super::state::DataArgs;
use airlock_runtime::bundle::{OpenError, read_bundle, read_unverified, verify_trusted};
use airlock_runtime::manifest::{LoadedManifest, MANIFEST_FILE_NAME};
use airlock_runtime::trust::TrustStore;
use airlock_store::trust::read_trust_file;

#[derive(Debug, Args)]
pub(crate) struct InspectArgs {
    /// The bundle (`.airlock`)
    bundle: PathBuf,
    /// Print JSON
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    ceilings: CeilingArgs,
    #[command(flatten)]
    data: DataArgs,
}

pub(crate) fn inspect(args: InspectArgs) -> anyhow::Result<Exit> {
    // The keys as the data dir holds them, read without opening its store (which a running
    // server holds).
    let trust = TrustStore::from_keys(read_trust_file(&args.data.dir()?)?);
    let ceilings = &args.ceilings.ceilings();
    // Verified, or refused and read unverified so the operator still sees what it asks for.
    let bytes = read_bundle(&args.bundle).map_err(|e| fail(Exit::Usage, e))?;
    let (files, key_id, status, digest) = match verify_trusted(&args.bundle, &bytes, &trust) {
        Ok(v) => (v.files, v.key_id, "trusted", Some(hex::encode(v.digest))),
        Err(e @ OpenError::Refused { .. }) => {
            let (files, signature) = read_unverified(&bytes).map_err(|e| fail(Exit::Trust, e))?;
            let status = e.trust_reason().unwrap_or("refused");
            (files, signature.key_id, status, None)
        }
        Err(e) => return Err(fail(Exit::Usage, e)),
    };
    let trusted = status == "trusted";
    let text = files
        .get(MANIFEST_FILE_NAME)
        .and_then(|b| std::str::from_utf8(b).ok())
        .ok_or_else(|| {
            fail(
                Exit::Trust,
                anyhow::anyhow!("the bundle has no readable airlock.toml"),
            )
        })?;
    let manifest = LoadedManifest::parse(&args.bundle.join(MANIFEST_FILE_NAME), text)
        .map_err(|e| fail(Exit::Usage, e))?;
    let m = &manifest.manifest;
    let limits =
        Limits::resolve(m.requested_limits(), ceilings).map_err(|e| fail(Exit::Usage, e))?;
    if args.json {
        let summary = json!({
            "bundle": args.bundle,
            "id": m.integration.id.to_string(),
            "version": m.integration.version.to_string(),
            "publisher": m.publisher,
            "signature": {
                "status": status,
                "key_id": key_id,
                "digest": digest.as_ref().map(|d| format!("sha256:{d}")),
            },
            "limits": limits,
            "actions": m.actions.keys().map(|a| a.to_string()).collect::<Vec<_>>(),
            "egress": m.egress,
            "kv": m.kv,
            "credentials": m.credentials.iter().map(|(k, v)| (k.as_str().to_string(), v.get_ref().clone())).collect::<std::collections::BTreeMap<_, _>>(),
        });
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        println!(
            "{} {} — {}",
            m.integration.id, m.integration.version, m.integration.description
        );
        println!("  bundle     {}", args.bundle.display());
        let shown = if trusted {
            "verified against a trusted key".to_string()
        } else {
            format!("NOT VERIFIED ({status}); what follows is unverified")
        };
        println!("  signature  {shown}, key {key_id}");
        if status == UNKNOWN_KEY {
            println!(
                "             this host does not trust key {key_id} yet: check it with {:?}, then \
                 `airlock trust add @KEY.pub --publisher {:?}`",
                m.publisher.name, m.publisher.name
            );
        }
        if let Some(digest) = &digest {
            println!("  digest     sha256:{digest}");
        }
        print_capabilities(m, &limits, ceilings);
    }
    Ok(if trusted || status == UNKNOWN_KEY {
        Exit::Success
    } else {
        Exit::Trust
    })
}

/// The refusal of a bundle signed by a key this host has not been given.
const UNKNOWN_KEY: &str = "unknown-key";
