use std::sync::{Arc, Mutex};

use super::*;

fn rule(threshold: u64, window: u64) -> Rule {
    Rule {
        name: "probe".into(),
        signal: Signal::EgressDenied,
        per: Per::Installation,
        threshold,
        window: HumanDuration(Duration::from_secs(window)),
        quarantine: true,
    }
}

fn installation<'a>(tenant: &'a str, installation: &'a str) -> Subject<'a> {
    Subject {
        tenant: Some(tenant),
        installation: Some(installation),
        key: None,
    }
}

#[test]
fn a_rule_trips_once_per_window_for_each_thing_it_counts() {
    let raised = Arc::new(Mutex::new(Vec::new()));
    let alerts = Alerts::new(vec![rule(3, 60)], {
        let raised = raised.clone();
        move |alert| raised.lock().expect("lock").push(alert)
    });
    let start = Instant::now();
    let acme = installation("acme", "exfil");
    // Three is the threshold: not over it yet.
    assert!(
        alerts
            .count(Signal::EgressDenied, &acme, 3, start)
            .is_empty()
    );
    // Another installation, and another signal, count apart.
    let other = installation("acme", "other");
    assert!(
        alerts
            .count(Signal::EgressDenied, &other, 3, start)
            .is_empty()
    );
    assert!(alerts.count(Signal::LimitKill, &acme, 10, start).is_empty());
    let tripped = alerts.count(Signal::EgressDenied, &acme, 1, start);
    assert_eq!(
        tripped,
        vec![Alert {
            rule: "probe".into(),
            tenant: Some("acme".into()),
            installation: Some("exfil".into()),
            key: None,
            count: 4,
            window: Duration::from_secs(60),
            quarantine: true,
        }]
    );
    // A flood within the window is that one alert.
    let later = start + Duration::from_secs(30);
    assert!(
        alerts
            .count(Signal::EgressDenied, &acme, 100, later)
            .is_empty()
    );
    // Once the window has passed, the old signals are forgotten, and it can trip again.
    let next = start + Duration::from_secs(91);
    assert!(
        alerts
            .count(Signal::EgressDenied, &acme, 3, next)
            .is_empty()
    );
    assert_eq!(alerts.count(Signal::EgressDenied, &acme, 1, next).len(), 1);
    assert!(
        raised.lock().expect("lock").is_empty(),
        "count raises nothing itself"
    );
}

#[test]
fn signals_come_from_the_records_security_events_carry() {
    let record: AuditEvent = serde_json::from_value(serde_json::json!({
        "type": "access-refused",
        "key": "ak_1",
        "tenant": "acme",
        "reason": "missing-scope",
        "route": "GET /v1/installations",
        "peer": "127.0.0.1"
    }))
    .expect("an access refusal");
    let (subject, found) = signals(&record);
    assert_eq!(found, vec![(Signal::AccessRefused, 1)]);
    assert_eq!((subject.tenant, subject.key), (Some("acme"), Some("ak_1")));
    let tenant_change = AuditEvent::TenantChanged {
        tenant: "acme".into(),
        change: airlock_host_api::audit::Change::Set,
    };
    assert!(signals(&tenant_change).1.is_empty());
    // A refusal of a key that did not verify names no tenant: it never counts per key.
    let guessed = Subject {
        tenant: None,
        installation: None,
        key: Some("ak_1"),
    };
    assert!(guessed.scope(0, Per::Key).is_none());
    assert!(subject.scope(0, Per::Key).is_some());
}

#[test]
fn rules_are_checked_and_the_defaults_pass() {
    Rule::check_all(&Rule::defaults()).expect("the defaults are valid");
    let mut per_tenant = rule(1, 60);
    per_tenant.per = Per::Tenant;
    per_tenant.signal = Signal::AccessRefused;
    assert_eq!(
        Rule::check_all(&[per_tenant]),
        Err(RuleError::QuarantinePer("probe".into()))
    );
    let mut keyed = rule(1, 60);
    keyed.per = Per::Key;
    keyed.quarantine = false;
    assert_eq!(
        Rule::check_all(&[keyed]),
        Err(RuleError::KeyPer("probe".into()))
    );
    assert_eq!(
        Rule::check_all(&[rule(1, 60), rule(2, 60)]),
        Err(RuleError::Duplicate("probe".into()))
    );
    assert_eq!(
        Rule::check_all(&[rule(1, 0)]),
        Err(RuleError::Window("probe".into()))
    );
    let mut named = rule(1, 60);
    named.name = "Probe!".into();
    assert_eq!(
        Rule::check_all(&[named]),
        Err(RuleError::Name("Probe!".into()))
    );
}
