//! When a schedule's ticks fall: a cron expression (`croner`'s grammar: five fields, or six
//! with seconds first; `L`, `W`, `#` and the `@hourly` aliases) read in an IANA time zone, so
//! `0 9 * * MON-FRI` in `Europe/Berlin` is nine o'clock there through daylight saving.
//!
//! A node that finds a schedule due judges its tick with [`Timetable::judge`]. A scheduler a
//! few ticks behind (a busy node) catches up one tick at a time; more ticks due than
//! [`CATCH_UP`] means nothing ran for a while: those are counted and skipped, never replayed
//! in a burst, and the latest runs. A tick runs only if it is at most [`GRACE`] late.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds};

/// The latest a tick may run after its time; a later one is skipped.
pub const GRACE: Duration = Duration::from_secs(60);
/// The most ticks due at once that are still run one by one; more were missed.
pub const CATCH_UP: u64 = 10;
/// The most missed ticks counted one by one; past it the count is a lower bound.
const MAX_COUNTED: u64 = 100_000;
/// The longest cron expression accepted.
const MAX_EXPRESSION: usize = 256;

/// The first field of `cron` that selects no value at all, if one does. croner accepts such a
/// field (`,`, a bare `+`) and then looks for a tick until the year 5000: seconds of CPU for
/// each search (found by the `cron` fuzz target), for an expression that never fires.
fn empty_field(cron: &Cron) -> Option<&'static str> {
    // Every kind of value a field can select (plain, nth weekday, last, nearest weekday), and
    // `L` alone in the day of the month, which croner keeps as a flag of the whole field.
    const BITS: [u8; 8] = [1, 2, 4, 8, 16, 32, 64, 128];
    const LAST: u8 = 64;
    let p = &cron.pattern;
    let fields = [
        (
            "second",
            BITS.map(|bit| p.seconds.get_set_values(bit)),
            false,
        ),
        (
            "minute",
            BITS.map(|bit| p.minutes.get_set_values(bit)),
            false,
        ),
        ("hour", BITS.map(|bit| p.hours.get_set_values(bit)), false),
        (
            "day-of-month",
            BITS.map(|bit| p.days.get_set_values(bit)),
            p.days.is_feature_enabled(LAST),
        ),
        ("month", BITS.map(|bit| p.months.get_set_values(bit)), false),
        (
            "day-of-week",
            BITS.map(|bit| p.days_of_week.get_set_values(bit)),
            p.days_of_week.is_feature_enabled(LAST),
        ),
    ];
    fields
        .into_iter()
        .find(|(_, values, last)| !last && values.iter().all(Vec::is_empty))
        .map(|(field, _, _)| field)
}

/// A cron expression refused, or a time zone unknown.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimetableError {
    #[error("invalid cron expression {cron:?}: {reason}")]
    Cron { cron: String, reason: String },
    #[error("unknown time zone {0:?}: name an IANA zone such as \"Europe/Berlin\" or \"UTC\"")]
    Zone(String),
    #[error("the cron expression {0:?} never fires")]
    Never(String),
}

/// A parsed cron expression and the zone it is read in.
#[derive(Debug, Clone)]
pub struct Timetable {
    cron: Cron,
    zone: Tz,
}

/// How a due tick is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Judged {
    /// The tick handled now: the one due, or the latest if more than [`CATCH_UP`] were.
    pub latest: u64,
    /// Ticks before it that nothing ran at.
    pub missed: u64,
    /// Whether it is recent enough to run.
    pub runs: bool,
    /// The tick after it, if the expression has one.
    pub next: Option<u64>,
}

impl Timetable {
    /// Parses `cron` in `zone`, refusing an expression that never fires.
    pub fn parse(cron: &str, zone: &str) -> Result<Self, TimetableError> {
        let refused = |reason: String| TimetableError::Cron {
            cron: cron.to_string(),
            reason,
        };
        if cron.len() > MAX_EXPRESSION {
            return Err(refused(format!("longer than {MAX_EXPRESSION} bytes")));
        }
        let parsed = CronParser::builder()
            .seconds(Seconds::Optional)
            .build()
            .parse(cron)
            .map_err(|e| refused(e.to_string()))?;
        if let Some(field) = empty_field(&parsed) {
            return Err(refused(format!("its {field} field selects no value")));
        }
        let zone = Tz::from_str(zone).map_err(|_| TimetableError::Zone(zone.to_string()))?;
        let timetable = Self { cron: parsed, zone };
        if timetable
            .after(airlock_runtime::clock::now_unix_ms())
            .is_none()
        {
            return Err(TimetableError::Never(cron.to_string()));
        }
        Ok(timetable)
    }

    /// The first tick strictly after `at` (Unix ms), if any.
    pub fn after(&self, at: u64) -> Option<u64> {
        let from = self.zoned(at)?;
        let next = self.cron.find_next_occurrence(&from, false).ok()?;
        u64::try_from(next.timestamp_millis()).ok()
    }

    /// How the tick `due` is handled at `now` (module doc).
    pub fn judge(&self, due: u64, now: u64) -> Judged {
        let mut latest = due;
        let mut missed = 0;
        while let Some(tick) = self.after(latest).filter(|&t| t <= now) {
            if missed == MAX_COUNTED {
                latest = self.at_or_before(now).unwrap_or(tick);
                break;
            }
            latest = tick;
            missed += 1;
        }
        if missed < CATCH_UP {
            (latest, missed) = (due, 0);
        }
        let grace = u64::try_from(GRACE.as_millis()).unwrap_or(u64::MAX);
        Judged {
            latest,
            missed,
            runs: now.saturating_sub(latest) <= grace,
            next: self.after(latest),
        }
    }

