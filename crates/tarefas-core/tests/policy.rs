//! The Flow policy of design §5, state by option, and the flags it sends to Huggy.

use tarefas_core::action::{
    ChatAction, ChatState, FlowDecision, FlowPolicy, RunEffect, WhenInAuto, WhenInChat, WhenInQueue,
};

fn policy(chat: bool, queue: bool, auto: bool) -> FlowPolicy {
    FlowPolicy {
        when_in_chat: if chat {
            WhenInChat::RunRemoveAgent
        } else {
            WhenInChat::Skip
        },
        when_in_queue: if queue {
            WhenInQueue::AbortAndStart
        } else {
            WhenInQueue::Skip
        },
        when_in_auto: if auto {
            WhenInAuto::RunKeepAuto
        } else {
            WhenInAuto::Skip
        },
    }
}

#[test]
fn every_state_and_option() {
    let a = policy(true, true, true); // option A everywhere
    let b = policy(false, false, false); // option B (the defaults)
    assert_eq!(
        a.decide(ChatState::InChat),
        FlowDecision::Run(RunEffect::RemoveAgent)
    );
    assert!(matches!(b.decide(ChatState::InChat), FlowDecision::Skip(r) if r == "policy: in chat"));
    assert_eq!(
        a.decide(ChatState::InQueue),
        FlowDecision::Run(RunEffect::AbortCurrent)
    );
    assert!(
        matches!(b.decide(ChatState::InQueue), FlowDecision::Skip(r) if r == "policy: in queue")
    );
    assert_eq!(
        a.decide(ChatState::InAuto),
        FlowDecision::Run(RunEffect::KeepAuto)
    );
    assert!(matches!(b.decide(ChatState::InAuto), FlowDecision::Skip(r) if r == "policy: in auto"));
    assert_eq!(
        a.decide(ChatState::NoOpenChat),
        FlowDecision::Run(RunEffect::Start)
    );
    assert_eq!(
        b.decide(ChatState::NoOpenChat),
        FlowDecision::Run(RunEffect::Start)
    );
    assert_eq!(FlowPolicy::default(), b);
}

#[test]
fn each_choice_only_affects_its_own_state() {
    let p = policy(true, false, false);
    assert!(matches!(p.decide(ChatState::InChat), FlowDecision::Run(_)));
    assert!(matches!(
        p.decide(ChatState::InQueue),
        FlowDecision::Skip(_)
    ));
    assert!(matches!(p.decide(ChatState::InAuto), FlowDecision::Skip(_)));
    let p = policy(false, false, true);
    assert!(matches!(p.decide(ChatState::InChat), FlowDecision::Skip(_)));
    assert!(matches!(
        p.decide(ChatState::InAuto),
        FlowDecision::Run(RunEffect::KeepAuto)
    ));
}

#[test]
fn exec_flow_flags_carry_the_policy() {
    assert_eq!(
        policy(true, false, true).exec_flow_flags(),
        (true, false, true)
    );
    assert_eq!(
        policy(false, true, false).exec_flow_flags(),
        (false, true, false)
    );
    assert_eq!(
        FlowPolicy::default().exec_flow_flags(),
        (false, false, false)
    );
}

#[test]
fn situations_map_to_states() {
    assert_eq!(ChatState::from_situation("in_chat"), ChatState::InChat);
    assert_eq!(
        ChatState::from_situation("wait_for_chat"),
        ChatState::InQueue
    );
    assert_eq!(ChatState::from_situation("auto"), ChatState::InAuto);
    assert_eq!(
        ChatState::from_situation("finishing"),
        ChatState::NoOpenChat
    );
    assert_eq!(ChatState::from_situation("closed"), ChatState::NoOpenChat);
}

#[test]
fn chat_actions_that_may_be_repeated() {
    assert!(ChatAction::TransferToAgent { agent: 1 }.is_idempotent());
    assert!(ChatAction::UpdateWorkflow { step: 1 }.is_idempotent());
    assert!(!ChatAction::Close { tabulation: None }.is_idempotent());
    assert!(!ChatAction::Reopen.is_idempotent());
}
