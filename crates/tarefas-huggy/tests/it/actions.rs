//! What each action does to the fake's state, and execFlow's policy flags against every
//! situation of the contact's chat.

use std::collections::BTreeMap;

use tarefas_fake_huggy::data::{CHANNELS, FIRST_CHAT_ID};
use tarefas_huggy::model::situation;
use tarefas_huggy::{ChatFlowRequest, ExecFlowRequest, HuggyApi, HuggyError, WorkflowRef};

use crate::support::{chat, contact, empty, seed_chat, start};

const CONTACT: i64 = 1;
const CHAT: i64 = 77;

fn exec(
    flow_id: i64,
    when_in_chat: bool,
    when_wait_for_chat: bool,
    when_in_auto: bool,
) -> ExecFlowRequest {
    ExecFlowRequest {
        uuid: CHANNELS[1].1.into(),
        flow_id,
        variables: BTreeMap::from([("nome".into(), "Ana".into())]),
        when_in_chat,
        when_wait_for_chat,
        when_in_auto,
    }
}

/// The request with only `situation`'s flag set to `allowed`, every other flag the opposite,
/// so that only the right flag can decide.
fn exec_for(situation: &str, allowed: bool) -> ExecFlowRequest {
    match situation {
        situation::IN_CHAT => exec(42, allowed, !allowed, !allowed),
        situation::WAIT_FOR_CHAT => exec(42, !allowed, allowed, !allowed),
        _ => exec(42, !allowed, !allowed, allowed),
    }
}

#[tokio::test]
async fn exec_flow_honours_the_flag_of_the_chats_situation() {
    for state in [
        situation::IN_CHAT,
        situation::WAIT_FOR_CHAT,
        situation::AUTO,
    ] {
        for allowed in [false, true] {
            let (fake, client) = start(empty()).await;
            let before = seed_chat(&fake, CONTACT, CHAT, state);
            let answer = client
                .exec_flow(CONTACT, &exec_for(state, allowed))
                .await
                .unwrap();
            let after = fake.chat_record(CHAT).unwrap();
            let case = format!("{state} with flag {allowed}");
            assert_eq!(answer.chat_id, Some(CHAT), "{case}");
            assert_eq!(fake.chats().len(), 1, "{case}: no new chat");
            if allowed {
                assert!(!answer.not_executed(), "{case}: {answer:?}");
                assert_eq!(after.chat.situation, situation::AUTO, "{case}");
                assert_eq!(after.extras.agent_id, None, "{case}: agent removed");
                assert_eq!(after.extras.last_flow_id, Some(42), "{case}");
                assert_eq!(after.extras.flow_runs, 1, "{case}");
                assert!(
                    after.chat.updated_at > before.chat.updated_at,
                    "{case}: updatedAt bumped"
                );
            } else {
                assert!(answer.not_executed(), "{case}: {answer:?}");
                assert_eq!(after, before, "{case}: state unchanged");
            }
        }
    }
}

#[tokio::test]
async fn exec_flow_without_an_open_chat_starts_one_whatever_the_flags() {
    for flags in [(false, false, false), (true, true, true)] {
        let (fake, client) = start(empty()).await;
        let closed = seed_chat(&fake, CONTACT, CHAT, situation::CLOSED);
        let answer = client
            .exec_flow(CONTACT, &exec(7, flags.0, flags.1, flags.2))
            .await
            .unwrap();
        assert!(!answer.not_executed());
        let new_id = answer.chat_id.unwrap();
        assert_eq!(new_id, FIRST_CHAT_ID);
        let new = fake.chat_record(new_id).unwrap();
        assert_eq!(new.chat.situation, situation::AUTO);
        assert_eq!(new.chat.customer_id(), Some(CONTACT));
        assert_eq!(
            new.chat.channel.unwrap().uuid.as_deref(),
            Some(CHANNELS[1].1)
        );
        assert_eq!(new.extras.flow_runs, 1);
        assert_eq!(
            fake.chat_record(CHAT).unwrap(),
            closed,
            "the closed chat is left alone"
        );
        assert_eq!(fake.open_chat_of(CONTACT), Some(new_id));
        // It shows in the open list, and a second run finds it.
        assert!(client
            .list_chats(0, None)
            .await
            .unwrap()
            .iter()
            .any(|c| c.id == new_id));
        let again = client
            .exec_flow(CONTACT, &exec(7, true, true, true))
            .await
            .unwrap();
        assert_eq!(again.chat_id, Some(new_id));
        assert_eq!(fake.chat_record(new_id).unwrap().extras.flow_runs, 2);
    }
}

