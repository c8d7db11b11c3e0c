//! Schedules: created with a sealed input, found when due, each tick fired once however many
//! callers race for it (its run queued with the schedule's input in the same write), missed
//! ticks and ticks a full queue refuses counted as skipped, paused and resumed, listed, and
//! gone with their installation or tenant.

use std::time::Duration;

use super::{Subject, installation, race, tenant};
use crate::Storage;
use crate::runs::{NewRun, RunQuery, RunTrigger};
use crate::schedules::{Fired, NewSchedule, Tick};
use airlock_runtime::ids::{InstallationId, TenantId};

const INPUT: &[u8] = b"{\"since\":\"yesterday\"}";

fn create(s: &dyn Storage, id: &str, crm: &str, first_tick: u64) {
    let (acme, crm) = (tenant("acme"), installation(crm));
    let new = NewSchedule {
        id,
        tenant: &acme,
        installation: &crm,
        action: "sync",
        cron: "* * * * * *",
        timezone: "UTC",
        now: 10,
        first_tick,
    };
    let schedule = s.create_schedule(&new, INPUT).expect("create");
    assert_eq!(schedule.next_tick, Some(first_tick));
}

fn run_of<'a>(
    id: &'a str,
    acme: &'a TenantId,
    crm: &'a InstallationId,
    at: u64,
    limit: u64,
) -> NewRun<'a> {
    NewRun {
        id,
        tenant: acme,
        installation: crm,
        action: "sync",
        trigger: RunTrigger::Schedule,
        max_attempts: 3,
        now: at,
        pending_limit: limit,
        tick: Some(at),
    }
}

/// The tick of `schedule` due at `due`, firing it (with run `run`) unless `late`.
fn tick<'a>(schedule: &'a str, due: u64, run: Option<NewRun<'a>>, missed: u64) -> Tick<'a> {
    Tick {
        schedule,
        due,
        latest: due + missed * 1000,
        next: Some(due + (missed + 1) * 1000),
        missed,
        run,
        now: due + missed * 1000,
    }
}

pub fn each_tick_fires_once_and_queues_a_run_with_the_schedules_input(subject: Subject) {
    let s = &*subject.storage;
    let (acme, crm) = (tenant("acme"), installation("crm"));
    s.create_tenant(&acme).expect("tenant");
    create(s, "sch-1", "crm", 1000);
    assert!(
        s.create_schedule(
            &NewSchedule {
                id: "sch-1",
                tenant: &acme,
                installation: &crm,
                action: "sync",
                cron: "* * * * *",
                timezone: "UTC",
                now: 10,
                first_tick: 60_000,
            },
            b"{}"
        )
        .is_err(),
        "a schedule id is taken once"
    );
    assert_eq!(s.next_schedule_tick().expect("next"), Some(1000));
    assert!(s.due_schedules(999, 10).expect("due").is_empty());
    assert_eq!(s.due_schedules(1000, 10).expect("due").len(), 1);

    let first = tick(
        "sch-1",
        1000,
        Some(run_of("run-1000", &acme, &crm, 1000, 10)),
        0,
    );
    assert_eq!(
        s.fire_schedule(&first).expect("fire"),
        Fired::Queued("run-1000".into())
    );
    assert_eq!(
        s.fire_schedule(&first).expect("fire"),
        Fired::Taken,
        "a tick fires once"
    );
    let schedule = s.schedule(&acme, "sch-1").expect("read").expect("kept");
    assert_eq!(
        (schedule.fired, schedule.next_tick, schedule.last_tick),
        (1, Some(2000), Some(1000))
    );
    assert_eq!(schedule.last_run.as_deref(), Some("run-1000"));
    let claimed = s
        .claim_run(1000, Duration::from_secs(1))
        .expect("claim")
        .expect("queued");
    assert_eq!(
        &*claimed.input, INPUT,
        "the schedule's input, sealed for the run"
    );
    assert_eq!(
        (claimed.run.trigger, claimed.run.tick),
        (RunTrigger::Schedule, Some(1000))
    );

    // Down from 2000 to 5000: three ticks missed, the latest one run.
    let late = tick(
        "sch-1",
        2000,
        Some(run_of("run-5000", &acme, &crm, 5000, 10)),
        3,
    );
    assert_eq!(
        s.fire_schedule(&late).expect("fire"),
        Fired::Queued("run-5000".into())
    );
    // The next one too late to run: skipped with it.
    let skipped = tick("sch-1", 6000, None, 0);
    assert_eq!(s.fire_schedule(&skipped).expect("fire"), Fired::Skipped);
    let schedule = s.schedule(&acme, "sch-1").expect("read").expect("kept");
    assert_eq!(
        (schedule.fired, schedule.skipped, schedule.next_tick),
        (2, 4, Some(7000))
    );
    assert_eq!(s.schedule(&tenant("beta"), "sch-1").expect("read"), None);
}

