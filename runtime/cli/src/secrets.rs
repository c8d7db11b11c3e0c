//! Credentials for `airlock run`: an installation's values from the encrypted store
//! (`--tenant T --installation I`), or a local run's own (`--secret NAME=env:VAR`,
//! `--secrets-file FILE`).
//!
//! Values never come from argv (where `ps` and shell history would show them): a flag names an
//! environment variable, and a file must be private to its owner (mode 0600). Every value is
//! validated against the type its manifest declares before anything runs.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use airlock_host_api::credentials::{
    CredentialBroker, CredentialScope, CredentialSpec, Secret, StaticSecrets,
};
use anyhow::{Context, bail};
use clap::Args;
use zeroize::Zeroizing;

use airlock_host_api::audit::Subject;

use airlock_runtime::ids::{InstallationId, TenantId};
use airlock_runtime::runtime::Runtime;
use airlock_store::Storage;

/// The credential flags of `airlock run`.
#[derive(Debug, Args)]
pub(crate) struct SecretArgs {
    /// A credential for this run, read from an environment variable: NAME=env:VAR; repeatable
    // Parsed after clap, not by it: clap's errors quote the value, and a mistaken
    // `--secret NAME=VALUE` must not be echoed.
    #[arg(
        long = "secret",
        value_name = "NAME=env:VAR",
        conflicts_with = "tenant"
    )]
    secrets: Vec<String>,
    /// Credentials for this run from a TOML file of `name = "value"` lines (mode 0600)
    #[arg(long, value_name = "FILE", conflicts_with = "tenant")]
    secrets_file: Option<PathBuf>,
    /// Use the stored credentials of this tenant's installation (with --installation)
    #[arg(long, requires = "installation")]
    tenant: Option<TenantId>,
    /// The installation whose stored credentials to use (with --tenant)
    #[arg(long, requires = "tenant")]
    installation: Option<InstallationId>,
}

/// `NAME=env:VAR`: a credential name and the variable holding its value.
#[derive(Debug, Clone)]
pub(crate) struct SecretRef {
    name: String,
    var: String,
}

impl FromStr for SecretRef {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (name, source) = s
            .split_once('=')
            .ok_or_else(|| "expected NAME=env:VAR".to_string())?;
        let var = source.strip_prefix("env:").ok_or_else(|| {
            format!(
                "`{name}=…` takes env:VAR; values never go on the command line \
                 (use an environment variable or --secrets-file)"
            )
        })?;
        if name.is_empty() || var.is_empty() {
            return Err(format!("expected {name}=env:VAR"));
        }
        Ok(Self {
            name: name.to_string(),
            var: var.to_string(),
        })
    }
}

impl SecretArgs {
    /// The stored installation named, if any.
    pub(crate) fn scope(&self) -> Option<(&TenantId, &InstallationId)> {
        self.tenant.as_ref().zip(self.installation.as_ref())
    }

    /// Whether any local secret (`--secret`, `--secrets-file`) was given.
    pub(crate) fn is_given(&self) -> bool {
        !self.secrets.is_empty() || self.secrets_file.is_some()
    }

    /// Whom this run acts for: the stored installation's tenant, else `local`.
    pub(crate) fn subject(&self) -> Subject {
        match (&self.tenant, &self.installation) {
            (Some(tenant), Some(installation)) => {
                Subject::new(tenant.to_string(), installation.to_string())
            }
            _ => Subject::local(),
        }
    }

    /// The credential broker for this run: the given values, each checked against the
    /// credential `declared` under its name.
    pub(crate) fn broker(
        &self,
        runtime: &Runtime,
        declared: &BTreeMap<String, CredentialSpec>,
        store: &dyn Storage,
    ) -> anyhow::Result<Arc<dyn CredentialBroker>> {
        if let (Some(tenant), Some(installation)) = (&self.tenant, &self.installation) {
            let scope = CredentialScope::new(tenant.to_string(), installation.to_string());
            return Ok(runtime.credentials(scope, store.secrets(tenant, installation)));
        }
        Ok(runtime.credentials(
            CredentialScope::local(),
            Arc::new(StaticSecrets::new(self.local_values(declared)?)),
        ))
    }

    /// The values `--secret` and `--secrets-file` give, each checked against the credential
    /// `declared` under its name.
    pub(crate) fn local_values(
        &self,
        declared: &BTreeMap<String, CredentialSpec>,
    ) -> anyhow::Result<BTreeMap<String, Secret>> {
        let mut raw: Vec<(String, String, Zeroizing<String>)> = Vec::new();
        if let Some(path) = &self.secrets_file {
            for (name, value) in read_secrets_file(path)? {
                raw.push((name, format!("{}", path.display()), value));
            }
        }
        for r in &self.secrets {
            let r: SecretRef = r
                .parse()
                .map_err(|e: String| anyhow::anyhow!("--secret: {e}"))?;
            let value = std::env::var(&r.var).with_context(|| {
                format!(
                    "--secret {}: environment variable {} is not set",
                    r.name, r.var
                )
            })?;
            raw.push((
                r.name.clone(),
                format!("environment variable {}", r.var),
                Zeroizing::new(value),
            ));
        }
        let mut values = BTreeMap::new();
        for (name, origin, value) in raw {
            let Some(spec) = declared.get(&name) else {
                let known: Vec<&str> = declared.keys().map(String::as_str).collect();
                bail!(
                    "credential `{name}` (from {origin}) is not declared by this integration; it declares: {}",
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                );
            };
            let kind = spec.credential_type();
            let secret = Secret::new(kind, value.to_string()).with_context(|| {
                format!(
                    "credential `{name}` (from {origin}) is not a valid {} value",
                    kind.as_str()
                )
            })?;
            if values.insert(name.clone(), secret).is_some() {
                bail!("credential `{name}` is given twice");
            }
        }
        Ok(values)
    }
}

/// Reads `name = "value"` pairs from a file only its owner can read.
fn read_secrets_file(path: &Path) -> anyhow::Result<Vec<(String, Zeroizing<String>)>> {
    let meta = std::fs::metadata(path)
        .with_context(|| format!("cannot read secrets file {}", path.display()))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        bail!(
            "secrets file {} has mode {mode:04o}; it must be readable by its owner only (chmod 600 {})",
            path.display(),
            path.display()
        );
    }
    let text = Zeroizing::new(
        std::fs::read_to_string(path)
            .with_context(|| format!("cannot read secrets file {}", path.display()))?,
    );
    // toml's errors quote the offending line, which may hold a value: report only the place.
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        let at = e.span().map_or(String::new(), |span| {
            let line = text[..span.start].matches('\n').count() + 1;
            format!(" at line {line}")
        });
        anyhow::anyhow!("secrets file {} is not valid TOML{at}", path.display())
    })?;
    table
        .into_iter()
        .map(|(name, value)| match value {
            toml::Value::String(s) => Ok((name, Zeroizing::new(s))),
            _ => bail!("secrets file {}: `{name}` must be a string", path.display()),
        })
        .collect()
}
