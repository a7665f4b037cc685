//! What a task does to each record: start a Huggy Flow, or one of the seven chat actions; and
//! the Flow policy (Configurações avançadas do Flow) that decides, from the state of the
//! customer's chat, whether the Flow runs.

use serde_json::{Map, Value};

use crate::problem::{join, Problems};
use crate::raw::{self, Object};
use crate::segment::{Situation, Table};

/// The action a task performs once per record.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Start a Huggy Flow.
    RunFlow(FlowAction),
    /// A chat action (chats table only).
    Chat(ChatAction),
}

/// Start Flow `flow` of project `project`.
#[derive(Debug, Clone, PartialEq)]
pub struct FlowAction {
    /// Huggy project id.
    pub project: i64,
    /// Huggy Flow id.
    pub flow: i64,
    /// WhatsApp channel uuid; required on contacts, `None` on chats (the chat's own channel).
    pub channel: Option<String>,
    /// Variables handed to the Flow.
    pub variables: Map<String, Value>,
    /// What to do when the customer's chat is busy.
    pub policy: FlowPolicy,
}

/// The seven chat actions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatAction {
    /// Transfer to an agent.
    TransferToAgent {
        /// Huggy agent id.
        agent: i64,
    },
    /// Put the chat in the queue.
    PutInQueue,
    /// Move the chat to another department.
    ChangeDepartment {
        /// Huggy department id.
        department: i64,
    },
    /// Close (finalizar) the chat, optionally with a tabulation.
    Close {
        /// Tabulation id.
        tabulation: Option<String>,
    },
    /// Reopen the chat.
    Reopen,
    /// Move the chat to a workflow step.
    UpdateWorkflow {
        /// Workflow step id.
        step: i64,
    },
    /// Set the chat's tabulation.
    UpdateTabulation {
        /// Tabulation id.
        tabulation: String,
    },
}

impl ChatAction {
    /// The task file's name for it.
    pub fn name(&self) -> &'static str {
        match self {
            ChatAction::TransferToAgent { .. } => "transfer_to_agent",
            ChatAction::PutInQueue => "put_in_queue",
            ChatAction::ChangeDepartment { .. } => "change_department",
            ChatAction::Close { .. } => "close",
            ChatAction::Reopen => "reopen",
            ChatAction::UpdateWorkflow { .. } => "update_workflow",
            ChatAction::UpdateTabulation { .. } => "update_tabulation",
        }
    }

    /// True when doing it twice leaves the chat as doing it once, so an item whose outcome is
    /// unknown may be retried (design §3). Closing and reopening are not: between the two
    /// attempts the customer may have written again.
    pub fn is_idempotent(&self) -> bool {
        matches!(
            self,
            ChatAction::TransferToAgent { .. }
                | ChatAction::ChangeDepartment { .. }
                | ChatAction::UpdateWorkflow { .. }
                | ChatAction::UpdateTabulation { .. }
                | ChatAction::PutInQueue
        )
    }
}

/// With an agent (em atendimento): `skip` (default) or `run_remove_agent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[allow(missing_docs)]
pub enum WhenInChat {
    #[default]
    Skip,
    RunRemoveAgent,
}

/// Waiting in the queue (fila): `skip` (default) or `abort_and_start`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[allow(missing_docs)]
pub enum WhenInQueue {
    #[default]
    Skip,
    AbortAndStart,
}

/// With the chatbot (automático): `skip` (default) or `run_keep_auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[allow(missing_docs)]
pub enum WhenInAuto {
    #[default]
    Skip,
    RunKeepAuto,
}

/// Configurações avançadas do Flow: one choice per state of the customer's chat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[allow(missing_docs)]
pub struct FlowPolicy {
    pub when_in_chat: WhenInChat,
    pub when_in_queue: WhenInQueue,
    pub when_in_auto: WhenInAuto,
}

/// The state of the customer's chat when the Flow is about to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatState {
    /// With an agent.
    InChat,
    /// Waiting in the queue.
    InQueue,
    /// With the chatbot.
    InAuto,
    /// No open chat.
    NoOpenChat,
}

impl ChatState {
    /// The state for a Huggy situation string; anything but the three open situations is
    /// "no open chat".
    pub fn from_situation(situation: &str) -> ChatState {
        match Situation::parse(situation) {
            Some(Situation::InChat) => ChatState::InChat,
            Some(Situation::WaitForChat) => ChatState::InQueue,
            Some(Situation::Auto) => ChatState::InAuto,
            None => ChatState::NoOpenChat,
        }
    }
}

/// What the Flow policy decides for one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowDecision {
    /// Start the Flow; `effect` says what happens to the chat.
    Run(RunEffect),
    /// Don't start it: the item is `skipped` with this reason.
    Skip(&'static str),
}

/// How a started Flow treats the chat it lands in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunEffect {
    /// No open chat: a plain start.
    Start,
    /// The agent is removed.
    RemoveAgent,
    /// The current Flow is aborted and this one starts.
    AbortCurrent,
    /// The chat stays automatic.
    KeepAuto,
}

