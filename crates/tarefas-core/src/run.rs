//! Runs and run items: their states and the transitions allowed between them (design §3).
//! The store enforces these with conditional updates; the functions here are the rule.

use std::fmt;

use chrono::{DateTime, Utc};

/// The state of one execution of a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunStatus {
    /// The segment is being resolved into run items.
    Planning,
    /// Planned, and held before its first call: it plans more records than its
    /// `max_records` allows; an operator approves it (`tarefas run approve`) or cancels it.
    AwaitingApproval,
    /// Items are being sent.
    Running,
    /// Stopped on a condition an operator must fix (e.g. the account's token is bad).
    Paused,
    /// Every item done or skipped.
    Done,
    /// Finished, with some items failed or of unknown outcome.
    DoneWithErrors,
    /// Cancelled by an operator.
    Cancelled,
    /// Could not be carried out (e.g. the task was deleted, or planning failed for good).
    Failed,
}

/// Every run status, in lifecycle order.
pub const RUN_STATUSES: [RunStatus; 8] = [
    RunStatus::Planning,
    RunStatus::AwaitingApproval,
    RunStatus::Running,
    RunStatus::Paused,
    RunStatus::Done,
    RunStatus::DoneWithErrors,
    RunStatus::Cancelled,
    RunStatus::Failed,
];

impl RunStatus {
    /// The name used in the database, messages and output.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Planning => "planning",
            RunStatus::AwaitingApproval => "awaiting_approval",
            RunStatus::Running => "running",
            RunStatus::Paused => "paused",
            RunStatus::Done => "done",
            RunStatus::DoneWithErrors => "done_with_errors",
            RunStatus::Cancelled => "cancelled",
            RunStatus::Failed => "failed",
        }
    }

    /// Parses [`RunStatus::as_str`]'s names.
    pub fn parse(s: &str) -> Option<RunStatus> {
        RUN_STATUSES.into_iter().find(|r| r.as_str() == s)
    }

    /// True while the run's items may be claimed and sent: planning or running.
    pub fn is_active(self) -> bool {
        matches!(self, RunStatus::Planning | RunStatus::Running)
    }

    /// True when nothing more will happen to the run.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            RunStatus::Done | RunStatus::DoneWithErrors | RunStatus::Cancelled | RunStatus::Failed
        )
    }

    /// True when a run may move from `self` to `next`.
    pub fn can_become(self, next: RunStatus) -> bool {
        use RunStatus::*;
        matches!(
            (self, next),
            (
                Planning,
                Running | AwaitingApproval | Cancelled | Failed | Paused
            ) | (AwaitingApproval, Running | Cancelled | Failed)
                | (Running, Done | DoneWithErrors | Cancelled | Failed | Paused)
                | (Paused, Running | Planning | Cancelled | Failed)
        )
    }

    /// The status a run ends in once every item is terminal.
    pub fn finished(failed_or_unknown: u64) -> RunStatus {
        if failed_or_unknown == 0 {
            RunStatus::Done
        } else {
            RunStatus::DoneWithErrors
        }
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A stored status that names no state of its kind: stored data is wrong, never guessed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} status \"{value}\"")]
pub struct UnknownStatus {
    /// `run`, `item` or `task`.
    pub kind: &'static str,
    /// What was stored.
    pub value: String,
}

/// Status names: parsing with an error, the name as text and in JSON.
macro_rules! status_names {
    ($ty:ty, $kind:literal) => {
        impl TryFrom<String> for $ty {
            type Error = $crate::run::UnknownStatus;
            fn try_from(value: String) -> Result<Self, $crate::run::UnknownStatus> {
                <$ty>::parse(&value).ok_or($crate::run::UnknownStatus { kind: $kind, value })
            }
        }

        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
    };
}
pub(crate) use status_names;

status_names!(RunStatus, "run");
status_names!(ItemStatus, "item");

/// The state of one record within a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ItemStatus {
    /// Not yet attempted (or handed back for a retry).
    Pending,
    /// Claimed by a worker; the call may be in flight.
    Sending,
    /// Huggy accepted the call.
    Done,
    /// Not sent on purpose (Flow policy, cancel); the reason is kept.
    Skipped,
    /// Huggy refused it for good; the reason is kept.
    Failed,
    /// The call may or may not have happened, and repeating it is not safe.
    Unknown,
}

/// Every item status.
pub const ITEM_STATUSES: [ItemStatus; 6] = [
    ItemStatus::Pending,
    ItemStatus::Sending,
    ItemStatus::Done,
    ItemStatus::Skipped,
    ItemStatus::Failed,
    ItemStatus::Unknown,
];

