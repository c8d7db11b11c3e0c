//! Runs: queued with a sealed input, claimed once each when due, claimed again when a claim
//! lapses (and the lapsed claim refused), finished, retried while the input is kept, listed
//! through the history indexes, and gone with their tenant.

use std::collections::HashSet;
use std::time::Duration;

use super::{RACERS, Subject, installation, race, tenant};
use crate::Storage;
use crate::StoreError;
use crate::runs::{NewRun, Requeued, RunEnd, RunQuery, RunStatus, RunTrigger};
use airlock_runtime::ids::{InstallationId, TenantId};

const LEASE: Duration = Duration::from_secs(1);
const LIMIT: u64 = 100;

fn new_run<'a>(
    id: &'a str,
    tenant: &'a TenantId,
    crm: &'a InstallationId,
    now: u64,
    pending_limit: u64,
) -> NewRun<'a> {
    NewRun {
        id,
        tenant,
        installation: crm,
        action: "sync",
        trigger: RunTrigger::Api,
        max_attempts: 3,
        now,
        pending_limit,
        tick: None,
    }
}

fn queue(s: &dyn Storage, id: &str, crm: &str, now: u64) {
    let (acme, crm) = (tenant("acme"), installation(crm));
    let run = s
        .enqueue_run(
            &new_run(id, &acme, &crm, now, LIMIT),
            format!("{{\"run\":\"{id}\"}}").as_bytes(),
        )
        .expect("enqueue");
    assert_eq!((run.status, run.input_kept), (RunStatus::Queued, true));
}

fn ok() -> RunEnd {
    RunEnd::Succeeded {
        outcome: "ok".into(),
    }
}

pub fn runs_are_claimed_once_when_due_and_finished_once(subject: Subject) {
    let s = &*subject.storage;
    s.create_tenant(&tenant("acme")).expect("tenant");
    assert_eq!(s.next_run_wake().expect("wake"), None);
    queue(s, "run-b", "crm", 100);
    queue(s, "run-a", "crm", 100);
    assert!(
        s.enqueue_run(
            &new_run("run-a", &tenant("acme"), &installation("crm"), 100, LIMIT),
            b"{}"
        )
        .is_err(),
        "a run id is queued once"
    );
    assert_eq!(s.next_run_wake().expect("wake"), Some(100));
    assert!(s.claim_run(99, LEASE).expect("claim").is_none(), "not due");

    let first = s.claim_run(100, LEASE).expect("claim").expect("due");
    assert_eq!(first.run.id, "run-a", "by wake time, then id");
    assert_eq!(&*first.input, b"{\"run\":\"run-a\"}");
    assert_eq!(first.run.status, RunStatus::Running);
    assert_eq!((first.claim, first.run.lease_until), (1, Some(1100)));
    let second = s.claim_run(100, LEASE).expect("claim").expect("due");
    assert_eq!(second.run.id, "run-b");
    assert!(s.claim_run(100, LEASE).expect("claim").is_none());

    assert!(s.finish_run("run-a", 1, &ok(), 150).expect("finish"));
    assert!(
        !s.finish_run("run-a", 1, &ok(), 160).expect("finish"),
        "an attempt ends once"
    );
    let done = s.run(&tenant("acme"), "run-a").expect("read").expect("run");
    assert_eq!(done.status, RunStatus::Succeeded);
    assert!(!done.input_kept, "a succeeded run's input is destroyed");
    assert_eq!(done.attempts.len(), 1);
    assert_eq!(done.attempts[0].outcome.as_deref(), Some("ok"));
    assert_eq!(done.attempts[0].ended, Some(150));
    assert_eq!(s.run(&tenant("beta"), "run-a").expect("read"), None);
}

