//! Helpers shared by the tests: starting a fake and a client pointed at it, and building
//! records in a known state.

use std::time::Duration;

use chrono::{DateTime, FixedOffset};
use tarefas_fake_huggy::data::CHANNELS;
use tarefas_fake_huggy::{ChatExtras, FakeChat, FakeConfig, FakeHuggy};
use tarefas_huggy::{
    Channel, Chat, Contact, CustomerRef, HttpHuggy, HuggyConfig, NamedRef, WorkflowRef,
};

/// A small data set: 45 contacts (three pages) and 60 chats.
pub fn small() -> FakeConfig {
    FakeConfig {
        contacts: 45,
        chats: 60,
        ..FakeConfig::default()
    }
}

/// An empty fake, for tests that build their own records.
pub fn empty() -> FakeConfig {
    FakeConfig {
        contacts: 0,
        chats: 0,
        ..FakeConfig::default()
    }
}

pub async fn start(config: FakeConfig) -> (FakeHuggy, HttpHuggy) {
    let fake = FakeHuggy::start(config).await.expect("fake Huggy starts");
    let client = client_for(&fake);
    (fake, client)
}

pub fn client_for(fake: &FakeHuggy) -> HttpHuggy {
    HttpHuggy::new(config_for(fake)).expect("client builds")
}

pub fn config_for(fake: &FakeHuggy) -> HuggyConfig {
    HuggyConfig::new(fake.token())
        .with_base_url(fake.base_url())
        .with_timeouts(Duration::from_secs(2), Duration::from_secs(5))
}

pub fn at(text: &str) -> DateTime<FixedOffset> {
    DateTime::parse_from_rfc3339(text).unwrap()
}

pub fn contact(id: i64) -> Contact {
    Contact {
        id,
        name: Some("Ana Souza".into()),
        email: Some("ana.souza@gmail.com".into()),
        mobile: Some("5511987654321".into()),
        phone: None,
        created_at: Some(at("2026-01-02T10:00:00-03:00")),
        updated_at: Some(at("2026-01-03T10:00:00-03:00")),
        group: Some(NamedRef {
            id: 1,
            name: Some("VIP".into()),
        }),
        organization: Some(NamedRef {
            id: 101,
            name: Some("Rotik".into()),
        }),
        custom_fields: Default::default(),
    }
}

pub fn chat(id: i64, customer: i64, situation: &str, created_at: &str) -> Chat {
    let (channel_id, uuid, name) = CHANNELS[0];
    Chat {
        id,
        situation: situation.into(),
        customer: Some(CustomerRef { id: customer }),
        department: Some(NamedRef {
            id: 1,
            name: Some("Suporte".into()),
        }),
        channel: Some(Channel {
            id: channel_id,
            uuid: Some(uuid.into()),
            kind: Some("whatsapp".into()),
            name: Some(name.into()),
        }),
        workflow: Some(WorkflowRef {
            id: 2,
            step_id: Some(21),
        }),
        created_at: Some(at(created_at)),
        updated_at: Some(at(created_at)),
        last_message: None,
    }
}

/// Puts a contact with one chat in `situation` (with agent 9 when in_chat) into the fake.
pub fn seed_chat(fake: &FakeHuggy, contact_id: i64, chat_id: i64, situation: &str) -> FakeChat {
    fake.upsert_contact(contact(contact_id));
    let agent_id = (situation == "in_chat").then_some(9);
    let record = FakeChat {
        chat: chat(chat_id, contact_id, situation, "2026-10-01T09:00:00-03:00"),
        extras: ChatExtras {
            agent_id,
            ..ChatExtras::default()
        },
    };
    fake.upsert_chat_record(record.clone());
    record
}
