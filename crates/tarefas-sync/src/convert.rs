//! Huggy's records (as the client reads them) → the domain's records (as the mirror stores
//! them and the evaluator reads them).

use chrono::{DateTime, Utc};
use serde_json::Value;
use tarefas_core::eval::{Chat, Contact, Reference};
use tarefas_core::segment::Situation;
use tarefas_huggy::model as huggy;
use tarefas_store::mirror::MirrorChat;

fn utc(t: Option<DateTime<chrono::FixedOffset>>) -> Option<DateTime<Utc>> {
    t.map(|t| t.with_timezone(&Utc))
}

fn reference(r: &huggy::NamedRef) -> Reference {
    Reference {
        id: r.id,
        name: r.name.clone(),
    }
}

/// A custom field's value as text: strings as they are, numbers and booleans written out,
/// `null` dropped, anything else as its JSON text.
fn custom_text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        other => Some(other.to_string()),
    }
}

/// A Huggy contact as the mirror stores it.
pub fn contact(c: &huggy::Contact) -> Contact {
    Contact {
        id: c.id,
        name: c.name.clone(),
        mobile: c.mobile.clone(),
        phone: c.phone.clone(),
        email: c.email.clone(),
        created_at: utc(c.created_at),
        updated_at: utc(c.updated_at),
        group: c.group.as_ref().map(reference),
        organization: c.organization.as_ref().map(reference),
        custom: c
            .custom_fields
            .iter()
            .filter_map(|(k, v)| custom_text(v).map(|t| (k.clone(), t)))
            .collect(),
    }
}

/// A Huggy chat as the mirror stores it; `None` when it is not open (auto, wait_for_chat,
/// in_chat), since only open chats live in the Chats table.
pub fn chat(c: &huggy::Chat) -> Option<MirrorChat> {
    let situation = Situation::parse(&c.situation)?;
    Some(MirrorChat {
        chat: Chat {
            id: c.id,
            situation,
            department: c.department.as_ref().map(reference),
            channel: c.channel.as_ref().map(|ch| Reference {
                id: ch.id,
                name: ch.name.clone(),
            }),
            created_at: utc(c.created_at),
            updated_at: utc(c.updated_at),
            workflow: c.workflow.map(|w| Reference {
                id: w.id,
                name: None,
            }),
            workflow_step: c
                .workflow
                .and_then(|w| w.step_id)
                .map(|id| Reference { id, name: None }),
            last_message_at: c.last_message.and_then(|m| utc(m.send_at)),
        },
        contact_id: c.customer_id(),
        channel_uuid: c.channel.as_ref().and_then(|ch| ch.uuid.clone()),
    })
}
