//! The fake Huggy's records and what each API action does to them.
//!
//! Contacts and chats are kept in vectors sorted by id (binary search to find one, a slice to
//! page), chats also indexed by customer. The filtered chat lists are cached and rebuilt
//! only after a chat is added, removed or changes situation. Every change of a chat bumps its
//! `updatedAt` to the later of now and one millisecond after its previous value, so an
//! update never looks older than the data it replaces (the data set's dates are anchored
//! at a fixed epoch that may be ahead of the clock).

use std::collections::HashMap;

use chrono::{DateTime, Duration, FixedOffset, Utc};
use serde::{Deserialize, Serialize};

use crate::data::{self, Dataset, FIRST_CHAT_ID};
use tarefas_huggy::client::PAGE_SIZE;
use tarefas_huggy::model::{
    situation, Chat, ChatFlowRequest, CloseRequest, Contact, CustomerRef, DepartmentRequest,
    ExecFlowRequest, ExecFlowResponse, LastMessage, TabulationRequest, TransferRequest,
    WorkflowRef, WorkflowRequest,
};
use tarefas_huggy::unconfirmed::EXEC_FLOW_NOT_EXECUTED;

/// What the fake knows about a chat beyond what Huggy's API shows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatExtras {
    /// The agent handling the chat, if any.
    pub agent_id: Option<i64>,
    /// The tabulation set by close or update-tabulation.
    pub tabulation: Option<String>,
    /// The last Flow run in this chat (by execFlow or the chat flow action).
    pub last_flow_id: Option<i64>,
    /// How many Flows ran in this chat: exactly-once checks count these.
    pub flow_runs: u64,
}

/// A chat as the fake keeps it: the API view plus the extras.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FakeChat {
    /// What `GET /chats/{id}` shows.
    pub chat: Chat,
    /// What only the fake knows.
    pub extras: ChatExtras,
}

/// An error answer: status and message (served as `{"message": …}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    pub(crate) status: u16,
    pub(crate) message: String,
}

impl ApiError {
    pub(crate) fn new(status: u16, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    fn chat_not_found() -> Self {
        Self::new(404, "Chat not found")
    }
}

/// Which chats a list shows.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum View {
    Open,
    Situation(String),
}

/// All records of the fake Huggy.
#[derive(Debug, Default)]
pub(crate) struct Store {
    contacts: Vec<Contact>,
    chats: Vec<FakeChat>,
    by_customer: HashMap<i64, Vec<i64>>,
    views: HashMap<View, Vec<usize>>,
    next_chat_id: i64,
}

impl Store {
    pub(crate) fn new(dataset: Dataset) -> Self {
        let Dataset {
            contacts,
            chats,
            agents,
        } = dataset;
        let chats: Vec<FakeChat> = chats
            .into_iter()
            .zip(agents)
            .map(|(chat, agent_id)| FakeChat {
                chat,
                extras: ChatExtras {
                    agent_id,
                    ..ChatExtras::default()
                },
            })
            .collect();
        let mut store = Self {
            contacts,
            chats,
            next_chat_id: FIRST_CHAT_ID,
            ..Self::default()
        };
        store.contacts.sort_by_key(|c| c.id);
        store.chats.sort_by_key(|c| c.chat.id);
        store.reindex();
        store
    }

    fn reindex(&mut self) {
        self.by_customer.clear();
        for record in &self.chats {
            if let Some(customer) = record.chat.customer_id() {
                self.by_customer
                    .entry(customer)
                    .or_default()
                    .push(record.chat.id);
            }
        }
        self.next_chat_id = self
            .next_chat_id
            .max(self.chats.last().map_or(FIRST_CHAT_ID, |c| c.chat.id + 1));
        self.views.clear();
    }

    // ---- reads ----

    pub(crate) fn contacts_page(&self, page: usize) -> Vec<Contact> {
        let start = page.saturating_mul(PAGE_SIZE).min(self.contacts.len());
        let end = (start + PAGE_SIZE).min(self.contacts.len());
        self.contacts[start..end].to_vec()
    }

    pub(crate) fn chats_page(&mut self, page: usize, situation: Option<&str>) -> Vec<Chat> {
        let view = match situation {
            None => View::Open,
            Some(s) => View::Situation(s.to_owned()),
        };
        let chats = &self.chats;
        let indexes = self.views.entry(view.clone()).or_insert_with(|| {
            chats
                .iter()
                .enumerate()
                .filter(|(_, c)| match &view {
                    View::Open => c.chat.is_open(),
                    View::Situation(s) => c.chat.situation == *s,
                })
                .map(|(i, _)| i)
                .collect()
        });
        indexes
            .iter()
            .skip(page.saturating_mul(PAGE_SIZE))
            .take(PAGE_SIZE)
            .map(|&i| chats[i].chat.clone())
            .collect()
    }

