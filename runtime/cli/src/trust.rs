//! `airlock keygen` and `airlock trust add|list|revoke`: publisher keys and which of them this
//! host trusts.

use std::path::PathBuf;

use airlock_platform::trust::{self as trust_service, TrustChangeError};

use clap::{Args, Subcommand};

use super::exit::{Exit, fail};
use super::state::StateArgs;
use airlock_runtime::bundle::{PublicKey, generate};
use airlock_runtime::clock::rfc3339;

#[derive(Debug, Args)]
pub(crate) struct KeygenArgs {
    /// Where to write the private key (mode 0600); the public key goes beside it, with the
    /// extension .pub. Refused if either file exists
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

/// Makes an Ed25519 key pair: the private key in `--out`, the public key line beside it (for
/// `airlock trust add @FILE`) and on stdout, to give operators.
pub(crate) fn keygen(args: KeygenArgs) -> anyhow::Result<Exit> {
    let public_path = args.out.with_extension("pub");
    if public_path == args.out {
        return Err(fail(
            Exit::Usage,
            anyhow::anyhow!(
                "{} would be the public key's file: name the private key otherwise (acme.key)",
                args.out.display()
            ),
        ));
    }
    // Checked first, so a refusal leaves no private key behind without its public half.
    if public_path.exists() {
        return Err(fail(
            Exit::Usage,
            anyhow::anyhow!(
                "{} exists: keygen never replaces a key",
                public_path.display()
            ),
        ));
    }
    let public = generate(&args.out).map_err(|e| fail(Exit::Usage, e))?;
    let line = public.to_line();
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&public_path)
        .and_then(|mut file| {
            use std::io::Write as _;
            writeln!(file, "{line}")?;
            file.sync_all()
        })
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", public_path.display()))?;
    eprintln!(
        "wrote the private key to {} (mode 0600; keep it secret) and the public key to {}, \
         for `airlock trust add @{}`:",
        args.out.display(),
        public_path.display(),
        public_path.display()
    );
    println!("{line}");
    Ok(Exit::Success)
}

#[derive(Debug, Args)]
pub(crate) struct TrustArgs {
    #[command(subcommand)]
    command: TrustCommand,
    #[command(flatten)]
    state: StateArgs,
}

#[derive(Debug, Subcommand)]
enum TrustCommand {
    /// Trust a publisher key for bundles of one publisher
    Add {
        /// The public key line from `airlock keygen`, or @FILE holding it
        public_key: String,
        /// The publisher name the key signs for; must equal the manifests' [publisher] name
        #[arg(long)]
        publisher: String,
    },
    /// List trusted and revoked keys
    List {
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key: bundles it signed no longer run
    Revoke { key_id: String },
}

pub(crate) fn trust(args: TrustArgs) -> anyhow::Result<Exit> {
    let state = args.state.state()?;
    match args.command {
        TrustCommand::Add {
            public_key,
            publisher,
        } => {
            let line = match public_key.strip_prefix('@') {
                Some(file) => std::fs::read_to_string(file)
                    .map_err(|e| anyhow::anyhow!("cannot read {file}: {e}"))?,
                None => public_key,
            };
            let key = PublicKey::parse_line(line.trim()).map_err(|e| fail(Exit::Usage, e))?;
            let (store, trail) = state.open()?;
            let added = trust_service::add(&*store, &trail, &key, &publisher).map_err(refused)?;
            eprintln!(
                "trusted key {} for publisher {:?}",
                added.key_id, added.publisher
            );
        }
        TrustCommand::List { json } => {
            let keys = state.reader()?.trusted_keys()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&keys)?);
            } else if keys.is_empty() {
                eprintln!(
                    "no trusted keys: nothing signed will run (add one with `airlock trust add`)"
                );
            } else {
                for k in &keys {
                    let state = k
                        .revoked
                        .map_or("trusted".to_string(), |t| format!("revoked {}", rfc3339(t)));
                    println!(
                        "{}  {:<28} added {}  {state}",
                        k.key_id,
                        format!("{:?}", k.publisher),
                        rfc3339(k.added)
                    );
                }
            }
        }
        TrustCommand::Revoke { key_id } => {
            let (store, trail) = state.open()?;
            trust_service::revoke(&*store, &trail, &key_id).map_err(refused)?;
            eprintln!("revoked key {key_id}: bundles it signed no longer run");
        }
    }
    Ok(Exit::Success)
}

/// A refused change is the operator's input (exit 2); a store or audit failure is not.
fn refused(e: TrustChangeError) -> anyhow::Error {
    match e {
        TrustChangeError::Trust(e) => fail(Exit::Usage, e),
        other => other.into(),
    }
}
