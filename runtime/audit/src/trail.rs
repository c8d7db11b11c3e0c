//! [`AuditTrail`]: the append-only, hash-chained record store, and its checkpoints. It keeps its
//! records in an [`AuditLog`] (the sled store, in practice), which promises what this module
//! leans on: a record and its index entries land together, no record is overwritten, and a
//! flush makes everything written so far durable.
//!
//! Appends are serialized (one chain head), then flushed to disk before they are acknowledged:
//! concurrent appenders share a flush (group commit: one appender flushes everything written so
//! far while the others wait for it, on a blocking thread; sled's own `flush_async` deadlocked
//! under concurrent invocations when every sled I/O thread waited on a flush, so
//! [`AuditLog::flush_audit`] is blocking). The first write or flush that fails marks the trail
//! failed for the life of the process, and every later append is refused, so nothing that needs
//! a record (an egress request, an invocation result) happens without one (AL-07).
//!
//! Every event is stored in its trail form ([`AuditEvent::for_trail`]): egress targets replaced
//! by a hash keyed with the trail's target key, every string bounded. Each record is written in
//! one transaction with its index entries, which reads use (`index`, [`super::query`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use airlock_host_api::audit::{AppendFuture, AuditEvent, AuditSink, AuditUnavailable};
use hmac::{Hmac, Mac as _};
use sha2::Sha256;
use zeroize::Zeroizing;

use super::AuditError;
use super::checkpoint::{AuditDir, Checkpoint, CheckpointSigner};
use super::index;
use super::record::{self, Envelope, GENESIS};
use airlock_runtime::clock;
use airlock_store::{AuditLog, IndexEntry};

/// A checkpoint is due after this many records…
pub const CHECKPOINT_RECORDS: u64 = 1_000;
/// …or this long after the previous one, whichever comes first.
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(60);

/// The audit trail of one data dir. Cheap to clone; clones share the chain head.
#[derive(Clone)]
pub struct AuditTrail {
    inner: Arc<Inner>,
}

struct Inner {
    log: Arc<dyn AuditLog>,
    /// How many records are known to be on disk (sequence numbers below it are durable).
    durable: tokio::sync::watch::Sender<u64>,
    /// Whether an appender is flushing for everyone.
    flushing: AtomicBool,
    chain: String,
    dir: AuditDir,
    signer: CheckpointSigner,
    /// Keys the hashes recorded in place of egress targets.
    target_key: Zeroizing<[u8; 32]>,
    state: Mutex<State>,
}

struct State {
    next: u64,
    head: [u8; 32],
    last_ms: u64,
    checkpointed: u64,
    checkpoint_at: Instant,
    /// The highest record time so far (ms), which the time index is marked up to.
    time_mark: u64,
    /// Why the trail stopped taking records, once it has.
    failed: Option<String>,
}