    pub(crate) fn contact(&self, id: i64) -> Option<&Contact> {
        self.contacts
            .binary_search_by_key(&id, |c| c.id)
            .ok()
            .map(|i| &self.contacts[i])
    }

    pub(crate) fn chat(&self, id: i64) -> Option<&FakeChat> {
        self.chat_index(id).map(|i| &self.chats[i])
    }

    pub(crate) fn all_contacts(&self) -> Vec<Contact> {
        self.contacts.clone()
    }

    pub(crate) fn all_chats(&self) -> Vec<FakeChat> {
        self.chats.clone()
    }

    fn chat_index(&self, id: i64) -> Option<usize> {
        self.chats.binary_search_by_key(&id, |c| c.chat.id).ok()
    }

    /// The contact's current open chat: the most recently created one in auto,
    /// wait_for_chat or in_chat (ties: the highest id).
    pub(crate) fn open_chat_of(&self, contact_id: i64) -> Option<i64> {
        self.by_customer
            .get(&contact_id)?
            .iter()
            .filter_map(|&id| self.chat(id))
            .filter(|c| c.chat.is_open())
            .max_by_key(|c| (c.chat.created_at, c.chat.id))
            .map(|c| c.chat.id)
    }

    // ---- test mutators ----

    pub(crate) fn upsert_contact(&mut self, contact: Contact) {
        match self.contacts.binary_search_by_key(&contact.id, |c| c.id) {
            Ok(i) => self.contacts[i] = contact,
            Err(i) => self.contacts.insert(i, contact),
        }
    }

    pub(crate) fn remove_contact(&mut self, id: i64) -> bool {
        match self.contacts.binary_search_by_key(&id, |c| c.id) {
            Ok(i) => {
                self.contacts.remove(i);
                true
            }
            Err(_) => false,
        }
    }

    pub(crate) fn upsert_chat(&mut self, record: FakeChat) {
        match self.chat_index(record.chat.id) {
            Some(i) => self.chats[i] = record,
            None => {
                let i = self.chats.partition_point(|c| c.chat.id < record.chat.id);
                self.chats.insert(i, record);
            }
        }
        self.reindex();
    }

    pub(crate) fn remove_chat(&mut self, id: i64) -> bool {
        let Some(i) = self.chat_index(id) else {
            return false;
        };
        self.chats.remove(i);
        self.reindex();
        true
    }

    // ---- API actions ----

    /// `PUT /contacts/{id}/execFlow`, honouring the three policy flags against the
    /// contact's current open chat; without one, a new `auto` chat is started.
    pub(crate) fn exec_flow(
        &mut self,
        contact_id: i64,
        request: &ExecFlowRequest,
        now: DateTime<FixedOffset>,
    ) -> Result<ExecFlowResponse, ApiError> {
        if self.contact(contact_id).is_none() {
            return Err(ApiError::new(404, "Contact not found"));
        }
        let channel = data::channel_by_uuid(&request.uuid)
            .ok_or_else(|| ApiError::new(400, "Channel uuid not found"))?;
        let Some(chat_id) = self.open_chat_of(contact_id) else {
            let id = self.next_chat_id;
            self.next_chat_id += 1;
            let chat = Chat {
                id,
                situation: situation::AUTO.to_owned(),
                customer: Some(CustomerRef { id: contact_id }),
                department: None,
                channel: Some(channel),
                workflow: None,
                created_at: Some(now),
                updated_at: Some(now),
                last_message: Some(LastMessage { send_at: Some(now) }),
            };
            let extras = ChatExtras {
                last_flow_id: Some(request.flow_id),
                flow_runs: 1,
                ..ChatExtras::default()
            };
            // New ids are above every existing one: the vector stays sorted.
            self.chats.push(FakeChat { chat, extras });
            self.by_customer.entry(contact_id).or_default().push(id);
            self.views.clear();
            return Ok(ExecFlowResponse {
                reason: Some("Flow executed in a new chat".into()),
                chat_id: Some(id),
            });
        };
        let current = self
            .chat(chat_id)
            .map(|c| c.chat.situation.clone())
            .unwrap_or_default();
        let (allowed, flag, done) = match current.as_str() {
            situation::IN_CHAT => (
                request.when_in_chat,
                "whenInChat",
                "Flow executed; agent removed",
            ),
            situation::WAIT_FOR_CHAT => (
                request.when_wait_for_chat,
                "whenWaitForChat",
                "Flow executed; previous flow aborted",
            ),
            _ => (
                request.when_in_auto,
                "whenInAuto",
                "Flow executed; chat kept automatic",
            ),
        };
        if !allowed {
            return Ok(ExecFlowResponse {
                reason: Some(format!(
                    "{EXEC_FLOW_NOT_EXECUTED}: chat is {current} and {flag} is false"
                )),
                chat_id: Some(chat_id),
            });
        }
        self.modify_chat(chat_id, now, |record| {
            record.chat.situation = situation::AUTO.to_owned();
            record.extras.agent_id = None;
            record.extras.last_flow_id = Some(request.flow_id);
            record.extras.flow_runs += 1;
            record.chat.last_message = Some(LastMessage { send_at: Some(now) });
            Ok(())
        })?;
        Ok(ExecFlowResponse {
            reason: Some(done.into()),
            chat_id: Some(chat_id),
        })
    }

