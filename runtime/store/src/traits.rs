//! The storage traits: one per concern, each carrying the guarantees the services rely on.
//!
//! The services (`airlock-platform`), the audit trail (`airlock-audit`), the server and the CLI
//! see these traits, not sled: [`Store`](crate::Store) implements them on the embedded
//! database, and a second backend implements them and passes the same
//! [`conformance`](crate::conformance) suite unchanged. Every write is durable when the call
//! returns ([`AuditLog`]'s at its flush). The guarantees named "Guarantee" below hold under
//! concurrent callers, in one process or many.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use airlock_host_api::credentials::vault::MasterKey;
use airlock_host_api::credentials::{ConnectionTokens, CredentialType, Secret, SecretSource};
use airlock_host_api::kv::KvBackend;
use airlock_policy::apikey::{ApiKeyRecord, KeyRefusal, Suspension};
use airlock_policy::webhook::{SigningKey, WebhookSecret};
use airlock_runtime::bundle::PublicKey;
use airlock_runtime::ids::{EndpointId, InstallationId, TenantId, UserId};
use airlock_runtime::trust::{TrustError, TrustedKey};

use crate::StoreError;
use crate::records::{
    ConnectionInfo, ConnectionKey, CredentialInfo, EndpointInfo, InstallationRecord, KvUsage,
    NewEndpoint, PendingConsent, Quarantine, SetOutcome, Stored, TakenState, TenantInfo,
};
use crate::runs::{ClaimedRun, NewRun, Requeued, RunEnd, RunQuery, RunRecord};
use crate::schedules::{Fired, NewSchedule, ScheduleRecord, Tick};

/// Tenants: the unit every other record belongs to.
pub trait Tenants: Send + Sync {
    /// Creates `tenant`; refused if it exists.
    fn create_tenant(&self, tenant: &TenantId) -> Result<TenantInfo, StoreError>;

    /// Whether `tenant` exists.
    fn tenant_exists(&self, tenant: &TenantId) -> Result<bool, StoreError>;

    /// Every tenant, by id.
    fn tenants(&self) -> Result<Vec<TenantInfo>, StoreError>;

    /// Deletes `tenant`: its data key (so its sealed values become unreadable at once) and its
    /// API keys, then its kv values, webhook endpoints, connections, installations and
    /// credential records. Returns false if there was no such tenant.
    fn delete_tenant(&self, tenant: &TenantId) -> Result<bool, StoreError>;

    /// Re-wraps every tenant's data key under `new`, the master key replacing the one the
    /// store opened with (docs/deploy.md, "Rotating the master key"). Guarantee: a key `new`
    /// already opens is left as it is, so a rotation interrupted and run again finishes; on
    /// PostgreSQL every key (and the master key check) changes in one transaction. Returns how
    /// many were re-wrapped.
    fn rewrap_data_keys(&self, new: &Arc<MasterKey>) -> Result<u64, StoreError>;
}

/// API key records (hashes only) for Airlock's own API.
pub trait ApiKeys: Send + Sync {
    /// Stores `record` (created or replaced) and flushes it.
    fn put_api_key(&self, record: &ApiKeyRecord) -> Result<(), StoreError>;

    /// The key record with `id`.
    fn api_key(&self, id: &str) -> Result<Option<ApiKeyRecord>, StoreError>;

    /// Every key record, or `tenant`'s only.
    fn api_keys(&self, tenant: Option<&TenantId>) -> Result<Vec<ApiKeyRecord>, StoreError>;

    /// Marks key `id` revoked at `now`; false if there is no such key (or it was deleted
    /// meanwhile: a revoke never brings a key back). A revoke is never undone by a concurrent
    /// [`Self::authenticate`].
    fn revoke_api_key(&self, id: &str, now: u64) -> Result<bool, StoreError>;

    /// Suspends key `id` (`Some`) or lifts its suspension (`None`): `None` if there is no such
    /// key, else whether it changed. Guarantee: a suspended key fails [`Self::authenticate`]
    /// from the moment this returns; suspending again keeps the first suspension.
    fn suspend_api_key(
        &self,
        id: &str,
        suspension: Option<Suspension>,
    ) -> Result<Option<bool>, StoreError>;

