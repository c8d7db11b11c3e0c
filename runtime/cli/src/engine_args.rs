//! The options of the verbs that run code (`run`, `test`, `serve`, `demo`): the operator's
//! ceilings, fuel and the egress dev switches. The verbs that only load code take the parts
//! that mean something to them: `check`, `inspect` and `install` the ceilings, `policy check`
//! the address switches.

use std::path::PathBuf;

use airlock_host_api::egress::ip::AllowRanges;
use airlock_host_api::egress::resolve::ResolveOverride;
use airlock_host_api::policy::Ceilings;
use clap::Args;

use super::logging;

use airlock_runtime::engine::{EgressOptions, EngineSettings};
use airlock_runtime::units::{ByteSize, HumanDuration};

/// The help heading of the ceilings and fuel.
const LIMITS: &str = "Limits";
/// The help heading of the egress dev switches.
const DEV: &str = "Dev switches (loosen secure defaults)";

/// `--ceiling-*`: the operator's bounds on what manifests may declare. A manifest asking for
/// more is refused, not clamped.
#[derive(Debug, Args)]
#[command(next_help_heading = LIMITS)]
pub(crate) struct CeilingArgs {
    /// Most linear memory per invocation [default: 256 MiB]
    #[arg(long, value_name = "SIZE")]
    ceiling_memory: Option<ByteSize>,
    /// Longest timeout per invocation [default: 1m]
    #[arg(long, value_name = "DURATION")]
    ceiling_timeout: Option<HumanDuration>,
    /// Largest output per invocation [default: 16 MiB]
    #[arg(long, value_name = "SIZE")]
    ceiling_output: Option<ByteSize>,
    /// Largest kv store (keys and values) per installation [default: 64 MiB]
    #[arg(long, value_name = "SIZE")]
    ceiling_kv_bytes: Option<ByteSize>,
    /// Most kv keys per installation [default: 100000]
    #[arg(long, value_name = "N")]
    ceiling_kv_keys: Option<u64>,
    /// Most memory the host holds for one invocation outside its linear memory [default: 64 MiB]
    #[arg(long, value_name = "SIZE")]
    ceiling_host_memory: Option<ByteSize>,
    /// Largest scratch directory (`[scratch] size`) per invocation [default: 256 MiB]
    #[arg(long, value_name = "SIZE")]
    ceiling_scratch: Option<ByteSize>,
}

impl CeilingArgs {
    /// The defaults, with what was given in their place.
    pub(crate) fn ceilings(&self) -> Ceilings {
        let mut c = Ceilings::default();
        if let Some(size) = self.ceiling_memory {
            c.memory = size.bytes();
        }
        if let Some(duration) = self.ceiling_timeout {
            c.timeout = duration.0;
        }
        if let Some(size) = self.ceiling_output {
            c.output = size.bytes();
        }
        if let Some(size) = self.ceiling_kv_bytes {
            c.kv_bytes = size.bytes();
        }
        if let Some(keys) = self.ceiling_kv_keys {
            c.kv_keys = keys;
        }
        if let Some(size) = self.ceiling_host_memory {
            c.host_memory = size.bytes();
        }
        if let Some(size) = self.ceiling_scratch {
            c.scratch = size.bytes();
        }
        c
    }

    /// Engine settings with these ceilings and nothing else changed.
    pub(crate) fn settings(&self) -> EngineSettings {
        EngineSettings {
            ceilings: self.ceilings(),
            ..EngineSettings::default()
        }
    }
}

/// The dev switches that change where a name is dialed: `--resolve` and `--allow-private`.
#[derive(Debug, Args)]
#[command(next_help_heading = DEV)]
pub(crate) struct AddressArgs {
    /// DEV ONLY: dial IP (and PORT) for HOST instead of resolving it, like curl; repeatable
    #[arg(long, value_name = "HOST=IP[:PORT]")]
    resolve: Vec<ResolveOverride>,
    /// DEV ONLY: let egress reach addresses in CIDR that are otherwise denied as private
    #[arg(long, value_name = "CIDR")]
    allow_private: Vec<AllowRanges>,
}

impl AddressArgs {
    /// The egress options these give, each switch announced on stderr: they loosen secure
    /// defaults.
    pub(crate) fn options(&self) -> EgressOptions {
        let allow_private: AllowRanges = self.allow_private.iter().cloned().collect();
        for pin in &self.resolve {
            logging::warn(&format!(
                "dev switch --resolve {pin}: this name is not resolved through DNS"
            ));
        }
        if !allow_private.is_empty() {
            logging::warn(&format!(
                "dev switch --allow-private {allow_private}: egress may reach these private \
                 addresses; for development and tests only"
            ));
        }
        EgressOptions {
            resolve: self.resolve.clone(),
            allow_private,
            ..EgressOptions::default()
        }
    }
}

/// The egress dev switches: the address ones and `--extra-root-ca`.
#[derive(Debug, Args)]
#[command(next_help_heading = DEV)]
pub(crate) struct EgressArgs {
    #[command(flatten)]
    addresses: AddressArgs,
    /// DEV ONLY: also trust the CA certificates in this PEM file for egress TLS
    #[arg(long, value_name = "FILE")]
    extra_root_ca: Vec<PathBuf>,
}

impl EgressArgs {
    /// The egress options these give, each switch announced on stderr.
    fn options(&self) -> EgressOptions {
        for root in &self.extra_root_ca {
            logging::warn(&format!(
                "dev switch --extra-root-ca {}: egress TLS trusts this CA too",
                root.display()
            ));
        }
        EgressOptions {
            extra_roots: self.extra_root_ca.clone(),
            ..self.addresses.options()
        }
    }
}

/// Everything the verbs that run code take: ceilings, fuel and the egress dev switches.
#[derive(Debug, Args)]
pub(crate) struct EngineArgs {
    /// Meter fuel: give each invocation this deterministic budget (roughly, wasm
    /// instructions). Costs 25-45% on CPU-heavy guests; the timeout applies either way
    #[arg(long, value_name = "N", help_heading = LIMITS)]
    fuel: Option<u64>,
    #[command(flatten)]
    ceilings: CeilingArgs,
    #[command(flatten)]
    egress: EgressArgs,
}

impl EngineArgs {
    /// The engine settings these give.
    pub(crate) fn settings(&self) -> EngineSettings {
        EngineSettings {
            fuel: self.fuel,
            egress: self.egress.options(),
            ..self.ceilings.settings()
        }
    }
}