    /// `POST /chats/{id}/flow`: the Flow takes the chat (automatic, no agent).
    pub(crate) fn chat_flow(
        &mut self,
        id: i64,
        request: &ChatFlowRequest,
        now: DateTime<FixedOffset>,
    ) -> Result<(), ApiError> {
        self.modify_chat(id, now, |record| {
            require_not_closed(record)?;
            record.chat.situation = situation::AUTO.to_owned();
            record.extras.agent_id = None;
            record.extras.last_flow_id = Some(request.flow_id);
            record.extras.flow_runs += 1;
            record.chat.last_message = Some(LastMessage { send_at: Some(now) });
            Ok(())
        })
    }

    /// `PUT /chats/{id}/agent`: with that agent, `in_chat`.
    pub(crate) fn transfer(
        &mut self,
        id: i64,
        request: &TransferRequest,
        now: DateTime<FixedOffset>,
    ) -> Result<(), ApiError> {
        self.modify_chat(id, now, |record| {
            require_not_closed(record)?;
            record.chat.situation = situation::IN_CHAT.to_owned();
            record.extras.agent_id = Some(request.agent_id);
            Ok(())
        })
    }

    /// `PUT /chats/{id}/workflow`: sets the step (a chat without workflow joins workflow
    /// `stepId / 10`, the data set's numbering).
    pub(crate) fn workflow(
        &mut self,
        id: i64,
        request: &WorkflowRequest,
        now: DateTime<FixedOffset>,
    ) -> Result<(), ApiError> {
        self.modify_chat(id, now, |record| {
            require_not_closed(record)?;
            let workflow_id = record.chat.workflow.map_or(request.step_id / 10, |w| w.id);
            record.chat.workflow = Some(WorkflowRef {
                id: workflow_id,
                step_id: Some(request.step_id),
            });
            Ok(())
        })
    }

    /// `PUT /chats/{id}/close`: `closed`, agent released, tabulation kept.
    pub(crate) fn close(
        &mut self,
        id: i64,
        request: &CloseRequest,
        now: DateTime<FixedOffset>,
    ) -> Result<(), ApiError> {
        self.modify_chat(id, now, |record| {
            if record.chat.situation == situation::CLOSED {
                return Err(ApiError::new(422, "Chat already closed"));
            }
            record.chat.situation = situation::CLOSED.to_owned();
            record.extras.agent_id = None;
            if request.tabulation.is_some() {
                record.extras.tabulation.clone_from(&request.tabulation);
            }
            Ok(())
        })
    }

    /// Put in queue (~): `wait_for_chat`, agent released.
    pub(crate) fn queue(&mut self, id: i64, now: DateTime<FixedOffset>) -> Result<(), ApiError> {
        self.modify_chat(id, now, |record| {
            require_not_closed(record)?;
            record.chat.situation = situation::WAIT_FOR_CHAT.to_owned();
            record.extras.agent_id = None;
            Ok(())
        })
    }

    /// Change department (~): the department must exist.
    pub(crate) fn department(
        &mut self,
        id: i64,
        request: &DepartmentRequest,
        now: DateTime<FixedOffset>,
    ) -> Result<(), ApiError> {
        let department = data::department(request.department_id)
            .ok_or_else(|| ApiError::new(422, "Department not found"))?;
        self.modify_chat(id, now, |record| {
            require_not_closed(record)?;
            record.chat.department = Some(department);
            Ok(())
        })
    }

    /// Reopen (~): a closed or finishing chat goes back to `auto`.
    pub(crate) fn reopen(&mut self, id: i64, now: DateTime<FixedOffset>) -> Result<(), ApiError> {
        self.modify_chat(id, now, |record| {
            if record.chat.is_open() {
                return Err(ApiError::new(422, "Chat is not closed"));
            }
            record.chat.situation = situation::AUTO.to_owned();
            Ok(())
        })
    }

