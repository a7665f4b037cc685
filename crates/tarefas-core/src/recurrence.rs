//! When a task fires: the recurrence kinds of the task file and `next_after`, the one function
//! the scheduler and `schedule preview` ask.
//!
//! Wall-clock kinds (`daily`, `weekdays`, `month_day`, `cron`) are read in the task's zone and
//! follow cron at daylight-saving edges: a time skipped by a spring-forward fires at the first
//! instant after the gap; a time that happens twice fires once, at its first occurrence.
//! Interval kinds count elapsed time from `starts_at` and ignore the wall clock.

use std::str::FromStr;

use chrono::{
    DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc, Weekday,
};
use chrono_tz::Tz;

use crate::time::{end_of_day, resolve_local};

/// How often a task fires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recurrence {
    /// Only on "Executar Tarefa".
    Manual,
    /// Every `n` minutes of elapsed time from `starts_at`.
    EveryMinutes {
        /// 1..=1440.
        n: u32,
        /// Local date-time of the first fire; `None` until the task is created (then its
        /// creation time, to the minute).
        starts_at: Option<NaiveDateTime>,
        /// Last day (inclusive) on which it may fire.
        ends_on: Option<NaiveDate>,
    },
    /// Every `n` hours of elapsed time from `starts_at`.
    EveryHours {
        /// 1..=168.
        n: u32,
        /// As for [`Recurrence::EveryMinutes`].
        starts_at: Option<NaiveDateTime>,
        /// Last day (inclusive) on which it may fire.
        ends_on: Option<NaiveDate>,
    },
    /// Every day at `at`.
    Daily {
        /// Wall-clock time.
        at: NaiveTime,
        /// Last day (inclusive) on which it may fire.
        ends_on: Option<NaiveDate>,
    },
    /// On the given days of the week at `at`.
    Weekdays {
        /// Non-empty, without repeats, Monday first.
        days: Vec<Weekday>,
        /// Wall-clock time.
        at: NaiveTime,
        /// Last day (inclusive) on which it may fire.
        ends_on: Option<NaiveDate>,
    },
    /// On day `day` of every month at `at`; a month without that day fires on its last day.
    MonthDay {
        /// 1..=31.
        day: u32,
        /// Wall-clock time.
        at: NaiveTime,
        /// Last day (inclusive) on which it may fire.
        ends_on: Option<NaiveDate>,
    },
    /// A cron expression (5 or 6 fields, as croner reads it), wall clock.
    Cron {
        /// The expression as written.
        expr: CronExpr,
        /// Last day (inclusive) on which it may fire.
        ends_on: Option<NaiveDate>,
    },
}

/// A parsed cron expression that remembers its text.
#[derive(Debug, Clone)]
pub struct CronExpr {
    text: String,
    cron: Box<croner::Cron>,
}

impl PartialEq for CronExpr {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}
impl Eq for CronExpr {}

impl CronExpr {
    /// Parses 5 fields (minute first) or 6 (seconds first).
    pub fn parse(text: &str) -> Result<CronExpr, String> {
        let fields = text.split_whitespace().count();
        if fields != 5 && fields != 6 {
            return Err(format!(
                "a cron expression has 5 or 6 fields, this one has {fields}"
            ));
        }
        let cron = croner::Cron::new(text)
            .with_seconds_optional()
            .parse()
            .map_err(|e| format!("not a valid cron expression: {e}"))?;
        Ok(CronExpr {
            text: text.to_string(),
            cron: Box::new(cron),
        })
    }

    /// The expression as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The next wall-clock time strictly after `after` that the expression matches.
    fn next_local(&self, after: NaiveDateTime) -> Option<NaiveDateTime> {
        let as_utc = Utc.from_utc_datetime(&after);
        self.cron
            .find_next_occurrence(&as_utc, false)
            .ok()
            .map(|t| t.naive_utc())
    }
}

