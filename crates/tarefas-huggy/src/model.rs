//! Huggy's JSON, as serde types: the records read by sync (`Contact`, `Chat`), the bodies of
//! the actions sent by workers, and the execFlow answer.
//!
//! Reading is tolerant: unknown fields are ignored, optional fields may be missing or `null`,
//! an empty date string reads as no date. Writing is exact: request bodies serialize to the
//! field names of `docs/huggy-api.md`. Fields that are only our best reading of Huggy (`~`) are
//! optional here and listed in [`crate::unconfirmed`].

use std::collections::BTreeMap;

use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Deserializer, Serialize};

pub use crate::unconfirmed::{DepartmentRequest, QueueRequest, ReopenRequest, TabulationRequest};

/// Chat situations, as Huggy spells them.
pub mod situation {
    /// With the chatbot (automático).
    pub const AUTO: &str = "auto";
    /// Waiting in queue (na fila).
    pub const WAIT_FOR_CHAT: &str = "wait_for_chat";
    /// With an agent (em atendimento).
    pub const IN_CHAT: &str = "in_chat";
    /// Being finished; not synced.
    pub const FINISHING: &str = "finishing";
    /// Closed (finalizado); not synced.
    pub const CLOSED: &str = "closed";
    /// The situations a chat can be synced in (the "open" ones), in Huggy's list order.
    pub const OPEN: [&str; 3] = [AUTO, WAIT_FOR_CHAT, IN_CHAT];

    /// True for `auto`, `wait_for_chat` and `in_chat`.
    pub fn is_open(situation: &str) -> bool {
        OPEN.contains(&situation)
    }
}

/// A reference to another Huggy record by id, with its display name when Huggy sends one
/// (a contact's group or organization, a chat's department).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedRef {
    /// Huggy's id of the referenced record.
    pub id: i64,
    /// Its name, when sent.
    #[serde(default)]
    pub name: Option<String>,
}

/// A Huggy contact (customer), as `GET /contacts` and `GET /contacts/{id}` answer it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Contact {
    /// Huggy's contact id.
    pub id: i64,
    /// Display name.
    #[serde(default)]
    pub name: Option<String>,
    /// E-mail address.
    #[serde(default)]
    pub email: Option<String>,
    /// Mobile number, digits only (e.g. `5511999990000`).
    #[serde(default)]
    pub mobile: Option<String>,
    /// Landline number, digits only.
    #[serde(default)]
    pub phone: Option<String>,
    /// When the contact was created.
    #[serde(default, deserialize_with = "lenient_datetime")]
    pub created_at: Option<DateTime<FixedOffset>>,
    /// When the contact last changed.
    #[serde(default, deserialize_with = "lenient_datetime")]
    pub updated_at: Option<DateTime<FixedOffset>>,
    /// The contact's group (~, see [`crate::unconfirmed`]).
    #[serde(default)]
    pub group: Option<NamedRef>,
    /// The contact's organization (~, see [`crate::unconfirmed`]).
    #[serde(default)]
    pub organization: Option<NamedRef>,
    /// Custom fields by key, values as Huggy sent them (usually strings).
    #[serde(default, deserialize_with = "null_as_default")]
    pub custom_fields: BTreeMap<String, serde_json::Value>,
}

/// The customer of a chat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerRef {
    /// The contact id.
    pub id: i64,
}

/// The channel a chat runs on (a WhatsApp number, for Tarefas).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Channel {
    /// Huggy's channel id.
    pub id: i64,
    /// The channel's uuid, used by execFlow.
    #[serde(default)]
    pub uuid: Option<String>,
    /// The channel type, e.g. `whatsapp` (~).
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    /// Display name, e.g. the phone number (~).
    #[serde(default)]
    pub name: Option<String>,
}

/// Where a chat stands in a workflow (~, see [`crate::unconfirmed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkflowRef {
    /// The workflow id.
    pub id: i64,
    /// The current step, when the chat is on one.
    #[serde(default)]
    pub step_id: Option<i64>,
}

/// The last message of a chat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LastMessage {
    /// When it was sent.
    #[serde(default, deserialize_with = "lenient_datetime")]
    pub send_at: Option<DateTime<FixedOffset>>,
}

/// A Huggy chat (atendimento), as `GET /chats` and `GET /chats/{id}` answer it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Chat {
    /// Huggy's chat id.
    pub id: i64,
    /// `auto`, `wait_for_chat`, `in_chat`, `finishing`, `closed` (see [`situation`]); empty
    /// when Huggy sent none.
    #[serde(default, deserialize_with = "null_as_default")]
    pub situation: String,
    /// The contact the chat is with.
    #[serde(default)]
    pub customer: Option<CustomerRef>,
    /// The department handling it.
    #[serde(default)]
    pub department: Option<NamedRef>,
    /// The channel it runs on.
    #[serde(default)]
    pub channel: Option<Channel>,
    /// Its workflow and step (~).
    #[serde(default)]
    pub workflow: Option<WorkflowRef>,
    /// When the chat was created.
    #[serde(default, deserialize_with = "lenient_datetime")]
    pub created_at: Option<DateTime<FixedOffset>>,
    /// When the chat last changed.
    #[serde(default, deserialize_with = "lenient_datetime")]
    pub updated_at: Option<DateTime<FixedOffset>>,
    /// Its last message.
    #[serde(default)]
    pub last_message: Option<LastMessage>,
}

