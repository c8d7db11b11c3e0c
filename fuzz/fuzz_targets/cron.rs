//! Cron expressions and time zones of schedules: parsed or refused by name; a schedule that
//! parses judges any tick without a panic, and its next tick is later.
#![no_main]

use airlock_platform::timetable::Timetable;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (String, String, u32, u32)| {
    let (cron, zone, due, late) = input;
    if let Ok(timetable) = Timetable::parse(&cron, &zone) {
        let due = 1_700_000_000_000 + u64::from(due);
        if let Some(next) = timetable.after(due) {
            assert!(next > due);
        }
        let judged = timetable.judge(due, due + u64::from(late % 600_000));
        assert!(judged.next.is_none_or(|next| next > judged.latest));
    }
});
