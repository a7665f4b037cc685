//! The admin HTTP API and the Tarefas web console, served by `tarefas admin`.
//!
//! * `/api/v1/…`: JSON over HTTP — tasks (create, list, show, update, pause, resume, delete),
//!   segment preview (a saved task's, or an unsaved draft's), "Executar Tarefa", runs (list,
//!   show, cancel) and live run progress as server-sent events. Every request carries an
//!   operator API token (`Authorization: Bearer …`, made by `tarefas token create`) and acts
//!   within that token's account only.
//! * `/openapi.json`: the OpenAPI 3.1 document, built from the same route table that builds
//!   the router ([`routes`]), so the two cannot disagree.
//! * `/`: the web console (pt-BR), plain HTML, CSS and JavaScript embedded in the binary.

pub mod api;
pub mod console;
pub mod error;
pub mod openapi;
pub mod safety_api;

use std::time::Duration;

use axum::routing::{delete, get, post, put, MethodRouter};
use axum::Router;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

pub use openapi::RouteDoc;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// The Tarefas database.
    pub pool: PgPool,
    /// How often live progress looks at the run.
    pub poll_interval: Duration,
    /// Cancelled when the server shuts down, so that progress streams end.
    pub shutdown: CancellationToken,
}

/// One route: its documentation and its handler.
pub struct Route {
    /// What `/openapi.json` says about it.
    pub doc: RouteDoc,
    /// The handler, for the route's one method.
    pub handler: MethodRouter<AppState>,
}

fn route(doc: RouteDoc, handler: MethodRouter<AppState>) -> Route {
    Route { doc, handler }
}