pub fn a_lapsed_claim_is_claimed_again_and_its_attempt_refused(subject: Subject) {
    let s = &*subject.storage;
    s.create_tenant(&tenant("acme")).expect("tenant");
    queue(s, "run-1", "crm", 100);
    let first = s.claim_run(100, LEASE).expect("claim").expect("due");
    assert!(
        s.claim_run(1099, LEASE).expect("claim").is_none(),
        "claimed"
    );
    let again = s.claim_run(1100, LEASE).expect("claim").expect("lapsed");
    assert_eq!((first.claim, again.claim), (1, 2));
    assert_eq!(again.run.attempts[0].outcome.as_deref(), Some("abandoned"));
    assert!(
        !s.finish_run("run-1", first.claim, &ok(), 1200)
            .expect("finish"),
        "the worker whose claim lapsed cannot end the attempt that replaced it"
    );
    let retry = RunEnd::Retry {
        outcome: "upstream-5xx".into(),
        at: 5000,
    };
    assert!(s.finish_run("run-1", 2, &retry, 1200).expect("finish"));
    let queued = s.run(&tenant("acme"), "run-1").expect("read").expect("run");
    assert_eq!(
        (queued.status, queued.not_before),
        (RunStatus::Queued, 5000)
    );
    assert!(queued.input_kept);
    assert_eq!(s.next_run_wake().expect("wake"), Some(5000));
    assert!(
        s.claim_run(4999, LEASE).expect("claim").is_none(),
        "backing off"
    );
    let third = s.claim_run(5000, LEASE).expect("claim").expect("due");
    assert_eq!(third.claim, 3);
    assert!(third.run.last_attempt(), "three of three");
    assert!(
        s.claim_run(6000, LEASE).expect("claim").is_none(),
        "a run abandoned on its last attempt is not run again"
    );
    let dead = s.run(&tenant("acme"), "run-1").expect("read").expect("run");
    assert_eq!(dead.status, RunStatus::Dead);
    assert_eq!(dead.attempts.len(), 3);
    assert_eq!(dead.attempts[2].outcome.as_deref(), Some("abandoned"));
    assert!(dead.input_kept, "kept for a retry");
    assert_eq!(s.next_run_wake().expect("wake"), None);
}

pub fn a_dead_run_is_retried_while_its_input_is_kept(subject: Subject) {
    let s = &*subject.storage;
    let acme = tenant("acme");
    s.create_tenant(&acme).expect("tenant");
    queue(s, "run-1", "crm", 100);
    let claimed = s.claim_run(100, LEASE).expect("claim").expect("due");
    let dead = RunEnd::Dead {
        outcome: "upstream-5xx".into(),
    };
    assert!(
        s.finish_run("run-1", claimed.claim, &dead, 200)
            .expect("finish")
    );
    assert_eq!(s.next_run_wake().expect("wake"), None, "dead runs sleep");
    let Requeued::Queued(run) = s.retry_run(&acme, "run-1", 300, LIMIT).expect("retry") else {
        panic!("a dead run with its input is queued again");
    };
    assert_eq!(
        (run.status, run.trigger),
        (RunStatus::Queued, RunTrigger::Retry)
    );
    assert_eq!(
        s.retry_run(&acme, "run-1", 300, LIMIT).expect("retry"),
        Requeued::NotEnded(RunStatus::Queued)
    );
    assert_eq!(
        s.retry_run(&tenant("beta"), "run-1", 300, LIMIT)
            .expect("retry"),
        Requeued::NoSuchRun
    );
    let again = s.claim_run(300, LEASE).expect("claim").expect("due");
    assert!(!again.run.last_attempt(), "a retry gets its attempts again");
    assert_eq!(&*again.input, b"{\"run\":\"run-1\"}");
    assert!(
        s.finish_run("run-1", again.claim, &dead, 400)
            .expect("finish")
    );

    assert_eq!(
        s.purge_run_inputs(400).expect("purge"),
        0,
        "within retention"
    );
    assert_eq!(s.purge_run_inputs(401).expect("purge"), 1);
    assert_eq!(
        s.retry_run(&acme, "run-1", 500, LIMIT).expect("retry"),
        Requeued::InputGone
    );
    let kept = s
        .run(&acme, "run-1")
        .expect("read")
        .expect("the record stays");
    assert_eq!((kept.status, kept.input_kept), (RunStatus::Dead, false));

    assert!(s.delete_tenant(&acme).expect("delete"));
    assert_eq!(s.run(&acme, "run-1").expect("read"), None);
}

pub fn the_run_history_is_paged_by_installation_status_and_time(subject: Subject) {
    let s = &*subject.storage;
    let acme = tenant("acme");
    s.create_tenant(&acme).expect("tenant");
    for (n, crm) in ["crm", "erp", "crm", "crm", "erp"].iter().enumerate() {
        queue(s, &format!("run-{n}"), crm, 100 + n as u64);
    }
    let claimed = s.claim_run(200, LEASE).expect("claim").expect("due");
    assert!(
        s.finish_run(&claimed.run.id, 1, &ok(), 300)
            .expect("finish")
    );
    let ids = |query: RunQuery| -> Vec<String> {
        s.runs(&acme, &query)
            .expect("list")
            .into_iter()
            .map(|r| r.id)
            .collect()
    };
    let page = |installation: Option<&str>, after: Option<&str>| RunQuery {
        installation: installation.map(str::to_string),
        after: after.map(str::to_string),
        limit: 2,
        ..RunQuery::default()
    };
    assert_eq!(ids(page(None, None)), ["run-0", "run-1"]);
    assert_eq!(ids(page(None, Some("run-1"))), ["run-2", "run-3"]);
    assert_eq!(ids(page(None, Some("run-3"))), ["run-4"]);
    assert_eq!(ids(page(Some("crm"), None)), ["run-0", "run-2"]);
    assert_eq!(ids(page(Some("crm"), Some("run-2"))), ["run-3"]);
    assert_eq!(
        ids(RunQuery {
            status: Some(RunStatus::Succeeded),
            limit: 10,
            ..RunQuery::default()
        }),
        ["run-0"]
    );
    assert_eq!(
        ids(RunQuery {
            installation: Some("erp".into()),
            since: Some(102),
            limit: 10,
            ..RunQuery::default()
        }),
        ["run-4"]
    );
    assert!(
        s.runs(&tenant("beta"), &page(None, None))
            .expect("list")
            .is_empty()
    );
}

