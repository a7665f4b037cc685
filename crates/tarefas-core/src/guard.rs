//! Campaign safety (the task file's "Running safely"): the audience guard (`max_records`),
//! quiet hours (`send_window`), the frequency cap per contact (`frequency_cap`), the opt-out
//! words of incoming messages, and the reasons an item is skipped, as printed. Pure: the
//! store keeps the settings and the ledger, the executor asks these rules.

use chrono::{DateTime, Datelike, Duration, NaiveTime, TimeZone, Utc, Weekday};
use chrono_tz::Tz;
use serde_json::{json, Value};

use crate::problem::{join, Problems};
use crate::raw;
use crate::recurrence::{parse_weekday, weekday_name};
use crate::time::{parse_hh_mm, parse_relative, resolve_local};

/// Skip reason: the Flow policy, the customer's chat is with an agent.
pub const SKIP_IN_CHAT: &str = "policy: in chat";
/// Skip reason: the Flow policy, the customer's chat waits in the queue.
pub const SKIP_IN_QUEUE: &str = "policy: in queue";
/// Skip reason: the Flow policy, the customer's chat is with the chatbot.
pub const SKIP_IN_AUTO: &str = "policy: in auto";
/// Skip reason: the contact reached its frequency cap.
pub const SKIP_FREQUENCY_CAP: &str = "frequency cap";
/// Skip reason: the contact is on the account's opt-out list.
pub const SKIP_OPTED_OUT: &str = "opted out";
/// Skip reason: the run was cancelled before the item's call.
pub const SKIP_CANCELLED: &str = "cancelled";

/// What the console and the run page say while items wait for the send window.
pub const WAITING_FOR_WINDOW: &str = "aguardando janela de envio";

/// The opt-out words of an account that sets none.
pub const DEFAULT_OPT_OUT_WORDS: [&str; 4] = ["SAIR", "PARAR", "STOP", "CANCELAR"];

/// Quiet hours: calls only from `from` to `to` (local time in the task's zone), on `days`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendWindow {
    /// Opens at.
    pub from: NaiveTime,
    /// Closes at (exclusive), after `from`.
    pub to: NaiveTime,
    /// The days it opens; every day when the file names none.
    pub days: Vec<Weekday>,
}

impl SendWindow {
    /// Whether a call may be made at `now` in `tz`.
    pub fn is_open(&self, tz: Tz, now: DateTime<Utc>) -> bool {
        let local = now.with_timezone(&tz);
        let t = local.time();
        self.days.contains(&local.weekday()) && t >= self.from && t < self.to
    }

    /// When the window next opens at or after `now` (now itself when open).
    pub fn next_open(&self, tz: Tz, now: DateTime<Utc>) -> DateTime<Utc> {
        if self.is_open(tz, now) {
            return now;
        }
        let today = now.with_timezone(&tz).date_naive();
        for offset in 0..8 {
            let Some(day) = today.checked_add_signed(Duration::days(offset)) else {
                break;
            };
            if !self.days.contains(&day.weekday()) {
                continue;
            }
            let opens = resolve_local(tz, day.and_time(self.from));
            if opens > now {
                return opens;
            }
        }
        now + Duration::days(7)
    }

    /// As the task file writes it.
    pub fn to_json(&self) -> Value {
        json!({
            "from": self.from.format("%H:%M").to_string(),
            "to": self.to.format("%H:%M").to_string(),
            "days": self.days.iter().map(|d| weekday_name(*d)).collect::<Vec<_>>(),
        })
    }
}

/// At most `max` Flows per contact in any rolling `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrequencyCap {
    /// Flows allowed in the window.
    pub max: u32,
    /// The window.
    pub per: Duration,
}

impl FrequencyCap {
    /// Reads `N/PERIOD` (`3/7d`, `1/24h`), as `account update --max-flows-per-contact` takes it.
    pub fn parse_flag(s: &str) -> Result<FrequencyCap, String> {
        let bad = || format!("{s:?} is not a cap such as 3/7d or 1/24h (N Flows per PERIOD)");
        let (n, per) = s.split_once('/').ok_or_else(bad)?;
        let max: u32 = n.trim().parse().map_err(|_| bad())?;
        let per = parse_relative(per.trim()).ok_or_else(bad)?;
        if max == 0 || max > 1_000_000 {
            return Err(bad());
        }
        Ok(FrequencyCap { max, per })
    }

    /// `N/PERIOD`, in the largest whole unit.
    pub fn as_flag(&self) -> String {
        format!("{}/{}", self.max, span(self.per))
    }

    /// True when `self` allows no more than `other` over any window: not looser.
    pub fn is_stricter_than(&self, other: &FrequencyCap) -> bool {
        self.max <= other.max && self.per >= other.per
    }
}

/// A duration as `7d`, `24h` or `30m`.
pub fn span(d: Duration) -> String {
    let m = d.num_minutes();
    if m % (60 * 24) == 0 {
        format!("{}d", m / (60 * 24))
    } else if m % 60 == 0 {
        format!("{}h", m / 60)
    } else {
        format!("{m}m")
    }
}

