//! [`AuditTrail`]: the append-only, hash-chained record store, and its checkpoints. It keeps its
//! records in an [`AuditLog`] (the sled store, in practice), which promises what this module
//! leans on: a record and its index entries land together, no record is overwritten, and a
//! flush makes everything written so far durable.
//!
//! Appends are serialized (one chain head), then flushed to disk before they are acknowledged:
//! concurrent appenders are committed as a group, one store write and one flush for all of
//! them, on a blocking thread ([`append`]; sled's own `flush_async` deadlocked under concurrent
//! invocations when every sled I/O thread waited on a flush, so [`AuditLog::flush_audit`] is
//! blocking). The first write or flush that fails marks the trail
//! failed, and every later append is refused, so nothing that needs a record (an egress
//! request, an invocation result) happens without one (AL-07). A failed trail tries again at
//! most once a second ([`RETRY`]): once the store flushes again (the disk has room, the
//! database is back), it reads the chain's end back from what is durable and chains after it.
//! Records written but never flushed may be gone then; none of them was acknowledged.
//!
//! Several processes (nodes) may append to one chain in a shared store: a record's sequence
//! number is taken by whoever writes it first ([`AuditLog::append_audit`] refuses a taken one),
//! and a node that loses the race reads the chain's end again and chains its records after it
//! (docs/audit.md, "Many nodes"). Each record names the [`Node`] that wrote it.
//!
//! Every event is stored in its trail form ([`AuditEvent::for_trail`]): egress targets replaced
//! by a hash keyed with the trail's target key, every string bounded. A group's records are
//! written in one transaction with their index entries, which reads use (`index`,
//! [`super::query`]).

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};
use std::time::{Duration, Instant};

use airlock_host_api::audit::{AppendFuture, AuditEvent, AuditSink, AuditUnavailable};
use hmac::{Hmac, Mac as _};
use sha2::Sha256;
use zeroize::Zeroizing;

use airlock_bundle::keys::PublicKey;

mod append;

use super::AuditError;
use super::checkpoint::{AuditDir, Checkpoint, CheckpointSigner};
use super::index;
use super::node::Node;
use super::record::{self, Envelope, GENESIS};
use super::verify;
use airlock_runtime::clock;
use airlock_store::{AuditLog, IndexEntry};

/// A checkpoint is due after this many records…
pub const CHECKPOINT_RECORDS: u64 = 1_000;
/// …or this long after the previous one, whichever comes first.
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(60);

/// How many times an append chains again after other nodes took its sequence number before it
/// fails the trail, as any write it cannot make does: each lost race means another node
/// appended, so only a cluster that never lets this node in runs out.
const ATTEMPTS: u32 = 64;

/// How long a failed trail waits before it tries the store again.
const RETRY: Duration = Duration::from_secs(1);

/// The audit trail of one data dir. Cheap to clone; clones share the chain head.
#[derive(Clone)]
pub struct AuditTrail {
    inner: Arc<Inner>,
}

struct Inner {
    log: Arc<dyn AuditLog>,
    /// The events waiting for the next group commit.
    queue: Mutex<Vec<append::Queued>>,
    /// Whether an appender is committing the queue for everyone.
    committing: AtomicBool,
    /// Counts the group commits done, for the appenders waiting on one.
    rounds: tokio::sync::watch::Sender<u64>,
    chain: String,
    /// Named in every record this trail writes.
    node: Node,
    dir: AuditDir,
    /// The checkpoint key, and which file it was read from.
    signer: Mutex<Signer>,
    /// Keys the hashes recorded in place of egress targets.
    target_key: Zeroizing<[u8; 32]>,
    state: Mutex<State>,
    /// Sees every record this process writes, as it is written (the alert rules).
    observer: std::sync::OnceLock<Arc<dyn Observer>>,
}

/// Sees each record as this process writes it, in its trail form, after it is in the chain
/// and before it is durable. Called outside the trail's lock, on the writer's thread: it must
/// be quick and must not append (hand the work to a task instead).
pub trait Observer: Send + Sync {
    fn observe(&self, envelope: &Envelope);
}

/// The checkpoint key as read from `audit.key`, with the file's identity (device and inode):
/// a rotation by another process renames a new file over it, and the next checkpoint is signed
/// with the new key ([`crate::keychain`]).
struct Signer {
    signer: CheckpointSigner,
    file: Option<(u64, u64)>,
}