pub fn racing_callers_fire_a_tick_once(subject: Subject) {
    let s = &*subject.storage;
    let (acme, crm) = (tenant("acme"), installation("crm"));
    s.create_tenant(&acme).expect("tenant");
    create(s, "sch-1", "crm", 1000);
    let fired = race(|_| {
        let run = run_of("run-1000", &acme, &crm, 1000, 10);
        s.fire_schedule(&tick("sch-1", 1000, Some(run), 0))
            .expect("fire")
    });
    let queued = fired
        .iter()
        .filter(|f| matches!(f, Fired::Queued(_)))
        .count();
    assert_eq!(queued, 1, "{fired:?}");
    assert!(
        fired
            .iter()
            .all(|f| matches!(f, Fired::Queued(_) | Fired::Taken)),
        "{fired:?}"
    );
    let runs = s
        .runs(
            &acme,
            &RunQuery {
                limit: 10,
                ..Default::default()
            },
        )
        .expect("runs");
    assert_eq!(runs.len(), 1);
}

pub fn a_tick_a_full_queue_refuses_is_skipped(subject: Subject) {
    let s = &*subject.storage;
    let (acme, crm) = (tenant("acme"), installation("crm"));
    s.create_tenant(&acme).expect("tenant");
    create(s, "sch-1", "crm", 1000);
    let run = run_of("run-1000", &acme, &crm, 1000, 0);
    assert_eq!(
        s.fire_schedule(&tick("sch-1", 1000, Some(run), 0))
            .expect("fire"),
        Fired::Skipped
    );
    let schedule = s.schedule(&acme, "sch-1").expect("read").expect("kept");
    assert_eq!(
        (schedule.fired, schedule.skipped, schedule.next_tick),
        (0, 1, Some(2000))
    );
    assert_eq!(s.run(&acme, "run-1000").expect("read"), None);
}

pub fn schedules_are_paused_resumed_listed_and_deleted(subject: Subject) {
    let s = &*subject.storage;
    let (acme, crm, erp) = (tenant("acme"), installation("crm"), installation("erp"));
    s.create_tenant(&acme).expect("tenant");
    create(s, "sch-1", "crm", 1000);
    create(s, "sch-2", "crm", 1000);
    create(s, "sch-3", "erp", 1000);
    let paused = s
        .pause_schedule(&acme, "sch-1", true, 0, 50)
        .expect("pause")
        .expect("there");
    assert!(paused.paused && paused.next_tick.is_none());
    let due: Vec<String> = s
        .due_schedules(5000, 10)
        .expect("due")
        .into_iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(due, ["sch-2", "sch-3"], "a paused schedule is never due");
    let resumed = s
        .pause_schedule(&acme, "sch-1", false, 9000, 60)
        .expect("resume")
        .expect("there");
    assert_eq!((resumed.paused, resumed.next_tick), (false, Some(9000)));
    assert_eq!(
        s.pause_schedule(&tenant("beta"), "sch-1", true, 0, 70)
            .expect("pause"),
        None
    );
    let ids = |installation: Option<&InstallationId>| -> Vec<String> {
        s.schedules(&acme, installation)
            .expect("list")
            .into_iter()
            .map(|d| d.id)
            .collect()
    };
    assert_eq!(ids(None), ["sch-1", "sch-2", "sch-3"]);
    assert_eq!(ids(Some(&crm)), ["sch-1", "sch-2"]);
    assert!(s.delete_schedule(&acme, "sch-2").expect("delete"));
    assert!(!s.delete_schedule(&acme, "sch-2").expect("again"));
    assert_eq!(s.delete_schedules(&acme, &crm).expect("delete"), 1);
    assert_eq!(ids(None), ["sch-3"]);
    assert_eq!(s.next_schedule_tick().expect("next"), Some(1000));
    assert!(s.delete_tenant(&acme).expect("delete"));
    assert_eq!(s.schedules(&acme, Some(&erp)).expect("list"), []);
    assert_eq!(s.next_schedule_tick().expect("next"), None);
}

pub fn a_tick_whose_run_is_queued_already_only_moves_the_schedule_on(subject: Subject) {
    let s = &*subject.storage;
    let (acme, crm) = (tenant("acme"), installation("crm"));
    s.create_tenant(&acme).expect("tenant");
    create(s, "sch-1", "crm", 1000);
    let first = tick(
        "sch-1",
        1000,
        Some(run_of("run-1000", &acme, &crm, 1000, 10)),
        0,
    );
    assert!(matches!(s.fire_schedule(&first), Ok(Fired::Queued(_))));
    // Resumed by a node whose clock lags: its next tick is one that fired already.
    s.pause_schedule(&acme, "sch-1", true, 0, 1100)
        .expect("pause");
    s.pause_schedule(&acme, "sch-1", false, 1000, 1200)
        .expect("resume");
    let again = tick(
        "sch-1",
        1000,
        Some(run_of("run-1000", &acme, &crm, 1000, 10)),
        0,
    );
    assert_eq!(s.fire_schedule(&again).expect("fire"), Fired::Taken);
    let schedule = s.schedule(&acme, "sch-1").expect("read").expect("kept");
    assert_eq!(
        (schedule.next_tick, schedule.fired, schedule.skipped),
        (Some(2000), 1, 0),
        "moved on, neither fired twice nor counted as skipped"
    );
    assert_eq!(s.due_schedules(1999, 10).expect("due"), []);
}
