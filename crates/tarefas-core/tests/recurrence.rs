//! Recurrence: every kind, daylight-saving edges, month ends, leap years, `ends_on`, and the
//! laws every schedule obeys (property tests).

use chrono::{DateTime, Duration, NaiveDate, NaiveTime, Timelike, Utc, Weekday};
use chrono_tz::Tz;
use proptest::prelude::*;
use tarefas_core::recurrence::CronExpr;
use tarefas_core::task::{parse_schedule, Format};
use tarefas_core::Recurrence;

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn tz(name: &str) -> Tz {
    name.parse().unwrap()
}

fn at(s: &str) -> NaiveTime {
    NaiveTime::parse_from_str(s, "%H:%M").unwrap()
}

fn date(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

fn fires(r: &Recurrence, zone: &str, from: &str, n: usize) -> Vec<String> {
    r.preview(tz(zone), utc(from), n)
        .into_iter()
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .collect()
}

fn yaml(text: &str) -> (Tz, Recurrence) {
    let s = parse_schedule(text, Format::Yaml).unwrap();
    (s.time_zone, s.recurrence)
}

#[test]
fn manual_never_fires() {
    assert!(fires(&Recurrence::Manual, "UTC", "2026-01-01T00:00:00Z", 5).is_empty());
    let (tz, r) = yaml("time_zone: UTC\n");
    assert_eq!(r, Recurrence::Manual);
    assert_eq!(r.next_after(tz, utc("2026-01-01T00:00:00Z")), None);
}

#[test]
fn daily_fires_at_the_wall_clock_time_in_the_zone() {
    let r = Recurrence::Daily {
        at: at("09:00"),
        ends_on: None,
    };
    // São Paulo is UTC-3 (no DST since 2019).
    assert_eq!(
        fires(&r, "America/Sao_Paulo", "2026-12-01T11:00:00Z", 3),
        [
            "2026-12-01T12:00:00Z",
            "2026-12-02T12:00:00Z",
            "2026-12-03T12:00:00Z"
        ]
    );
    // Strictly after: from the fire itself, the next day.
    assert_eq!(
        fires(&r, "America/Sao_Paulo", "2026-12-01T12:00:00Z", 1),
        ["2026-12-02T12:00:00Z"]
    );
}

#[test]
fn weekdays_fire_only_on_their_days() {
    let r = Recurrence::Weekdays {
        days: vec![Weekday::Mon, Weekday::Fri],
        at: at("08:30"),
        ends_on: None,
    };
    // 2026-12-01 is a Tuesday.
    assert_eq!(
        fires(&r, "UTC", "2026-12-01T00:00:00Z", 4),
        [
            "2026-12-04T08:30:00Z",
            "2026-12-07T08:30:00Z",
            "2026-12-11T08:30:00Z",
            "2026-12-14T08:30:00Z"
        ]
    );
}

#[test]
fn month_day_clamps_to_the_last_day_of_short_months() {
    let r = Recurrence::MonthDay {
        day: 31,
        at: at("10:00"),
        ends_on: None,
    };
    assert_eq!(
        fires(&r, "UTC", "2027-01-01T00:00:00Z", 5),
        [
            "2027-01-31T10:00:00Z",
            "2027-02-28T10:00:00Z",
            "2027-03-31T10:00:00Z",
            "2027-04-30T10:00:00Z",
            "2027-05-31T10:00:00Z"
        ]
    );
    // Leap year: February has 29 days.
    assert_eq!(
        fires(&r, "UTC", "2028-02-01T00:00:00Z", 1),
        ["2028-02-29T10:00:00Z"]
    );
    let r30 = Recurrence::MonthDay {
        day: 30,
        at: at("10:00"),
        ends_on: None,
    };
    assert_eq!(
        fires(&r30, "UTC", "2028-02-01T00:00:00Z", 2),
        ["2028-02-29T10:00:00Z", "2028-03-30T10:00:00Z"]
    );
    // Day 29 in a leap February fires on the 29th, in a common one on the 28th.
    let r29 = Recurrence::MonthDay {
        day: 29,
        at: at("10:00"),
        ends_on: None,
    };
    assert_eq!(
        fires(&r29, "UTC", "2026-02-01T00:00:00Z", 1),
        ["2026-02-28T10:00:00Z"]
    );
    assert_eq!(
        fires(&r29, "UTC", "2028-02-01T00:00:00Z", 1),
        ["2028-02-29T10:00:00Z"]
    );
}

#[test]
fn spring_forward_gap_fires_at_the_first_instant_after_it() {
    // New York skips 02:00-03:00 on 2026-03-08.
    let r = Recurrence::Daily {
        at: at("02:30"),
        ends_on: None,
    };
    assert_eq!(
        fires(&r, "America/New_York", "2026-03-07T00:00:00Z", 3),
        [
            "2026-03-07T07:30:00Z", // 02:30 EST
            "2026-03-08T07:00:00Z", // 03:00 EDT, the instant after the gap
            "2026-03-09T06:30:00Z"  // 02:30 EDT
        ]
    );
}

#[test]
fn fall_back_overlap_fires_once_at_the_first_occurrence() {
    // New York repeats 01:00-02:00 on 2026-11-01.
    let r = Recurrence::Daily {
        at: at("01:30"),
        ends_on: None,
    };
    assert_eq!(
        fires(&r, "America/New_York", "2026-10-31T00:00:00Z", 3),
        [
            "2026-10-31T05:30:00Z", // 01:30 EDT
            "2026-11-01T05:30:00Z", // first 01:30 (EDT), not again at 06:30Z (EST)
            "2026-11-02T06:30:00Z"  // 01:30 EST
        ]
    );
    // Asked from inside the second pass of the hour, it does not fire again that day.
    assert_eq!(
        fires(&r, "America/New_York", "2026-11-01T06:10:00Z", 1),
        ["2026-11-02T06:30:00Z"]
    );
}

#[test]
fn cron_follows_the_same_dst_rules() {
    let r = Recurrence::Cron {
        expr: CronExpr::parse("30 2 * * *").unwrap(),
        ends_on: None,
    };
    assert_eq!(
        fires(&r, "America/New_York", "2026-03-07T12:00:00Z", 2),
        ["2026-03-08T07:00:00Z", "2026-03-09T06:30:00Z"]
    );
    let r = Recurrence::Cron {
        expr: CronExpr::parse("30 1 * * *").unwrap(),
        ends_on: None,
    };
    assert_eq!(
        fires(&r, "America/New_York", "2026-10-31T12:00:00Z", 2),
        ["2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z"]
    );
    // Six fields: seconds first.
    let r = Recurrence::Cron {
        expr: CronExpr::parse("15 0 12 * * MON").unwrap(),
        ends_on: None,
    };
    assert_eq!(
        fires(&r, "UTC", "2026-12-01T00:00:00Z", 1),
        ["2026-12-07T12:00:15Z"]
    );
    // An expression that never matches yields nothing rather than looping.
    let r = Recurrence::Cron {
        expr: CronExpr::parse("0 0 30 2 *").unwrap(),
        ends_on: None,
    };
    assert!(fires(&r, "UTC", "2026-12-01T00:00:00Z", 1).is_empty());
}

#[test]
fn intervals_count_elapsed_time_across_dst() {
    let (tz, r) = yaml(
        "time_zone: America/New_York\nrecurrence: {kind: every_hours, n: 1, starts_at: 2026-03-08T00:00}\n",
    );
    let got: Vec<_> = r.preview(tz, utc("2026-03-08T04:30:00Z"), 4);
    // 00:00 EST = 05:00Z; one hour of elapsed time each, whatever the wall clock does.
    assert_eq!(
        got,
        [
            utc("2026-03-08T05:00:00Z"),
            utc("2026-03-08T06:00:00Z"),
            utc("2026-03-08T07:00:00Z"),
            utc("2026-03-08T08:00:00Z")
        ]
    );
    let r = Recurrence::EveryMinutes {
        n: 90,
        starts_at: Some(date("2026-11-01").and_time(at("00:00"))),
        ends_on: None,
    };
    let got = r.preview(tz, utc("2026-11-01T05:00:00Z"), 3);
    assert_eq!(
        got,
        [
            utc("2026-11-01T05:30:00Z"),
            utc("2026-11-01T07:00:00Z"),
            utc("2026-11-01T08:30:00Z")
        ]
    );
}

#[test]
fn intervals_without_start_are_anchored_at_from() {
    let (tz, r) = yaml("time_zone: UTC\nrecurrence: {kind: every_minutes, n: 15}\n");
    assert_eq!(
        r.preview(tz, utc("2026-12-01T10:00:00Z"), 2),
        [utc("2026-12-01T10:15:00Z"), utc("2026-12-01T10:30:00Z")]
    );
    // A created task is anchored at its creation minute.
    let anchored = r.anchored(tz, utc("2026-12-01T10:07:42Z"));
    assert_eq!(
        anchored.next_after(tz, utc("2026-12-01T10:07:42Z")),
        Some(utc("2026-12-01T10:22:00Z"))
    );
}

#[test]
fn ends_on_is_inclusive_of_its_whole_day() {
    let r = Recurrence::Daily {
        at: at("23:30"),
        ends_on: Some(date("2026-12-03")),
    };
    assert_eq!(
        fires(&r, "America/Sao_Paulo", "2026-12-01T00:00:00Z", 10),
        // 23:30 local on Nov 30, Dec 1, 2 and 3 (the last day), in UTC the next morning.
        [
            "2026-12-01T02:30:00Z",
            "2026-12-02T02:30:00Z",
            "2026-12-03T02:30:00Z",
            "2026-12-04T02:30:00Z"
        ]
    );
    let r = Recurrence::MonthDay {
        day: 31,
        at: at("09:00"),
        ends_on: Some(date("2026-12-31")),
    };
    assert_eq!(
        fires(&r, "UTC", "2026-12-01T00:00:00Z", 10),
        ["2026-12-31T09:00:00Z"]
    );
    let r = Recurrence::EveryHours {
        n: 12,
        starts_at: Some(date("2026-12-30").and_time(at("00:00"))),
        ends_on: Some(date("2026-12-31")),
    };
    assert_eq!(fires(&r, "UTC", "2026-12-29T00:00:00Z", 10).len(), 4);
}

fn arb_recurrence() -> impl Strategy<Value = Recurrence> {
    let time = (0u32..24, 0u32..60).prop_map(|(h, m)| NaiveTime::from_hms_opt(h, m, 0).unwrap());
    let ends =
        proptest::option::of((0i64..800).prop_map(|d| date("2026-01-01") + Duration::days(d)));
    let start = (0i64..700, 0u32..24, 0u32..60).prop_map(|(d, h, m)| {
        (date("2026-01-01") + Duration::days(d))
            .and_hms_opt(h, m, 0)
            .unwrap()
    });
    prop_oneof![
        (1u32..=1440, start.clone(), ends.clone()).prop_map(|(n, s, e)| Recurrence::EveryMinutes {
            n,
            starts_at: Some(s),
            ends_on: e
        }),
        (1u32..=168, start, ends.clone()).prop_map(|(n, s, e)| Recurrence::EveryHours {
            n,
            starts_at: Some(s),
            ends_on: e
        }),
        (time.clone(), ends.clone()).prop_map(|(at, e)| Recurrence::Daily { at, ends_on: e }),
        (
            proptest::sample::subsequence(
                vec![
                    Weekday::Mon,
                    Weekday::Tue,
                    Weekday::Wed,
                    Weekday::Thu,
                    Weekday::Fri,
                    Weekday::Sat,
                    Weekday::Sun
                ],
                1..=7
            ),
            time.clone(),
            ends.clone()
        )
            .prop_map(|(days, at, e)| Recurrence::Weekdays {
                days,
                at,
                ends_on: e
            }),
        (1u32..=31, time, ends).prop_map(|(day, at, e)| Recurrence::MonthDay {
            day,
            at,
            ends_on: e
        }),
    ]
}

fn arb_zone() -> impl Strategy<Value = Tz> {
    proptest::sample::select(vec![
        "America/Sao_Paulo",
        "America/New_York",
        "Europe/London",
        "Australia/Lord_Howe",
        "Asia/Kolkata",
        "UTC",
        "America/Santiago",
        "Pacific/Apia",
    ])
    .prop_map(tz)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn fires_obey_the_laws(r in arb_recurrence(), zone in arb_zone(), from_days in 0i64..900, from_secs in 0i64..86_400) {
        let from = utc("2025-06-01T00:00:00Z") + Duration::days(from_days) + Duration::seconds(from_secs);
        let fires = r.preview(zone, from, 40);
        let mut prev = from;
        for t in &fires {
            // Strictly after `from`, strictly increasing.
            prop_assert!(*t > prev, "{t} not after {prev}");
            prev = *t;
            // Never after ends_on (inclusive, the whole day in the zone).
            if let Some(end) = r.ends_on() {
                prop_assert!(t.with_timezone(&zone).date_naive() <= end, "{t} after ends_on {end}");
            }
            // Wall-clock kinds land on `at`, except when `at` fell in a DST gap that day (then
            // on the instant after the gap, which is later on the wall clock).
            let wall_at = match &r {
                Recurrence::Daily { at, .. } | Recurrence::Weekdays { at, .. } | Recurrence::MonthDay { at, .. } => Some(*at),
                _ => None,
            };
            if let Some(at) = wall_at {
                let local = t.with_timezone(&zone).naive_local();
                if local.time() != at {
                    let wanted = local.date().and_time(at);
                    prop_assert!(
                        chrono::TimeZone::from_local_datetime(&zone, &wanted).single().is_none()
                            && chrono::TimeZone::from_local_datetime(&zone, &wanted).earliest().is_none(),
                        "{t} is {local} local, not {at}, and {wanted} is not in a gap"
                    );
                    prop_assert!(local.time() > at || local.date() > wanted.date());
                }
                prop_assert_eq!(t.second(), 0);
            }
            if let Recurrence::Weekdays { days, .. } = &r {
                use chrono::Datelike;
                prop_assert!(days.contains(&t.with_timezone(&zone).weekday()));
            }
        }
        // next_after agrees with itself: asking again from just before a fire finds it.
        for t in fires.iter().take(5) {
            prop_assert_eq!(r.next_after(zone, *t - Duration::seconds(1)), Some(*t));
        }
    }
}