impl FlowPolicy {
    /// Design §5: the decision for a chat in `state`.
    pub fn decide(&self, state: ChatState) -> FlowDecision {
        match state {
            ChatState::NoOpenChat => FlowDecision::Run(RunEffect::Start),
            ChatState::InChat => match self.when_in_chat {
                WhenInChat::RunRemoveAgent => FlowDecision::Run(RunEffect::RemoveAgent),
                WhenInChat::Skip => FlowDecision::Skip(crate::guard::SKIP_IN_CHAT),
            },
            ChatState::InQueue => match self.when_in_queue {
                WhenInQueue::AbortAndStart => FlowDecision::Run(RunEffect::AbortCurrent),
                WhenInQueue::Skip => FlowDecision::Skip(crate::guard::SKIP_IN_QUEUE),
            },
            ChatState::InAuto => match self.when_in_auto {
                WhenInAuto::RunKeepAuto => FlowDecision::Run(RunEffect::KeepAuto),
                WhenInAuto::Skip => FlowDecision::Skip(crate::guard::SKIP_IN_AUTO),
            },
        }
    }

    /// The `whenInChat`, `whenWaitForChat`, `whenInAuto` flags of Huggy's execFlow call.
    pub fn exec_flow_flags(&self) -> (bool, bool, bool) {
        (
            self.when_in_chat == WhenInChat::RunRemoveAgent,
            self.when_in_queue == WhenInQueue::AbortAndStart,
            self.when_in_auto == WhenInAuto::RunKeepAuto,
        )
    }
}

/// Parses and validates `action` for `table`.
pub fn parse_action(
    value: &Value,
    table: Option<Table>,
    path: &str,
    problems: &mut Problems,
) -> Option<Action> {
    let map = raw::as_object(value, path, problems)?;
    raw::reject_unknown_keys(map, path, &["flow", "chat", "policy"], problems);
    let flow = raw::get(map, "flow");
    let chat = raw::get(map, "chat");
    let policy = raw::get(map, "policy");
    match (flow, chat) {
        (Some(_), Some(_)) => {
            problems.push(path, "an action is either \"flow\" or \"chat\", not both");
            None
        }
        (None, None) => {
            problems.push(
                path,
                "required: \"flow\" (start a Huggy Flow) or \"chat\" (a chat action)",
            );
            None
        }
        (Some(flow), None) => {
            let policy = match policy {
                Some(p) => parse_policy(p, &join(path, "policy"), problems),
                None => Some(FlowPolicy::default()),
            };
            let flow = parse_flow(flow, table, &join(path, "flow"), problems);
            Some(Action::RunFlow(FlowAction {
                policy: policy?,
                ..flow?
            }))
        }
        (None, Some(chat)) => {
            if policy.is_some() {
                problems.push(
                    join(path, "policy"),
                    "the Flow policy applies only to a \"flow\" action",
                );
            }
            let chat_path = join(path, "chat");
            if table == Some(Table::Contacts) {
                problems.push(
                    &chat_path,
                    "chat actions are only allowed on the chats table",
                );
                return None;
            }
            parse_chat(chat, &chat_path, problems).map(Action::Chat)
        }
    }
}

fn parse_flow(
    value: &Value,
    table: Option<Table>,
    path: &str,
    problems: &mut Problems,
) -> Option<FlowAction> {
    let map = raw::as_object(value, path, problems)?;
    raw::reject_unknown_keys(
        map,
        path,
        &["project", "flow", "channel", "variables"],
        problems,
    );
    let id = |key: &str, problems: &mut Problems| {
        raw::required(map, path, key, problems)
            .and_then(|v| raw::as_int_in(v, &join(path, key), 1, i64::MAX, problems))
    };
    let project = id("project", problems);
    let flow = id("flow", problems);
    let channel_path = join(path, "channel");
    let channel = match (table, raw::get(map, "channel")) {
        (Some(Table::Chats), Some(_)) => {
            problems.push(
                &channel_path,
                "not allowed on the chats table (the chat's own channel is used)",
            );
            None
        }
        (Some(Table::Contacts), None) => {
            problems.push(
                &channel_path,
                "required on the contacts table: the WhatsApp channel's uuid",
            );
            None
        }
        (_, Some(v)) => match raw::as_str(v, &channel_path, problems) {
            Some(s)
                if s.trim().is_empty() || s.len() > 100 || s.chars().any(char::is_whitespace) =>
            {
                problems.push(
                    &channel_path,
                    "expected the WhatsApp channel's uuid (no spaces, at most 100 characters)",
                );
                None
            }
            Some(s) => Some(s.to_string()),
            None => None,
        },
        (_, None) => None,
    };
    let variables_path = join(path, "variables");
    let variables = match raw::get(map, "variables") {
        None => Some(Map::new()),
        Some(v) => raw::as_object(v, &variables_path, problems).and_then(|m| {
            let mut ok = true;
            for (k, v) in m {
                if matches!(v, Value::Array(_) | Value::Object(_)) {
                    raw::wrong_type(
                        problems,
                        &join(&variables_path, k),
                        "a text, number or boolean",
                        v,
                    );
                    ok = false;
                }
            }
            ok.then(|| m.clone())
        }),
    };
    Some(FlowAction {
        project: project?,
        flow: flow?,
        channel,
        variables: variables?,
        policy: FlowPolicy::default(),
    })
}

