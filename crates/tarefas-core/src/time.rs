//! Wall-clock helpers: turning a local date-time in a task's zone into an instant, with the
//! rules of cron at daylight-saving edges, and the few parsers the task file needs.

use chrono::{
    DateTime, Duration, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Timelike, Utc,
};
use chrono_tz::Tz;

/// The instant at which a local wall-clock time happens in `tz`, as cron would fire it:
/// a time that happens twice (fall-back) resolves to its first occurrence; a time that does
/// not exist (spring-forward gap) resolves to the first instant after the gap.
pub fn resolve_local(tz: Tz, local: NaiveDateTime) -> DateTime<Utc> {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(t) => t.with_timezone(&Utc),
        LocalResult::Ambiguous(a, b) => a.min(b).with_timezone(&Utc),
        LocalResult::None => first_instant_at_or_after(tz, local),
    }
}

/// The smallest instant whose local time in `tz` is at or after `local` (used inside a gap,
/// where the answer is the instant the clocks jump).
fn first_instant_at_or_after(tz: Tz, local: NaiveDateTime) -> DateTime<Utc> {
    // Offsets stay within ±26 hours, so the answer lies within 40 hours of `local` read as
    // UTC; local time is monotonic across a gap, so bisect to the second.
    let local_of = |secs: i64| {
        DateTime::<Utc>::from_timestamp(secs, 0).map(|t| t.with_timezone(&tz).naive_local())
    };
    let guess = local.and_utc().timestamp();
    let (mut lo, mut hi) = (guess - 40 * 3600, guess + 40 * 3600);
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if local_of(mid).is_some_and(|l| l >= local) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    let secs = if local_of(lo).is_some_and(|l| l >= local) {
        lo
    } else {
        hi
    };
    DateTime::<Utc>::from_timestamp(secs, 0).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// The instant a local calendar day starts in `tz` (midnight, or the first instant after a
/// gap at midnight).
pub fn start_of_day(tz: Tz, date: NaiveDate) -> DateTime<Utc> {
    resolve_local(tz, date.and_time(NaiveTime::MIN))
}

/// The instant the day after `date` starts: `[start_of_day(date), end_of_day(date))` is the
/// whole day.
pub fn end_of_day(tz: Tz, date: NaiveDate) -> DateTime<Utc> {
    match date.succ_opt() {
        Some(next) => start_of_day(tz, next),
        None => DateTime::<Utc>::MAX_UTC,
    }
}

/// The smallest local date-time (to the second) that [`resolve_local`] maps to an instant at
/// or after `t` (or strictly after it, when `strict`). Because `resolve_local` never goes
/// backwards, "the value resolves to ≥ t" is the same as "the value ≥ this threshold": a
/// query can compare local date-times as written, with no time-zone arithmetic, and agree
/// with the evaluator to the second.
pub fn local_threshold(tz: Tz, t: DateTime<Utc>, strict: bool) -> NaiveDateTime {
    let passes = |n: NaiveDateTime| {
        let r = resolve_local(tz, n);
        if strict {
            r > t
        } else {
            r >= t
        }
    };
    let guess = t.with_timezone(&tz).naive_local();
    let mut lo = guess - Duration::hours(30);
    let mut hi = guess + Duration::hours(30);
    // Whole seconds: local values are written to the second.
    lo = lo.with_nanosecond(0).unwrap_or(lo);
    hi = hi.with_nanosecond(0).unwrap_or(hi);
    while (hi - lo).num_seconds() > 1 {
        let mid = lo + Duration::seconds((hi - lo).num_seconds() / 2);
        if passes(mid) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    if passes(lo) {
        lo
    } else {
        hi
    }
}

/// The first calendar date whose [`start_of_day`] is at or after `t` (strictly after, when
/// `strict`): the date-only counterpart of [`local_threshold`].
pub fn date_threshold(tz: Tz, t: DateTime<Utc>, strict: bool) -> NaiveDate {
    let mut d = t.with_timezone(&tz).date_naive() - Duration::days(1);
    loop {
        let s = start_of_day(tz, d);
        if (strict && s > t) || (!strict && s >= t) {
            return d;
        }
        match d.succ_opt() {
            Some(next) => d = next,
            None => return d,
        }
    }
}

/// Parses `HH:MM` (hours 0..23, one or two digits; minutes two digits).
pub fn parse_hh_mm(s: &str) -> Option<NaiveTime> {
    let (h, m) = s.split_once(':')?;
    if h.is_empty() || h.len() > 2 || m.len() != 2 {
        return None;
    }
    if !h.bytes().chain(m.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    NaiveTime::from_hms_opt(h.parse().ok()?, m.parse().ok()?, 0)
}

/// Parses a calendar date `YYYY-MM-DD`.
pub fn parse_date(s: &str) -> Option<NaiveDate> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    if !b
        .iter()
        .enumerate()
        .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
    {
        return None;
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()
}

/// Parses a local date-time `YYYY-MM-DDTHH:MM[:SS]` (a space may stand for the `T`).
pub fn parse_local_datetime(s: &str) -> Option<NaiveDateTime> {
    if s.len() < 16 || !s.is_char_boundary(10) {
        return None;
    }
    let (date, rest) = s.split_at(10);
    let date = parse_date(date)?;
    let rest = rest.strip_prefix('T').or_else(|| rest.strip_prefix(' '))?;
    let time = match rest.len() {
        5 => parse_hh_mm(rest)?,
        8 => {
            let (hm, sec) = rest.split_at(5);
            let sec = sec.strip_prefix(':')?;
            if sec.len() != 2 || !sec.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let t = parse_hh_mm(hm)?;
            t.with_second(sec.parse().ok()?)?
        }
        _ => return None,
    };
    Some(date.and_time(time))
}

/// A point in time as written in a filter or a custom field: a whole day, a local date-time
/// (read in the task's zone), or an absolute instant (with `Z` or an offset).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeValue {
    /// `YYYY-MM-DD`: a whole day in the task's zone.
    Date(NaiveDate),
    /// `YYYY-MM-DDTHH:MM[:SS]`: a wall-clock time in the task's zone.
    Local(NaiveDateTime),
    /// RFC 3339 with `Z` or an offset.
    Instant(DateTime<Utc>),
}

impl TimeValue {
    /// Parses any of the three forms; `None` when the text is none of them.
    pub fn parse(s: &str) -> Option<TimeValue> {
        if let Some(d) = parse_date(s) {
            return Some(TimeValue::Date(d));
        }
        if let Some(l) = parse_local_datetime(s) {
            return Some(TimeValue::Local(l));
        }
        if s.len() >= 20 && s.as_bytes().get(4) == Some(&b'-') {
            let normalized = s.replacen(' ', "T", 1);
            if let Ok(t) = DateTime::parse_from_rfc3339(&normalized) {
                return Some(TimeValue::Instant(t.with_timezone(&Utc)));
            }
        }
        None
    }

    /// The first instant this value covers: midnight of a date, the time itself otherwise.
    pub fn start(self, tz: Tz) -> DateTime<Utc> {
        match self {
            TimeValue::Date(d) => start_of_day(tz, d),
            TimeValue::Local(l) => resolve_local(tz, l),
            TimeValue::Instant(t) => t,
        }
    }

    /// The instant just past what this value covers: the next midnight for a date; for a
    /// point in time, the point itself (callers decide whether the bound is inclusive).
    pub fn end(self, tz: Tz) -> DateTime<Utc> {
        match self {
            TimeValue::Date(d) => end_of_day(tz, d),
            other => other.start(tz),
        }
    }

    /// True when the value is a whole day.
    pub fn is_date(self) -> bool {
        matches!(self, TimeValue::Date(_))
    }
}

/// A relative duration as filters write it: a positive whole number followed by `m`
/// (minutes), `h` (hours), `d` (days) or `w` (weeks), e.g. `30m`, `6h`, `7d`.
pub fn parse_relative(s: &str) -> Option<Duration> {
    let unit = s.chars().last()?;
    let digits = &s[..s.len() - unit.len_utf8()];
    if digits.is_empty() || digits.len() > 7 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: i64 = digits.parse().ok()?;
    if n == 0 {
        return None;
    }
    let minutes = match unit {
        'm' => n,
        'h' => n * 60,
        'd' => n * 60 * 24,
        'w' => n * 60 * 24 * 7,
        _ => return None,
    };
    // At most about 100 years back.
    if minutes > 60 * 24 * 366 * 100 {
        return None;
    }
    Some(Duration::minutes(minutes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn gap_resolves_to_the_instant_after_it() {
        let ny: Tz = "America/New_York".parse().unwrap();
        let l = parse_local_datetime("2026-03-08T02:30").unwrap();
        assert_eq!(resolve_local(ny, l), utc("2026-03-08T07:00:00Z"));
        let l = parse_local_datetime("2026-03-08T02:00").unwrap();
        assert_eq!(resolve_local(ny, l), utc("2026-03-08T07:00:00Z"));
    }

    #[test]
    fn overlap_resolves_to_the_first_occurrence() {
        let ny: Tz = "America/New_York".parse().unwrap();
        let l = parse_local_datetime("2026-11-01T01:30").unwrap();
        assert_eq!(resolve_local(ny, l), utc("2026-11-01T05:30:00Z"));
    }

    #[test]
    fn midnight_gap_day_starts_after_the_gap() {
        // Sao Paulo sprang forward at midnight on 2018-11-04.
        let sp: Tz = "America/Sao_Paulo".parse().unwrap();
        let d = parse_date("2018-11-04").unwrap();
        assert_eq!(start_of_day(sp, d), utc("2018-11-04T03:00:00Z"));
    }

    #[test]
    fn thresholds_agree_with_resolution() {
        let ny: Tz = "America/New_York".parse().unwrap();
        for t in [
            "2026-03-08T07:00:00Z", // the instant after the spring gap
            "2026-03-08T06:59:59Z",
            "2026-11-01T05:30:00Z", // first pass of the repeated hour
            "2026-11-01T06:30:00Z", // second pass
            "2026-11-01T06:59:59.5Z",
            "2026-06-01T12:00:00Z",
        ] {
            let t = utc(t);
            for strict in [false, true] {
                let n = local_threshold(ny, t, strict);
                let ok = |n| {
                    if strict {
                        resolve_local(ny, n) > t
                    } else {
                        resolve_local(ny, n) >= t
                    }
                };
                assert!(ok(n), "{n} must pass for {t} strict={strict}");
                assert!(
                    !ok(n - Duration::seconds(1)),
                    "{n} - 1s must not pass for {t}"
                );
                let d = date_threshold(ny, t, strict);
                let okd = |d| {
                    if strict {
                        start_of_day(ny, d) > t
                    } else {
                        start_of_day(ny, d) >= t
                    }
                };
                assert!(okd(d) && !okd(d.pred_opt().unwrap()), "{d} for {t}");
            }
        }
    }

    #[test]
    fn parsers() {
        assert!(parse_hh_mm("09:00").is_some());
        assert!(parse_hh_mm("9:05").is_some());
        assert!(parse_hh_mm("24:00").is_none());
        assert!(parse_hh_mm("12:60").is_none());
        assert!(parse_hh_mm("12:5").is_none());
        assert!(parse_date("2026-02-29").is_none());
        assert!(parse_date("2028-02-29").is_some());
        assert!(parse_date("2026-2-09").is_none());
        assert!(parse_local_datetime("2026-01-02T03:04").is_some());
        assert!(parse_local_datetime("2026-01-02 03:04:05").is_some());
        assert!(parse_local_datetime("2026-01-02T03:04:65").is_none());
        assert_eq!(
            TimeValue::parse("2026-01-02T03:04:05-03:00"),
            Some(TimeValue::Instant(utc("2026-01-02T06:04:05Z")))
        );
        assert_eq!(TimeValue::parse("ontem"), None);
        assert_eq!(parse_relative("30m"), Some(Duration::minutes(30)));
        assert_eq!(parse_relative("7d"), Some(Duration::days(7)));
        assert_eq!(parse_relative("0d"), None);
        assert_eq!(parse_relative("5y"), None);
        assert_eq!(parse_relative("d"), None);
        assert_eq!(parse_relative("-5d"), None);
    }
}