impl Signer {
    fn read(dir: &AuditDir) -> Result<Self, AuditError> {
        let file = key_file_id(dir);
        Ok(Self {
            signer: dir.signer()?,
            // Made by `signer` if it was missing: identify what it read.
            file: file.or_else(|| key_file_id(dir)),
        })
    }
}

/// Which file `audit.key` is now.
fn key_file_id(dir: &AuditDir) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata(dir.path().join(crate::checkpoint::KEY_FILE))
        .ok()
        .map(|meta| (meta.dev(), meta.ino()))
}

/// Why a trail stopped taking records, and when it last tried the store again.
struct Failed {
    reason: String,
    tried: Instant,
}

/// The chain as this node last wrote or read it: `head` is always the hash of record
/// `next - 1`, though other nodes may have appended since.
struct State {
    next: u64,
    head: [u8; 32],
    last_ms: u64,
    checkpointed: u64,
    checkpoint_at: Instant,
    /// The highest record time so far (ms), which the time index is marked up to.
    time_mark: u64,
    /// Why the trail stopped taking records, while it does.
    failed: Option<Failed>,
    /// Appends that found their sequence number taken by another node and chained again.
    lost_races: u64,
}

impl AuditTrail {
    /// [`Self::open_as`] this host's name ([`Node::host`]).
    pub fn open(
        log: &(impl AuditLog + Clone + 'static),
        dir: AuditDir,
    ) -> Result<Self, AuditError> {
        Self::open_as(log, dir, Node::host())
    }

    /// Opens the trail kept in `log` (a store handle, cloned), signing checkpoints with the key
    /// in `dir` and naming `node` in every record it writes.
    ///
    /// A damaged last record does not stop the trail: new records chain onto the hash it
    /// carries, so `airlock audit verify` still points at the damage.
    pub fn open_as(
        log: &(impl AuditLog + Clone + 'static),
        dir: AuditDir,
        node: Node,
    ) -> Result<Self, AuditError> {
        Self::open_shared(Arc::new(log.clone()), dir, node)
    }

    /// [`Self::open_as`] on a log already shared (a store chosen at run time).
    pub fn open_shared(
        log: Arc<dyn AuditLog>,
        dir: AuditDir,
        node: Node,
    ) -> Result<Self, AuditError> {
        let chain = log.audit_chain(&fresh_chain_id())?;
        if !is_chain_id(&chain) {
            return Err(AuditError::Meta);
        }
        let (next, head) = chain_end(log.as_ref())?;
        let checkpointed = log.audit_checkpointed()?;
        let signer = Signer::read(&dir)?;
        let target_key = dir.target_key(&chain)?;
        let time_mark = catch_up(log.as_ref(), next)?;
        Ok(Self {
            inner: Arc::new(Inner {
                queue: Mutex::new(Vec::new()),
                committing: AtomicBool::new(false),
                rounds: tokio::sync::watch::Sender::new(0),
                log,
                chain,
                node,
                dir,
                signer: Mutex::new(signer),
                target_key,
                state: Mutex::new(State {
                    next,
                    head,
                    last_ms: 0,
                    checkpointed,
                    checkpoint_at: Instant::now(),
                    time_mark,
                    failed: None,
                    lost_races: 0,
                }),
                observer: std::sync::OnceLock::new(),
            }),
        })
    }

    /// Opens the trail of a store restored from a backup, whose records were written under
    /// chain `from`, as a new chain (docs/deploy.md, "Backup and restore"): the store keeps no
    /// chain id through a restore ([`airlock_store::backup`]), and `from`'s checkpoint file goes
    /// on describing the original data dir, which may still run and sign more. The new chain
    /// keeps `from`'s target key, so equal targets hash alike on both sides of the restore,
    /// and its first checkpoint signs the records restored: call it only once they verified
    /// against `from`'s checkpoints ([`crate::verify::verify_restored`]).
    pub fn open_restored(
        log: &(impl AuditLog + Clone + 'static),
        dir: AuditDir,
        node: Node,
        from: &str,
    ) -> Result<(Self, Option<Checkpoint>), AuditError> {
        if !is_chain_id(from) {
            return Err(AuditError::Meta);
        }
        let chain = log.audit_chain(&fresh_chain_id())?;
        if chain == from {
            // The store kept the chain id: its checkpoints would mix with the original's.
            return Err(AuditError::Meta);
        }
        dir.share_target_key(from, &chain)?;
        let trail = Self::open_as(log, dir, node)?;
        let checkpoint = trail.checkpoint()?;
        Ok((trail, checkpoint))
    }

    /// What the trail records in place of an egress target: HMAC-SHA256 of the canonical
    /// target under the trail's target key, cut to 128 bits, in hex. Equal targets give equal
    /// hashes in one trail; without the key (kept in the audit dir) none can be guessed back.
    pub fn target_hash(&self, target: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.inner.target_key.as_slice())
            .expect("HMAC takes a key of any length");
        mac.update(target.as_bytes());
        hex::encode(&mac.finalize().into_bytes()[..16])
    }

    /// Where the records and the index are kept, for reads.
    pub(super) fn log(&self) -> &dyn AuditLog {
        self.inner.log.as_ref()
    }

    /// The random id that names this chain (and its checkpoint file).
    pub fn chain(&self) -> &str {
        &self.inner.chain
    }

    /// The node named in the records this trail writes.
    pub fn node(&self) -> &Node {
        &self.inner.node
    }

    /// The audit dir holding the checkpoint key and files.
    pub fn dir(&self) -> &AuditDir {
        &self.inner.dir
    }

    /// Why the trail refuses records, if it does.
    pub fn failure(&self) -> Option<String> {
        self.state().failed.as_ref().map(|f| f.reason.clone())
    }

    /// How many appends found their sequence number taken by another node and chained again:
    /// how contended the cluster's one chain head is (0 with one node).
    pub fn lost_races(&self) -> u64 {
        self.state().lost_races
    }

    /// Signs a checkpoint over everything appended so far, unless the last one already does.
    pub fn checkpoint(&self) -> Result<Option<Checkpoint>, AuditError> {
        let mut state = self.state();
        self.checkpoint_locked(&mut state)
    }

    /// Every stored line, in sequence order, with its key.
    pub fn lines(&self) -> impl Iterator<Item = Result<(u64, Vec<u8>), AuditError>> + use<> {
        self.lines_from(0)
    }

    /// The stored lines from sequence number `first` on.
    pub fn lines_from(
        &self,
        first: u64,
    ) -> impl Iterator<Item = Result<(u64, Vec<u8>), AuditError>> + use<> {
        self.inner.log.audit_records(first).map(|row| {
            let (seq, line) = row?;
            Ok((seq, line.to_vec()))
        })
    }

    /// Verifies the whole chain ([`verify::verify`]) against its checkpoints, signed by
    /// `anchor` [default: the audit dir's `audit.pub`] or a key it was rotated to; also returns
    /// the newest key's id.
    pub fn verify_whole(
        &self,
        anchor: Option<PublicKey>,
    ) -> Result<(verify::Report, String), AuditError> {
        let anchor = match anchor {
            Some(key) => key,
            None => self.inner.dir.public_key()?,
        };
        let keys = self.inner.dir.key_chain(anchor)?;
        let lines: Vec<(u64, Vec<u8>)> = self.lines().collect::<Result<_, _>>()?;
        let checkpoints = self.inner.dir.checkpoints(&self.inner.chain)?;
        let report = verify::verify(&lines, &checkpoints, &keys, self.checkpointed());
        Ok((report, keys.newest().to_string()))
    }

    /// [`verify::verify_since`] from the newest checkpoint of this chain this trail's key
    /// signed: where the store was damaged or cut short since, if it was. `airlock serve`
    /// refuses to start on one.
    pub fn check_since_checkpoint(&self) -> Result<Option<verify::Break>, AuditError> {
        let keys = self.inner.dir.key_chain(self.inner.dir.public_key()?)?;
        let newest = self
            .inner
            .dir
            .checkpoints(&self.inner.chain)?
            .into_iter()
            .flatten()
            .filter(|c| keys.signed(c))
            .max_by_key(|c| c.count);
        let (count, head) = newest.map_or((0, String::new()), |c| (c.count, c.head));
        let lines = self
            .lines_from(count.saturating_sub(1))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(verify::verify_since(count, &head, &lines))
    }

    /// How many records the database says checkpoints were written for.
    pub fn checkpointed(&self) -> u64 {
        self.state().checkpointed
    }

    /// Makes the trail believe its last checkpoint was signed `ago` (to test the timer).
    #[cfg(test)]
    pub(crate) fn pretend_checkpointed_ago(&self, ago: Duration) {
        if let Some(at) = Instant::now().checked_sub(ago) {
            self.state().checkpoint_at = at;
        }
    }

    /// Makes the trail believe its last record was written at `ms` (to test AL-10).
    #[cfg(test)]
    pub(crate) fn pretend_last_record_at(&self, ms: u64) {
        self.state().last_ms = ms;
    }

    /// The checkpoint key, read again if `audit.key` is another file than the one it came from.
    fn signer(&self) -> Result<MutexGuard<'_, Signer>, AuditError> {
        let mut current = self
            .inner
            .signer
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let now = key_file_id(&self.inner.dir);
        if now.is_some() && now != current.file {
            *current = Signer::read(&self.inner.dir)?;
            tracing::info!(
                key = current.signer.public().key_id(),
                "the audit checkpoint key was rotated; signing with the new key"
            );
        }
        Ok(current)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Hands every record this trail writes from now on to `observer` as well. A trail has
    /// one observer; `false` if it had one already.
    pub fn observe(&self, observer: Arc<dyn Observer>) -> bool {
        self.inner.observer.set(observer).is_ok()
    }

    /// Moves the head to where the chain ends now, after another node appended, and the time
    /// mark to the highest any node set, so that this node's next record chains and is marked
    /// after theirs. The record is read before the mark: a mark set in between belongs to a
    /// record that takes the number this node tries next, which then fails and reads again.
    fn reread(&self, state: &mut State) -> Result<(), AuditError> {
        (state.next, state.head) = chain_end(self.log())?;
        state.time_mark = state.time_mark.max(highest_mark(self.log())?);
        Ok(())
    }

    /// Takes records again after a failure once the store flushes (see the module doc); at
    /// most once per [`RETRY`], else refuses with the failure's reason.
    fn resume(&self, state: &mut State) -> Result<(), AuditUnavailable> {
        let Some(failed) = &mut state.failed else {
            return Ok(());
        };
        if failed.tried.elapsed() < RETRY {
            return Err(AuditUnavailable(failed.reason.clone()));
        }
        failed.tried = Instant::now();
        let reason = failed.reason.clone();
        // Flushed first: the end read back is durable, not what the failed write left in memory.
        let back = self.inner.log.flush_audit().map_err(AuditError::from);
        match back.and_then(|()| self.reread(state)) {
            Ok(()) => {
                tracing::info!(records = state.next, "the audit trail takes records again");
                state.failed = None;
                Ok(())
            }
            Err(e) => Err(AuditUnavailable(format!("{reason}; still: {e}"))),
        }
    }

    /// After record `seq` is on disk: checkpoints when one is due. An appender does not wait
    /// for the lock while a group's write holds it (its I/O would stall the appender's worker
    /// thread): the next append, or the server's timer, signs the checkpoint instead.
    fn settle(&self, seq: u64) -> Result<u64, AuditUnavailable> {
        let mut state = match self.inner.state.try_lock() {
            Ok(state) => state,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => return Ok(seq),
        };
        self.checkpoint_if_due_locked(&mut state).map(|()| seq)
    }

    /// Signs a checkpoint when one is due ([`CHECKPOINT_RECORDS`] records or
    /// [`CHECKPOINT_INTERVAL`] since the last). Appends call it; so does the server's timer, so
    /// the tail of a trail that went quiet is signed too. A failure fails the trail.
    pub fn checkpoint_if_due(&self) -> Result<(), AuditUnavailable> {
        self.checkpoint_if_due_locked(&mut self.state())
    }

    fn checkpoint_if_due_locked(&self, state: &mut State) -> Result<(), AuditUnavailable> {
        self.resume(state)?;
        let due = state.next.saturating_sub(state.checkpointed) >= CHECKPOINT_RECORDS
            || state.checkpoint_at.elapsed() >= CHECKPOINT_INTERVAL;
        if due && let Err(e) = self.checkpoint_locked(state) {
            return Err(fail(state, &e));
        }
        Ok(())
    }

    /// Signs that the chain had `state.next` records ending in `state.head`, unless a checkpoint
    /// (of this node or, as the database counts them, of any) already covers as many.
    ///
    /// With several nodes the chain may have grown since this node last wrote or read it: it
    /// signs that head, not the newest. The pair is always true of the chain (the head is the
    /// hash of record `next - 1`, which no one overwrites) and costs no read under the lock;
    /// the newest records are signed by the node that wrote them, whose head they are.
    fn checkpoint_locked(&self, state: &mut State) -> Result<Option<Checkpoint>, AuditError> {
        state.checkpoint_at = Instant::now();
        state.checkpointed = state.checkpointed.max(self.inner.log.audit_checkpointed()?);
        if state.next <= state.checkpointed {
            return Ok(None);
        }
        // Appends of other tasks may not be flushed yet: a checkpoint must never be durable
        // before the records it counts.
        self.inner.log.flush_audit()?;
        let checkpoint = self.signer()?.signer.sign(
            &self.inner.chain,
            state.next,
            &hex::encode(state.head),
            &clock::rfc3339_ms(clock::now_unix_ms()),
        );
        self.inner.dir.append(&checkpoint)?;
        self.inner.log.set_audit_checkpointed(state.next)?;
        self.inner.log.flush_audit()?;
        state.checkpointed = state.next;
        Ok(Some(checkpoint))
    }
}

/// Marks the trail failed until the store takes writes again ([`AuditTrail::resume`]) and says
/// so.
fn fail(state: &mut State, error: &dyn std::fmt::Display) -> AuditUnavailable {
    let reason = format!("cannot write the audit trail: {error}");
    tracing::error!(%reason, "audit trail failed; refusing egress and invocation results");
    state.failed = Some(Failed {
        reason: reason.clone(),
        tried: Instant::now(),
    });
    AuditUnavailable(reason)
}

/// Indexes the records the index does not cover yet (a trail written before it had one) and
/// returns the highest time marked. A record that does not open is left out: only the
/// operator's unfiltered view, and `audit verify`, show it.
fn catch_up(log: &dyn AuditLog, next: u64) -> Result<u64, AuditError> {
    let covered = match log.audit_index_entry(index::COVERED)? {
        Some(v) => seq_of(&v)?,
        None => 0,
    };
    let mut mark = highest_mark(log)?;
    if covered >= next {
        return Ok(mark);
    }
    let mut batch: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    for row in log.audit_records(covered) {
        let (seq, line) = row?;
        let Ok(record) = record::open(&line) else {
            continue;
        };
        for key in index::keys(seq, &record.envelope) {
            batch.push((key, Vec::new()));
        }
        if let Some(ms) = clock::parse_rfc3339_ms(&record.envelope.time)
            && ms > mark
        {
            batch.push((index::time_key(ms), seq.to_be_bytes().to_vec()));
            mark = ms;
        }
    }
    batch.push((index::COVERED.to_vec(), next.to_be_bytes().to_vec()));
    let entries: Vec<IndexEntry<'_>> = batch
        .iter()
        .map(|(key, value)| (key.as_slice(), value.as_slice()))
        .collect();
    log.put_audit_index(&entries)?;
    Ok(mark)
}

/// The number of records in the chain and the hash the last one carries (checked or not: a
/// damaged last record does not stop new ones from chaining, and verify still finds it).
fn chain_end(log: &dyn AuditLog) -> Result<(u64, [u8; 32]), AuditError> {
    Ok(match log.last_audit_record()? {
        None => (0, GENESIS),
        Some((seq, line)) => (seq + 1, record::carried_hash(&line).unwrap_or_default()),
    })
}

/// The highest time (ms) the time index is marked up to.
fn highest_mark(log: &dyn AuditLog) -> Result<u64, AuditError> {
    match log.last_audit_index_entry(index::TIME_PREFIX)? {
        Some((key, _)) => index::number(&key).ok_or(AuditError::Meta),
        None => Ok(0),
    }
}

pub(super) fn seq_of(bytes: &[u8]) -> Result<u64, AuditError> {
    let raw: [u8; 8] = bytes.try_into().map_err(|_| AuditError::Meta)?;
    Ok(u64::from_be_bytes(raw))
}

/// A new chain's random id.
fn fresh_chain_id() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// Whether `id` is a chain id (it names files in the audit dir, so nothing else may).
pub fn is_chain_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The runtime writes invocation records and egress intents through this.
impl AuditSink for AuditTrail {
    fn append(&self, event: AuditEvent) -> AppendFuture {
        let trail = self.clone();
        Box::pin(async move { trail.append(event).await })
    }
}