impl FromStr for CronExpr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CronExpr::parse(s)
    }
}

/// How far ahead `next_after` looks for a wall-clock match before it gives up (a cron
/// expression such as `0 0 30 2 *` never matches).
const SEARCH_LIMIT: usize = 2_000;

impl Recurrence {
    /// The last day on which the recurrence may fire, if any.
    pub fn ends_on(&self) -> Option<NaiveDate> {
        match self {
            Recurrence::Manual => None,
            Recurrence::EveryMinutes { ends_on, .. }
            | Recurrence::EveryHours { ends_on, .. }
            | Recurrence::Daily { ends_on, .. }
            | Recurrence::Weekdays { ends_on, .. }
            | Recurrence::MonthDay { ends_on, .. }
            | Recurrence::Cron { ends_on, .. } => *ends_on,
        }
    }

    /// The kind's name as the task file writes it.
    pub fn kind(&self) -> &'static str {
        match self {
            Recurrence::Manual => "manual",
            Recurrence::EveryMinutes { .. } => "every_minutes",
            Recurrence::EveryHours { .. } => "every_hours",
            Recurrence::Daily { .. } => "daily",
            Recurrence::Weekdays { .. } => "weekdays",
            Recurrence::MonthDay { .. } => "month_day",
            Recurrence::Cron { .. } => "cron",
        }
    }

    /// For interval kinds without a `starts_at`, anchors them at `created` (to the whole
    /// minute, local time in `tz`). Other kinds are returned unchanged.
    pub fn anchored(mut self, tz: Tz, created: DateTime<Utc>) -> Recurrence {
        if let Recurrence::EveryMinutes { starts_at, .. }
        | Recurrence::EveryHours { starts_at, .. } = &mut self
        {
            if starts_at.is_none() {
                let local = created.with_timezone(&tz).naive_local();
                let minute = local.date().and_time(
                    NaiveTime::from_hms_opt(
                        chrono::Timelike::hour(&local),
                        chrono::Timelike::minute(&local),
                        0,
                    )
                    .unwrap_or(NaiveTime::MIN),
                );
                *starts_at = Some(minute);
            }
        }
        self
    }

    /// The first fire strictly after `from`, or `None` when there is none (manual, past
    /// `ends_on`, or an expression that never matches).
    ///
    /// An interval kind without `starts_at` is anchored at `from` (as if created then).
    pub fn next_after(&self, tz: Tz, from: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let limit = self.ends_on().map(|d| end_of_day(tz, d));
        let next = match self {
            Recurrence::Manual => None,
            Recurrence::EveryMinutes { n, starts_at, .. } => {
                interval_next(tz, from, *starts_at, Duration::minutes(i64::from(*n)))
            }
            Recurrence::EveryHours { n, starts_at, .. } => {
                interval_next(tz, from, *starts_at, Duration::hours(i64::from(*n)))
            }
            Recurrence::Daily { at, .. } => {
                wall_clock_next(tz, from, |after| next_daily(after, *at, |_| true))
            }
            Recurrence::Weekdays { days, at, .. } => wall_clock_next(tz, from, |after| {
                next_daily(after, *at, |d| days.contains(&d.weekday()))
            }),
            Recurrence::MonthDay { day, at, .. } => {
                wall_clock_next(tz, from, |after| next_month_day(after, *day, *at))
            }
            Recurrence::Cron { expr, .. } => {
                wall_clock_next(tz, from, |after| expr.next_local(after))
            }
        }?;
        match limit {
            Some(limit) if next >= limit => None,
            _ => Some(next),
        }
    }

    /// The next `count` fires strictly after `from`, fewer when the recurrence ends first.
    pub fn preview(&self, tz: Tz, from: DateTime<Utc>, count: usize) -> Vec<DateTime<Utc>> {
        let anchored = self.clone().anchored(tz, from);
        let mut out = Vec::with_capacity(count.min(1024));
        let mut cursor = from;
        while out.len() < count {
            match anchored.next_after(tz, cursor) {
                Some(t) => {
                    out.push(t);
                    cursor = t;
                }
                None => break,
            }
        }
        out
    }
}