impl ItemStatus {
    /// The name used in the database and output.
    pub fn as_str(self) -> &'static str {
        match self {
            ItemStatus::Pending => "pending",
            ItemStatus::Sending => "sending",
            ItemStatus::Done => "done",
            ItemStatus::Skipped => "skipped",
            ItemStatus::Failed => "failed",
            ItemStatus::Unknown => "unknown",
        }
    }

    /// Parses [`ItemStatus::as_str`]'s names.
    pub fn parse(s: &str) -> Option<ItemStatus> {
        ITEM_STATUSES.into_iter().find(|r| r.as_str() == s)
    }

    /// True when the item will not be attempted again.
    pub fn is_terminal(self) -> bool {
        !matches!(self, ItemStatus::Pending | ItemStatus::Sending)
    }

    /// True when an item may move from `self` to `next`: `pending → sending → done | skipped
    /// | failed | unknown`, a pending item may be skipped (cancel), and a sending item may be
    /// handed back to pending when the call surely did not happen or is safe to repeat.
    pub fn can_become(self, next: ItemStatus) -> bool {
        use ItemStatus::*;
        matches!(
            (self, next),
            (Pending, Sending | Skipped) | (Sending, Done | Skipped | Failed | Unknown | Pending)
        )
    }
}

impl fmt::Display for ItemStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a run was started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// "Executar Tarefa".
    Manual,
    /// A scheduled fire.
    Scheduled,
}

/// The request id of a scheduled fire: derived from the task and the fire time, so that the
/// same fire emitted twice creates one run.
pub fn scheduled_request_id(task_id: i64, scheduled_for: DateTime<Utc>) -> String {
    format!("sched-{task_id}-{}", scheduled_for.timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_lifecycle() {
        assert!(RunStatus::Planning.can_become(RunStatus::Running));
        assert!(RunStatus::Running.can_become(RunStatus::Done));
        assert!(RunStatus::Running.can_become(RunStatus::Paused));
        assert!(RunStatus::Paused.can_become(RunStatus::Running));
        for t in [
            RunStatus::Done,
            RunStatus::DoneWithErrors,
            RunStatus::Cancelled,
            RunStatus::Failed,
        ] {
            assert!(t.is_terminal());
            for next in RUN_STATUSES {
                assert!(!t.can_become(next), "{t} must not become {next}");
            }
        }
        assert!(!RunStatus::Planning.can_become(RunStatus::Done));
        assert!(RunStatus::Planning.can_become(RunStatus::AwaitingApproval));
        assert!(RunStatus::AwaitingApproval.can_become(RunStatus::Running));
        assert!(RunStatus::AwaitingApproval.can_become(RunStatus::Cancelled));
        assert!(
            !RunStatus::AwaitingApproval.is_active(),
            "no call before approval"
        );
        assert!(!RunStatus::AwaitingApproval.can_become(RunStatus::Done));
        assert!(!RunStatus::Running.can_become(RunStatus::Planning));
        assert_eq!(RunStatus::finished(0), RunStatus::Done);
        assert_eq!(RunStatus::finished(3), RunStatus::DoneWithErrors);
        for s in RUN_STATUSES {
            assert_eq!(RunStatus::parse(s.as_str()), Some(s));
            assert_eq!(RunStatus::try_from(s.as_str().to_string()), Ok(s));
            assert!(!(s.is_active() && s.is_terminal()), "{s}");
        }
        let bad = RunStatus::try_from("finished".to_string()).unwrap_err();
        assert_eq!(bad.to_string(), "unknown run status \"finished\"");
        assert!(
            ItemStatus::try_from("Done".to_string()).is_err(),
            "names are exact"
        );
    }

    #[test]
    fn item_lifecycle() {
        use ItemStatus::*;
        assert!(Pending.can_become(Sending));
        assert!(Pending.can_become(Skipped));
        assert!(
            !Pending.can_become(Done),
            "an item is claimed before it is sent"
        );
        for t in [Done, Skipped, Failed, Unknown] {
            assert!(Sending.can_become(t));
            assert!(t.is_terminal());
            for next in ITEM_STATUSES {
                assert!(!t.can_become(next), "{t} is final, not {next}");
            }
        }
        assert!(Sending.can_become(Pending));
        for s in ITEM_STATUSES {
            assert_eq!(ItemStatus::parse(s.as_str()), Some(s));
        }
    }

    #[test]
    fn scheduled_request_ids_are_stable() {
        let t = DateTime::parse_from_rfc3339("2026-12-10T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(scheduled_request_id(7, t), scheduled_request_id(7, t));
        assert_ne!(scheduled_request_id(7, t), scheduled_request_id(8, t));
    }
}