impl Chat {
    /// True when the chat is in one of the synced situations (auto, wait_for_chat, in_chat).
    pub fn is_open(&self) -> bool {
        situation::is_open(&self.situation)
    }

    /// The customer's contact id, when known.
    pub fn customer_id(&self) -> Option<i64> {
        self.customer.map(|c| c.id)
    }
}

/// Body of `PUT /contacts/{id}/execFlow`: start a Flow for a contact on a channel.
///
/// The three flags carry the task's Flow policy (design §5): `true` runs the Flow in that
/// state of the contact's chat, `false` leaves the chat alone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecFlowRequest {
    /// The channel's uuid.
    pub uuid: String,
    /// The Flow to run.
    pub flow_id: i64,
    /// Variables handed to the Flow.
    #[serde(default)]
    pub variables: BTreeMap<String, serde_json::Value>,
    /// Chat with an agent: `true` runs the Flow and removes the agent.
    pub when_in_chat: bool,
    /// Chat waiting in queue: `true` aborts the current Flow and starts this one.
    pub when_wait_for_chat: bool,
    /// Chat with the chatbot: `true` runs the Flow and keeps the chat automatic.
    pub when_in_auto: bool,
}

/// Huggy's answer to execFlow: `{"reason": "…", "chatID": 555}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecFlowResponse {
    /// Huggy's explanation of what it did.
    #[serde(default)]
    pub reason: Option<String>,
    /// The chat the Flow ran in (or would have run in).
    #[serde(default, rename = "chatID", alias = "chatId")]
    pub chat_id: Option<i64>,
}

impl ExecFlowResponse {
    /// True when Huggy's reason says the Flow was not run because of the policy flags.
    ///
    /// This reads the reason text, which is our best guess (~): see
    /// [`crate::unconfirmed::exec_flow_not_executed`].
    pub fn not_executed(&self) -> bool {
        self.reason
            .as_deref()
            .is_some_and(crate::unconfirmed::exec_flow_not_executed)
    }
}

/// Body of `POST /chats/{id}/flow`: run a Flow in an existing chat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatFlowRequest {
    /// The Flow to run.
    pub flow_id: i64,
    /// Variables handed to the Flow.
    #[serde(default)]
    pub variables: BTreeMap<String, serde_json::Value>,
}

/// Body of `PUT /chats/{id}/agent`: transfer the chat to an agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TransferRequest {
    /// The agent's id.
    pub agent_id: i64,
}

/// Body of `PUT /chats/{id}/workflow`: move the chat to a workflow step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkflowRequest {
    /// The step to move to.
    pub step_id: i64,
}

/// Body of `PUT /chats/{id}/close`: close (finalizar) the chat, optionally with a tabulation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CloseRequest {
    /// Whether Huggy sends its satisfaction survey; Tarefas sends `false`.
    #[serde(default)]
    pub send_feedback: bool,
    /// The tabulation id, when one is set (omitted otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tabulation: Option<String>,
    /// A closing comment; Tarefas sends `""`.
    #[serde(default)]
    pub comment: String,
}

impl CloseRequest {
    /// The body Tarefas sends: no feedback survey, no comment.
    pub fn new(tabulation: Option<String>) -> Self {
        Self {
            send_feedback: false,
            tabulation,
            comment: String::new(),
        }
    }
}