    fn at_or_before(&self, at: u64) -> Option<u64> {
        let from = self.zoned(at)?;
        let tick = self.cron.find_previous_occurrence(&from, true).ok()?;
        u64::try_from(tick.timestamp_millis()).ok()
    }

    /// `at` in the zone, to the whole second (ticks fall on whole seconds).
    fn zoned(&self, at: u64) -> Option<DateTime<Tz>> {
        let at = i64::try_from(at - at % 1000).ok()?;
        Some(
            Utc.timestamp_millis_opt(at)
                .single()?
                .with_timezone(&self.zone),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-03-29 00:00:00 UTC: Europe/Berlin moves to summer time at 01:00 UTC that day.
    const SPRING: u64 = 1_774_742_400_000;
    const MINUTE: u64 = 60_000;

    #[test]
    fn five_and_six_field_expressions_are_read_in_their_zone() {
        let every_second = Timetable::parse("*/1 * * * * *", "UTC").expect("seconds");
        assert_eq!(every_second.after(SPRING), Some(SPRING + 1000));
        assert_eq!(every_second.after(SPRING + 1), Some(SPRING + 1000));
        let quarter = Timetable::parse("*/15 * * * *", "UTC").expect("minutes");
        assert_eq!(quarter.after(SPRING), Some(SPRING + 15 * MINUTE));
        // Nine o'clock in Berlin is 08:00 UTC in winter, 07:00 UTC in summer.
        let nine = Timetable::parse("0 9 * * *", "Europe/Berlin").expect("zoned");
        let day = 24 * 60 * MINUTE;
        assert_eq!(
            nine.after(SPRING - day),
            Some(SPRING - day + 8 * 60 * MINUTE)
        );
        assert_eq!(nine.after(SPRING), Some(SPRING + 7 * 60 * MINUTE));
        assert!(Timetable::parse("@hourly", "UTC").is_ok());
    }

    #[test]
    fn a_field_that_selects_nothing_is_refused_before_any_search() {
        // Inputs the cron fuzz target found: croner accepts them, then searched for seconds.
        for (cron, field) in [("0 8 * 3 +", "day-of-week"), (", * ,\u{c}* 6", "minute")] {
            let refused = Timetable::parse(cron, "Etc/GMT+8").expect_err(cron);
            assert!(
                refused
                    .to_string()
                    .contains(&format!("its {field} field selects no value")),
                "{refused}"
            );
        }
        for fine in [
            "0 9 ? * MON",
            "0 0 L * *",
            "0 0 * * 5#2",
            "0 0 15W * *",
            "@hourly",
        ] {
            Timetable::parse(fine, "UTC").unwrap_or_else(|e| panic!("{fine}: {e}"));
        }
    }

    #[test]
    fn bad_expressions_and_zones_are_refused_by_name() {
        for bad in ["", "* * *", "61 * * * *", "* * * * * * * *", "every minute"] {
            let refused = Timetable::parse(bad, "UTC").expect_err(bad);
            assert!(
                refused.to_string().contains("invalid cron expression"),
                "{refused}"
            );
        }
        let refused = Timetable::parse(&"* ".repeat(200), "UTC").expect_err("long");
        assert!(refused.to_string().contains("longer than"), "{refused}");
        let refused = Timetable::parse("* * * * *", "Mars/Olympus").expect_err("zone");
        assert_eq!(refused, TimetableError::Zone("Mars/Olympus".into()));
        let refused = Timetable::parse("0 0 30 2 *", "UTC").expect_err("never");
        assert!(matches!(refused, TimetableError::Never(_)), "{refused}");
    }

    #[test]
    fn missed_ticks_are_counted_and_only_a_recent_latest_one_runs() {
        let minutely = Timetable::parse("* * * * *", "UTC").expect("minutes");
        let on_time = minutely.judge(SPRING, SPRING + 200);
        assert_eq!(
            on_time,
            Judged {
                latest: SPRING,
                missed: 0,
                runs: true,
                next: Some(SPRING + MINUTE),
            }
        );
        let tens = Timetable::parse("*/10 * * * * *", "UTC").expect("seconds");
        let behind = tens.judge(SPRING, SPRING + 25_000);
        assert_eq!(
            behind,
            Judged {
                latest: SPRING,
                missed: 0,
                runs: true,
                next: Some(SPRING + 10_000),
            },
            "two ticks behind: caught up one at a time"
        );
        let back = minutely.judge(SPRING, SPRING + 10 * MINUTE + 5_000);
        assert_eq!(
            back,
            Judged {
                latest: SPRING + 10 * MINUTE,
                missed: 10,
                runs: true,
                next: Some(SPRING + 11 * MINUTE),
            },
            "ten ticks missed, the latest five seconds late runs"
        );
        let hourly = Timetable::parse("0 * * * *", "UTC").expect("hours");
        let stale = hourly.judge(SPRING, SPRING + 30 * MINUTE);
        assert!(!stale.runs, "half an hour late is skipped");
        assert_eq!((stale.missed, stale.next), (0, Some(SPRING + 60 * MINUTE)));
    }

    #[test]
    fn a_long_outage_of_a_fast_schedule_is_counted_without_end() {
        let every_second = Timetable::parse("* * * * * *", "UTC").expect("seconds");
        let week = 7 * 24 * 60 * MINUTE;
        let judged = every_second.judge(SPRING, SPRING + week);
        assert_eq!(judged.latest, SPRING + week);
        assert!(judged.missed >= MAX_COUNTED);
        assert!(judged.runs);
    }
}
