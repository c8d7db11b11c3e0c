//! The serving nodes: listed while they mark themselves alive, gone when they leave or stop.

use std::time::Duration;

use super::Subject;

const LONG: Duration = Duration::from_secs(60);

fn live(names: &[&str]) -> Vec<String> {
    names.iter().map(ToString::to_string).collect()
}

pub fn live_members_are_listed_until_they_leave_or_expire(subject: Subject) {
    let s = &*subject.storage;
    assert_eq!(s.heartbeat("b#2", LONG).expect("heartbeat"), live(&["b#2"]));
    assert_eq!(
        s.heartbeat("a#1", LONG).expect("heartbeat"),
        live(&["a#1", "b#2"]),
        "sorted, the caller among them"
    );
    assert_eq!(
        s.heartbeat("b#2", LONG).expect("heartbeat"),
        live(&["a#1", "b#2"]),
        "a second mark is not a second member"
    );
    s.leave("b#2").expect("leave");
    s.leave("never-joined")
        .expect("leaving twice or never joining is no error");
    assert_eq!(s.heartbeat("a#1", LONG).expect("heartbeat"), live(&["a#1"]));

    s.heartbeat("c#3", LONG).expect("heartbeat");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        s.heartbeat("a#1", Duration::from_millis(200))
            .expect("heartbeat"),
        live(&["a#1"]),
        "a member not seen within the expiry is forgotten; the caller never is"
    );
    assert_eq!(
        s.heartbeat("c#3", LONG).expect("heartbeat"),
        live(&["a#1", "c#3"]),
        "a forgotten member that marks itself again is back"
    );
}
