//! The server's shared state: one store, trail, runtime and trust store for all requests, the
//! loaded installations, admission and failure limits.
//!
//! A loaded installation is reused while its stored record is unchanged and its signing key is
//! still trusted: the trusted keys are read again whenever the store's trust revision changed,
//! checked on every invocation, so a key revoked through any server sharing the store stops
//! its installations at their next invocation, without a restart.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use airlock_host_api::egress::ip::AllowRanges;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use super::admission::{Admission, AdmissionLimits};
use super::client::ProxyTrust;
use super::error::ApiError;
use super::failures::{FailureLimiter, KeyFailures};
use super::members::Membership;
use airlock_audit::AuditTrail;
use airlock_audit::metrics::{Metrics, exposition};
use airlock_platform::connections::Connector;
use airlock_platform::install::{InstallError, Installer};
use airlock_platform::trust;
use airlock_runtime::bundle::Trust;
use airlock_runtime::ids::{InstallationId, TenantId};
use airlock_runtime::loader::{Integration, ValidatedConfig};
use airlock_runtime::runtime::Runtime;
use airlock_runtime::trust::TrustStore;
use airlock_store::Backend;
use airlock_store::InstallationRecord;
use airlock_store::StoreError;

/// Request and concurrency limits of one server.
#[derive(Debug, Clone, Copy)]
pub struct ServeLimits {
    pub admission: AdmissionLimits,
    /// Largest request body, except bundle uploads.
    pub max_body: usize,
    /// Largest bundle upload.
    pub max_bundle: usize,
    /// Client connections open at once; more wait to be accepted.
    pub max_connections: usize,
    /// How often this node marks itself alive among the nodes sharing its store, and
    /// follows its share of the caps.
    pub heartbeat: Duration,
    /// Workers running queued runs (0: this node only queues them).
    pub workers: usize,
    /// The most attempts a queued run makes before it is dead, whatever its manifest asks.
    pub max_attempts: u32,
    /// Runs one tenant may have queued or running; more are refused with 429.
    pub tenant_runs: u64,
    /// How long a dead run keeps its input for `retry` before it is destroyed.
    pub dead_input_retention: Duration,
    /// Whether `/console` is served.
    pub console: bool,
}

impl Default for ServeLimits {
    fn default() -> Self {
        Self {
            admission: AdmissionLimits::default(),
            max_body: 1 << 20,
            max_bundle: airlock_runtime::bundle::trusted::MAX_BUNDLE_BYTES as usize,
            max_connections: 512,
            heartbeat: Duration::from_secs(5),
            workers: 4,
            max_attempts: 10,
            tenant_runs: 10_000,
            dead_input_retention: Duration::from_secs(7 * 24 * 3600),
            console: true,
        }
    }
}

/// How many samples of the trail's counts are kept: a day's at one per housekeeping round.
const SAMPLES_KEPT: usize = 24 * 3600 / 15;

/// The trail's totals at one moment (this node's count of the shared trail), and the
/// invocations running on this node.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sample {
    pub at: u64,
    pub ok: u64,
    pub failed: u64,
    pub security: u64,
    pub running: u64,
}

/// An installation ready to invoke: what its record says, loaded and configured.
pub struct Loaded {
    pub record: InstallationRecord,
    pub integration: Integration,
    pub config: ValidatedConfig,
}

/// Everything a request handler shares.
pub struct App {
    pub(crate) runtime: Runtime,
    pub(crate) store: Backend,
    pub(crate) trail: AuditTrail,
    pub(crate) admission: Admission,
    pub(crate) members: Membership,
    /// Wakes an idle worker when this node queues a run.
    pub(crate) runs_queued: tokio::sync::Notify,
    /// The console's signed-in browsers on this node.
    pub(crate) sessions: crate::console::session::Sessions,
    /// Wakes the scheduler when this node creates or resumes a schedule.
    pub(crate) schedules_changed: tokio::sync::Notify,
    /// Schedule ticks this node fired, and those it found missed or could not queue.
    pub(crate) schedule_ticks_fired: AtomicU64,
    pub(crate) schedule_ticks_missed: AtomicU64,
    pub(crate) failures: KeyFailures,
    /// Refused OAuth callbacks per client: apart from API-key failures, so a page that makes a
    /// browser load forged callbacks cannot lock its user out of the API.
    pub(crate) callback_failures: FailureLimiter,
    /// Peers whose forwarding headers name the client (`--trusted-proxy`).
    trusted_proxies: AllowRanges,
    /// Webhook refusals recorded per endpoint, and those beyond the limit (counted only).
    pub(crate) hook_refusals: FailureLimiter<String>,
    pub(crate) hook_refusals_unrecorded: AtomicU64,
    pub(crate) limits: ServeLimits,
    /// Where browsers reach this server (scheme, host and port): consents start at
    /// `{public_url}/v1/oauth/start/…` and come back to `{public_url}/v1/oauth/callback`.
    public_url: String,
    trust: TrustCache,
    loaded: Mutex<HashMap<(TenantId, InstallationId), Arc<Loaded>>>,
    /// Metrics counted from the trail so far, and the next record to count.
    metrics: Mutex<(Metrics, u64)>,
    /// The trail's counts as they were at each housekeeping round, for the console's chart.
    history: Mutex<std::collections::VecDeque<Sample>>,
}