pub fn each_claim_goes_to_one_caller(subject: Subject) {
    let s = &*subject.storage;
    s.create_tenant(&tenant("acme")).expect("tenant");
    for n in 0..3 {
        queue(s, &format!("run-{n}"), "crm", 100);
    }
    let claims = race(|_| s.claim_run(100, LEASE).expect("claim").map(|c| c.run.id));
    let won: Vec<&String> = claims.iter().flatten().collect();
    assert_eq!(won.len(), 3, "{claims:?}");
    assert_eq!(won.iter().collect::<HashSet<_>>().len(), 3, "{claims:?}");
    assert_eq!(claims.len(), RACERS);
}

pub fn an_installations_kv_runs_and_record_are_deleted_and_no_one_elses(subject: Subject) {
    let s = &*subject.storage;
    let (acme, crm, erp) = (tenant("acme"), installation("crm"), installation("erp"));
    s.create_tenant(&acme).expect("tenant");
    for name in ["crm", "erp"] {
        s.put_installation(&super::records::record("acme", name))
            .expect("install");
        let kv = s.kv(&acme, &installation(name));
        for key in ["cursor", "page/1"] {
            kv.set(key, b"v", &super::records::quota()).expect("kv");
        }
        queue(s, &format!("{name}-run"), name, 100);
    }
    assert_eq!(s.delete_kv(&acme, &crm).expect("kv"), 2);
    assert_eq!(s.kv_usage(&acme, &crm).expect("usage").keys, 0);
    assert_eq!(s.kv(&acme, &crm).get("cursor").expect("kv"), None);
    assert_eq!(s.delete_runs(&acme, &crm).expect("runs"), 1);
    assert_eq!(s.run(&acme, "crm-run").expect("read"), None);
    let claimed = s.claim_run(100, LEASE).expect("claim").expect("erp's");
    assert_eq!(claimed.run.id, "erp-run", "a deleted run is never claimed");
    assert!(s.delete_installation(&acme, &crm).expect("delete"));
    assert!(!s.delete_installation(&acme, &crm).expect("again"));
    assert_eq!(s.installation(&acme, &crm).expect("read"), None);

    assert!(s.installation(&acme, &erp).expect("read").is_some());
    assert_eq!(s.kv_usage(&acme, &erp).expect("usage").keys, 2);
    assert_eq!(
        s.kv(&acme, &erp).get("cursor").expect("kv"),
        Some(b"v".to_vec())
    );
    assert!(s.run(&acme, "erp-run").expect("read").is_some());
}

pub fn a_tenant_may_keep_only_so_many_runs_pending(subject: Subject) {
    let s = &*subject.storage;
    let (acme, beta, crm) = (tenant("acme"), tenant("beta"), installation("crm"));
    for t in [&acme, &beta] {
        s.create_tenant(t).expect("tenant");
    }
    let enqueue = |t: &TenantId, id: &str| s.enqueue_run(&new_run(id, t, &crm, 100, 2), b"{}");
    enqueue(&acme, "run-1").expect("first");
    enqueue(&acme, "run-2").expect("second");
    assert!(
        matches!(
            enqueue(&acme, "run-3"),
            Err(StoreError::QueueFull { limit: 2, .. })
        ),
        "the third pending run is refused"
    );
    let claimed = s.claim_run(100, LEASE).expect("claim").expect("due");
    assert_eq!(claimed.run.id, "run-1");
    enqueue(&beta, "beta-1").expect("another tenant's queue is its own");
    assert!(
        matches!(enqueue(&acme, "run-3"), Err(StoreError::QueueFull { .. })),
        "a running run is pending too"
    );
    let dead = RunEnd::Dead {
        outcome: "limit-timeout".into(),
    };
    assert!(
        s.finish_run(&claimed.run.id, claimed.claim, &dead, 200)
            .expect("finish")
    );
    enqueue(&acme, "run-3").expect("an ended run frees its place");
    assert!(
        matches!(
            s.retry_run(&acme, "run-1", 300, 2),
            Err(StoreError::QueueFull { .. })
        ),
        "a retry takes a place too"
    );
    assert_eq!(s.delete_runs(&acme, &crm).expect("delete"), 3);
    enqueue(&acme, "run-4").expect("deleted runs free their places");
}