    /// Checks a presented key at `now`: its record on success (with `last_used` updated to the
    /// minute), else why it was refused. An unknown id and a wrong secret are the same refusal.
    ///
    /// Guarantee (compare-and-set): `last_used` is written only over the record that was
    /// checked; if a revoke or deletion came in between, nothing is written (the revoke
    /// stands, the key stays gone) and the key is checked again against what is stored now.
    fn authenticate(
        &self,
        presented: &str,
        now: u64,
    ) -> Result<Result<ApiKeyRecord, KeyRefusal>, StoreError>;
}

/// Installed bundles with their grants, sealed config and pending upgrades.
pub trait Installations: Send + Sync {
    /// The installation, if it exists.
    fn installation(
        &self,
        tenant: &TenantId,
        installation: &InstallationId,
    ) -> Result<Option<InstallationRecord>, StoreError>;

    /// Stores `record` (created or replaced), its config sealed, and flushes it. Guarantee: the
    /// stored record's quarantine is kept, whatever `record` says (only
    /// [`Self::set_quarantine`] changes it), in one atomic step: a change built from an older
    /// read neither lifts a quarantine set meanwhile nor brings back one lifted.
    fn put_installation(&self, record: &InstallationRecord) -> Result<(), StoreError>;

    /// Quarantines the installation (`Some`) or lifts its quarantine (`None`), changing nothing
    /// else of its record, in one atomic step: `None` if there is no such installation, else
    /// the record as it is now and whether this changed it (quarantining a quarantined one keeps
    /// its first quarantine).
    fn set_quarantine(
        &self,
        tenant: &TenantId,
        installation: &InstallationId,
        quarantine: Option<Quarantine>,
    ) -> Result<Option<(InstallationRecord, bool)>, StoreError>;

    /// Deletes the installation's record (what it owns goes first: the uninstall service);
    /// false if there was none.
    fn delete_installation(
        &self,
        tenant: &TenantId,
        installation: &InstallationId,
    ) -> Result<bool, StoreError>;

    /// Every installation, or `tenant`'s only.
    fn installations(
        &self,
        tenant: Option<&TenantId>,
    ) -> Result<Vec<InstallationRecord>, StoreError>;

    /// Keeps `bytes` as a bundle (once per content); returns its hex SHA-256.
    fn put_bundle(&self, bytes: &[u8]) -> Result<String, StoreError>;

    /// The bundle with hex SHA-256 `digest` as [`Self::put_bundle`] kept it, refused past
    /// the bundle size cap; `None` if there is none.
    fn bundle(&self, digest: &str) -> Result<Option<Vec<u8>>, StoreError>;

    /// Where the bundle with `digest` is kept, to name it in messages.
    fn bundle_origin(&self, digest: &str) -> PathBuf;
}

/// Sealed credential values of installations. Values leave only through [`Storage::secrets`],
/// to the egress broker.
pub trait Credentials: Send + Sync {
    /// Seals and stores `secret` as credential `name` of the installation, replacing any
    /// earlier value; flushed before it returns.
    fn set_credential(
        &self,
        tenant: &TenantId,
        installation: &InstallationId,
        name: &str,
        origins: Vec<String>,
        secret: &Secret,
        credential_type: CredentialType,
    ) -> Result<SetOutcome, StoreError>;

    /// Replaces the value of an existing credential, keeping its type and origins.
    fn reseal_credential(
        &self,
        tenant: &TenantId,
        installation: &InstallationId,
        name: &str,
        secret: &Secret,
    ) -> Result<(), StoreError>;

    /// The installation's credentials, by name, without values.
    fn list_credentials(
        &self,
        tenant: &TenantId,
        installation: &InstallationId,
    ) -> Result<Vec<CredentialInfo>, StoreError>;

