//! Appending by group commit. Each appender queues its event; one of them at a time takes
//! everything queued, chains it, writes it to the store in one atomic write, flushes once and
//! answers every appender in the group with its sequence number; the others wait for that
//! answer, or for their turn when their event came too late for the group. The store's atomic
//! write is the expensive part on sled (it pins the log with two synchronous writes of its
//! own), so a group pays it once, not once per record (docs/benchmarks.md, "audited
//! throughput").
//!
//! The commit runs on a blocking thread of its own, which goes on with the next group while
//! events wait and gives the turn back itself when none do, so an appender dropped while it
//! waits (a cancelled invocation) never leaves the trail committing forever.

use std::sync::atomic::Ordering;
use std::sync::{MutexGuard, PoisonError};

use airlock_host_api::audit::{AuditEvent, AuditUnavailable};
use airlock_store::{AuditAppend, IndexEntry, StoreError};
use tokio::sync::oneshot;
use tracing::Instrument as _;

use super::{ATTEMPTS, AuditTrail, State, fail};
use crate::AuditError;
use crate::index;
use crate::record::{self, Envelope};
use airlock_runtime::clock;

/// An event waiting for the next group commit, in its trail form, and where its answer goes.
pub(super) struct Queued {
    event: AuditEvent,
    answer: oneshot::Sender<Result<u64, AuditUnavailable>>,
}

/// The commit's turn, given back when the commit ends, however it ends.
struct Turn<'a>(&'a AuditTrail);

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        self.0.inner.committing.store(false, Ordering::Release);
        self.0.inner.rounds.send_modify(|n| *n = n.wrapping_add(1));
    }
}

impl AuditTrail {
    /// Appends `event` and returns its sequence number once it is on disk.
    pub async fn append(&self, event: AuditEvent) -> Result<u64, AuditUnavailable> {
        let event = self.trail_form(event);
        let (answer, mut answered) = oneshot::channel();
        let mut rounds = self.inner.rounds.subscribe();
        self.queue().push(Queued { event, answer });
        let committed = async {
            loop {
                rounds.borrow_and_update();
                match answered.try_recv() {
                    Ok(result) => return result,
                    Err(oneshot::error::TryRecvError::Closed) => return Err(unanswered()),
                    Err(oneshot::error::TryRecvError::Empty) => {}
                }
                let turn = self.inner.committing.compare_exchange(
                    false,
                    true,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                );
                if turn.is_ok() {
                    let trail = self.clone();
                    // Not awaited: it commits group after group while events wait, and this
                    // appender's answer comes with its own group. A panicking commit drops
                    // the answers: `unanswered` says so.
                    drop(tokio::task::spawn_blocking(move || trail.commit_queued()));
                }
                tokio::select! {
                    result = &mut answered => return result.unwrap_or_else(|_| Err(unanswered())),
                    _ = rounds.changed() => {}
                }
            }
        };
        let seq = committed
            .instrument(tracing::info_span!("audit.append"))
            .await?;
        self.settle(seq)
    }

    /// [`Self::append`] for callers outside an async context (the CLI's store verbs).
    pub fn append_blocking(&self, event: AuditEvent) -> Result<u64, AuditUnavailable> {
        let event = self.trail_form(event);
        let seq = self.commit(vec![event])?[0];
        self.settle(seq)
    }

    /// `event` as the trail stores it ([`AuditEvent::for_trail`], targets hashed with this
    /// trail's key): what [`Self::write`] takes.
    pub(crate) fn trail_form(&self, event: AuditEvent) -> AuditEvent {
        event.for_trail(&|target| self.target_hash(target))
    }

    /// Commits what is queued, group after group until the queue is empty, answering each
    /// appender (called with the turn taken). Going on by itself, rather than handing the turn
    /// to a waiting appender, keeps the disk busy: a woken appender may first wait for a
    /// worker thread behind the invocations the last group's answers set running.
    fn commit_queued(&self) {
        let _turn = Turn(self);
        loop {
            let queued = std::mem::take(&mut *self.queue());
            if queued.is_empty() {
                return;
            }
            let (events, answers): (Vec<_>, Vec<_>) =
                queued.into_iter().map(|q| (q.event, q.answer)).unzip();
            match self.commit(events) {
                Ok(seqs) => {
                    for (answer, seq) in answers.into_iter().zip(seqs) {
                        let _ = answer.send(Ok(seq));
                    }
                }
                Err(e) => {
                    for answer in answers {
                        let _ = answer.send(Err(e.clone()));
                    }
                }
            }
        }
    }

    /// Writes `events` (in trail form) and makes them durable; their sequence numbers, in order.
    fn commit(&self, events: Vec<AuditEvent>) -> Result<Vec<u64>, AuditUnavailable> {
        let seqs = self.write(events)?;
        if let Err(e) = self.inner.log.flush_audit() {
            return Err(fail(&mut self.state(), &e));
        }
        Ok(seqs)
    }