/// `starts_at + k·step` for the smallest k ≥ 0 that lands strictly after `from`.
fn interval_next(
    tz: Tz,
    from: DateTime<Utc>,
    starts_at: Option<NaiveDateTime>,
    step: Duration,
) -> Option<DateTime<Utc>> {
    let start = match starts_at {
        Some(local) => resolve_local(tz, local),
        None => from + step,
    };
    if start > from {
        return Some(start);
    }
    let elapsed = (from - start).num_seconds();
    let step_s = step.num_seconds();
    let k = elapsed / step_s + 1;
    start.checked_add_signed(Duration::seconds(k.checked_mul(step_s)?))
}

/// Walks wall-clock slots (given by `next_local`, strictly after a local time) until one
/// resolves to an instant strictly after `from`. Starting from `from`'s own local time is
/// enough: a slot never resolves to an instant earlier than its first occurrence.
fn wall_clock_next(
    tz: Tz,
    from: DateTime<Utc>,
    next_local: impl Fn(NaiveDateTime) -> Option<NaiveDateTime>,
) -> Option<DateTime<Utc>> {
    let mut cursor = from.with_timezone(&tz).naive_local();
    for _ in 0..SEARCH_LIMIT {
        let slot = next_local(cursor)?;
        let at = resolve_local(tz, slot);
        if at > from {
            return Some(at);
        }
        cursor = slot;
    }
    None
}

/// The next `date at time` strictly after `after` on a day that `keep` accepts.
fn next_daily(
    after: NaiveDateTime,
    at: NaiveTime,
    keep: impl Fn(NaiveDate) -> bool,
) -> Option<NaiveDateTime> {
    let mut date = after.date();
    for _ in 0..8 {
        let slot = date.and_time(at);
        if slot > after && keep(date) {
            return Some(slot);
        }
        date = date.succ_opt()?;
    }
    None
}

/// The next "day `day` of the month (or its last day) at `at`" strictly after `after`.
fn next_month_day(after: NaiveDateTime, day: u32, at: NaiveTime) -> Option<NaiveDateTime> {
    let (mut year, mut month) = (after.year(), after.month());
    for _ in 0..3 {
        let d = day.min(days_in_month(year, month));
        let slot = NaiveDate::from_ymd_opt(year, month, d)?.and_time(at);
        if slot > after {
            return Some(slot);
        }
        if month == 12 {
            year += 1;
            month = 1;
        } else {
            month += 1;
        }
    }
    None
}

/// 28..=31.
pub fn days_in_month(year: i32, month: u32) -> u32 {
    let first_next = if month == 12 {
        NaiveDate::from_ymd_opt(year + 1, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(year, month + 1, 1)
    };
    first_next
        .and_then(|d| d.pred_opt())
        .map(|d| d.day())
        .unwrap_or(31)
}

/// Parses a weekday as the task file writes it (`mon` … `sun`, any case).
pub fn parse_weekday(s: &str) -> Option<Weekday> {
    Some(match s.to_ascii_lowercase().as_str() {
        "mon" => Weekday::Mon,
        "tue" => Weekday::Tue,
        "wed" => Weekday::Wed,
        "thu" => Weekday::Thu,
        "fri" => Weekday::Fri,
        "sat" => Weekday::Sat,
        "sun" => Weekday::Sun,
        _ => return None,
    })
}

/// The task file's name for a weekday.
pub fn weekday_name(d: Weekday) -> &'static str {
    match d {
        Weekday::Mon => "mon",
        Weekday::Tue => "tue",
        Weekday::Wed => "wed",
        Weekday::Thu => "thu",
        Weekday::Fri => "fri",
        Weekday::Sat => "sat",
        Weekday::Sun => "sun",
    }
}