/// The task file's `send_window`.
pub fn parse_send_window(v: &Value, path: &str, problems: &mut Problems) -> Option<SendWindow> {
    let map = raw::as_object(v, path, problems)?;
    raw::reject_unknown_keys(map, path, &["from", "to", "days"], problems);
    let time = |key: &str, problems: &mut Problems| {
        let p = join(path, key);
        let s =
            raw::required(map, path, key, problems).and_then(|v| raw::as_str(v, &p, problems))?;
        let t = parse_hh_mm(s);
        if t.is_none() {
            problems.push(p, format!("{s:?} is not a time HH:MM"));
        }
        t
    };
    let from = time("from", problems);
    let to = time("to", problems);
    let days = match raw::get(map, "days") {
        None => Some(vec![
            Weekday::Mon,
            Weekday::Tue,
            Weekday::Wed,
            Weekday::Thu,
            Weekday::Fri,
            Weekday::Sat,
            Weekday::Sun,
        ]),
        Some(Value::Array(items)) if items.is_empty() => {
            problems.push(join(path, "days"), "must name at least one day");
            None
        }
        Some(Value::Array(items)) => {
            let mut days = Vec::new();
            let mut ok = true;
            for (i, item) in items.iter().enumerate() {
                let p = crate::problem::index(&join(path, "days"), i);
                match raw::as_str(item, &p, problems).map(|s| (s, parse_weekday(s))) {
                    Some((_, Some(d))) => {
                        if !days.contains(&d) {
                            days.push(d);
                        }
                    }
                    Some((s, None)) => {
                        problems.push(
                            p,
                            format!("{s:?} is not a day (mon tue wed thu fri sat sun)"),
                        );
                        ok = false;
                    }
                    None => ok = false,
                }
            }
            ok.then_some(days)
        }
        Some(other) => {
            raw::wrong_type(problems, &join(path, "days"), "a list of days", other);
            None
        }
    };
    let (from, to, days) = (from?, to?, days?);
    if to <= from {
        problems.push(join(path, "to"), "must be after from");
        return None;
    }
    Some(SendWindow { from, to, days })
}

/// The task file's `frequency_cap: {max, per}`.
pub fn parse_frequency_cap(v: &Value, path: &str, problems: &mut Problems) -> Option<FrequencyCap> {
    let map = raw::as_object(v, path, problems)?;
    raw::reject_unknown_keys(map, path, &["max", "per"], problems);
    let max = raw::required(map, path, "max", problems)
        .and_then(|v| raw::as_int_in(v, &join(path, "max"), 1, 1_000_000, problems));
    let per = raw::required(map, path, "per", problems).and_then(|v| {
        let p = join(path, "per");
        let s = raw::as_str(v, &p, problems)?;
        let d = parse_relative(s);
        if d.is_none() {
            problems.push(p, format!("{s:?} is not a period such as 24h or 7d"));
        }
        d
    });
    Some(FrequencyCap {
        max: u32::try_from(max?).ok()?,
        per: per?,
    })
}

/// The task file's `max_records`.
pub fn parse_max_records(v: &Value, path: &str, problems: &mut Problems) -> Option<i64> {
    raw::as_int_in(v, path, 1, 1_000_000_000, problems)
}

/// A message text as opt-out words are compared: trimmed, upper-cased, accents removed.
pub fn fold_word(s: &str) -> String {
    s.trim()
        .chars()
        .map(|c| match c {
            'á' | 'à' | 'â' | 'ã' | 'ä' | 'Á' | 'À' | 'Â' | 'Ã' | 'Ä' => 'A',
            'é' | 'è' | 'ê' | 'ë' | 'É' | 'È' | 'Ê' | 'Ë' => 'E',
            'í' | 'ì' | 'î' | 'ï' | 'Í' | 'Ì' | 'Î' | 'Ï' => 'I',
            'ó' | 'ò' | 'ô' | 'õ' | 'ö' | 'Ó' | 'Ò' | 'Ô' | 'Õ' | 'Ö' => 'O',
            'ú' | 'ù' | 'û' | 'ü' | 'Ú' | 'Ù' | 'Û' | 'Ü' => 'U',
            'ç' | 'Ç' => 'C',
            'ñ' | 'Ñ' => 'N',
            other => other.to_uppercase().next().unwrap_or(other),
        })
        .collect()
}

/// True when a message's whole text is one of `words` (case and accents ignored; the
/// defaults when `words` is empty). Surrounding spaces and a final `.` or `!` are ignored.
pub fn is_opt_out(text: &str, words: &[String]) -> bool {
    let t = fold_word(text.trim().trim_end_matches(['.', '!']));
    if t.is_empty() {
        return false;
    }
    if words.is_empty() {
        DEFAULT_OPT_OUT_WORDS.iter().any(|w| *w == t)
    } else {
        words.iter().any(|w| fold_word(w) == t)
    }
}

