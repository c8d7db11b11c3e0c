//! airlock-platform's parser of schedules: cron expressions and time zones.

use airlock_platform::timetable::Timetable;

use super::decode;

/// Parsed or refused by name; a schedule that parses judges any tick without a panic, and
/// its next tick is later.
pub fn cron(data: &[u8]) {
    let Some((cron, zone, due, late)) = decode::<(String, String, u32, u32)>(data) else {
        return;
    };
    if let Ok(timetable) = Timetable::parse(&cron, &zone) {
        let due = 1_700_000_000_000 + u64::from(due);
        if let Some(next) = timetable.after(due) {
            assert!(next > due);
        }
        let judged = timetable.judge(due, due + u64::from(late % 600_000));
        assert!(judged.next.is_none_or(|next| next > judged.latest));
    }
}