impl AuditTrail {
    /// Opens the trail kept in `log` (a store handle, cloned), signing checkpoints with the key
    /// in `dir`.
    ///
    /// A damaged last record does not stop the trail: new records chain onto the hash it
    /// carries, so `airlock audit verify` still points at the damage.
    pub fn open(
        log: &(impl AuditLog + Clone + 'static),
        dir: AuditDir,
    ) -> Result<Self, AuditError> {
        let log: Arc<dyn AuditLog> = Arc::new(log.clone());
        let chain = log.audit_chain(&hex::encode(rand::random::<[u8; 16]>()))?;
        if !is_chain_id(&chain) {
            return Err(AuditError::Meta);
        }
        let (next, head) = match log.last_audit_record()? {
            None => (0, GENESIS),
            Some((seq, line)) => (seq + 1, record::carried_hash(&line).unwrap_or_default()),
        };
        let checkpointed = log.audit_checkpointed()?;
        let signer = dir.signer()?;
        let target_key = dir.target_key(&chain)?;
        let time_mark = catch_up(log.as_ref(), next)?;
        Ok(Self {
            inner: Arc::new(Inner {
                durable: tokio::sync::watch::Sender::new(next),
                flushing: AtomicBool::new(false),
                log,
                chain,
                dir,
                signer,
                target_key,
                state: Mutex::new(State {
                    next,
                    head,
                    last_ms: 0,
                    checkpointed,
                    checkpoint_at: Instant::now(),
                    time_mark,
                    failed: None,
                }),
            }),
        })
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

    /// The audit dir holding the checkpoint key and files.
    pub fn dir(&self) -> &AuditDir {
        &self.inner.dir
    }

    /// Why the trail refuses records, if it does.
    pub fn failure(&self) -> Option<String> {
        self.state().failed.clone()
    }

    /// Appends `event` and returns its sequence number once it is on disk.
    pub async fn append(&self, event: AuditEvent) -> Result<u64, AuditUnavailable> {
        let seq = self.write(event)?;
        self.durable(seq).await?;
        self.settle(seq)
    }

    /// [`Self::append`] for callers outside an async context (the CLI's store verbs).
    pub fn append_blocking(&self, event: AuditEvent) -> Result<u64, AuditUnavailable> {
        let seq = self.write(event)?;
        if let Err(e) = self.inner.log.flush_audit() {
            return Err(fail(&mut self.state(), &e));
        }
        self.settle(seq)
    }

    /// Waits until record `seq` is on disk: flushes everything written so far if no one else is
    /// flushing, else waits for that flush (and flushes again if it did not cover `seq`).
    async fn durable(&self, seq: u64) -> Result<(), AuditUnavailable> {
        let mut durable = self.inner.durable.subscribe();
        loop {
            if *durable.borrow_and_update() > seq {
                return Ok(());
            }
            if let Some(reason) = self.failure() {
                return Err(AuditUnavailable(reason));
            }
            let leader = self
                .inner
                .flushing
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                .is_ok();
            if !leader {
                // The leader always publishes when it is done, even on failure.
                let _ = durable.changed().await;
                continue;
            }
            let target = self.state().next;
            let log = Arc::clone(&self.inner.log);
            let flushed = tokio::task::spawn_blocking(move || log.flush_audit()).await;
            let result = match flushed {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(fail(&mut self.state(), &e)),
                Err(e) => Err(fail(&mut self.state(), &e)),
            };
            self.inner.flushing.store(false, Ordering::Release);
            self.inner.durable.send_modify(|d| {
                if result.is_ok() {
                    *d = (*d).max(target);
                }
            });
            result?;
        }
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

    fn state(&self) -> MutexGuard<'_, State> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Chains and inserts `event` in its trail form (not yet durable); a clock that went
    /// backwards gets its own record first.
    pub(super) fn write(&self, event: AuditEvent) -> Result<u64, AuditUnavailable> {
        let event = event.for_trail(&|target| self.target_hash(target));
        let mut state = self.state();
        if let Some(reason) = &state.failed {
            return Err(AuditUnavailable(reason.clone()));
        }
        let now = clock::now_unix_ms();
        if now < state.last_ms {
            let previous = clock::rfc3339_ms(state.last_ms);
            self.insert(&mut state, now, AuditEvent::ClockRegression { previous })?;
        }
        state.last_ms = now;
        self.insert(&mut state, now, event)
    }

    fn insert(
        &self,
        state: &mut State,
        now_ms: u64,
        event: AuditEvent,
    ) -> Result<u64, AuditUnavailable> {
        let seq = state.next;
        let envelope = Envelope {
            seq,
            time: clock::rfc3339_ms(now_ms),
            prev: hex::encode(state.head),
            security: event.is_security(),
            event,
        };
        let (line, hash) = record::seal(&envelope);
        let keys = index::keys(seq, &envelope);
        let mark = (now_ms > state.time_mark).then(|| index::time_key(now_ms));
        let (at, covered) = (seq.to_be_bytes(), (seq + 1).to_be_bytes());
        // The pointers, the time mark and the coverage, on the stack: no allocation per record.
        let mut entries: [IndexEntry<'_>; index::MOST_KEYS + 2] =
            [(&[], &[]); index::MOST_KEYS + 2];
        let mut n = 0;
        for key in &keys {
            entries[n] = (key.as_slice(), &[]);
            n += 1;
        }
        if let Some(mark) = &mark {
            entries[n] = (mark.as_slice(), at.as_slice());
            n += 1;
        }
        entries[n] = (index::COVERED, covered.as_slice());
        n += 1;
        // The record and its index entries land together or not at all.
        if let Err(e) = self.inner.log.append_audit(seq, &line, &entries[..n]) {
            return Err(fail(state, &e));
        }
        if mark.is_some() {
            state.time_mark = now_ms;
        }
        state.next = seq + 1;
        state.head = hash;
        Ok(seq)
    }

    /// After record `seq` is on disk: checkpoints when one is due.
    fn settle(&self, seq: u64) -> Result<u64, AuditUnavailable> {
        self.checkpoint_if_due().map(|()| seq)
    }

    /// Signs a checkpoint when one is due ([`CHECKPOINT_RECORDS`] records or
    /// [`CHECKPOINT_INTERVAL`] since the last). Appends call it; so does the server's timer, so
    /// the tail of a trail that went quiet is signed too. A failure fails the trail.
    pub fn checkpoint_if_due(&self) -> Result<(), AuditUnavailable> {
        let mut state = self.state();
        if let Some(reason) = &state.failed {
            return Err(AuditUnavailable(reason.clone()));
        }
        let due = state.next - state.checkpointed >= CHECKPOINT_RECORDS
            || state.checkpoint_at.elapsed() >= CHECKPOINT_INTERVAL;
        if due && let Err(e) = self.checkpoint_locked(&mut state) {
            return Err(fail(&mut state, &e));
        }
        Ok(())
    }

    fn checkpoint_locked(&self, state: &mut State) -> Result<Option<Checkpoint>, AuditError> {
        state.checkpoint_at = Instant::now();
        if state.next == 0 || state.next == state.checkpointed {
            return Ok(None);
        }
        let checkpoint = self.inner.signer.sign(
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

/// Marks the trail failed (for good: a store that lost one write may lose the next) and says so.
fn fail(state: &mut State, error: &dyn std::fmt::Display) -> AuditUnavailable {
    let reason = format!("cannot write the audit trail: {error}");
    tracing::error!(%reason, "audit trail failed; refusing egress and invocation results");
    state.failed = Some(reason.clone());
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
    let mut mark = match log.last_audit_index_entry(index::TIME_PREFIX)? {
        Some((key, _)) => index::number(&key).ok_or(AuditError::Meta)?,
        None => 0,
    };
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

pub(super) fn seq_of(bytes: &[u8]) -> Result<u64, AuditError> {
    let raw: [u8; 8] = bytes.try_into().map_err(|_| AuditError::Meta)?;
    Ok(u64::from_be_bytes(raw))
}

fn is_chain_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The runtime writes invocation records and egress intents through this.
impl AuditSink for AuditTrail {
    fn append(&self, event: AuditEvent) -> AppendFuture {
        let trail = self.clone();
        Box::pin(async move { trail.append(event).await })
    }
}