/// The API's routes; the router and the OpenAPI document are both built from this list.
pub fn routes() -> Vec<Route> {
    use openapi::doc;
    vec![
        route(doc("GET", "/api/v1/me", "The token's account").ok("Me"), get(api::me)),
        route(
            doc("GET", "/api/v1/schema", "Fields and operators of each table (what the filter builder offers)")
                .ok("Schema"),
            get(api::schema),
        ),
        route(
            doc("GET", "/api/v1/tasks", "List the account's tasks (not deleted), each with its last run").ok("TaskList"),
            get(api::list_tasks),
        ),
        route(
            doc("POST", "/api/v1/tasks", "Create a task from a task definition (the task file, as JSON)")
                .body("TaskDefinition")
                .status(201, "Task", "created")
                .invalid(),
            post(api::create_task),
        ),
        route(
            doc("GET", "/api/v1/tasks/{id}", "Show a task").id().ok("Task"),
            get(api::get_task),
        ),
        route(
            doc("PUT", "/api/v1/tasks/{id}", "Replace a task's definition (its status is kept; its version goes up by one; runs already planned keep theirs)")
                .id()
                .body("TaskDefinition")
                .ok("Task")
                .invalid(),
            put(api::update_task),
        ),
        route(
            doc("DELETE", "/api/v1/tasks/{id}", "Delete a task (its runs are kept; those not ended finish on their snapshot)")
                .id()
                .query("cancel_runs", "boolean", "also cancel the task's runs that have not ended (default false)")
                .status(204, "", "deleted")
                .bad_request(),
            delete(api::delete_task),
        ),
        route(
            doc("POST", "/api/v1/tasks/{id}/pause", "Pause a task: it stops firing on schedule").id().ok("Task"),
            post(api::pause_task),
        ),
        route(
            doc("POST", "/api/v1/tasks/{id}/resume", "Resume a paused task; its next fire is computed from now")
                .id()
                .ok("Task"),
            post(api::resume_task),
        ),
        route(
            doc("GET", "/api/v1/tasks/{id}/preview", "How many records the task's segment matches now, and the first few")
                .id()
                .query("limit", "integer", "how many records to return (0..=1000, default 10)")
                .ok("Preview")
                .bad_request(),
            get(api::preview_task),
        ),
        route(
            doc("POST", "/api/v1/preview", "Preview an unsaved draft's segment (only table, time_zone and filter are read)")
                .query("limit", "integer", "how many records to return (0..=1000, default 10)")
                .body("TaskDefinition")
                .ok("Preview")
                .invalid(),
            post(api::preview_draft),
        ),
        route(
            doc("POST", "/api/v1/tasks/{id}/run", "\"Executar Tarefa\": run the task now (an ExecuteTask through the outbox)")
                .id()
                .status(202, "RunRequested", "requested; follow it with GET /api/v1/requests/{request_id}"),
            post(api::run_task),
        ),
        route(
            doc("GET", "/api/v1/requests/{request_id}", "The run a request made (run is null until a worker planned it)")
                .path_param("request_id", "string", "as POST /tasks/{id}/run returned it")
                .ok("RequestStatus"),
            get(api::get_request),
        ),
        route(
            doc("GET", "/api/v1/runs", "List runs, newest first")
                .query("task", "integer", "only this task's runs")
                .query("limit", "integer", "how many (0..=500, default 20)")
                .query("missed", "boolean", "also the fires that were not run, with their reason, by time (`kind`: run or missed)")
                .ok("RunList")
                .bad_request(),
            get(api::list_runs),
        ),
        route(
            doc("GET", "/api/v1/runs/{id}", "Show a run with its counts by outcome").id().ok("Run"),
            get(api::get_run),
        ),
        route(
            doc("POST", "/api/v1/runs/{id}/cancel", "Cancel a run: pending items are skipped")
                .id()
                .ok("Run")
                .status(409, "Error", "the run already ended"),
            post(api::cancel_run),
        ),
        route(
            doc("GET", "/api/v1/runs/{id}/events", "Live progress as server-sent events: `progress` (a Run) on every change, then one `end` (a Run) when it reaches a final status")
                .id()
                .stream(),
            get(api::run_events),
        ),
        route(
            doc("GET", "/api/v1/runs/{id}/items", "The per-record report: each record's outcome, reason and time")
                .id()
                .query("outcome", "string", "only this outcome (pending, sending, done, skipped, failed, unknown)")
                .query("format", "string", "json (default) or csv (cells a spreadsheet would run as formulas are neutralized)")
                .ok("RunItems")
                .bad_request(),
            get(safety_api::run_items),
        ),
        route(
            doc("POST", "/api/v1/runs/{id}/approve", "\"Aprovar envio\": start a run held in awaiting_approval")
                .id()
                .ok("Run")
                .status(409, "Error", "the run is not awaiting approval"),
            post(safety_api::approve_run),
        ),
        route(
            doc("POST", "/api/v1/runs/{id}/retry-failed", "\"Reenviar falhas\": a new run of the same task over this run's failed items only")
                .id()
                .status(202, "RunRequested", "requested; follow it with GET /api/v1/requests/{request_id}")
                .status(409, "Error", "the run has not ended, or has no failed items"),
            post(safety_api::retry_failed),
        ),
        route(
            doc("POST", "/api/v1/tasks/{id}/dry-run", "\"Simular\": what each record would get (call, or skipped with its reason); Huggy is never called")
                .id()
                .body("DryRunRequest")
                .ok("DryRun")
                .bad_request(),
            post(safety_api::dry_run),
        ),
        route(
            doc("GET", "/api/v1/suppressions", "The account's opt-out list").ok("Suppressions"),
            get(safety_api::list_suppressions),
        ),
        route(
            doc("POST", "/api/v1/suppressions", "Add contacts to the opt-out list")
                .body("SuppressionChange")
                .ok("SuppressionResult")
                .bad_request(),
            post(safety_api::add_suppressions),
        ),
        route(
            doc("POST", "/api/v1/suppressions/remove", "Remove contacts from the opt-out list")
                .body("SuppressionChange")
                .ok("SuppressionResult")
                .bad_request(),
            post(safety_api::remove_suppressions),
        ),
        route(
            doc("POST", "/api/v1/suppressions/import", "Add every contact id of a CSV body (column contact_id, id or the first), all or nothing")
                .ok("SuppressionResult")
                .invalid(),
            post(safety_api::import_suppressions),
        ),
    ]
}

/// The whole application: the API, `/openapi.json`, `/healthz` and the console.
pub fn router(state: AppState) -> Router {
    let mut api = Router::new();
    let mut docs = Vec::new();
    for r in routes() {
        api = api.route(r.doc.path, r.handler);
        docs.push(r.doc);
    }
    let document = openapi::document(&docs);
    api.route(
        "/openapi.json",
        get(move || {
            let d = document.clone();
            async move { axum::Json(d) }
        }),
    )
    .route("/healthz", get(|| async { "ok" }))
    .merge(console::router())
    .with_state(state)
}

/// Serves the admin API and the console on `listener` until `shutdown` is cancelled; then
/// open progress streams end and in-flight requests finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    pool: PgPool,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let state = AppState {
        pool,
        poll_interval: Duration::from_millis(300),
        shutdown: shutdown.clone(),
    };
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}