#[tokio::test]
async fn exec_flow_picks_the_most_recent_open_chat() {
    let (fake, client) = start(empty()).await;
    fake.upsert_contact(contact(CONTACT));
    fake.upsert_chat(chat(
        10,
        CONTACT,
        situation::IN_CHAT,
        "2026-09-01T10:00:00-03:00",
    ));
    fake.upsert_chat(chat(
        11,
        CONTACT,
        situation::AUTO,
        "2026-10-01T10:00:00-03:00",
    ));
    fake.upsert_chat(chat(
        12,
        CONTACT,
        situation::CLOSED,
        "2026-10-20T10:00:00-03:00",
    ));
    let answer = client
        .exec_flow(CONTACT, &exec(1, false, false, true))
        .await
        .unwrap();
    assert_eq!(answer.chat_id, Some(11));
    assert!(!answer.not_executed());
}

#[tokio::test]
async fn exec_flow_rejects_unknown_contacts_and_channels() {
    let (fake, client) = start(empty()).await;
    seed_chat(&fake, CONTACT, CHAT, situation::AUTO);
    let err = client
        .exec_flow(404, &exec(1, true, true, true))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        HuggyError::Permanent {
            status: 404,
            reason: "Contact not found".into()
        }
    );
    let mut bad = exec(1, true, true, true);
    bad.uuid = "not-a-channel".into();
    let err = client.exec_flow(CONTACT, &bad).await.unwrap_err();
    assert!(
        matches!(err, HuggyError::Permanent { status: 400, .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn chat_flow_puts_the_flow_in_charge() {
    let (fake, client) = start(empty()).await;
    let before = seed_chat(&fake, CONTACT, CHAT, situation::IN_CHAT);
    client
        .run_chat_flow(
            CHAT,
            &ChatFlowRequest {
                flow_id: 5,
                variables: BTreeMap::new(),
            },
        )
        .await
        .unwrap();
    let after = fake.chat_record(CHAT).unwrap();
    assert_eq!(after.chat.situation, situation::AUTO);
    assert_eq!(after.extras.agent_id, None);
    assert_eq!(
        (after.extras.last_flow_id, after.extras.flow_runs),
        (Some(5), 1)
    );
    assert!(after.chat.updated_at > before.chat.updated_at);
}

#[tokio::test]
async fn transfer_gives_the_chat_to_the_agent() {
    let (fake, client) = start(empty()).await;
    seed_chat(&fake, CONTACT, CHAT, situation::WAIT_FOR_CHAT);
    client.transfer_to_agent(CHAT, 17).await.unwrap();
    let after = fake.chat_record(CHAT).unwrap();
    assert_eq!(after.chat.situation, situation::IN_CHAT);
    assert_eq!(after.extras.agent_id, Some(17));
    assert_eq!(
        fake.calls()[0].body,
        Some(serde_json::json!({"agentId": 17}))
    );
}

#[tokio::test]
async fn workflow_moves_the_step() {
    let (fake, client) = start(empty()).await;
    let before = seed_chat(&fake, CONTACT, CHAT, situation::AUTO);
    client.update_workflow(CHAT, 23).await.unwrap();
    let after = fake.chat(CHAT).unwrap();
    assert_eq!(
        after.workflow,
        Some(WorkflowRef {
            id: 2,
            step_id: Some(23)
        })
    );
    assert_eq!(after.situation, situation::AUTO);
    assert!(after.updated_at > before.chat.updated_at);
}

#[tokio::test]
async fn close_removes_the_chat_from_the_open_lists() {
    let (fake, client) = start(empty()).await;
    seed_chat(&fake, CONTACT, CHAT, situation::IN_CHAT);
    assert_eq!(client.list_chats(0, None).await.unwrap().len(), 1);
    client.close_chat(CHAT, Some("12".into())).await.unwrap();
    let after = fake.chat_record(CHAT).unwrap();
    assert_eq!(after.chat.situation, situation::CLOSED);
    assert_eq!(after.extras.tabulation.as_deref(), Some("12"));
    assert_eq!(after.extras.agent_id, None);
    assert!(client.list_chats(0, None).await.unwrap().is_empty());
    assert!(client
        .list_chats(0, Some(situation::IN_CHAT))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        client.list_chats(0, Some(situation::CLOSED)).await.unwrap()[0].id,
        CHAT
    );
    assert_eq!(
        fake.calls()[1].body,
        Some(serde_json::json!({"sendFeedback": false, "tabulation": "12", "comment": ""}))
    );
    // Closing twice is refused with Huggy's reason; actions on a closed chat too.
    let err = client.close_chat(CHAT, None).await.unwrap_err();
    assert_eq!(
        err,
        HuggyError::Permanent {
            status: 422,
            reason: "Chat already closed".into()
        }
    );
    for err in [
        client.transfer_to_agent(CHAT, 1).await.unwrap_err(),
        client.put_in_queue(CHAT).await.unwrap_err(),
        client.update_workflow(CHAT, 8).await.unwrap_err(),
        client.change_department(CHAT, 2).await.unwrap_err(),
        client
            .run_chat_flow(
                CHAT,
                &ChatFlowRequest {
                    flow_id: 1,
                    variables: BTreeMap::new(),
                },
            )
            .await
            .unwrap_err(),
    ] {
        assert_eq!(
            err,
            HuggyError::Permanent {
                status: 422,
                reason: "Chat is closed".into()
            }
        );
    }
}

#[tokio::test]
async fn queue_sends_the_chat_back_to_waiting() {
    let (fake, client) = start(empty()).await;
    seed_chat(&fake, CONTACT, CHAT, situation::IN_CHAT);
    client.put_in_queue(CHAT).await.unwrap();
    let after = fake.chat_record(CHAT).unwrap();
    assert_eq!(after.chat.situation, situation::WAIT_FOR_CHAT);
    assert_eq!(after.extras.agent_id, None);
    assert_eq!(fake.calls()[0].body, Some(serde_json::json!({})));
}

#[tokio::test]
async fn department_changes_to_a_known_one() {
    let (fake, client) = start(empty()).await;
    seed_chat(&fake, CONTACT, CHAT, situation::WAIT_FOR_CHAT);
    client.change_department(CHAT, 3).await.unwrap();
    let after = fake.chat(CHAT).unwrap();
    assert_eq!(
        after.department.unwrap().name.as_deref(),
        Some("Financeiro")
    );
    assert_eq!(after.situation, situation::WAIT_FOR_CHAT);
    let err = client.change_department(CHAT, 999).await.unwrap_err();
    assert_eq!(
        err,
        HuggyError::Permanent {
            status: 422,
            reason: "Department not found".into()
        }
    );
}

#[tokio::test]
async fn reopen_brings_a_closed_chat_back_to_auto() {
    let (fake, client) = start(empty()).await;
    seed_chat(&fake, CONTACT, CHAT, situation::CLOSED);
    client.reopen_chat(CHAT).await.unwrap();
    assert_eq!(fake.chat(CHAT).unwrap().situation, situation::AUTO);
    assert_eq!(client.list_chats(0, None).await.unwrap()[0].id, CHAT);
    let err = client.reopen_chat(CHAT).await.unwrap_err();
    assert_eq!(
        err,
        HuggyError::Permanent {
            status: 422,
            reason: "Chat is not closed".into()
        }
    );
}

#[tokio::test]
async fn tabulation_is_set_in_any_situation() {
    let (fake, client) = start(empty()).await;
    seed_chat(&fake, CONTACT, CHAT, situation::CLOSED);
    client.update_tabulation(CHAT, "31".into()).await.unwrap();
    assert_eq!(
        fake.chat_record(CHAT).unwrap().extras.tabulation.as_deref(),
        Some("31")
    );
    assert_eq!(
        fake.calls()[0].body,
        Some(serde_json::json!({"tabulationId": "31"}))
    );
}

#[tokio::test]
async fn actions_on_unknown_chats_are_404() {
    let (_fake, client) = start(empty()).await;
    let gone = HuggyError::Permanent {
        status: 404,
        reason: "Chat not found".into(),
    };
    assert_eq!(client.transfer_to_agent(5, 1).await.unwrap_err(), gone);
    assert_eq!(client.close_chat(5, None).await.unwrap_err(), gone);
    assert_eq!(client.reopen_chat(5).await.unwrap_err(), gone);
    assert_eq!(
        client.update_tabulation(5, "1".into()).await.unwrap_err(),
        gone
    );
}

#[tokio::test]
async fn every_change_bumps_updated_at() {
    let (fake, client) = start(empty()).await;
    seed_chat(&fake, CONTACT, CHAT, situation::AUTO);
    let mut last = fake.chat(CHAT).unwrap().updated_at;
    for step in 0..6 {
        match step {
            0 => client.transfer_to_agent(CHAT, 3).await.unwrap(),
            1 => client.put_in_queue(CHAT).await.unwrap(),
            2 => client.update_workflow(CHAT, 22).await.unwrap(),
            3 => client.change_department(CHAT, 2).await.unwrap(),
            4 => client.close_chat(CHAT, None).await.unwrap(),
            _ => client.reopen_chat(CHAT).await.unwrap(),
        }
        let now = fake.chat(CHAT).unwrap().updated_at;
        assert!(now > last, "step {step}");
        last = now;
    }
}
