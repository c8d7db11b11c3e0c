//! AL-04/05/10 against a real sled store in a temp dir: every tampering (done the way an
//! attacker holding the data dir would, on the database's own trees) is reported at the
//! record where it happened, a recomputed chain fails its signed checkpoint, and a clock that
//! goes backwards is recorded without breaking the chain. Reads go through the index, so a
//! page costs what it returns; targets are stored as keyed hashes, strings bounded. Several
//! trails on clones of one store stand for several nodes on one database: they share one
//! gapless chain, and verify names the node of a damaged record.

use airlock_host_api::audit::{AuditEvent, Change, EgressIntent, Subject};
use rand::Rng;
use tempfile::TempDir;

use super::checkpoint::AuditDir;
use super::keychain::KeyChain;
use super::node::Node;
use super::query::{Entry, Page, Query};
use super::record::{self, Envelope};
use super::trail::AuditTrail;
use super::verify::{Later, Report, Writer, verify, verify_restored};
use airlock_store::{AuditAppend, AuditLog as _, Rows, Store, StoreError, Stored};

/// A trail with `n` records and a checkpoint over all of them.
struct Fixture {
    _data: TempDir,
    _audit: TempDir,
    store: Store,
    trail: AuditTrail,
}

impl Fixture {
    fn new(n: u64) -> Self {
        let fixture = Self::open(
            TempDir::new().expect("temp dir"),
            TempDir::new().expect("temp dir"),
        );
        for i in 0..n {
            fixture.trail.append_blocking(event(i)).expect("appended");
        }
        fixture.trail.checkpoint().expect("checkpoint signed");
        fixture
    }

    fn open(data: TempDir, audit: TempDir) -> Self {
        let store = once_unlocked(|| Store::open(data.path(), None)).expect("store opens");
        let trail = AuditTrail::open(
            &store,
            AuditDir::open(audit.path(), data.path()).expect("audit dir"),
        )
        .expect("trail opens");
        Self {
            _data: data,
            _audit: audit,
            store,
            trail,
        }
    }

    /// Closes the store, lets `tamper` change the database's records and index trees as
    /// anyone with the data dir can (no trail would), and opens the trail again.
    fn tamper(self, tamper: impl FnOnce(&sled::Tree, &sled::Tree)) -> Self {
        let Self {
            _data: data,
            _audit: audit,
            store,
            trail,
        } = self;
        drop((trail, store));
        {
            let db = once_unlocked(|| sled::open(data.path().join("db"))).expect("database opens");
            let records = db.open_tree("audit").expect("records");
            let index = db.open_tree("audit-index").expect("index");
            tamper(&records, &index);
            db.flush().expect("flushed");
        }
        Self::open(data, audit)
    }

    /// Another node on the same database and audit dir: a trail on a clone of the store.
    fn node(&self, name: &str) -> AuditTrail {
        let dir = AuditDir::open(self._audit.path(), self._data.path()).expect("audit dir");
        AuditTrail::open_as(&self.store.clone(), dir, node(name)).expect("trail opens")
    }

    fn lines(&self) -> Vec<(u64, Vec<u8>)> {
        self.trail
            .lines()
            .collect::<Result<_, _>>()
            .expect("records read")
    }

    fn verify(&self) -> Report {
        self.verify_lines(self.lines())
    }

    fn verify_lines(&self, lines: Vec<(u64, Vec<u8>)>) -> Report {
        let dir = self.trail.dir();
        let checkpoints = dir
            .checkpoints(self.trail.chain())
            .expect("checkpoints read");
        verify(
            &lines,
            &checkpoints,
            &KeyChain::single(dir.public_key().expect("public key")),
            self.store.audit_checkpointed().expect("count read"),
        )
    }
}