    /// Update tabulation (~): allowed in any situation.
    pub(crate) fn tabulation(
        &mut self,
        id: i64,
        request: &TabulationRequest,
        now: DateTime<FixedOffset>,
    ) -> Result<(), ApiError> {
        self.modify_chat(id, now, |record| {
            record.extras.tabulation = Some(request.tabulation_id.clone());
            Ok(())
        })
    }

    /// Applies `change` to a chat; on success bumps `updatedAt` and, when the situation
    /// changed, drops the cached list views.
    fn modify_chat(
        &mut self,
        id: i64,
        now: DateTime<FixedOffset>,
        change: impl FnOnce(&mut FakeChat) -> Result<(), ApiError>,
    ) -> Result<(), ApiError> {
        let i = self.chat_index(id).ok_or_else(ApiError::chat_not_found)?;
        let mut record = self.chats[i].clone();
        change(&mut record)?;
        record.chat.updated_at = Some(bump(record.chat.updated_at, now));
        let situation_changed = record.chat.situation != self.chats[i].chat.situation;
        self.chats[i] = record;
        if situation_changed {
            self.views.clear();
        }
        Ok(())
    }
}

fn require_not_closed(record: &FakeChat) -> Result<(), ApiError> {
    if record.chat.is_open() {
        Ok(())
    } else {
        Err(ApiError::new(
            422,
            format!("Chat is {}", record.chat.situation),
        ))
    }
}

/// The later of `now` and one millisecond after `previous`.
fn bump(
    previous: Option<DateTime<FixedOffset>>,
    now: DateTime<FixedOffset>,
) -> DateTime<FixedOffset> {
    match previous {
        Some(previous) if previous >= now => previous + Duration::milliseconds(1),
        _ => now,
    }
}

/// The clock in Brasília time, to the millisecond.
pub(crate) fn now() -> DateTime<FixedOffset> {
    let now = Utc::now();
    let millis = now.timestamp_millis();
    DateTime::from_timestamp_millis(millis)
        .unwrap_or(now)
        .with_timezone(&data::brt())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn exec(flags: (bool, bool, bool)) -> ExecFlowRequest {
        ExecFlowRequest {
            uuid: data::CHANNELS[0].1.to_owned(),
            flow_id: 42,
            variables: BTreeMap::new(),
            when_in_chat: flags.0,
            when_wait_for_chat: flags.1,
            when_in_auto: flags.2,
        }
    }

    #[test]
    fn bump_never_goes_back() {
        let now = now();
        assert_eq!(bump(None, now), now);
        assert_eq!(bump(Some(now - Duration::hours(1)), now), now);
        let future = data::epoch() + Duration::days(3650);
        assert_eq!(bump(Some(future), now), future + Duration::milliseconds(1));
    }

    #[test]
    fn pages_and_views() {
        let mut store = Store::new(Dataset::generate(45, 100, 3));
        assert_eq!(store.contacts_page(0).len(), 20);
        assert_eq!(store.contacts_page(2).len(), 5);
        assert!(store.contacts_page(3).is_empty());
        assert!(store.contacts_page(usize::MAX).is_empty());
        let open: usize = (0..10).map(|p| store.chats_page(p, None).len()).sum();
        let by_situation: usize = situation::OPEN
            .iter()
            .map(|s| {
                (0..10)
                    .map(|p| store.chats_page(p, Some(s)).len())
                    .sum::<usize>()
            })
            .sum();
        assert_eq!(open, by_situation);
        let open_id = store.chats_page(0, None)[0].id;
        store
            .close(open_id, &CloseRequest::new(None), now())
            .unwrap();
        let open_after: usize = (0..10).map(|p| store.chats_page(p, None).len()).sum();
        assert_eq!(open_after, open - 1);
        assert!(store.chats_page(0, Some("nonsense")).is_empty());
    }

    #[test]
    fn exec_flow_without_open_chat_creates_one() {
        let mut store = Store::new(Dataset::generate(3, 0, 1));
        let answer = store
            .exec_flow(1001, &exec((false, false, false)), now())
            .unwrap();
        let id = answer.chat_id.unwrap();
        assert_eq!(id, FIRST_CHAT_ID);
        assert!(!answer.not_executed());
        let chat = store.chat(id).unwrap();
        assert_eq!(chat.chat.situation, situation::AUTO);
        assert_eq!(chat.extras.flow_runs, 1);
        assert_eq!(store.open_chat_of(1001), Some(id));
        assert_eq!(
            store
                .exec_flow(9, &exec((true, true, true)), now())
                .unwrap_err()
                .status,
            404
        );
        let mut bad = exec((true, true, true));
        bad.uuid = "nope".into();
        assert_eq!(store.exec_flow(1001, &bad, now()).unwrap_err().status, 400);
    }
}