impl App {
    /// Serves `store` with `runtime` (which records to `trail`), reachable by browsers and
    /// webhook senders at `public_url` (scheme, host and port, no path).
    pub fn new(
        runtime: Runtime,
        store: Backend,
        trail: AuditTrail,
        limits: ServeLimits,
        public_url: &str,
    ) -> Result<Self, StoreError> {
        Ok(Self {
            public_url: public_url.trim_end_matches('/').to_string(),
            trust: TrustCache::open(&*store)?,
            admission: Admission::new(limits.admission),
            members: Membership::new(trail.node(), limits.heartbeat),
            runs_queued: tokio::sync::Notify::new(),
            schedules_changed: tokio::sync::Notify::new(),
            sessions: crate::console::session::Sessions::default(),
            schedule_ticks_fired: AtomicU64::new(0),
            schedule_ticks_missed: AtomicU64::new(0),
            failures: KeyFailures::default(),
            callback_failures: FailureLimiter::default(),
            hook_refusals: FailureLimiter::default(),
            hook_refusals_unrecorded: AtomicU64::new(0),
            trusted_proxies: AllowRanges::none(),
            loaded: Mutex::new(HashMap::new()),
            metrics: Mutex::new((Metrics::default(), 0)),
            history: Mutex::new(std::collections::VecDeque::new()),
            runtime: runtime.with_audit(trail.clone()),
            store,
            trail,
            limits,
        })
    }

    /// The origin browsers reach this server at (`scheme://host[:port]`): a console form
    /// must come from it.
    pub(crate) fn public_origin(&self) -> &str {
        &self.public_url
    }

    /// Whether browsers reach this server over https (its cookies are then `Secure`).
    pub(crate) fn https(&self) -> bool {
        self.public_url.starts_with("https://")
    }

    /// Believes `X-Forwarded-For` and `Forwarded` from peers in `proxies` (none by default).
    pub fn with_trusted_proxies(mut self, proxies: AllowRanges) -> Self {
        self.trusted_proxies = proxies;
        self
    }

    /// The OAuth redirect URI this server registers with providers.
    pub(crate) fn redirect_uri(&self) -> String {
        format!("{}/v1/oauth/callback", self.public_url)
    }

    /// Where a person's browser starts the consent with one-time id `id`.
    pub(crate) fn consent_start_url(&self, id: &str) -> String {
        format!("{}/v1/oauth/start/{id}", self.public_url)
    }