    /// Deletes credential `name`; false when there was none.
    fn delete_credential(
        &self,
        tenant: &TenantId,
        installation: &InstallationId,
        name: &str,
    ) -> Result<bool, StoreError>;
}

/// Webhook endpoints with sealed signing secrets, and the delivery ids seen.
pub trait Webhooks: Send + Sync {
    /// Stores a new endpoint with `secret`; flushed before it returns.
    fn create_webhook(
        &self,
        new: NewEndpoint<'_>,
        secret: &WebhookSecret,
        now: u64,
    ) -> Result<EndpointInfo, StoreError>;

    /// The endpoint `id` if it belongs to `tenant`.
    fn webhook(
        &self,
        tenant: &TenantId,
        id: &EndpointId,
        now: u64,
    ) -> Result<Option<EndpointInfo>, StoreError>;

    /// The tenant's endpoints.
    fn webhooks_of(&self, tenant: &TenantId, now: u64) -> Result<Vec<EndpointInfo>, StoreError>;

    /// Whether endpoint `id` exists (of any tenant): a delivery to none is refused before its
    /// body is read.
    fn webhook_exists(&self, id: &EndpointId) -> Result<bool, StoreError>;

    /// The endpoint `id` (of any tenant: a delivery names only the endpoint) with the signing
    /// keys of its live secrets.
    fn webhook_keys(
        &self,
        id: &EndpointId,
        now: u64,
    ) -> Result<Option<(EndpointInfo, Vec<SigningKey>)>, StoreError>;

    /// Whether another live endpoint secret of `tenant` equals `secret` (WH-09).
    fn webhook_secret_in_use(
        &self,
        tenant: &TenantId,
        secret: &WebhookSecret,
        now: u64,
    ) -> Result<bool, StoreError>;

    /// Makes `secret` the endpoint's newest; the previous one verifies until `now + overlap`
    /// (older ones are dropped). `None` if `tenant` has no such endpoint.
    fn rotate_webhook(
        &self,
        tenant: &TenantId,
        id: &EndpointId,
        secret: &WebhookSecret,
        overlap: u64,
        now: u64,
    ) -> Result<Option<EndpointInfo>, StoreError>;

    /// Deletes the endpoint and its delivery ids; false if `tenant` has no such endpoint.
    fn delete_webhook(&self, tenant: &TenantId, id: &EndpointId) -> Result<bool, StoreError>;

    /// Records delivery `delivery` to endpoint `id`, remembered until `now + retention`;
    /// false if it was already received and is still remembered (a replay).
    ///
    /// Guarantee (first writer wins): of concurrent calls for one delivery, exactly one gets
    /// true, so a replayed delivery never runs twice.
    fn first_delivery(
        &self,
        id: &EndpointId,
        delivery: &str,
        retention: u64,
        now: u64,
    ) -> Result<bool, StoreError>;

    /// Forgets delivery id `delivery` of endpoint `id` (its run failed on our side), so the
    /// sender's retry is taken as new.
    fn release_delivery(&self, id: &EndpointId, delivery: &str) -> Result<(), StoreError>;

    /// Drops delivery ids whose retention ended; returns how many.
    fn purge_deliveries(&self, now: u64) -> Result<usize, StoreError>;
}

/// OAuth connections: the tokens a consent produced, sealed, with a revision each.
pub trait Connections: Send + Sync {
    /// The reference that stands for `user` of `tenant` where a user id must not be stored in
    /// clear (the connections' keys, the audit trail): a keyed hash under the tenant's data key
    /// (`u-` and 32 hex digits), the same while that key lives, meaningless once it is destroyed.
    fn user_ref(&self, tenant: &TenantId, user: &UserId) -> Result<String, StoreError>;

    /// Stores the tokens of a new connection (a consent just made), connected as of `now`.
    fn put_connection(
        &self,
        key: ConnectionKey<'_>,
        tokens: &ConnectionTokens,
        now: u64,
    ) -> Result<(), StoreError>;