/// Deserializes `null` as the type's default value.
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// Reads an RFC 3339 date-time (also with a space instead of `T`); `null` and `""` read as
/// `None`.
fn lenient_datetime<'de, D>(deserializer: D) -> Result<Option<DateTime<FixedOffset>>, D::Error>
where
    D: Deserializer<'de>,
{
    let Some(text) = Option::<String>::deserialize(deserializer)? else {
        return Ok(None);
    };
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    DateTime::parse_from_rfc3339(text)
        .or_else(|_| text.parse::<DateTime<FixedOffset>>())
        .map(Some)
        .map_err(|e| serde::de::Error::custom(format!("invalid date-time {text:?}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn contact_reads_the_documented_shape() {
        let contact: Contact = serde_json::from_value(json!({
            "id": 123, "name": "Ana", "email": "ana@x.com", "mobile": "5511999990000",
            "phone": "551133330000", "createdAt": "2026-01-02T10:00:00-03:00",
            "updatedAt": "2026-01-03T10:00:00-03:00", "group": {"id": 7, "name": "VIP"},
            "organization": {"id": 9, "name": "Rotik"},
            "customFields": {"plano": "gold", "vencimento": "2026-12-10"},
            "somethingNew": [1, 2, 3]
        }))
        .unwrap();
        assert_eq!(contact.id, 123);
        assert_eq!(
            contact.group,
            Some(NamedRef {
                id: 7,
                name: Some("VIP".into())
            })
        );
        assert_eq!(contact.organization.unwrap().name.as_deref(), Some("Rotik"));
        assert_eq!(contact.custom_fields["plano"], json!("gold"));
        assert_eq!(
            contact.created_at.unwrap().to_rfc3339(),
            "2026-01-02T10:00:00-03:00"
        );
    }

    #[test]
    fn contact_tolerates_missing_and_null_fields() {
        let contact: Contact = serde_json::from_value(json!({"id": 1})).unwrap();
        assert_eq!(contact.name, None);
        assert!(contact.custom_fields.is_empty());
        let contact: Contact = serde_json::from_value(json!({
            "id": 1, "name": null, "email": null, "createdAt": null, "updatedAt": "",
            "group": null, "organization": null, "customFields": null
        }))
        .unwrap();
        assert_eq!(contact.created_at, None);
        assert_eq!(contact.updated_at, None);
        assert_eq!(contact.group, None);
        assert!(contact.custom_fields.is_empty());
        assert!(serde_json::from_value::<Contact>(json!({"name": "no id"})).is_err());
        assert!(
            serde_json::from_value::<Contact>(json!({"id": 1, "createdAt": "yesterday"})).is_err()
        );
    }

    #[test]
    fn chat_reads_the_documented_shape() {
        let chat: Chat = serde_json::from_value(json!({
            "id": 555, "situation": "in_chat", "customer": {"id": 123},
            "department": {"id": 3, "name": "Suporte"},
            "channel": {"id": 4, "uuid": "abc", "type": "whatsapp", "name": "+55 11 4000"},
            "workflow": {"id": 2, "stepId": 8},
            "createdAt": "2026-01-02 10:00:00-03:00", "updatedAt": "2026-01-02T11:00:00Z",
            "lastMessage": {"sendAt": "2026-01-02T10:59:00-03:00"}
        }))
        .unwrap();
        assert!(chat.is_open());
        assert_eq!(chat.customer_id(), Some(123));
        assert_eq!(
            chat.channel.as_ref().unwrap().kind.as_deref(),
            Some("whatsapp")
        );
        assert_eq!(
            chat.workflow,
            Some(WorkflowRef {
                id: 2,
                step_id: Some(8)
            })
        );
        assert!(chat.created_at.is_some());
        assert!(chat.last_message.unwrap().send_at.is_some());

        let bare: Chat =
            serde_json::from_value(json!({"id": 1, "situation": null, "lastMessage": null}))
                .unwrap();
        assert_eq!(bare.situation, "");
        assert!(!bare.is_open());
        assert_eq!(bare.customer_id(), None);
    }

    #[test]
    fn request_bodies_are_exact() {
        let exec = ExecFlowRequest {
            uuid: "u-1".into(),
            flow_id: 42,
            variables: BTreeMap::new(),
            when_in_chat: true,
            when_wait_for_chat: false,
            when_in_auto: true,
        };
        assert_eq!(
            serde_json::to_value(&exec).unwrap(),
            json!({"uuid": "u-1", "flowId": 42, "variables": {}, "whenInChat": true,
                   "whenWaitForChat": false, "whenInAuto": true})
        );
        let flow = ChatFlowRequest {
            flow_id: 42,
            variables: BTreeMap::new(),
        };
        assert_eq!(
            serde_json::to_value(&flow).unwrap(),
            json!({"flowId": 42, "variables": {}})
        );
        assert_eq!(
            serde_json::to_value(TransferRequest { agent_id: 17 }).unwrap(),
            json!({"agentId": 17})
        );
        assert_eq!(
            serde_json::to_value(WorkflowRequest { step_id: 8 }).unwrap(),
            json!({"stepId": 8})
        );
        assert_eq!(
            serde_json::to_value(CloseRequest::new(Some("12".into()))).unwrap(),
            json!({"sendFeedback": false, "tabulation": "12", "comment": ""})
        );
        assert_eq!(
            serde_json::to_value(CloseRequest::new(None)).unwrap(),
            json!({"sendFeedback": false, "comment": ""})
        );
        assert_eq!(serde_json::to_value(QueueRequest {}).unwrap(), json!({}));
        assert_eq!(serde_json::to_value(ReopenRequest {}).unwrap(), json!({}));
        assert_eq!(
            serde_json::to_value(DepartmentRequest { department_id: 3 }).unwrap(),
            json!({"departmentId": 3})
        );
        assert_eq!(
            serde_json::to_value(TabulationRequest {
                tabulation_id: "12".into()
            })
            .unwrap(),
            json!({"tabulationId": "12"})
        );
    }

    #[test]
    fn exec_flow_answer() {
        let answer: ExecFlowResponse =
            serde_json::from_str(r#"{"reason": "ok", "chatID": 555}"#).unwrap();
        assert_eq!(answer.chat_id, Some(555));
        assert!(!answer.not_executed());
        let answer: ExecFlowResponse = serde_json::from_str(r#"{"chatId": 7}"#).unwrap();
        assert_eq!(answer.chat_id, Some(7));
        let answer: ExecFlowResponse = serde_json::from_str("{}").unwrap();
        assert_eq!(answer, ExecFlowResponse::default());
    }
}
