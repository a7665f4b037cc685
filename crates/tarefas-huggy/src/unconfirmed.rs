//! **Unconfirmed (`~`) parts of the Huggy contract, all in one place.**
//!
//! `docs/huggy-api.md` marks with `~` what is only our best reading of Huggy. Everything of that
//! kind that code depends on lives here, so that confirming or correcting it is a change to
//! this file alone (the client and the fake Huggy both use these definitions):
//!
//! * the endpoints, methods and bodies of *put in queue*, *change department*, *reopen* and
//!   *update tabulation* (`QUEUE`, `DEPARTMENT`, `REOPEN`, `TABULATION` and their
//!   request types);
//! * how long to back off after a 429 without `Retry-After` ([`DEFAULT_RATE_LIMIT_BACKOFF`]);
//! * how an execFlow answer says the Flow was *not* run because of the policy flags
//!   ([`exec_flow_not_executed`], [`EXEC_FLOW_NOT_EXECUTED`]);
//! * record fields: a contact's `group` and `organization`, a chat's `workflow` and its
//!   channel's `type` and `name`. These are optional in [`crate::model`], so if Huggy names
//!   them differently they read as `None` rather than failing the sync; rename them there.

use std::time::Duration;

use reqwest::Method;
use serde::{Deserialize, Serialize};

use crate::client::Endpoint;

/// Put a chat in the queue (~): `PUT /chats/{id}/queue` with [`QueueRequest`].
/// The `QUEUE` endpoint (the fake Huggy serves the same route).
pub const QUEUE: Endpoint = Endpoint {
    name: "put_in_queue",
    method: Method::PUT,
    route: "/chats/{id}/queue",
};

/// Change a chat's department (~): `PUT /chats/{id}/department` with [`DepartmentRequest`].
/// The `DEPARTMENT` endpoint (the fake Huggy serves the same route).
pub const DEPARTMENT: Endpoint = Endpoint {
    name: "change_department",
    method: Method::PUT,
    route: "/chats/{id}/department",
};

/// Reopen a closed chat (~): `PUT /chats/{id}/reopen` with [`ReopenRequest`].
/// The `REOPEN` endpoint (the fake Huggy serves the same route).
pub const REOPEN: Endpoint = Endpoint {
    name: "reopen_chat",
    method: Method::PUT,
    route: "/chats/{id}/reopen",
};

/// Update a chat's tabulation (~): `PUT /chats/{id}/tabulation` with [`TabulationRequest`].
/// The `TABULATION` endpoint (the fake Huggy serves the same route).
pub const TABULATION: Endpoint = Endpoint {
    name: "update_tabulation",
    method: Method::PUT,
    route: "/chats/{id}/tabulation",
};

/// Body of put-in-queue (~): `{}`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueRequest {}

/// Body of reopen (~): `{}`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReopenRequest {}

/// Body of change-department (~): `{"departmentId": 3}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DepartmentRequest {
    /// The department to move the chat to.
    pub department_id: i64,
}

/// Body of update-tabulation (~): `{"tabulationId": "12"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TabulationRequest {
    /// The tabulation id.
    pub tabulation_id: String,
}

/// How long to pause an account after a 429 that carried no `Retry-After` (~).
pub const DEFAULT_RATE_LIMIT_BACKOFF: Duration = Duration::from_secs(5);

/// The reason the fake Huggy gives when execFlow's flags kept it from running the Flow.
/// Real Huggy's wording is unknown (~); [`exec_flow_not_executed`] recognizes this text.
pub const EXEC_FLOW_NOT_EXECUTED: &str = "Flow not executed";

/// True when an execFlow `reason` says the Flow was not run (~: matches
/// [`EXEC_FLOW_NOT_EXECUTED`] and its Portuguese form, case-insensitively).
pub fn exec_flow_not_executed(reason: &str) -> bool {
    let reason = reason.to_lowercase();
    reason.contains("not executed")
        || reason.contains("não executado")
        || reason.contains("nao executado")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_executed_reasons() {
        assert!(exec_flow_not_executed(EXEC_FLOW_NOT_EXECUTED));
        assert!(exec_flow_not_executed(
            "Flow NÃO EXECUTADO: atendimento em andamento"
        ));
        assert!(!exec_flow_not_executed("Flow executed"));
        assert!(!exec_flow_not_executed(""));
    }
}
