//! What the listing verbs read: the store, or, while `airlock serve` holds it (the embedded
//! store is one process's at a time), the server itself over its operator socket
//! (`airlock_server::local`). Both give the same records: the API sends installations, tenants
//! and trusted keys exactly as stored.

use std::io::{Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use airlock_runtime::ids::{InstallationId, TenantId};
use airlock_runtime::trust::TrustedKey;
use airlock_store::postgres::StoreUrl;
use airlock_store::runs::{RunQuery, RunRecord, RunStatus};
use airlock_store::schedules::ScheduleRecord;
use airlock_store::{Backend, InstallationRecord, StoreError, TenantInfo};
use anyhow::{Context as _, bail};
use serde::de::DeserializeOwned;

/// The largest reply read from the server.
const MAX_REPLY: u64 = 64 << 20;
/// How long the server may take to answer.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Where listings come from.
pub(crate) enum Reader {
    Store(Backend),
    /// The operator socket of the server that holds the store.
    Server(PathBuf),
}

impl Reader {
    /// The database `url` names, else the store at `data` or the server holding it if one
    /// does (a database is shared: it is never held).
    pub(crate) fn open(
        url: Option<&StoreUrl>,
        data: &Path,
        master_key: Option<&Path>,
    ) -> anyhow::Result<Self> {
        match Backend::open(url, data, master_key) {
            Ok(store) => Ok(Self::Store(store)),
            Err(StoreError::Open { .. }) if airlock_server::local::is_serving(data) => {
                Ok(Self::Server(airlock_server::local::socket_path(data)))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Every installation, or `tenant`'s.
    pub(crate) fn installations(
        &self,
        tenant: Option<&TenantId>,
    ) -> anyhow::Result<Vec<InstallationRecord>> {
        match self {
            Self::Store(store) => Ok(store.installations(tenant)?),
            Self::Server(socket) => {
                #[derive(serde::Deserialize)]
                struct List {
                    installations: Vec<InstallationRecord>,
                }
                let path = match tenant {
                    Some(t) => format!("/v1/installations?tenant={t}"),
                    None => "/v1/installations".to_string(),
                };
                Ok(get::<List>(socket, &path)?.installations)
            }
        }
    }

    /// Every tenant.
    pub(crate) fn tenants(&self) -> anyhow::Result<Vec<TenantInfo>> {
        match self {
            Self::Store(store) => Ok(store.tenants()?),
            Self::Server(socket) => {
                #[derive(serde::Deserialize)]
                struct List {
                    tenants: Vec<TenantInfo>,
                }
                Ok(get::<List>(socket, "/v1/tenants")?.tenants)
            }
        }
    }

    /// `tenant`'s runs as `query` asks, oldest first.
    pub(crate) fn runs(
        &self,
        tenant: &TenantId,
        query: &RunQuery,
    ) -> anyhow::Result<Vec<RunRecord>> {
        match self {
            Self::Store(store) => Ok(store.runs(tenant, query)?),
            Self::Server(socket) => {
                #[derive(serde::Deserialize)]
                struct List {
                    runs: Vec<RunRecord>,
                }
                let mut path = format!("/v1/runs?tenant={tenant}&limit={}", query.limit);
                for (name, value) in [
                    ("installation", query.installation.as_deref()),
                    ("status", query.status.map(RunStatus::as_str)),
                    ("after", query.after.as_deref()),
                ] {
                    if let Some(value) = value {
                        path.push_str(&format!("&{name}={value}"));
                    }
                }
                Ok(get::<List>(socket, &path)?.runs)
            }
        }
    }

    /// `tenant`'s run `id`.
    pub(crate) fn run(&self, tenant: &TenantId, id: &str) -> anyhow::Result<Option<RunRecord>> {
        match self {
            Self::Store(store) => Ok(store.run(tenant, id)?),
            Self::Server(socket) => {
                let path = format!("/v1/runs/{id}?tenant={tenant}");
                let (status, body) = exchange(socket, "GET", &path, None, TIMEOUT)?;
                match status {
                    404 => Ok(None),
                    200 => Ok(Some(serde_json::from_slice(&body)?)),
                    _ => bail!(
                        "asking the running server ({}): {status} {}",
                        socket.display(),
                        String::from_utf8_lossy(&body).trim()
                    ),
                }
            }
        }
    }

    /// `tenant`'s schedules, or one installation's.
    pub(crate) fn schedules(
        &self,
        tenant: &TenantId,
        installation: Option<&InstallationId>,
    ) -> anyhow::Result<Vec<ScheduleRecord>> {
        match self {
            Self::Store(store) => Ok(store.schedules(tenant, installation)?),
            Self::Server(socket) => {
                #[derive(serde::Deserialize)]
                struct List {
                    schedules: Vec<ScheduleRecord>,
                }
                let mut path = format!("/v1/schedules?tenant={tenant}");
                if let Some(installation) = installation {
                    path.push_str(&format!("&installation={installation}"));
                }
                Ok(get::<List>(socket, &path)?.schedules)
            }
        }
    }

    /// Every publisher key, trusted or revoked.
    pub(crate) fn trusted_keys(&self) -> anyhow::Result<Vec<TrustedKey>> {
        match self {
            Self::Store(store) => Ok(store.trusted_keys()?),
            Self::Server(socket) => {
                #[derive(serde::Deserialize)]
                struct List {
                    keys: Vec<TrustedKey>,
                }
                Ok(get::<List>(socket, "/v1/trust")?.keys)
            }
        }
    }
}

/// `GET path` on the operator socket, its JSON reply parsed as `T`.
fn get<T: DeserializeOwned>(socket: &Path, path: &str) -> anyhow::Result<T> {
    let what = || format!("asking the running server ({})", socket.display());
    let (status, body) = exchange(socket, "GET", path, None, TIMEOUT)?;
    if status != 200 {
        bail!(
            "{}: {status} {}",
            what(),
            String::from_utf8_lossy(&body).trim()
        );
    }
    serde_json::from_slice(&body).with_context(what)
}

/// `method path` on the operator socket with `body` (JSON) if any, the server given `timeout`
/// to answer; returns the status and the reply's body.
pub(crate) fn exchange(
    socket: &Path,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
    timeout: Duration,
) -> anyhow::Result<(u16, Vec<u8>)> {
    let what = || format!("asking the running server ({})", socket.display());
    let mut stream = UnixStream::connect(socket).with_context(what)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    let body = body.unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\naccept: \
         application/json\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )
    .and_then(|()| stream.write_all(body))
    .with_context(what)?;
    let mut reply = Vec::new();
    stream
        .take(MAX_REPLY)
        .read_to_end(&mut reply)
        .with_context(what)?;
    let Some(split) = reply.windows(4).position(|w| w == b"\r\n\r\n") else {
        bail!("{}: the reply has no header end", what());
    };
    let head = String::from_utf8_lossy(&reply[..split]).to_ascii_lowercase();
    if head.contains("transfer-encoding: chunked") {
        bail!("{}: a chunked reply was not expected", what());
    }
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .unwrap_or(0);
    Ok((status, reply[split + 4..].to_vec()))
}