/// The printed skip reason for an execFlow that Huggy did not run under `policy`'s flags
/// (a Flow on Contacts, where Huggy decides). Huggy's reason names the flag that stopped it
/// when it says so (~); otherwise, when the policy skips in only one state, that state's.
/// Anything else keeps Huggy's own words after `policy: `.
pub fn policy_skip_reason(policy: &crate::action::FlowPolicy, huggy_reason: &str) -> String {
    use crate::action::{WhenInAuto, WhenInChat, WhenInQueue};
    let r = huggy_reason.to_ascii_lowercase();
    if r.contains("whenwaitforchat") || r.contains("wait_for_chat") {
        return SKIP_IN_QUEUE.into();
    }
    if r.contains("wheninchat") || r.contains("in_chat") {
        return SKIP_IN_CHAT.into();
    }
    if r.contains("wheninauto") || r.contains("is auto") {
        return SKIP_IN_AUTO.into();
    }
    let skips: Vec<&str> = [
        (policy.when_in_chat == WhenInChat::Skip).then_some(SKIP_IN_CHAT),
        (policy.when_in_queue == WhenInQueue::Skip).then_some(SKIP_IN_QUEUE),
        (policy.when_in_auto == WhenInAuto::Skip).then_some(SKIP_IN_AUTO),
    ]
    .into_iter()
    .flatten()
    .collect();
    match skips[..] {
        [one] => one.into(),
        _ => format!("policy: {huggy_reason}"),
    }
}

/// The task's filter narrowed to the records `only` (a test run, `--only`, or a retry of
/// failed items) when given: the records of the segment among them.
pub fn narrow_to(
    spec: &crate::TaskSpec,
    only: Option<&[i64]>,
) -> Result<Option<crate::Filter>, Problems> {
    let Some(only) = only else {
        return Ok(spec.filter.clone());
    };
    let mut problems = Problems::default();
    let cond = crate::segment::parse_filter(
        &json!({"field": "id", "op": "in", "value": only}),
        spec.table,
        spec.time_zone,
        "only",
        &mut problems,
    );
    match cond {
        Some(cond) if problems.is_empty() => Ok(Some(match &spec.filter {
            Some(f) => crate::Filter::All(vec![f.clone(), cond]),
            None => cond,
        })),
        _ => Err(problems),
    }
}

/// The local time of `t` in `tz`, as `YYYY-MM-DD HH:MM (zone)`.
pub fn local_label(tz: Tz, t: DateTime<Utc>) -> String {
    format!(
        "{} ({tz})",
        tz.from_utc_datetime(&t.naive_utc())
            .format("%Y-%m-%d %H:%M")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(v: Value) -> Result<SendWindow, Problems> {
        let mut p = Problems::default();
        let w = parse_send_window(&v, "send_window", &mut p);
        match w {
            Some(w) if p.is_empty() => Ok(w),
            _ => Err(p),
        }
    }

    #[test]
    fn send_window_rules() {
        let err = window(json!({"from": "20:00", "to": "08:00"})).unwrap_err();
        assert_eq!(err.0[0].to_string(), "send_window.to: must be after from");
        let w = window(json!({"from": "08:00", "to": "20:00", "days": ["mon", "tue"]})).unwrap();
        let tz: Tz = "America/Sao_Paulo".parse().unwrap();
        // Monday 2026-12-07 10:00 local = 13:00Z.
        let mon10 = "2026-12-07T13:00:00Z".parse::<DateTime<Utc>>().unwrap();
        assert!(w.is_open(tz, mon10));
        let mon21 = "2026-12-08T00:00:00Z".parse::<DateTime<Utc>>().unwrap();
        assert!(!w.is_open(tz, mon21));
        assert_eq!(
            w.next_open(tz, mon21),
            "2026-12-08T11:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        // Tuesday night: next Monday.
        let tue21 = "2026-12-09T00:00:00Z".parse::<DateTime<Utc>>().unwrap();
        assert_eq!(
            w.next_open(tz, tue21),
            "2026-12-14T11:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert!(window(json!({"from": "8h", "to": "20:00", "days": []})).is_err());
    }

    #[test]
    fn caps() {
        let c = FrequencyCap::parse_flag("3/7d").unwrap();
        assert_eq!(c.max, 3);
        assert_eq!(c.per, Duration::days(7));
        assert_eq!(c.as_flag(), "3/7d");
        assert!(FrequencyCap::parse_flag("0/7d").is_err());
        assert!(FrequencyCap::parse_flag("3").is_err());
        let one = FrequencyCap::parse_flag("1/30d").unwrap();
        assert!(one.is_stricter_than(&c));
        assert!(!c.is_stricter_than(&one));
    }

    #[test]
    fn opt_out_words() {
        assert!(is_opt_out("sair", &[]));
        assert!(is_opt_out("  Parar! ", &[]));
        assert!(is_opt_out("cancelar", &[]));
        assert!(!is_opt_out("quero sair", &[]));
        assert!(is_opt_out("não", &["NAO".into()]));
        assert!(!is_opt_out("sair", &["NAO".into()]));
        assert_eq!(fold_word("Ação"), "ACAO");
    }
}