    /// Chains `events` (in trail form) and writes them in one store write, not yet durable; a
    /// clock that went backwards gets its own record first. The observer sees each record
    /// once the lock is released. Returns the events' sequence numbers, in order.
    pub(crate) fn write(&self, events: Vec<AuditEvent>) -> Result<Vec<u64>, AuditUnavailable> {
        let mut state = self.state();
        self.resume(&mut state)?;
        let now = clock::now_unix_ms();
        let time = clock::rfc3339_ms(now);
        let mut envelopes = Vec::with_capacity(events.len() + 1);
        if now < state.last_ms {
            let previous = clock::rfc3339_ms(state.last_ms);
            envelopes.push(self.envelope(&time, AuditEvent::ClockRegression { previous }));
        }
        state.last_ms = now;
        let first_asked = envelopes.len();
        envelopes.extend(events.into_iter().map(|e| self.envelope(&time, e)));
        self.insert(&mut state, now, &mut envelopes)?;
        drop(state);
        if let Some(observer) = self.inner.observer.get() {
            for envelope in &envelopes {
                observer.observe(envelope);
            }
        }
        Ok(envelopes[first_asked..].iter().map(|e| e.seq).collect())
    }

    /// `event` as a record of this node written at `time`, not chained yet.
    fn envelope(&self, time: &str, event: AuditEvent) -> Envelope {
        Envelope {
            seq: 0,
            time: time.to_string(),
            prev: String::new(),
            security: event.is_security(),
            node: Some(self.inner.node.clone()),
            event,
        }
    }

    /// Chains `envelopes` after the head and writes them; when another node took one of their
    /// sequence numbers, chains them after its records instead (up to [`ATTEMPTS`] times).
    fn insert(
        &self,
        state: &mut State,
        now_ms: u64,
        envelopes: &mut [Envelope],
    ) -> Result<(), AuditUnavailable> {
        for _ in 0..ATTEMPTS {
            match self.try_insert(state, now_ms, envelopes) {
                Ok(()) => return Ok(()),
                Err(StoreError::Exists { .. }) => {
                    state.lost_races += 1;
                    if let Err(e) = self.reread(state) {
                        return Err(fail(state, &e));
                    }
                }
                Err(e) => return Err(fail(state, &e)),
            }
        }
        let contended = AuditError::Contended { attempts: ATTEMPTS };
        Err(fail(state, &contended))
    }

    /// Chains `envelopes` one after another from the head, seals them and writes them with
    /// their index entries; the head moves to the last once written. The first carries the
    /// time mark when its time passed the last one, the last the index's coverage.
    fn try_insert(
        &self,
        state: &mut State,
        now_ms: u64,
        envelopes: &mut [Envelope],
    ) -> Result<(), StoreError> {
        let (mut next, mut head) = (state.next, state.head);
        let mut sealed = Vec::with_capacity(envelopes.len());
        for envelope in envelopes.iter_mut() {
            envelope.seq = next;
            envelope.prev = hex::encode(head);
            let (line, hash) = record::seal(envelope);
            sealed.push((next, line, index::keys(next, envelope)));
            head = hash;
            next += 1;
        }
        let mark = (now_ms > state.time_mark).then(|| index::time_key(now_ms));
        let (at, covered) = (state.next.to_be_bytes(), next.to_be_bytes());
        let last = sealed.len().saturating_sub(1);
        // Each record's pointers, time mark and coverage in an array: one allocation a group.
        let entries: Vec<([IndexEntry<'_>; index::MOST_KEYS + 2], usize)> = sealed
            .iter()
            .enumerate()
            .map(|(i, (_, _, keys))| {
                let mut entries: [IndexEntry<'_>; index::MOST_KEYS + 2] =
                    [(&[], &[]); index::MOST_KEYS + 2];
                let mut n = 0;
                for key in keys {
                    entries[n] = (key.as_slice(), &[]);
                    n += 1;
                }
                if let Some(mark) = mark.as_deref().filter(|_| i == 0) {
                    entries[n] = (mark, at.as_slice());
                    n += 1;
                }
                if i == last {
                    entries[n] = (index::COVERED, covered.as_slice());
                    n += 1;
                }
                (entries, n)
            })
            .collect();
        let records: Vec<AuditAppend<'_>> = sealed
            .iter()
            .zip(&entries)
            .map(|((seq, line, _), (index, n))| AuditAppend {
                seq: *seq,
                line,
                index: &index[..*n],
            })
            .collect();
        // The records and their index entries land together or not at all.
        self.inner.log.append_audit(&records)?;
        if mark.is_some() {
            state.time_mark = now_ms;
        }
        state.next = next;
        state.head = head;
        Ok(())
    }

    fn queue(&self) -> MutexGuard<'_, Vec<Queued>> {
        self.inner
            .queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// The answer of a commit that ended without giving one (it panicked).
fn unanswered() -> AuditUnavailable {
    AuditUnavailable("the audit trail's writer stopped before recording the event".into())
}