    /// Stores refreshed tokens in place of revision `replaces`; false (nothing written) when
    /// the connection was removed or replaced meanwhile, so a refresh that was in flight never
    /// resurrects a removed connection or overwrites a newer consent.
    ///
    /// Guarantee (compare-and-set on the revision): of concurrent replacements of one
    /// revision, at most one is written.
    fn replace_connection(
        &self,
        key: ConnectionKey<'_>,
        replaces: u64,
        tokens: &ConnectionTokens,
        now: u64,
    ) -> Result<bool, StoreError>;

    /// The connection's tokens and status, opened; `None` if there is none.
    fn connection(&self, key: ConnectionKey<'_>) -> Result<Option<ConnectionTokens>, StoreError>;

    /// Marks revision `replaces` of the connection as needing re-consent; false if the
    /// connection is gone or was replaced meanwhile (a new consent is not marked for the old
    /// one's refused token).
    fn mark_needs_reconsent(
        &self,
        key: ConnectionKey<'_>,
        replaces: u64,
        now: u64,
    ) -> Result<bool, StoreError>;

    /// The installation's connections, for every credential and user, by credential and user.
    fn connections_of(
        &self,
        tenant: &TenantId,
        installation: &InstallationId,
    ) -> Result<Vec<ConnectionInfo>, StoreError>;

    /// Removes the connection; false if there was none.
    fn delete_connection(&self, key: ConnectionKey<'_>) -> Result<bool, StoreError>;
}

/// Consents under way: offered start links and the states a browser carries to the provider.
pub trait Consents: Send + Sync {
    /// Keeps `consent` to be started once, by the browser that opens the link with `id`.
    fn offer_consent(&self, id: &str, consent: &PendingConsent) -> Result<(), StoreError>;

    /// Takes the consent offered under `id`, removed whatever it holds; `None` if unknown or
    /// already taken. The caller checks its expiry.
    ///
    /// Guarantee (first writer wins): of concurrent takes of one `id`, exactly one gets it.
    fn take_offered_consent(&self, id: &str) -> Result<Option<PendingConsent>, StoreError>;

    /// Keeps a consent under way under `state`, its PKCE `verifier` sealed, for the browser
    /// holding the cookie `nonce`.
    fn begin_consent(
        &self,
        key: ConnectionKey<'_>,
        consent: PendingConsent,
        state: &str,
        verifier: &str,
        nonce: &str,
    ) -> Result<(), StoreError>;

    /// Takes the consent under way for `state`, for the browser that came back with `cookie`
    /// (its nonce): removed whatever it holds, so no state is used twice, not even after a
    /// refusal. Whatever it found, the consent comes back whole (its user opened).
    ///
    /// Guarantee (first writer wins): of concurrent takes of one `state`, exactly one finds it.
    fn take_consent(
        &self,
        state: &str,
        cookie: Option<&str>,
        now: u64,
    ) -> Result<TakenState, StoreError>;

    /// Drops consents (offered or under way) whose ten minutes are over; returns how many.
    fn purge_consents(&self, now: u64) -> Result<usize, StoreError>;

    /// Drops the installation's consents, offered or under way (it is being uninstalled:
    /// none may complete, not even for a new installation of the same name); how many.
    fn delete_consents(
        &self,
        tenant: &TenantId,
        installation: &InstallationId,
    ) -> Result<usize, StoreError>;
}

/// Guests' key-value namespaces, sealed, with usage kept for quotas.
pub trait KvNamespaces: Send + Sync {
    /// The namespace of one installation, as its guests' `kv` interface uses it.
    ///
    /// Guarantee: `set` checks the quota in the same transaction as the write, so concurrent
    /// writers never pass the quota together.
    fn kv(&self, tenant: &TenantId, installation: &InstallationId) -> Arc<dyn KvBackend>;

    /// What the installation's namespace holds, as its quota counts it.
    fn kv_usage(
        &self,
        tenant: &TenantId,
        installation: &InstallationId,
    ) -> Result<KvUsage, StoreError>;

    /// Deletes every entry of the installation's namespace and its usage; how many entries.
    fn delete_kv(
        &self,
        tenant: &TenantId,
        installation: &InstallationId,
    ) -> Result<u64, StoreError>;
}

/// The publisher keys this host trusts, shared by every node of a cluster: a revocation made
/// through one node stops the next invocation on every other. Changes keep
/// [`TrustStore`](airlock_runtime::trust::TrustStore)'s rules (one publisher per key, a revoked
/// key never comes back), which a backend applies by making its change through one.
pub trait Trust: Send + Sync {
    /// Every key, revoked ones included, in the order they were added.
    fn trusted_keys(&self) -> Result<Vec<TrustedKey>, StoreError>;

    /// Trusts `key` for `publisher` as of `now`; the key as stored, else why it was refused: a
    /// key whose id is stored (trusted or revoked) is never added again, nor replaced.
    ///
    /// Guarantee (first writer wins): of concurrent adds of one key, exactly one is stored; adds
    /// of different keys are all kept.
    fn add_trusted_key(
        &self,
        key: &PublicKey,
        publisher: &str,
        now: u64,
    ) -> Result<Result<TrustedKey, TrustError>, StoreError>;

    /// Revokes key `key_id` as of `now`; the key as stored, else why it was refused. A revoke
    /// stands: a key revoked before keeps its first revocation.
    fn revoke_trusted_key(
        &self,
        key_id: &str,
        now: u64,
    ) -> Result<Result<TrustedKey, TrustError>, StoreError>;

    /// A number that changes whenever the keys change and stays the same while they do not:
    /// one cheap read, so a node can keep the keys and read them again only when it changed.
    /// Read it before the keys, so a change made in between shows at the next check.
    fn trust_revision(&self) -> Result<u64, StoreError>;
}

/// The serving nodes that share this store, each known by an instance id of its own process.
/// Nodes divide the fairness caps among the live ones (docs/deploy.md "Fairness caps in a
/// cluster"); time is the store's clock, so the nodes' clocks need not agree.
pub trait Members: Send + Sync {
    /// Marks `instance` alive now, forgets every instance not marked within `ttl`, and returns
    /// the live ones sorted (`instance` among them).
    fn heartbeat(&self, instance: &str, ttl: Duration) -> Result<Vec<String>, StoreError>;

    /// Forgets `instance` at once (a clean stop), so the others take its share at their next
    /// heartbeat rather than after its `ttl`.
    fn leave(&self, instance: &str) -> Result<(), StoreError>;
}

/// The durable work queue and the run history ([`crate::runs`]). At least once: a run whose
/// claim lapses (its worker died) is claimed again.
pub trait Runs: Send + Sync {
    /// Queues `new`, its `input` sealed with the tenant's data key; refused if the id is taken
    /// or the tenant has `new.pending_limit` runs queued or running ([`StoreError::QueueFull`]).
    fn enqueue_run(&self, new: &NewRun<'_>, input: &[u8]) -> Result<RunRecord, StoreError>;

    /// Claims the run that woke first by `now` (queued and due, or running with its claim
    /// lapsed) for `lease`, its input opened. Guarantee: each claim goes to one caller.
    fn claim_run(&self, now: u64, lease: Duration) -> Result<Option<ClaimedRun>, StoreError>;

    /// Ends attempt `claim` of run `id` as `end` at `now`; false, and nothing written, when
    /// the claim no longer holds (it lapsed and the run was claimed again). A run that
    /// succeeded or failed loses its input here.
    fn finish_run(&self, id: &str, claim: u32, end: &RunEnd, now: u64) -> Result<bool, StoreError>;

    /// `tenant`'s run `id`.
    fn run(&self, tenant: &TenantId, id: &str) -> Result<Option<RunRecord>, StoreError>;

    /// `tenant`'s runs as `query` asks, oldest first, read through an index by creation time.
    fn runs(&self, tenant: &TenantId, query: &RunQuery) -> Result<Vec<RunRecord>, StoreError>;

    /// Queues `tenant`'s dead or failed run `id` again, while its input is kept and the tenant
    /// has fewer than `pending_limit` runs queued or running.
    fn retry_run(
        &self,
        tenant: &TenantId,
        id: &str,
        now: u64,
        pending_limit: u64,
    ) -> Result<Requeued, StoreError>;

    /// Destroys the inputs of dead runs last changed before `before`; how many.
    fn purge_run_inputs(&self, before: u64) -> Result<usize, StoreError>;

    /// When the next run wakes, if any run waits (a worker sleeps until then).
    fn next_run_wake(&self) -> Result<Option<u64>, StoreError>;

    /// Deletes every run of the installation, queued or kept, with its input; how many.
    fn delete_runs(
        &self,
        tenant: &TenantId,
        installation: &InstallationId,
    ) -> Result<u64, StoreError>;

    /// Calls `woken` whenever any process sharing the store queues a run, for as long as the
    /// store lives, so idle workers start at once rather than at their next look. On sled,
    /// which one process opens, that process wakes its own workers: nothing to watch.
    fn watch_runs(&self, woken: Arc<dyn Fn() + Send + Sync>) {
        drop(woken);
    }
}

/// Cron schedules ([`crate::schedules`]): each tick fires once across every process sharing
/// the store.
pub trait Schedules: Send + Sync {
    /// Creates `new` with its `input` sealed with the tenant's data key; refused if the id is
    /// taken.
    fn create_schedule(
        &self,
        new: &NewSchedule<'_>,
        input: &[u8],
    ) -> Result<ScheduleRecord, StoreError>;

    /// `tenant`'s schedule `id`.
    fn schedule(&self, tenant: &TenantId, id: &str) -> Result<Option<ScheduleRecord>, StoreError>;

    /// `tenant`'s schedules, or one installation's, by id.
    fn schedules(
        &self,
        tenant: &TenantId,
        installation: Option<&InstallationId>,
    ) -> Result<Vec<ScheduleRecord>, StoreError>;

    /// Pauses `tenant`'s schedule `id`, or resumes it to fire next at `next_tick`.
    fn pause_schedule(
        &self,
        tenant: &TenantId,
        id: &str,
        paused: bool,
        next_tick: u64,
        now: u64,
    ) -> Result<Option<ScheduleRecord>, StoreError>;

    /// Deletes `tenant`'s schedule `id` with its input; whether it was there.
    fn delete_schedule(&self, tenant: &TenantId, id: &str) -> Result<bool, StoreError>;

    /// Deletes every schedule of the installation; how many.
    fn delete_schedules(
        &self,
        tenant: &TenantId,
        installation: &InstallationId,
    ) -> Result<u64, StoreError>;

    /// Schedules not paused whose next tick is at or before `now`, earliest first, at most
    /// `limit`.
    fn due_schedules(&self, now: u64, limit: usize) -> Result<Vec<ScheduleRecord>, StoreError>;

    /// Handles `tick` if its schedule still waits for it: advances the schedule and queues
    /// the tick's run with the schedule's input, in one write. Guarantee: of any number of
    /// callers handling the same tick, one gets `Queued` or `Skipped`, the rest `Taken`.
    fn fire_schedule(&self, tick: &Tick<'_>) -> Result<Fired, StoreError>;

    /// When the next schedule is due, if any waits.
    fn next_schedule_tick(&self) -> Result<Option<u64>, StoreError>;
}

/// One entry of the audit index: its key and its value (empty for most).
pub type IndexEntry<'a> = (&'a [u8], &'a [u8]);

/// One record for [`AuditLog::append_audit`]: its sequence number, its stored line and its
/// index entries.
#[derive(Debug, Clone, Copy)]
pub struct AuditAppend<'a> {
    pub seq: u64,
    pub line: &'a [u8],
    pub index: &'a [IndexEntry<'a>],
}

/// Rows read in order, each its own result (a backend can fail part way).
pub type Rows<T> = Box<dyn Iterator<Item = Result<T, StoreError>> + Send>;

/// The audit trail's storage: records by sequence number, an index pointing at them, and the
/// chain's metadata. What the records and index keys mean is `airlock-audit`'s business; this
/// keeps bytes, in order.
///
/// Unlike the other traits, writes here become durable only at [`Self::flush_audit`]: the trail
/// writes many records, then makes them durable with one flush they share (group commit,
/// docs/audit.md "Durable before effect").
pub trait AuditLog: Send + Sync {
    /// The chain's id: the stored one, else `fresh`, stored and durable before it returns.
    ///
    /// Guarantee (first writer wins): of concurrent callers, one stores its id and every caller
    /// gets that one, so a chain is never named twice.
    fn audit_chain(&self, fresh: &str) -> Result<String, StoreError>;

    /// Writes `records`, each with its index entries; refused with [`StoreError::Exists`] if
    /// any of their numbers is stored already. The trail hands over every record a group
    /// commit gathered in one call: an atomic write costs sled two synchronous log writes
    /// however many records it holds, and PostgreSQL one commit.
    ///
    /// Guarantees: the records and their entries are written together or not at all, and no
    /// reader sees a record without its entries (a query finds every record through the
    /// index); a stored record is never overwritten (append-only: a refused write writes
    /// nothing).
    fn append_audit(&self, records: &[AuditAppend<'_>]) -> Result<(), StoreError>;

    /// Writes index entries alone, all or none (to index records written before the index).
    fn put_audit_index(&self, entries: &[IndexEntry<'_>]) -> Result<(), StoreError>;

    /// Makes everything written so far durable (records, index and metadata). Blocking: it is
    /// called from a blocking thread, never awaited on an I/O thread (see `airlock-audit`'s
    /// trail module).
    fn flush_audit(&self) -> Result<(), StoreError>;

    /// Record `seq`, as written.
    fn audit_record(&self, seq: u64) -> Result<Option<Stored>, StoreError>;

    /// The record with the highest sequence number.
    fn last_audit_record(&self) -> Result<Option<(u64, Stored)>, StoreError>;

    /// The records from sequence number `first` on, in sequence order.
    fn audit_records(&self, first: u64) -> Rows<(u64, Stored)>;

    /// The value of index entry `key`.
    fn audit_index_entry(&self, key: &[u8]) -> Result<Option<Stored>, StoreError>;

    /// The index entries whose keys start with `prefix`, from key `from` on, in key order
    /// (bytewise).
    fn audit_index(&self, prefix: &[u8], from: &[u8]) -> Rows<(Stored, Stored)>;

    /// The index entry with the highest key starting with `prefix`.
    fn last_audit_index_entry(&self, prefix: &[u8])
    -> Result<Option<(Stored, Stored)>, StoreError>;

    /// How many records the signed checkpoints cover (0 before the first).
    fn audit_checkpointed(&self) -> Result<u64, StoreError>;

    /// Records that the signed checkpoints cover `count` records (durable at the next flush).
    ///
    /// Guarantee (never lowered): a `count` below the stored one changes nothing, so a node
    /// that signed an older head after another signed a newer one cannot hide the newer one
    /// (docs/audit.md, "Many nodes").
    fn set_audit_checkpointed(&self, count: u64) -> Result<(), StoreError>;
}

/// Every concern at once: what the services hold (as `Arc<dyn Storage>`).
pub trait Storage:
    Tenants
    + ApiKeys
    + Installations
    + Credentials
    + Webhooks
    + Connections
    + Consents
    + KvNamespaces
    + Trust
    + AuditLog
    + Members
    + Runs
    + Schedules
{
    /// The installation's credentials as the egress broker reads them: values opened only to
    /// be injected, OAuth connections refreshed in place.
    fn secrets(&self, tenant: &TenantId, installation: &InstallationId) -> Arc<dyn SecretSource>;

    /// Whether the backend answers and holds the schema this build writes (`false`: it answers,
    /// but its schema is older or newer). One cheap read: readiness probes call it.
    fn schema_current(&self) -> Result<bool, StoreError>;
}