fn parse_policy(value: &Value, path: &str, problems: &mut Problems) -> Option<FlowPolicy> {
    let map = raw::as_object(value, path, problems)?;
    raw::reject_unknown_keys(
        map,
        path,
        &["when_in_chat", "when_in_queue", "when_in_auto"],
        problems,
    );
    let choice = |key: &str, options: [&'static str; 2], problems: &mut Problems| -> Option<bool> {
        let Some(v) = raw::get(map, key) else {
            return Some(false);
        };
        let p = join(path, key);
        let s = raw::as_str(v, &p, problems)?;
        if s == options[0] {
            Some(false)
        } else if s == options[1] {
            Some(true)
        } else {
            problems.push(
                p,
                format!("{s:?} is not one of: {}, {}", options[0], options[1]),
            );
            None
        }
    };
    let chat = choice("when_in_chat", ["skip", "run_remove_agent"], problems);
    let queue = choice("when_in_queue", ["skip", "abort_and_start"], problems);
    let auto = choice("when_in_auto", ["skip", "run_keep_auto"], problems);
    Some(FlowPolicy {
        when_in_chat: if chat? {
            WhenInChat::RunRemoveAgent
        } else {
            WhenInChat::Skip
        },
        when_in_queue: if queue? {
            WhenInQueue::AbortAndStart
        } else {
            WhenInQueue::Skip
        },
        when_in_auto: if auto? {
            WhenInAuto::RunKeepAuto
        } else {
            WhenInAuto::Skip
        },
    })
}

const CHAT_ACTIONS: &str = "transfer_to_agent: {agent}, put_in_queue, change_department: {department}, close (or close: {tabulation}), reopen, update_workflow: {step}, update_tabulation: {tabulation}";

fn parse_chat(value: &Value, path: &str, problems: &mut Problems) -> Option<ChatAction> {
    let (name, args, args_path): (&str, Option<&Object>, String) = match value {
        Value::String(s) => (s.as_str(), None, path.to_string()),
        Value::Object(m) if m.len() == 1 => {
            let (k, v) = m.iter().next()?;
            let p = join(path, k);
            match v {
                Value::Null => (k.as_str(), None, p),
                Value::Object(args) => (k.as_str(), Some(args), p),
                other => {
                    raw::wrong_type(problems, &p, "a map of the action's settings", other);
                    return None;
                }
            }
        }
        Value::Object(_) => {
            problems.push(
                path,
                format!("exactly one chat action, one of: {CHAT_ACTIONS}"),
            );
            return None;
        }
        other => {
            raw::wrong_type(problems, path, "a chat action", other);
            return None;
        }
    };
    let empty = Object::new();
    let a = args.unwrap_or(&empty);
    let needs = |keys: &[&str], problems: &mut Problems| {
        raw::reject_unknown_keys(a, &args_path, keys, problems);
    };
    let id = |key: &str, problems: &mut Problems| {
        raw::required(a, &args_path, key, problems)
            .and_then(|v| raw::as_int_in(v, &join(&args_path, key), 1, i64::MAX, problems))
    };
    let tabulation = |v: &Value, problems: &mut Problems| -> Option<String> {
        let p = join(&args_path, "tabulation");
        match v {
            Value::String(s) if !s.trim().is_empty() && s.len() <= 100 => Some(s.clone()),
            Value::Number(n) if n.is_i64() => Some(n.to_string()),
            other => {
                raw::wrong_type(problems, &p, "a tabulation id", other);
                None
            }
        }
    };
    Some(match name {
        "transfer_to_agent" => {
            needs(&["agent"], problems);
            ChatAction::TransferToAgent {
                agent: id("agent", problems)?,
            }
        }
        "change_department" => {
            needs(&["department"], problems);
            ChatAction::ChangeDepartment {
                department: id("department", problems)?,
            }
        }
        "update_workflow" => {
            needs(&["step"], problems);
            ChatAction::UpdateWorkflow {
                step: id("step", problems)?,
            }
        }
        "update_tabulation" => {
            needs(&["tabulation"], problems);
            let v = raw::required(a, &args_path, "tabulation", problems)?;
            ChatAction::UpdateTabulation {
                tabulation: tabulation(v, problems)?,
            }
        }
        "close" => {
            needs(&["tabulation"], problems);
            let tab = match raw::get(a, "tabulation") {
                Some(v) => Some(tabulation(v, problems)?),
                None => None,
            };
            ChatAction::Close { tabulation: tab }
        }
        "put_in_queue" | "reopen" => {
            needs(&[], problems);
            if name == "reopen" {
                ChatAction::Reopen
            } else {
                ChatAction::PutInQueue
            }
        }
        other => {
            problems.push(
                path,
                format!("unknown chat action {other:?}; one of: {CHAT_ACTIONS}"),
            );
            return None;
        }
    })
}
