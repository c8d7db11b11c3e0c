//! Wall-clock time as stored (Unix seconds) and shown (RFC 3339, UTC).

use std::time::{SystemTime, UNIX_EPOCH};

use airlock_host_api::policy::units::HumanDuration;

/// Seconds since the Unix epoch; 0 if the clock is before it.
pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Milliseconds since the Unix epoch; 0 if the clock is before it.
pub fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// `millis` as `YYYY-MM-DDTHH:MM:SS.mmmZ`: the audit trail's timestamps, which sort as text.
pub fn rfc3339_ms(millis: u64) -> String {
    let seconds = rfc3339(millis / 1000);
    format!("{}.{:03}Z", &seconds[..seconds.len() - 1], millis % 1000)
}

/// `secs` as `YYYY-MM-DDTHH:MM:SSZ` (proleptic Gregorian, UTC).
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from day count (H. Hinnant, "chrono-compatible low-level date algorithms").
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.mmm]Z` (UTC only) into milliseconds since the epoch.
pub fn parse_rfc3339_ms(text: &str) -> Option<u64> {
    let text = text.strip_suffix('Z')?;
    let (date, time) = text.split_once('T')?;
    let (time, millis) = match time.split_once('.') {
        Some((time, fraction)) if fraction.len() == 3 => (time, fraction.parse::<u64>().ok()?),
        Some(_) => return None,
        None => (time, 0),
    };
    let number = |s: &str, len: usize| -> Option<i64> {
        (s.len() == len && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    let mut d = date.split('-');
    let (year, month, day) = (
        number(d.next()?, 4)?,
        number(d.next()?, 2)?,
        number(d.next()?, 2)?,
    );
    let mut t = time.split(':');
    let (hour, minute, second) = (
        number(t.next()?, 2)?,
        number(t.next()?, 2)?,
        number(t.next()?, 2)?,
    );
    if d.next().is_some() || t.next().is_some() {
        return None;
    }
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    // Days from civil (H. Hinnant), the inverse of `rfc3339`.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hour * 3_600 + minute * 60 + second;
    u64::try_from(secs).ok().map(|s| s * 1000 + millis)
}

/// A `since` filter (an RFC 3339 UTC time, or an age in the one duration grammar such as `15m`,
/// `7d` or `1h30m`) in milliseconds since the epoch.
pub fn since_ms(text: &str) -> Option<u64> {
    match parse_rfc3339_ms(text) {
        Some(ms) => Some(ms),
        None => {
            let age: HumanDuration = text.parse().ok()?;
            let age_ms = u64::try_from(age.0.as_millis()).unwrap_or(u64::MAX);
            Some(now_unix_ms().saturating_sub(age_ms))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_795_957_199), "2026-11-29T12:59:59Z");
        assert_eq!(rfc3339(4_107_542_400), "2100-03-01T00:00:00Z");
        assert_eq!(rfc3339_ms(1_795_957_199_007), "2026-11-29T12:59:59.007Z");
    }

    #[test]
    fn ages_use_the_duration_grammar() {
        let now = now_unix_ms();
        let age = |text: &str| now.saturating_sub(since_ms(text).expect(text));
        // Each age is computed after `now`, so it may come out a little short, never long.
        for (text, ms) in [("90s", 90_000), ("1h30m", 5_400_000), ("7d", 604_800_000)] {
            let got = age(text);
            assert!(got <= ms && ms - got < 60_000, "{text}: {got}");
        }
        assert_eq!(since_ms("2026-11-29T12:59:59Z"), Some(1_795_957_199_000));
        for bad in ["0s", "15", "1.5h", "yesterday"] {
            assert_eq!(since_ms(bad), None, "{bad}");
        }
    }

    #[test]
    fn parses_what_it_formats() {
        for ms in [0, 951_782_400_000, 1_795_957_199_007, 4_107_542_400_999] {
            assert_eq!(parse_rfc3339_ms(&rfc3339_ms(ms)), Some(ms));
        }
        assert_eq!(
            parse_rfc3339_ms("2026-11-29T12:59:59Z"),
            Some(1_795_957_199_000)
        );
        for bad in [
            "2026-11-29",
            "2026-13-01T00:00:00Z",
            "2026-11-29T12:59:59+01:00",
            "x",
        ] {
            assert_eq!(parse_rfc3339_ms(bad), None, "{bad}");
        }
    }
}