    /// The OAuth consent service over this server's store, trail and token cache.
    pub(crate) fn connector(&self) -> Connector<'_> {
        Connector {
            store: &*self.store,
            trail: &self.trail,
            tokens: self.runtime.oauth(),
        }
    }

    /// The trusted keys as stored now.
    pub(crate) fn trust(&self) -> Result<Arc<TrustStore>, StoreError> {
        self.trust.current(&*self.store)
    }

    /// Runs `f` over this server's state on a blocking thread: the services write and flush the
    /// store and the audit trail synchronously, which no request worker may wait for.
    pub(crate) async fn blocking<R: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&App) -> R + Send + 'static,
    ) -> Result<R, ApiError> {
        let app = self.clone();
        tokio::task::spawn_blocking(move || f(&app))
            .await
            .map_err(ApiError::internal)
    }

    /// Runs `f` with an installer over this server's state, on a blocking thread (installs
    /// verify and compile).
    pub(crate) async fn installing<R: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Installer<'_>) -> R + Send + 'static,
    ) -> Result<R, ApiError> {
        self.blocking(move |app| {
            f(&Installer {
                runtime: &app.runtime,
                store: &*app.store,
                trail: &app.trail,
            })
        })
        .await
    }

    /// The installation, loaded: from the cache while its record and key are unchanged, else
    /// verified and loaded again. A refusal on trust grounds is recorded.
    pub(crate) async fn installed(
        self: &Arc<Self>,
        tenant: &TenantId,
        installation: &InstallationId,
    ) -> Result<Arc<Loaded>, ApiError> {
        let record = self
            .store
            .installation(tenant, installation)?
            .ok_or_else(|| ApiError::not_found(format!("installation {installation}")))?;
        let trusted = matches!(self.trust()?.lookup(&record.key), Trust::Trusted { .. });
        let slot = (tenant.clone(), installation.clone());
        if trusted
            && let Some(loaded) = self.cached().get(&slot)
            && loaded.record == record
        {
            return Ok(loaded.clone());
        }
        self.cached().remove(&slot);
        let bundle = record.bundle.clone();
        let loaded = self
            .installing(move |installer| -> Result<Loaded, InstallError> {
                let integration = installer.load_runnable(&record)?;
                let config = integration.validate_config(record.config.as_deref())?;
                Ok(Loaded {
                    record,
                    integration,
                    config,
                })
            })
            .await?;
        let loaded = match loaded {
            Ok(loaded) => Arc::new(loaded),
            Err(e) => return Err(self.refused(format!("{bundle}.airlock"), e).await),
        };
        self.cached().insert(slot, loaded.clone());
        Ok(loaded)
    }

    /// The API error for `error`, recorded first if it is a refusal on trust grounds (as the
    /// CLI records it) of `artifact` (the bundle's stored name, or the installation).
    pub(crate) async fn refused(
        self: &Arc<Self>,
        artifact: String,
        error: InstallError,
    ) -> ApiError {
        if let Some(reason) = error.trust_reason() {
            let reason = reason.to_string();
            let recorded = self
                .blocking(move |app| trust::record_refusal(&app.trail, &artifact, &reason))
                .await;
            match recorded {
                Err(e) => return e,
                Ok(Err(e)) => return e.into(),
                Ok(Ok(_)) => {}
            }
        }
        error.into()
    }

    /// Drops the loaded copy of an uninstalled installation.
    pub(crate) fn forget_installation(&self, tenant: &TenantId, installation: &InstallationId) {
        self.cached()
            .remove(&(tenant.clone(), installation.clone()));
    }

    /// Drops everything held for a deleted `tenant`: its loaded installations and OAuth
    /// tokens, so a tenant made again under the same id inherits nothing.
    pub(crate) async fn forget_tenant(&self, tenant: &TenantId) {
        self.cached().retain(|(t, _), _| t != tenant);
        self.runtime
            .oauth()
            .forget_where(|scope, _| scope.tenant == tenant.as_str())
            .await;
    }

    /// Counts the trail's new records and keeps a [`Sample`] of the totals (at most a day's).
    pub(crate) fn sample(&self) -> Result<(), ApiError> {
        let (ok, failed, security) = {
            let counted = self.counted()?;
            let (ok, failed) = counted.0.invocations();
            (ok, failed, counted.0.security_events())
        };
        let mut history = self.history.lock().unwrap_or_else(PoisonError::into_inner);
        history.push_back(Sample {
            at: airlock_runtime::clock::now_unix_ms(),
            ok,
            failed,
            security,
            running: u64::try_from(self.admission.running()).unwrap_or(u64::MAX),
        });
        while history.len() > SAMPLES_KEPT {
            history.pop_front();
        }
        Ok(())
    }

    /// The trail's metrics with its records since the last look counted.
    fn counted(&self) -> Result<std::sync::MutexGuard<'_, (Metrics, u64)>, ApiError> {
        let mut guard = self.metrics.lock().unwrap_or_else(PoisonError::into_inner);
        let (metrics, next) = &mut *guard;
        *next = metrics
            .count(&self.trail, *next)
            .map_err(ApiError::internal)?;
        Ok(guard)
    }

    /// The samples kept, oldest first.
    pub(crate) fn history(&self) -> Vec<Sample> {
        self.history
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .copied()
            .collect()
    }

    /// The OpenMetrics text: counts from the audit trail (new records counted on each scrape)
    /// and the server's own gauges, in one registry.
    pub(crate) fn metrics(&self) -> Result<String, ApiError> {
        let counted = self.counted()?;
        let mut registry = counted.0.registry();
        registry.register(
            "airlock_server_invocations_running",
            "Invocations running now",
            ConstGauge::new(u64::try_from(self.admission.running()).unwrap_or(u64::MAX)),
        );
        let (global, tenant) = self.admission.caps();
        registry.register(
            "airlock_cluster_nodes",
            "Live nodes sharing this node's store at its last heartbeat (1 on sled)",
            ConstGauge::new(u64::try_from(self.members.nodes()).unwrap_or(u64::MAX)),
        );
        registry.register(
            "airlock_server_max_concurrent",
            "This node's share of --max-concurrent among the live nodes",
            ConstGauge::new(u64::try_from(global).unwrap_or(u64::MAX)),
        );
        registry.register(
            "airlock_server_tenant_concurrent",
            "This node's share of --tenant-concurrent among the live nodes",
            ConstGauge::new(u64::try_from(tenant).unwrap_or(u64::MAX)),
        );
        registry.register(
            "airlock_server_busy",
            "Invocation requests refused with 429 (queue full)",
            ConstCounter::new(self.admission.refused()),
        );
        registry.register(
            "airlock_audit_available",
            "Whether the audit trail takes records (0 means every invocation is refused)",
            ConstGauge::new(u64::from(self.trail.failure().is_none())),
        );
        registry.register(
            "airlock_audit_lost_races",
            "Audit appends that found their sequence number taken by another node and chained again",
            ConstCounter::new(self.trail.lost_races()),
        );
        registry.register(
            "airlock_webhook_refusals_unrecorded",
            "Webhook deliveries refused beyond an endpoint's per-minute audit limit (counted, not recorded)",
            ConstCounter::new(self.hook_refusals_unrecorded.load(Ordering::Relaxed)),
        );
        registry.register(
            "airlock_schedule_ticks_fired",
            "Schedule ticks this node fired (each queued one run)",
            ConstCounter::new(self.schedule_ticks_fired.load(Ordering::Relaxed)),
        );
        registry.register(
            "airlock_schedule_ticks_skipped",
            "Schedule ticks this node found missed while no node ran, too late to run, or refused by a full queue",
            ConstCounter::new(self.schedule_ticks_missed.load(Ordering::Relaxed)),
        );
        exposition(&registry).map_err(ApiError::internal)
    }

    /// After the last request: leaves the cluster and signs a final checkpoint.
    pub(crate) fn close(&self) {
        self.members.leave(&*self.store);
        if let Err(e) = self.trail.checkpoint() {
            tracing::error!(error = %e, "cannot sign the final audit checkpoint");
        }
    }

    fn cached(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<(TenantId, InstallationId), Arc<Loaded>>> {
        self.loaded.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The trusted keys, read again only when the store's trust revision changed.
struct TrustCache {
    current: Mutex<(u64, Arc<TrustStore>)>,
}

impl TrustCache {
    fn open(store: &dyn airlock_store::Trust) -> Result<Self, StoreError> {
        Ok(Self {
            current: Mutex::new(Self::read(store)?),
        })
    }

    /// The revision, read first (`Trust::trust_revision`), and the keys.
    fn read(store: &dyn airlock_store::Trust) -> Result<(u64, Arc<TrustStore>), StoreError> {
        let revision = store.trust_revision()?;
        let keys = TrustStore::from_keys(store.trusted_keys()?);
        Ok((revision, Arc::new(keys)))
    }

    fn current(&self, store: &dyn airlock_store::Trust) -> Result<Arc<TrustStore>, StoreError> {
        let revision = store.trust_revision()?;
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        if current.0 != revision {
            *current = Self::read(store)?;
        }
        Ok(current.1.clone())
    }
}

impl ProxyTrust for Arc<App> {
    /// Peers whose forwarding headers name the client.
    fn trusted_proxies(&self) -> &AllowRanges {
        &self.trusted_proxies
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::TrustCache;
    use airlock_runtime::bundle::{PublicKey, SigningKey, Trust};
    use airlock_store::{Store, Trust as _};

    /// Changes made through the store by anyone else (another node sharing it) show at the next
    /// lookup; while nothing changes, the keys read once are kept.
    #[test]
    fn the_trust_cache_follows_every_change_of_the_store() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), None).expect("store");
        let cache = TrustCache::open(&store).expect("cache");
        let key = PublicKey::from_verifying_key(SigningKey::from_bytes(&[1; 32]).verifying_key());
        let verdict = |cache: &TrustCache| {
            let trust = cache.current(&store).expect("trust");
            match trust.lookup(key.key_id()) {
                Trust::Trusted { .. } => "trusted",
                Trust::Revoked => "revoked",
                Trust::Unknown => "unknown",
            }
        };
        assert_eq!(verdict(&cache), "unknown");
        store
            .add_trusted_key(&key, "Acme", 1)
            .expect("add")
            .expect("added");
        assert_eq!(verdict(&cache), "trusted");
        let kept = cache.current(&store).expect("trust");
        assert!(Arc::ptr_eq(&kept, &cache.current(&store).expect("trust")));
        store
            .revoke_trusted_key(key.key_id(), 2)
            .expect("revoke")
            .expect("revoked");
        assert_eq!(verdict(&cache), "revoked");
    }
}
