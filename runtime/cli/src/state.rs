//! Where a verb's state lives: `--data`, `--master-key` and `--audit-dir`, on the verbs that
//! keep state (not on `keygen`, `sign`, `new`, `build` or `completions`), and what they open.

use std::path::PathBuf;

use clap::Args;

use super::exit::{Exit, fail};
use super::reader::Reader;
use airlock_audit::{AuditDir, AuditTrail, Node};
use airlock_runtime::engine::EngineSettings;
use airlock_store::Backend;
use airlock_store::postgres::StoreUrl;

/// `--data`: for the verbs that read the data dir but not its store (the compile cache, the
/// trust file).
#[derive(Debug, Args)]
#[command(next_help_heading = "State")]
pub(crate) struct DataArgs {
    /// Directory for Airlock's state (store, compile cache, trust store) [default: the
    /// platform's per-user data directory]
    #[arg(long, global = true, env = "AIRLOCK_DATA", value_name = "DIR")]
    data: Option<PathBuf>,
}

impl DataArgs {
    /// `--data`, else `$AIRLOCK_DATA` (both via clap), else the platform's per-user data dir;
    /// created if missing.
    pub(crate) fn dir(&self) -> anyhow::Result<PathBuf> {
        let dir = self.path()?;
        std::fs::create_dir_all(&dir)
            .map_err(|e| anyhow::anyhow!("cannot create data dir {}: {e}", dir.display()))?;
        Ok(dir)
    }

    /// [`Self::dir`], not created.
    fn path(&self) -> anyhow::Result<PathBuf> {
        match &self.data {
            Some(dir) => Ok(dir.clone()),
            None => directories::ProjectDirs::from("dev", "airlock", "airlock")
                .map(|p| p.data_dir().to_path_buf())
                .ok_or_else(|| {
                    fail(
                        Exit::Usage,
                        anyhow::anyhow!("no home directory to keep state in; pass --data DIR"),
                    )
                }),
        }
    }
}

/// `--data`, `--master-key` and `--audit-dir`: for the verbs that open the store and its trail.
#[derive(Debug, Args)]
#[command(next_help_heading = "State")]
pub(crate) struct StateArgs {
    #[command(flatten)]
    data: DataArgs,

    /// The store: a postgres:// URL names a PostgreSQL database that any number of `airlock
    /// serve` nodes share (sslmode and sslrootcert as libpq reads them; docs/deploy.md)
    /// [default: the embedded store under the data dir]
    #[arg(long, global = true, env = "AIRLOCK_STORE", value_name = "URL")]
    store: Option<StoreUrl>,

    /// The master key file that wraps tenants' data keys; keep it outside the data dir in
    /// production. AIRLOCK_MASTER_KEY (the key itself, base64) takes precedence
    /// [default: DIR/master.key, created 0600 when first needed]
    #[arg(
        long,
        global = true,
        env = "AIRLOCK_MASTER_KEY_FILE",
        value_name = "FILE"
    )]
    master_key: Option<PathBuf>,

    /// Directory for the audit checkpoint key and signed checkpoints; must be outside the data
    /// dir [default: the platform's per-user config dir, e.g. ~/.config/airlock/audit]
    #[arg(long, global = true, env = "AIRLOCK_AUDIT_DIR", value_name = "DIR")]
    audit_dir: Option<PathBuf>,
}

impl StateArgs {
    /// The data dir (created if missing), the master key and the audit dir.
    pub(crate) fn state(&self) -> anyhow::Result<State> {
        Ok(State {
            data: self.data.dir()?,
            ..self.unmade()?
        })
    }

    /// [`Self::state`] with the data dir not created: `airlock restore` makes it.
    pub(crate) fn unmade(&self) -> anyhow::Result<State> {
        Ok(State {
            data: self.data.path()?,
            store: self.store.clone(),
            master_key: self.master_key.clone(),
            audit_dir: self.audit_dir.clone(),
        })
    }
}

/// Where a verb's state lives: the data dir, the store, the master key and the audit dir.
pub(crate) struct State {
    pub data: PathBuf,
    /// The shared database, if `--store` names one; else the embedded store under `data`.
    pub store: Option<StoreUrl>,
    pub master_key: Option<PathBuf>,
    pub audit_dir: Option<PathBuf>,
}

impl State {
    /// Opens the store and its audit trail: every verb that changes state or runs code
    /// records it, naming this host as the node that wrote the records.
    pub(crate) fn open(&self) -> anyhow::Result<(Backend, AuditTrail)> {
        self.open_as(Node::host())
    }

    /// [`Self::open`], naming `node` in the records (`airlock serve --node`).
    pub(crate) fn open_as(&self, node: Node) -> anyhow::Result<(Backend, AuditTrail)> {
        let store = self.store()?;
        let trail = AuditTrail::open_shared(store.audit_log(), self.audit()?, node)?;
        Ok((store, trail))
    }

    /// What the listing verbs read: the store, or the server that holds it.
    pub(crate) fn reader(&self) -> anyhow::Result<Reader> {
        Reader::open(self.store.as_ref(), &self.data, self.master_key.as_deref())
    }

    /// The store alone, for the verbs that only read it.
    pub(crate) fn store(&self) -> anyhow::Result<Backend> {
        match self.reader()? {
            Reader::Store(store) => Ok(store),
            Reader::Server(_) => Err(fail(
                Exit::Usage,
                anyhow::anyhow!(
                    "airlock serve is running on {}: while it does, change its state through \
                     its API (docs/api.md), or keep the state in PostgreSQL (--store \
                     postgres://…), which any number of servers and verbs share; the listing \
                     verbs still work",
                    self.data.display()
                ),
            )),
        }
    }

    /// The audit dir, opened (and made, if missing).
    pub(crate) fn audit(&self) -> anyhow::Result<AuditDir> {
        AuditDir::open(&self.audit_path()?, &self.data).map_err(|e| fail(Exit::Usage, e))
    }

    /// The audit dir: `--audit-dir`, `$AIRLOCK_AUDIT_DIR` (both via clap), else the platform's
    /// per-user config dir, which is never inside the data dir.
    pub(crate) fn audit_path(&self) -> anyhow::Result<PathBuf> {
        match &self.audit_dir {
            Some(dir) => Ok(dir.clone()),
            None => directories::ProjectDirs::from("dev", "airlock", "airlock")
                .map(|p| p.config_dir().join("audit"))
                .ok_or_else(|| {
                    fail(
                        Exit::Usage,
                        anyhow::anyhow!(
                            "no home directory for the audit key; pass --audit-dir DIR"
                        ),
                    )
                }),
        }
    }

    /// The store, its trail and a runtime with `settings`.
    pub(crate) fn open_installations(&self, settings: EngineSettings) -> anyhow::Result<Opened> {
        let (store, trail) = self.open()?;
        Ok(Opened {
            runtime: airlock_runtime::runtime::Runtime::new(&self.data, settings)?,
            store,
            trail,
        })
    }
}

/// What the verbs that act on installations open.
pub(crate) struct Opened {
    pub store: Backend,
    pub trail: AuditTrail,
    pub runtime: airlock_runtime::runtime::Runtime,
}

impl Opened {
    pub(crate) fn installer(&self) -> airlock_platform::install::Installer<'_> {
        airlock_platform::install::Installer {
            runtime: &self.runtime,
            store: &*self.store,
            trail: &self.trail,
        }
    }
}