/// `open`ed, tried again for up to two seconds: a database just closed may still be held for
/// a moment by sled's flusher thread, which lets go of the file lock when it next wakes.
fn once_unlocked<T, E>(mut open: impl FnMut() -> Result<T, E>) -> Result<T, E> {
    for _ in 0..100 {
        if let Ok(opened) = open() {
            return Ok(opened);
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    open()
}

fn node(name: &str) -> Node {
    name.parse().expect("a valid node name")
}

fn event(i: u64) -> AuditEvent {
    AuditEvent::CredentialChanged {
        tenant: format!("tenant-{i}"),
        installation: "crm".into(),
        credential: "token".into(),
        change: Change::Set,
    }
}

fn broken_at(report: &Report) -> Option<u64> {
    report.broken.as_ref().map(|b| b.seq)
}

/// Seals a well-formed record `seq` that links to `prev` (what an attacker with the database
/// can always do: the chain's hash is not secret).
fn forge(seq: u64, prev: &str) -> Vec<u8> {
    record::seal(&Envelope {
        seq,
        time: "2026-11-29T00:00:00.000Z".into(),
        prev: prev.to_string(),
        security: false,
        node: None,
        event: event(999),
    })
    .0
}

fn hash_of(line: &[u8]) -> String {
    hex::encode(record::open(line).expect("a sealed record opens").hash)
}

#[test]
fn an_untouched_trail_verifies_and_is_covered_by_its_checkpoint() {
    let f = Fixture::new(20);
    let report = f.verify();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!((report.verified, report.covered), (20, 20));
}

#[test]
fn a_flipped_byte_is_reported_at_its_record() {
    let f = Fixture::new(20).tamper(|tree, _| {
        let mut line = tree
            .get(7u64.to_be_bytes())
            .expect("read")
            .expect("record present")
            .to_vec();
        let at = line.len() / 2;
        line[at] ^= 0x20;
        tree.insert(7u64.to_be_bytes(), line).expect("write");
    });
    assert_eq!(broken_at(&f.verify()), Some(7));
}

#[test]
fn a_deleted_record_is_reported_at_its_place() {
    let f = Fixture::new(20).tamper(|tree, _| {
        tree.remove(7u64.to_be_bytes()).expect("remove");
    });
    assert_eq!(broken_at(&f.verify()), Some(7));
}

#[test]
fn swapped_records_are_reported_at_the_first() {
    let f = Fixture::new(20).tamper(|tree, _| {
        let a = tree
            .get(7u64.to_be_bytes())
            .expect("read")
            .expect("record present");
        let b = tree
            .get(8u64.to_be_bytes())
            .expect("read")
            .expect("record present");
        tree.insert(7u64.to_be_bytes(), b).expect("write");
        tree.insert(8u64.to_be_bytes(), a).expect("write");
    });
    assert_eq!(broken_at(&f.verify()), Some(7));
}

#[test]
fn an_inserted_record_is_reported_at_its_place() {
    let f = Fixture::new(20).tamper(|tree, _| {
        for seq in (7..20u64).rev() {
            let line = tree
                .get(seq.to_be_bytes())
                .expect("read")
                .expect("record present");
            tree.insert((seq + 1).to_be_bytes(), line).expect("write");
        }
        let prev = hash_of(
            &tree
                .get(6u64.to_be_bytes())
                .expect("read")
                .expect("record present"),
        );
        tree.insert(7u64.to_be_bytes(), forge(7, &prev))
            .expect("write");
    });
    assert_eq!(broken_at(&f.verify()), Some(7));
}

#[test]
fn a_truncated_tail_is_caught_by_the_checkpoint() {
    let f = Fixture::new(20).tamper(|tree, _| {
        for seq in 10..20u64 {
            tree.remove(seq.to_be_bytes()).expect("remove");
        }
    });
    let report = f.verify();
    assert_eq!(broken_at(&report), Some(10));
    assert!(
        report
            .broken
            .expect("broken")
            .reason
            .contains("cut from the end")
    );
}

#[test]
fn a_quiet_trail_is_checkpointed_when_the_interval_is_over() {
    let f = Fixture::new(3);
    f.trail.append_blocking(event(3)).expect("appended");
    f.trail.checkpoint_if_due().expect("not due yet");
    assert_eq!(f.trail.checkpointed(), 3, "the fourth record waits");
    f.trail
        .pretend_checkpointed_ago(super::trail::CHECKPOINT_INTERVAL);
    f.trail.checkpoint_if_due().expect("due");
    assert_eq!(f.trail.checkpointed(), 4);
    // Cut after the timer's checkpoint: caught.
    let f = f.tamper(|tree, _| {
        tree.remove(3u64.to_be_bytes()).expect("remove");
    });
    assert_eq!(broken_at(&f.verify()), Some(3));
}

#[test]
fn a_chain_recomputed_by_someone_with_the_database_fails_its_checkpoint() {
    // AL-05: every link is valid again, but the signed head is not.
    let f = Fixture::new(20).tamper(|tree, _| {
        let mut prev = hash_of(
            &tree
                .get(4u64.to_be_bytes())
                .expect("read")
                .expect("record present"),
        );
        for seq in 5..20u64 {
            let line = forge(seq, &prev);
            prev = hash_of(&line);
            tree.insert(seq.to_be_bytes(), line).expect("write");
        }
    });
    let report = f.verify();
    let broken = report.broken.expect("detected");
    assert!(broken.reason.contains("rewritten"), "{}", broken.reason);
}

#[test]
fn a_forged_or_removed_checkpoint_is_a_problem() {
    let f = Fixture::new(5);
    let path = f
        .trail
        .dir()
        .path()
        .join(format!("{}.checkpoints", f.trail.chain()));
    let text = std::fs::read_to_string(&path).expect("checkpoint file");
    std::fs::write(&path, text.replace("\"count\":5", "\"count\":4")).expect("write");
    assert!(!f.verify().is_ok(), "an altered checkpoint passed");
    std::fs::remove_file(&path).expect("remove");
    let report = f.verify();
    assert!(
        report.anchor_problems.iter().any(|p| p.contains("removed")),
        "{report:?}"
    );
}

#[test]
fn random_tampering_is_always_found_at_the_right_record() {
    // FZ-9 in miniature: flip, delete, swap, insert and truncate at random places.
    let f = Fixture::new(40);
    let clean = f.lines();
    let mut rng = rand::rng();
    for round in 0..2_000 {
        let mut lines = clean.clone();
        let k = rng.random_range(1..lines.len() - 1);
        let expected = match round % 5 {
            0 => {
                let line = &mut lines[k].1;
                let at = rng.random_range(0..line.len());
                line[at] ^= 1 << rng.random_range(0..7);
                k as u64
            }
            1 => {
                lines.remove(k);
                for (key, _) in lines.iter_mut().skip(k) {
                    *key -= 1; // even renumbered keys do not hide a deletion
                }
                k as u64
            }
            2 => {
                let (a, b) = (lines[k].1.clone(), lines[k + 1].1.clone());
                lines[k].1 = b;
                lines[k + 1].1 = a;
                k as u64
            }
            3 => {
                let prev = hash_of(&lines[k - 1].1);
                lines.insert(k, (k as u64, forge(k as u64, &prev)));
                for (key, _) in lines.iter_mut().skip(k + 1) {
                    *key += 1;
                }
                k as u64
            }
            _ => {
                lines.truncate(k);
                k as u64
            }
        };
        let report = f.verify_lines(lines);
        assert_eq!(
            broken_at(&report),
            Some(expected),
            "round {round} (mutation {}) at {k}: {report:?}",
            round % 5
        );
    }
}

#[test]
fn a_clock_that_goes_back_is_recorded_and_the_chain_still_verifies() {
    let f = Fixture::new(3);
    f.trail
        .pretend_last_record_at(airlock_runtime::clock::now_unix_ms() + 3_600_000);
    f.trail.append_blocking(event(3)).expect("appended");
    let lines = f.lines();
    let kinds: Vec<&str> = lines
        .iter()
        .map(|(_, line)| {
            record::open(line)
                .expect("a sealed record opens")
                .envelope
                .event
                .kind()
        })
        .collect();
    assert_eq!(kinds[3..], ["clock-regression", "credential-changed"]);
    f.trail.checkpoint().expect("checkpoint signed");
    let report = f.verify();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.verified, 5);
}

#[test]
fn a_reopened_trail_continues_the_chain() {
    let data = TempDir::new().expect("temp dir");
    let audit = TempDir::new().expect("temp dir");
    for _ in 0..2 {
        let store = Store::open(data.path(), None).expect("store opens");
        let dir = AuditDir::open(audit.path(), data.path()).expect("audit dir");
        let trail = AuditTrail::open(&store, dir).expect("trail opens");
        trail.append_blocking(event(1)).expect("appended");
        trail.checkpoint().expect("checkpoint signed");
    }
    let store = Store::open(data.path(), None).expect("store opens");
    let trail = AuditTrail::open(
        &store,
        AuditDir::open(audit.path(), data.path()).expect("audit dir"),
    )
    .expect("trail opens");
    let lines: Vec<_> = trail
        .lines()
        .collect::<Result<_, _>>()
        .expect("records read");
    let dir = trail.dir();
    let report = verify(
        &lines,
        &dir.checkpoints(trail.chain()).expect("checkpoints read"),
        &KeyChain::single(dir.public_key().expect("public key")),
        trail.checkpointed(),
    );
    assert!(report.is_ok(), "{report:?}");
    assert_eq!((report.verified, report.checkpoints), (2, 2));
}

/// A backup taken at 4 records of a trail that went on to 7: restored into another store, it
/// verifies against the checkpoints signed before it (the later one is set aside, not taken for
/// a cut), a damaged record in it does not, and it goes on as a new chain with the same target
/// key, whose first checkpoint signs what was restored.
#[test]
fn a_restored_trail_is_checked_against_the_old_chain_and_goes_on_as_a_new_one() {
    let f = Fixture::new(4);
    let backed_up = f.lines();
    for i in 4..7 {
        f.trail.append_blocking(event(i)).expect("appended");
    }
    f.trail.checkpoint().expect("checkpoint signed");
    let (old, dir) = (f.trail.chain().to_string(), f.trail.dir());
    let key = KeyChain::single(dir.public_key().expect("public key"));
    let checkpoints = dir.checkpoints(&old).expect("checkpoints read");
    let plain = verify(&backed_up, &checkpoints, &key, 4);
    assert_eq!(broken_at(&plain), Some(4), "plain verify calls it a cut");
    let (report, later) = verify_restored(&backed_up, &checkpoints, &key, 4);
    assert!(report.is_ok(), "{report:?}");
    assert_eq!((report.verified, report.covered), (4, 4));
    assert_eq!(
        later,
        Later {
            checkpoints: 1,
            newest: 7
        }
    );
    let mut damaged = backed_up.clone();
    damaged[1].1[20] ^= 1;
    assert_eq!(
        broken_at(&verify_restored(&damaged, &checkpoints, &key, 4).0),
        Some(1)
    );

    let data = TempDir::new().expect("temp dir");
    let restored = Store::open(data.path(), None).expect("store opens");
    let records: Vec<AuditAppend<'_>> = backed_up
        .iter()
        .map(|(seq, line)| AuditAppend {
            seq: *seq,
            line,
            index: &[],
        })
        .collect();
    restored.append_audit(&records).expect("restored");
    let audit = AuditDir::open(f._audit.path(), data.path()).expect("audit dir");
    assert!(AuditTrail::open_restored(&restored, audit, node("r"), "../escape").is_err());
    let audit = AuditDir::open(f._audit.path(), data.path()).expect("audit dir");
    let (trail, first) =
        AuditTrail::open_restored(&restored, audit, node("r"), &old).expect("opens");
    assert_ne!(trail.chain(), old);
    assert_eq!(first.map(|c| c.count), Some(4));
    assert_eq!(trail.target_hash("t"), f.trail.target_hash("t"));
    trail.append_blocking(event(9)).expect("appended");
    trail.checkpoint().expect("checkpoint signed");
    let lines: Vec<_> = trail.lines().collect::<Result<_, _>>().expect("read");
    let new = verify(
        &lines,
        &dir.checkpoints(trail.chain()).expect("checkpoints read"),
        &key,
        trail.checkpointed(),
    );
    assert!(new.is_ok(), "{new:?}");
    assert_eq!((new.verified, new.checkpoints), (5, 2));
    // The original's chain is untouched by the restored one.
    assert!(f.verify().is_ok());
}

#[test]
fn the_audit_dir_must_not_be_inside_the_data_dir() {
    let data = TempDir::new().expect("temp dir");
    let inside = data.path().join("audit");
    assert!(matches!(
        AuditDir::open(&inside, data.path()),
        Err(super::AuditError::InsideDataDir { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_concurrent_appends_share_flushes_and_all_become_durable() {
    // sled's flush_async deadlocked here once every sled I/O thread waited on a flush.
    let fixture = Fixture::new(0);
    let mut tasks = Vec::new();
    for i in 0..400 {
        let trail = fixture.trail.clone();
        tasks.push(tokio::spawn(async move { trail.append(event(i)).await }));
    }
    let appended = tokio::time::timeout(std::time::Duration::from_secs(60), async {
        let mut seqs = Vec::new();
        for task in tasks {
            seqs.push(task.await.expect("task").expect("appended"));
        }
        seqs
    })
    .await
    .expect("every append completes");
    let mut seqs = appended;
    seqs.sort_unstable();
    assert_eq!(seqs, (0..400).collect::<Vec<u64>>());
    fixture.trail.checkpoint().expect("checkpoint");
    let report = fixture.verify();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.verified, 400);
}

/// The sled store, counting the writes the trail makes to it.
struct Counting {
    store: Store,
    writes: std::sync::atomic::AtomicUsize,
}

impl airlock_store::AuditLog for Counting {
    fn audit_chain(&self, fresh: &str) -> Result<String, StoreError> {
        self.store.audit_chain(fresh)
    }
    fn append_audit(&self, records: &[AuditAppend<'_>]) -> Result<(), StoreError> {
        self.writes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.store.append_audit(records)
    }
    fn put_audit_index(&self, entries: &[airlock_store::IndexEntry<'_>]) -> Result<(), StoreError> {
        self.store.put_audit_index(entries)
    }
    fn flush_audit(&self) -> Result<(), StoreError> {
        self.store.flush_audit()
    }
    fn audit_record(&self, seq: u64) -> Result<Option<Stored>, StoreError> {
        self.store.audit_record(seq)
    }
    fn last_audit_record(&self) -> Result<Option<(u64, Stored)>, StoreError> {
        self.store.last_audit_record()
    }
    fn audit_records(&self, first: u64) -> Rows<(u64, Stored)> {
        self.store.audit_records(first)
    }
    fn audit_index_entry(&self, key: &[u8]) -> Result<Option<Stored>, StoreError> {
        self.store.audit_index_entry(key)
    }
    fn audit_index(&self, prefix: &[u8], from: &[u8]) -> Rows<(Stored, Stored)> {
        self.store.audit_index(prefix, from)
    }
    fn last_audit_index_entry(
        &self,
        prefix: &[u8],
    ) -> Result<Option<(Stored, Stored)>, StoreError> {
        self.store.last_audit_index_entry(prefix)
    }
    fn audit_checkpointed(&self) -> Result<u64, StoreError> {
        self.store.audit_checkpointed()
    }
    fn set_audit_checkpointed(&self, count: u64) -> Result<(), StoreError> {
        self.store.set_audit_checkpointed(count)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_are_written_in_groups_and_a_dropped_one_stalls_no_one() {
    let (data, audit) = (
        TempDir::new().expect("temp dir"),
        TempDir::new().expect("temp dir"),
    );
    let counting = std::sync::Arc::new(Counting {
        store: Store::open(data.path(), None).expect("store opens"),
        writes: Default::default(),
    });
    let dir = AuditDir::open(audit.path(), data.path()).expect("audit dir");
    let trail = AuditTrail::open_shared(counting.clone(), dir, node("a")).expect("trail opens");
    let mut kept = Vec::new();
    for i in 0..400 {
        let kept_one = trail.clone();
        kept.push(tokio::spawn(async move { kept_one.append(event(i)).await }));
        // Appenders given up while they wait, some of them while committing for the group.
        let dropped = trail.clone();
        tokio::spawn(async move {
            let wait = std::time::Duration::from_micros(50);
            let _ = tokio::time::timeout(wait, dropped.append(event(1_000 + i))).await;
        });
    }
    let all = tokio::time::timeout(std::time::Duration::from_secs(60), async {
        for task in kept {
            task.await.expect("task").expect("appended");
        }
        trail
            .append(event(9_999))
            .await
            .expect("appended after them")
    });
    all.await.expect("no append stalls");
    let writes = counting.writes.load(std::sync::atomic::Ordering::Relaxed);
    let records = trail.lines().count();
    assert!(records >= 401, "{records} records");
    assert!(
        writes * 2 < records,
        "{writes} store writes for {records} records"
    );
    trail.checkpoint().expect("checkpoint");
    let (report, _) = trail.verify_whole(None).expect("verified");
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.verified, records as u64);
}

/// A record about `tenant` that is not a security event.
fn intent(tenant: &str, target: &str) -> AuditEvent {
    AuditEvent::EgressIntent(EgressIntent {
        invocation: "0123".into(),
        subject: Subject::new(tenant, "crm"),
        method: "GET".into(),
        target: Some(target.into()),
        via: "https://api.example.com/contacts".into(),
        target_hash: None,
        rule: 0,
        credential: None,
    })
}

/// A security event about `tenant`.
fn changed(tenant: &str) -> AuditEvent {
    AuditEvent::CredentialChanged {
        tenant: tenant.into(),
        installation: "crm".into(),
        credential: "token".into(),
        change: Change::Set,
    }
}

fn query(tenant: Option<&str>) -> Query {
    Query {
        tenant: tenant.map(str::to_string),
        ..Query::default()
    }
}

fn seqs(page: &Page) -> Vec<u64> {
    page.entries.iter().map(Entry::seq).collect()
}

#[test]
fn a_page_examines_at_most_one_page_of_the_callers_own_records() {
    // 100,000 records of another tenant around acme's 250 (ten of them security events):
    // acme's reads examine acme's records only, one page at a time, and a query that matches
    // nothing examines nothing.
    let f = Fixture::new(0);
    let events: Vec<AuditEvent> = (0..100_250u64)
        .map(|i| match i % 401 {
            0 if i % 4010 == 0 => changed("acme"),
            0 => intent("acme", "https://api.example.com/contacts/a"),
            _ => intent("globex", "https://api.example.com/contacts/g"),
        })
        .map(|event| f.trail.trail_form(event))
        .collect();
    let mut acme = Vec::new();
    // Written in groups, as concurrent appenders are.
    for group in events.chunks(1_000) {
        let seqs = f.trail.write(group.to_vec()).expect("written");
        for (event, seq) in group.iter().zip(seqs) {
            if event.tenant() == Some("acme") {
                acme.push(seq);
            }
        }
    }
    f.store.flush_audit().expect("flushed");
    assert_eq!(acme.len(), 250);

    let mut read = Vec::new();
    let mut q = query(Some("acme"));
    loop {
        let page = f.trail.page(&q, 100).expect("page");
        assert!(page.examined <= 100, "examined {}", page.examined);
        assert_eq!(page.examined, page.entries.len() as u64);
        read.extend(seqs(&page));
        match page.next {
            Some(next) => q.after = Some(next),
            None => break,
        }
    }
    assert_eq!(read, acme);

    let security = Query {
        security: true,
        ..query(Some("acme"))
    };
    let page = f.trail.page(&security, 100).expect("page");
    assert_eq!(page.entries.len(), 25);
    assert_eq!(page.examined, 25);

    // Nothing to find: a tenant with no records, security events of a quiet tenant, the future.
    let quiet = Query {
        security: true,
        ..query(Some("initech"))
    };
    let future = Query {
        since_ms: Some(airlock_runtime::clock::now_unix_ms() + 3_600_000),
        ..query(None)
    };
    for nothing in [query(Some("initech")), quiet, future] {
        let page = f.trail.page(&nothing, 1_000).expect("page");
        assert_eq!((page.entries.len(), page.examined), (0, 0), "{nothing:?}");
    }

    // The operator's unfiltered view reads the chain, a page at a time.
    let page = f.trail.page(&query(None), 1_000).expect("page");
    assert_eq!((page.entries.len(), page.examined), (1_000, 1_000));
    assert_eq!(page.next, Some(999));
}

#[test]
fn since_starts_at_the_first_record_written_at_or_after_the_time() {
    let f = Fixture::new(0);
    let mut times = Vec::new();
    for i in 0..30u64 {
        let seq = f.trail.append_blocking(event(i)).expect("appended");
        let (_, line) = f
            .trail
            .lines_from(seq)
            .next()
            .expect("a line")
            .expect("read");
        let time = record::open(&line).expect("opens").envelope.time;
        times.push(airlock_runtime::clock::parse_rfc3339_ms(&time).expect("a time"));
        if i % 10 == 9 {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
    for at in [0, 10, 20, 29] {
        let q = Query {
            since_ms: Some(times[at]),
            ..query(None)
        };
        let page = f.trail.page(&q, 100).expect("page");
        let first = times.iter().position(|t| *t >= times[at]).expect("one");
        assert_eq!(seqs(&page), (first as u64..30).collect::<Vec<_>>());
        assert_eq!(page.examined, 30 - first as u64);
    }
}

#[test]
fn a_wrong_index_entry_never_shows_a_tenant_another_tenants_record() {
    let f = Fixture::new(0);
    f.trail
        .append_blocking(changed("globex"))
        .expect("appended");
    f.trail.append_blocking(changed("acme")).expect("appended");
    // Someone with the database points acme's index at globex's record.
    let f = f.tamper(|_, index| {
        let mut key = vec![b't', 4];
        key.extend_from_slice(b"acme");
        key.extend_from_slice(&0u64.to_be_bytes());
        index.insert(key, sled::IVec::default()).expect("write");
    });
    let page = f.trail.page(&query(Some("acme")), 10).expect("page");
    assert_eq!(seqs(&page), [1]);
    assert_eq!(page.examined, 2);
}

#[test]
fn a_trail_without_an_index_is_indexed_when_opened_and_verify_sees_a_gap() {
    let f = Fixture::new(0);
    for tenant in ["acme", "globex", "acme"] {
        f.trail.append_blocking(changed(tenant)).expect("appended");
    }
    // Entries lost, the count of records covered kept: the filtered views miss the records,
    // and verify says so.
    let f = f.tamper(|_, index| {
        for entry in index.iter() {
            let (key, _) = entry.expect("entry");
            if key != b"n" {
                index.remove(key).expect("removed");
            }
        }
    });
    assert_eq!(f.trail.unindexed().expect("checked"), [0, 1, 2]);
    assert!(
        f.trail
            .page(&query(Some("acme")), 10)
            .expect("page")
            .entries
            .is_empty()
    );
    // As a trail written before the index existed (or by a build without it) would be.
    let f = f.tamper(|_, index| index.clear().expect("cleared"));
    let trail = &f.trail;
    assert_eq!(trail.unindexed().expect("checked"), Vec::<u64>::new());
    assert_eq!(
        seqs(&trail.page(&query(Some("acme")), 10).expect("page")),
        [0, 2]
    );
    trail.append_blocking(changed("acme")).expect("appended");
    assert_eq!(
        seqs(&trail.page(&query(Some("acme")), 10).expect("page")),
        [0, 2, 3]
    );
}

#[test]
fn egress_targets_are_stored_as_their_rule_and_a_keyed_hash() {
    let f = Fixture::new(0);
    let jane = "https://api.example.com/contacts/jane.doe@acme.com";
    let john = "https://api.example.com/contacts/john@acme.com";
    for target in [jane, john, jane] {
        f.trail
            .append_blocking(intent("acme", target))
            .expect("appended");
    }
    let mut hashes = Vec::new();
    for (_, line) in f.lines() {
        let text = String::from_utf8(line.clone()).expect("UTF-8");
        assert!(!text.contains("jane") && !text.contains("john"), "{text}");
        assert!(
            text.contains("\"via\":\"https://api.example.com/contacts\""),
            "{text}"
        );
        let AuditEvent::EgressIntent(stored) = record::open(&line).expect("opens").envelope.event
        else {
            panic!("an intent: {text}");
        };
        hashes.push(stored.target_hash.expect("a hash"));
    }
    assert_eq!(hashes[0], hashes[2], "equal targets correlate");
    assert_ne!(hashes[0], hashes[1]);
    assert_eq!(hashes[0].len(), 32);
    assert_eq!(hashes[0], f.trail.target_hash(jane));

    // The key lives in the audit dir, 0600, and a reopened trail hashes the same.
    let key = f
        .trail
        .dir()
        .path()
        .join(format!("{}.target-key", f.trail.chain()));
    let meta = std::fs::metadata(&key).expect("key file");
    assert_eq!(meta.len(), 32);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    }
    let dir = AuditDir::open(f.trail.dir().path(), f._data.path()).expect("audit dir");
    let reopened = AuditTrail::open(&f.store, dir).expect("trail opens");
    assert_eq!(reopened.target_hash(jane), hashes[0]);
}

#[test]
fn an_oversized_field_is_cut_before_it_is_stored() {
    let f = Fixture::new(0);
    let artifact = "x".repeat(1 << 20);
    f.trail
        .append_blocking(AuditEvent::TrustRefused {
            artifact,
            reason: "unsigned".into(),
        })
        .expect("appended");
    let lines = f.lines();
    assert!(lines[0].1.len() < 1024, "{} bytes", lines[0].1.len());
    let AuditEvent::TrustRefused { artifact, .. } =
        record::open(&lines[0].1).expect("opens").envelope.event
    else {
        panic!("a trust refusal");
    };
    assert!(
        artifact.ends_with('…') && artifact.len() <= 256,
        "{artifact}"
    );
}

#[test]
fn nodes_on_one_database_share_one_gapless_chain() {
    // Two nodes, two appending threads each: every lost race for a sequence number re-chains.
    const THREADS: usize = 4;
    const EACH: u64 = 500;
    let f = Fixture::new(0);
    let nodes = [f.node("node-a"), f.node("node-b")];
    let written: Vec<(u64, Node)> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..THREADS)
            .map(|t| {
                let trail = &nodes[t % nodes.len()];
                scope.spawn(move || {
                    (0..EACH)
                        .map(|i| {
                            let seq = trail.append_blocking(event(i)).expect("appended");
                            (seq, trail.node().clone())
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        threads
            .into_iter()
            .flat_map(|t| t.join().expect("an appender panicked"))
            .collect()
    });
    let total = THREADS as u64 * EACH;
    let mut seqs: Vec<u64> = written.iter().map(|(seq, _)| *seq).collect();
    seqs.sort_unstable();
    assert_eq!(
        seqs,
        (0..total).collect::<Vec<_>>(),
        "gapless, each seq once"
    );

    let lines = f.lines();
    assert_eq!(lines.len() as u64, total);
    let stored: std::collections::HashMap<u64, Node> = lines
        .iter()
        .map(|(seq, line)| {
            let envelope = record::open(line).expect("a record opens").envelope;
            (*seq, envelope.node.expect("a record names its node"))
        })
        .collect();
    for (seq, node) in &written {
        assert_eq!(stored.get(seq), Some(node), "record {seq}");
    }
    // Each switch from one node to the other is a node that lost a race and re-chained.
    let switches = (1..total).filter(|s| stored[s] != stored[&(s - 1)]).count();
    assert!(switches > 1, "the nodes never interleaved ({switches})");
    let lost: u64 = nodes.iter().map(AuditTrail::lost_races).sum();
    assert!(
        lost >= switches as u64,
        "{lost} lost races counted for {switches} switches"
    );

    // Each node signs checkpoints of the shared chain into the one audit dir: the tail first
    // (by the node whose head it is), then a record of its own each.
    for trail in &nodes {
        trail.checkpoint().expect("checkpoint");
    }
    for trail in &nodes {
        trail.append_blocking(event(0)).expect("appended");
        trail
            .checkpoint()
            .expect("checkpoint")
            .expect("a new head to sign");
    }
    let report = f.verify();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!((report.verified, report.covered), (total + 2, total + 2));
    assert!(report.checkpoints >= 2, "{report:?}");
}

#[test]
fn a_damaged_record_is_reported_with_its_node() {
    let f = Fixture::new(0);
    let [a, b] = [f.node("node-a"), f.node("node-b")];
    for i in 0..6 {
        let trail = if i % 2 == 0 { &a } else { &b };
        assert_eq!(trail.append_blocking(event(i)).expect("appended"), i);
    }
    a.checkpoint().expect("checkpoint signed");
    drop((a, b)); // their store handles hold the database's lock
    let edit = |seq: u64, edit: fn(String) -> String| {
        move |tree: &sled::Tree, _: &sled::Tree| {
            let line = tree
                .get(seq.to_be_bytes())
                .expect("read")
                .expect("record present");
            let line = edit(String::from_utf8(line.to_vec()).expect("UTF-8"));
            tree.insert(seq.to_be_bytes(), line.as_bytes())
                .expect("write");
        }
    };

    // Record 3, b's, altered: still JSON, so it names b.
    let f = f.tamper(edit(3, |line| line.replace("tenant-3", "tenant-9")));
    let broken = f.verify().broken.expect("detected");
    assert_eq!(
        (broken.seq, &broken.writer),
        (3, &Some(Writer::Record(node("node-b"))))
    );
    assert!(
        broken
            .to_string()
            .starts_with("record 3, written by node node-b: "),
        "{broken}"
    );

    // Record 3 cut in half: no node to read there, so record 2's (a's) is named, and said so.
    let f = f.tamper(edit(3, |line| line[..line.len() / 2].to_string()));
    let broken = f.verify().broken.expect("detected");
    assert_eq!(
        (broken.seq, &broken.writer),
        (3, &Some(Writer::Previous(node("node-a"))))
    );
    assert!(
        broken
            .to_string()
            .contains("record 2 before it was written by node node-a"),
        "{broken}"
    );
}

#[test]
fn a_rotated_checkpoint_key_is_followed_from_the_anchor_and_a_forged_one_is_not() {
    let f = Fixture::new(3);
    let anchor = f.trail.dir().public_key().expect("anchor");
    // The old private key, kept aside to play a thief who took it.
    let stolen = TempDir::new().expect("dir");
    std::fs::copy(
        f.trail.dir().path().join(crate::checkpoint::KEY_FILE),
        stolen.path().join(crate::checkpoint::KEY_FILE),
    )
    .expect("copied");
    // A second name for the old key file's bytes: the rotation must leave nothing in them.
    let old_file = stolen.path().join("old-inode");
    std::fs::hard_link(
        f.trail.dir().path().join(crate::checkpoint::KEY_FILE),
        &old_file,
    )
    .expect("linked");
    // A second process rotates; this trail signs its next checkpoint with the new key.
    let other = f.node("other");
    let (old, new) = other.dir().rotate_key().expect("rotated");
    assert_eq!(old, anchor.key_id());
    let left = std::fs::read(&old_file).expect("old bytes");
    assert!(
        !left.is_empty() && left.iter().all(|b| *b == 0),
        "the retired private key is overwritten"
    );
    f.trail.append_blocking(event(3)).expect("appended");
    let signed = f.trail.checkpoint().expect("signed").expect("a checkpoint");
    assert_eq!(signed.key, new.key_id());
    assert_eq!(
        f.trail.dir().public_key().expect("anchor").key_id(),
        anchor.key_id(),
        "audit.pub keeps the anchor"
    );
    let (report, newest) = f.trail.verify_whole(None).expect("verified");
    assert!(report.is_ok(), "{report:?}");
    assert_eq!((report.checkpoints, newest.as_str()), (2, new.key_id()));
    // The anchor alone, without the introduction, does not vouch for the new key's checkpoint.
    let lines = f.lines();
    let checkpoints = f
        .trail
        .dir()
        .checkpoints(f.trail.chain())
        .expect("checkpoints");
    let alone = verify(&lines, &checkpoints, &KeyChain::single(anchor.clone()), 0);
    assert!(!alone.is_ok());

    // An introduction signed by any other key is not followed, and says so.
    let intruder = TempDir::new().expect("dir");
    let forged_dir = AuditDir::open(intruder.path(), f._data.path()).expect("dir");
    let forger = forged_dir.signer().expect("a key of the intruder's");
    let mut introductions = f.trail.dir().introductions().expect("read");
    let mut forged = introductions[0].clone().expect("parsed");
    forged.key = forger.public().to_line();
    introductions.push(Ok(forged));
    let chain = KeyChain::follow(anchor.clone(), &introductions);
    assert_eq!(chain.newest(), new.key_id());
    assert_eq!(chain.problems.len(), 1, "{:?}", chain.problems);
    let forged_checkpoint = forger.sign(f.trail.chain(), 4, &signed.head, &signed.time);
    assert!(!chain.signed(&forged_checkpoint));

    // The retired key's signature counts up to its retirement (and a minute's grace), not after.
    let retired = f
        .trail
        .dir()
        .introductions()
        .expect("read")
        .remove(0)
        .expect("parsed");
    let retired_at = airlock_runtime::clock::parse_rfc3339_ms(&retired.time).expect("time");
    let chain = f.trail.dir().key_chain(anchor).expect("chain");
    let thief = AuditDir::open(stolen.path(), f._data.path())
        .expect("dir")
        .signer()
        .expect("the old key");
    let at = |ms: u64| airlock_runtime::clock::rfc3339_ms(ms);
    let within = thief.sign(f.trail.chain(), 4, &signed.head, &at(retired_at + 30_000));
    assert!(
        chain.signed(&within),
        "a server may sign once more before it reads the new key"
    );
    let late = thief.sign(f.trail.chain(), 4, &signed.head, &at(retired_at + 120_000));
    assert!(
        !chain.signed(&late),
        "a retired key signs nothing after its retirement"
    );
}
