//! The admin API over HTTP against a real Postgres (a fresh database per test): every
//! endpoint's success and error paths, authentication and account scoping, validation
//! problems with the paths of `tarefas task validate`, the outbox message of "Executar
//! Tarefa", and live progress as server-sent events.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sqlx::PgPool;
use tarefas_store::{accounts, outbox, runs, tokens};

const MIGRATOR: &sqlx::migrate::Migrator = &tarefas_store::MIGRATOR;

struct Api {
    base: String,
    http: reqwest::Client,
    token: String,
    other_token: String,
    account_id: i64,
    other_account_id: i64,
    pool: PgPool,
    _stop: tokio_util::sync::DropGuard,
}

async fn account(pool: &PgPool, name: &str) -> i64 {
    accounts::add(
        pool,
        &accounts::NewAccount {
            name: name.into(),
            company_id: None,
            token_ref: None,
            webhook_token_ref: None,
            rate_limit_per_s: 10,
        },
    )
    .await
    .unwrap()
    .id
}

impl Api {
    async fn start(pool: PgPool) -> Api {
        let account_id = account(&pool, "acme").await;
        let other_account_id = account(&pool, "outra").await;
        let (_, token) = tokens::create(&pool, account_id, "teste").await.unwrap();
        let (_, other_token) = tokens::create(&pool, other_account_id, "outra")
            .await
            .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let stop = tokio_util::sync::CancellationToken::new();
        let (served, stopped) = (pool.clone(), stop.clone());
        tokio::spawn(async move {
            tarefas_admin::serve(listener, served, stopped)
                .await
                .unwrap();
        });
        Api {
            base,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .unwrap(),
            token,
            other_token,
            account_id,
            other_account_id,
            pool,
            _stop: stop.drop_guard(),
        }
    }

    async fn call_as(
        &self,
        token: Option<&str>,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, value)
    }

    async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> (StatusCode, Value) {
        self.call_as(Some(&self.token.clone()), method, path, body)
            .await
    }

    async fn create(&self, def: &Value) -> i64 {
        let (s, v) = self.call(Method::POST, "/api/v1/tasks", Some(def)).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        v["id"].as_i64().unwrap()
    }
}

/// The seed article's first example: contacts created on a date AND of organization Rotik.
fn rotik() -> Value {
    json!({
        "name": "Boas-vindas Rotik",
        "objective": "Dar boas-vindas aos contatos da Rotik",
        "recurrence": {"kind": "manual"},
        "table": "contacts",
        "filter": {"all": [
            {"field": "created_at", "op": "on", "value": "2025-12-31"},
            {"field": "organization", "op": "eq", "value": "Rotik"}
        ]},
        "action": {
            "flow": {"project": 3, "flow": 42, "channel": "5f0c3a52-7d1e-4c8b-9a2f-0b6e4d3c2a11"},
            "policy": {"when_in_chat": "skip", "when_in_queue": "skip", "when_in_auto": "run_keep_auto"}
        }
    })
}

fn daily() -> Value {
    json!({
        "name": "Diária",
        "recurrence": {"kind": "daily", "at": "09:00"},
        "table": "chats",
        "filter": {"any": [{"field": "department", "op": "eq", "value": "Suporte"}]},
        "action": {"chat": "close"}
    })
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn auth_missing_wrong_revoked_tokens_are_401(pool: PgPool) {
    let api = Api::start(pool).await;
    for path in [
        "/api/v1/tasks",
        "/api/v1/me",
        "/api/v1/runs",
        "/api/v1/schema",
    ] {
        let (s, v) = api.call_as(None, Method::GET, path, None).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{path}");
        assert!(v["error"].as_str().unwrap().contains("token"), "{v}");
    }
    let resp = api
        .http
        .get(format!("{}/api/v1/tasks", api.base))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.headers()["www-authenticate"],
        "Bearer realm=\"tarefas\""
    );
    let wrong = format!("{}{}", tarefas_store::tokens::PREFIX, "0".repeat(64));
    for t in [wrong.as_str(), "nonsense", ""] {
        let (s, _) = api
            .call_as(Some(t), Method::GET, "/api/v1/tasks", None)
            .await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{t:?}");
    }
    // A Basic header is not a token.
    let resp = api
        .http
        .get(format!("{}/api/v1/tasks", api.base))
        .basic_auth("acme", Some(&api.token))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    // Mutations are refused without a token, and change nothing.
    let (s, _) = api
        .call_as(None, Method::POST, "/api/v1/tasks", Some(&rotik()))
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(tarefas_store::tasks::list(&api.pool, None)
        .await
        .unwrap()
        .is_empty());
    // The right token works and says whose it is; revoked, it stops working.
    let (s, me) = api.call(Method::GET, "/api/v1/me", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(me["account"], "acme");
    let stored = tokens::list(&api.pool, Some(api.account_id)).await.unwrap();
    assert!(stored[0].last_used_at.is_some());
    assert!(tokens::revoke(&api.pool, stored[0].id).await.unwrap());
    let (s, _) = api.call(Method::GET, "/api/v1/me", None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // Only the digest is stored.
    let raw: Vec<Vec<u8>> = sqlx::query_scalar("SELECT token_sha256 FROM api_tokens")
        .fetch_all(&api.pool)
        .await
        .unwrap();
    assert!(raw
        .iter()
        .all(|d| d.len() == 32 && d != api.token.as_bytes()));
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn public_routes_need_no_token(pool: PgPool) {
    let api = Api::start(pool).await;
    let (s, doc) = api.call_as(None, Method::GET, "/openapi.json", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.1.0");
    let (s, _) = api.call_as(None, Method::GET, "/healthz", None).await;
    assert_eq!(s, StatusCode::OK);
    for (path, kind) in [
        ("/", "text/html"),
        ("/console/app.js", "text/javascript"),
        ("/console/app.css", "text/css"),
    ] {
        let resp = api
            .http
            .get(format!("{}{path}", api.base))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        assert!(resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with(kind));
    }
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn openapi_documents_every_route_and_every_reference_resolves(pool: PgPool) {
    let api = Api::start(pool).await;
    let (_, doc) = api.call_as(None, Method::GET, "/openapi.json", None).await;
    let routes = tarefas_admin::routes();
    assert!(routes.len() >= 17);
    for r in &routes {
        let op = &doc["paths"][r.doc.path][r.doc.method.to_lowercase()];
        assert!(
            op.is_object(),
            "{} {} undocumented",
            r.doc.method,
            r.doc.path
        );
        assert!(op["responses"]["401"].is_object());
    }
    let text = doc.to_string();
    for part in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
        let name = &part[..part.find('"').unwrap()];
        assert!(
            doc["components"]["schemas"][name].is_object(),
            "dangling $ref {name}"
        );
    }
    // Every documented operation is served: with no token each answers 401, not 404/405.
    for r in &routes {
        let path = r.doc.path.replace("{id}", "1").replace("{request_id}", "x");
        let method = Method::from_bytes(r.doc.method.as_bytes()).unwrap();
        let (s, _) = api.call_as(None, method, &path, Some(&json!({}))).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{} {path}", r.doc.method);
    }
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn tasks_create_list_show_update_pause_resume_delete(pool: PgPool) {
    let api = Api::start(pool).await;
    let (s, list) = api.call(Method::GET, "/api/v1/tasks", None).await;
    assert_eq!((s, list), (StatusCode::OK, json!([])));

    let (s, created) = api
        .call(Method::POST, "/api/v1/tasks", Some(&rotik()))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    let id = created["id"].as_i64().unwrap();
    assert_eq!(created["account"], "acme");
    assert_eq!(created["name"], "Boas-vindas Rotik");
    assert_eq!(created["table_name"], "contacts");
    assert_eq!(created["recurrence_kind"], "manual");
    assert_eq!(created["status"], "active");
    assert_eq!(created["next_fire_at"], Value::Null);
    assert_eq!(created["last_run"], Value::Null);
    assert_eq!(created["definition"]["filter"], rotik()["filter"]);

    let (s, list) = api.call(Method::GET, "/api/v1/tasks", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["id"], id);

    let (s, shown) = api
        .call(Method::GET, &format!("/api/v1/tasks/{id}"), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(shown["name"], "Boas-vindas Rotik");

    // Update: a daily recurrence now has a next fire; the name changes.
    let mut def = daily();
    def["name"] = json!("Renomeada");
    let (s, updated) = api
        .call(Method::PUT, &format!("/api/v1/tasks/{id}"), Some(&def))
        .await;
    assert_eq!(s, StatusCode::OK, "{updated}");
    assert_eq!(updated["name"], "Renomeada");
    assert_eq!(updated["table_name"], "chats");
    assert_eq!(updated["recurrence_kind"], "daily");
    assert!(updated["next_fire_at"].is_string());

    let (s, paused) = api
        .call(Method::POST, &format!("/api/v1/tasks/{id}/pause"), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(paused["status"], "paused");
    assert_eq!(paused["next_fire_at"], Value::Null);
    // Editing a paused task keeps it paused (no next fire).
    let (s, still) = api
        .call(Method::PUT, &format!("/api/v1/tasks/{id}"), Some(&daily()))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(still["status"], "paused");
    assert_eq!(still["next_fire_at"], Value::Null);

    let (s, resumed) = api
        .call(Method::POST, &format!("/api/v1/tasks/{id}/resume"), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(resumed["status"], "active");
    assert!(resumed["next_fire_at"].is_string());

    let (s, body) = api
        .call(Method::DELETE, &format!("/api/v1/tasks/{id}"), None)
        .await;
    assert_eq!((s, body), (StatusCode::NO_CONTENT, Value::Null));
    for (m, p) in [
        (Method::GET, format!("/api/v1/tasks/{id}")),
        (Method::DELETE, format!("/api/v1/tasks/{id}")),
        (Method::POST, format!("/api/v1/tasks/{id}/pause")),
        (Method::POST, format!("/api/v1/tasks/{id}/resume")),
        (Method::POST, format!("/api/v1/tasks/{id}/run")),
        (Method::GET, format!("/api/v1/tasks/{id}/preview")),
    ] {
        let (s, v) = api.call(m, &p, None).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{p}");
        assert!(v["error"].as_str().unwrap().contains("not found"));
    }
    let (s, v) = api
        .call(Method::PUT, &format!("/api/v1/tasks/{id}"), Some(&daily()))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    let (_, list) = api.call(Method::GET, "/api/v1/tasks", None).await;
    assert_eq!(list, json!([]));
    // Ids that are not numbers are simply not found.
    let (s, _) = api.call(Method::GET, "/api/v1/tasks/abc", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn validation_problems_carry_the_task_file_paths(pool: PgPool) {
    let api = Api::start(pool).await;
    let mut bad = rotik();
    bad["name"] = json!("");
    bad["filter"]["all"][1] = json!({"any": [{"field": "name", "op": "gt", "value": "x"}]});
    bad["action"]["flow"]
        .as_object_mut()
        .unwrap()
        .remove("channel");
    bad["recurrence"] = json!({"kind": "daily", "at": "25:00"});
    let expected = tarefas_core::task::validate_task(&bad).unwrap_err();
    assert!(expected.0.len() >= 4, "{expected}");
    let (s, v) = api.call(Method::POST, "/api/v1/tasks", Some(&bad)).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(v["problems"], serde_json::to_value(&expected.0).unwrap());
    let paths: Vec<&str> = v["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["path"].as_str().unwrap())
        .collect();
    for p in [
        "name",
        "filter.all[1].any[0].op",
        "action.flow.channel",
        "recurrence.at",
    ] {
        assert!(paths.contains(&p), "{p} not in {paths:?}");
    }
    // A Flow channel on the chats table.
    let mut chats = daily();
    chats["action"] = json!({"flow": {"project": 1, "flow": 2, "channel": "c"}});
    let (s, v) = api.call(Method::POST, "/api/v1/tasks", Some(&chats)).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(v["problems"][0]["path"], "action.flow.channel");
    // Another account named in the definition.
    let mut other = rotik();
    other["account"] = json!("outra");
    let (s, v) = api.call(Method::POST, "/api/v1/tasks", Some(&other)).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(v["problems"][0]["path"], "account");
    // The token's own account named is fine.
    let mut own = rotik();
    own["account"] = json!("acme");
    api.create(&own).await;
    // Not JSON, empty, not an object.
    for body in ["{nope", ""] {
        let resp = api
            .http
            .post(format!("{}/api/v1/tasks", api.base))
            .bearer_auth(&api.token)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{body:?}");
        let v: Value = resp.json().await.unwrap();
        assert!(v["error"].is_string());
    }
    let (s, v) = api
        .call(Method::POST, "/api/v1/tasks", Some(&json!([1, 2])))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(v["problems"][0]["path"], "");
    // Update validates the same way and leaves the task unchanged.
    let id = api.create(&rotik()).await;
    let (s, v) = api
        .call(Method::PUT, &format!("/api/v1/tasks/{id}"), Some(&bad))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(v["problems"], serde_json::to_value(&expected.0).unwrap());
    let (_, shown) = api
        .call(Method::GET, &format!("/api/v1/tasks/{id}"), None)
        .await;
    assert_eq!(shown["name"], "Boas-vindas Rotik");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn another_accounts_ids_are_not_found(pool: PgPool) {
    let api = Api::start(pool).await;
    let theirs = {
        let (s, v) = api
            .call_as(
                Some(&api.other_token.clone()),
                Method::POST,
                "/api/v1/tasks",
                Some(&rotik()),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED);
        v["id"].as_i64().unwrap()
    };
    let (their_run, _) = runs::create_or_get(
        &api.pool,
        &runs::NewRun {
            account_id: api.other_account_id,
            task_id: theirs,
            request_id: "their-request",
            trigger: "manual",
            scheduled_for: None,
            requested_by: Some("outra"),
        },
    )
    .await
    .unwrap();
    let r = their_run.id;
    for (m, p, body) in [
        (Method::GET, format!("/api/v1/tasks/{theirs}"), None),
        (
            Method::PUT,
            format!("/api/v1/tasks/{theirs}"),
            Some(rotik()),
        ),
        (Method::DELETE, format!("/api/v1/tasks/{theirs}"), None),
        (Method::POST, format!("/api/v1/tasks/{theirs}/pause"), None),
        (Method::POST, format!("/api/v1/tasks/{theirs}/resume"), None),
        (Method::POST, format!("/api/v1/tasks/{theirs}/run"), None),
        (Method::GET, format!("/api/v1/tasks/{theirs}/preview"), None),
        (Method::GET, format!("/api/v1/runs/{r}"), None),
        (Method::POST, format!("/api/v1/runs/{r}/cancel"), None),
        (Method::GET, format!("/api/v1/runs/{r}/events"), None),
        (Method::GET, "/api/v1/requests/their-request".into(), None),
    ] {
        let (s, _) = api.call(m.clone(), &p, body.as_ref()).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{m} {p}");
    }
    // Nothing of theirs is listed, and nothing of theirs changed.
    let (_, list) = api.call(Method::GET, "/api/v1/tasks", None).await;
    assert_eq!(list, json!([]));
    let (_, list) = api.call(Method::GET, "/api/v1/runs", None).await;
    assert_eq!(list, json!([]));
    let (_, list) = api
        .call(Method::GET, &format!("/api/v1/runs?task={theirs}"), None)
        .await;
    assert_eq!(list, json!([]));
    let t = tarefas_store::tasks::get(&api.pool, None, theirs)
        .await
        .unwrap();
    assert_eq!(
        (t.status.as_str(), t.name.as_str()),
        ("active", "Boas-vindas Rotik")
    );
    assert_eq!(outbox::pending(&api.pool).await.unwrap(), 0);
    assert_eq!(
        runs::get(&api.pool, None, r).await.unwrap().status,
        tarefas_core::run::RunStatus::Planning
    );
}

async fn synced(api: &Api) -> tarefas_fake_huggy::FakeHuggy {
    use tarefas_fake_huggy::{FakeConfig, FakeHuggy};
    use tarefas_huggy::{HttpHuggy, HuggyConfig};
    let fake = FakeHuggy::start(FakeConfig {
        contacts: 300,
        chats: 120,
        ..FakeConfig::default()
    })
    .await
    .unwrap();
    let client =
        HttpHuggy::new(HuggyConfig::new(fake.token().to_string()).with_base_url(fake.base_url()))
            .unwrap();
    tarefas_sync::sync_account(&client, &api.pool, api.account_id)
        .await
        .unwrap();
    fake
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn preview_of_saved_tasks_and_drafts(pool: PgPool) {
    let api = Api::start(pool).await;
    let _fake = synced(&api).await;
    let id = api.create(&rotik()).await;
    let (s, p) = api
        .call(
            Method::GET,
            &format!("/api/v1/tasks/{id}/preview?limit=3"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{p}");
    let n = p["count"].as_i64().unwrap();
    assert!(
        n >= 1,
        "the fake always has a Rotik contact created on 31/12"
    );
    assert_eq!(p["sample"].as_array().unwrap().len() as i64, n.min(3));
    for c in p["sample"].as_array().unwrap() {
        assert_eq!(c["organization"], "Rotik");
        assert!(
            c["created_at"].as_str().unwrap().starts_with("2025-12-31")
                || c["created_at"].as_str().unwrap().starts_with("2026-01-01")
        );
    }
    // The same definition as an unsaved draft counts the same.
    let (s, d) = api
        .call(Method::POST, "/api/v1/preview?limit=3", Some(&rotik()))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(d, p);
    // A draft needs only table and filter; no filter is the whole table.
    let (s, all) = api
        .call(
            Method::POST,
            "/api/v1/preview?limit=0",
            Some(&json!({"table": "contacts"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(all["count"], 300);
    assert_eq!(all["sample"], json!([]));
    // OU+ on chats: created on 31/12 or in the Suporte department.
    let draft = json!({"table": "chats", "filter": {"any": [
        {"field": "created_at", "op": "on", "value": "2025-12-31"},
        {"field": "department", "op": "eq", "value": "Suporte"}]}});
    let (s, chats) = api
        .call(Method::POST, "/api/v1/preview", Some(&draft))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(chats["count"].as_i64().unwrap() >= 1);
    // An id that exists matches exactly one record.
    let first = all_ids(&api).await[0];
    let (_, one) = api
        .call(
            Method::POST,
            "/api/v1/preview",
            Some(&json!({"table": "contacts", "filter": {"field": "id", "op": "eq", "value": first}})),
        )
        .await;
    assert_eq!(one["count"], 1);
    assert_eq!(one["sample"][0]["id"], first);
    // Draft problems carry the task file's paths; the rest of the draft is not judged.
    let (s, v) = api
        .call(
            Method::POST,
            "/api/v1/preview",
            Some(&json!({"name": "", "table": "contacts", "filter": {"all": [
                {"field": "department", "op": "eq", "value": "x"}]}})),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(v["problems"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["problems"][0]["path"], "filter.all[0].field");
    let (s, v) = api
        .call(
            Method::POST,
            "/api/v1/preview",
            Some(&json!({"filter": {}})),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(v["problems"][0]["path"], "table");
    let (s, v) = api
        .call(
            Method::POST,
            "/api/v1/preview",
            Some(&json!({"table": "contacts", "time_zone": "Mars/Olympus"})),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(v["problems"][0]["path"], "time_zone");
    // Limits out of range or not numbers.
    for q in ["limit=-1", "limit=1001", "limit=x"] {
        let (s, _) = api
            .call(
                Method::GET,
                &format!("/api/v1/tasks/{id}/preview?{q}"),
                None,
            )
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{q}");
    }
    let (s, _) = api.call(Method::POST, "/api/v1/preview", None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

async fn all_ids(api: &Api) -> Vec<i64> {
    sqlx::query_scalar("SELECT id FROM contacts WHERE account_id = $1 ORDER BY id LIMIT 5")
        .bind(api.account_id)
        .fetch_all(&api.pool)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn executar_tarefa_writes_the_execute_task_the_cli_writes(pool: PgPool) {
    let api = Api::start(pool).await;
    let id = api.create(&rotik()).await;
    let (s, v) = api
        .call(Method::POST, &format!("/api/v1/tasks/{id}/run"), None)
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v["task_id"], id);
    let request_id = v["request_id"].as_str().unwrap().to_string();
    assert!(request_id.starts_with("manual-"));
    let mut tx = api.pool.begin().await.unwrap();
    let msgs = outbox::claim(&mut tx, 10).await.unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].routing_key, tarefas_proto::EXECUTE_ROUTING_KEY);
    let msg = tarefas_proto::decode_execute_task(&msgs[0].payload).unwrap();
    assert_eq!(msg.task_id, id);
    assert_eq!(msg.account, "acme");
    assert_eq!(msg.request_id, request_id);
    assert_eq!(msg.trigger, tarefas_proto::v1::Trigger::Manual as i32);
    assert_eq!(msg.requested_by, "teste");
    // Until a worker plans it, the request has no run.
    let (s, r) = api
        .call(Method::GET, &format!("/api/v1/requests/{request_id}"), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(r["run"], Value::Null);
    // A worker plans it (as tarefas-worker's planner does).
    let (run, _) = runs::create_or_get(
        &api.pool,
        &runs::NewRun {
            account_id: api.account_id,
            task_id: id,
            request_id: &request_id,
            trigger: "manual",
            scheduled_for: None,
            requested_by: Some("teste"),
        },
    )
    .await
    .unwrap();
    let (_, r) = api
        .call(Method::GET, &format!("/api/v1/requests/{request_id}"), None)
        .await;
    assert_eq!(r["run"]["id"], run.id);
    // Runs: list, filter by task, show with counts, cancel once, then 409.
    let (s, list) = api.call(Method::GET, "/api/v1/runs", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(list[0]["id"], run.id);
    let (_, list) = api
        .call(
            Method::GET,
            &format!("/api/v1/runs?task={id}&limit=5"),
            None,
        )
        .await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    let (_, list) = api
        .call(
            Method::GET,
            &format!("/api/v1/runs?task={}", id + 1000),
            None,
        )
        .await;
    assert_eq!(list, json!([]));
    for q in ["task=x", "limit=100000"] {
        let (s, _) = api
            .call(Method::GET, &format!("/api/v1/runs?{q}"), None)
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{q}");
    }
    let (s, shown) = api
        .call(Method::GET, &format!("/api/v1/runs/{}", run.id), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(shown["status"], "planning");
    assert_eq!(
        shown["counts"],
        json!({"planned": 0, "done": 0, "skipped": 0, "failed": 0, "unknown": 0, "pending": 0})
    );
    assert_eq!(shown["items"], json!({}));
    let (_, task) = api
        .call(Method::GET, &format!("/api/v1/tasks/{id}"), None)
        .await;
    assert_eq!(task["last_run"]["id"], run.id);
    let (s, c) = api
        .call(
            Method::POST,
            &format!("/api/v1/runs/{}/cancel", run.id),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(c["status"], "cancelled");
    assert_eq!(c["ended"], true);
    let (s, c) = api
        .call(
            Method::POST,
            &format!("/api/v1/runs/{}/cancel", run.id),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert!(c["error"].as_str().unwrap().contains("already ended"));
    for p in ["/api/v1/runs/999999", "/api/v1/runs/nope"] {
        let (s, _) = api.call(Method::GET, p, None).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
    }
}

/// Reads server-sent events until `end` (or the deadline), returning (event, run) pairs.
async fn read_events(resp: &mut reqwest::Response, deadline: Duration) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let mut buf = String::new();
    let until = tokio::time::Instant::now() + deadline;
    loop {
        let chunk = tokio::time::timeout_at(until, resp.chunk())
            .await
            .expect("events within the deadline")
            .unwrap();
        let Some(chunk) = chunk else { return out };
        buf.push_str(std::str::from_utf8(&chunk).unwrap());
        while let Some(i) = buf.find("\n\n") {
            let block: String = buf.drain(..i + 2).collect();
            let mut event = String::new();
            let mut data = String::new();
            for line in block.lines() {
                if let Some(e) = line.strip_prefix("event:") {
                    event = e.trim().into();
                } else if let Some(d) = line.strip_prefix("data:") {
                    data.push_str(d.trim());
                }
            }
            if !data.is_empty() {
                out.push((event.clone(), serde_json::from_str(&data).unwrap()));
            }
            if event == "end" {
                return out;
            }
        }
    }
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn run_progress_streams_until_the_run_ends(pool: PgPool) {
    let api = Api::start(pool).await;
    let id = api.create(&rotik()).await;
    let (run, _) = runs::create_or_get(
        &api.pool,
        &runs::NewRun {
            account_id: api.account_id,
            task_id: id,
            request_id: "r-1",
            trigger: "manual",
            scheduled_for: None,
            requested_by: None,
        },
    )
    .await
    .unwrap();
    let mut resp = api
        .http
        .get(format!("{}/api/v1/runs/{}/events", api.base, run.id))
        .bearer_auth(&api.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    // The first event is the current state.
    let pool = api.pool.clone();
    let run_id = run.id;
    let driver = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(700)).await;
        sqlx::query("UPDATE runs SET status = 'running', planned = 4, done = 1 WHERE id = $1")
            .bind(run_id)
            .execute(&pool)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(700)).await;
        sqlx::query(
            "UPDATE runs SET done = 3, skipped = 1, status = 'done', finished_at = now() WHERE id = $1",
        )
        .bind(run_id)
        .execute(&pool)
        .await
        .unwrap();
    });
    let events = read_events(&mut resp, Duration::from_secs(20)).await;
    driver.await.unwrap();
    assert_eq!(events.first().unwrap().0, "progress");
    assert_eq!(events[0].1["status"], "planning");
    assert!(events
        .iter()
        .any(|(e, r)| e == "progress" && r["counts"]["done"] == 1 && r["counts"]["pending"] == 3));
    let (last_event, last) = events.last().unwrap();
    assert_eq!(last_event, "end");
    assert_eq!(last["status"], "done");
    assert_eq!(last["counts"]["done"], 3);
    assert_eq!(last["counts"]["skipped"], 1);
    // The stream closes after `end`.
    let rest = tokio::time::timeout(Duration::from_secs(5), resp.chunk())
        .await
        .expect("closed");
    assert!(rest.unwrap().is_none());
    // A run that already ended: one `end`, then the stream closes.
    let mut resp = api
        .http
        .get(format!("{}/api/v1/runs/{}/events", api.base, run.id))
        .bearer_auth(&api.token)
        .send()
        .await
        .unwrap();
    let events = read_events(&mut resp, Duration::from_secs(10)).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].0, "end");
    // No token: 401.
    let resp = api
        .http
        .get(format!("{}/api/v1/runs/{}/events", api.base, run.id))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn schema_offers_each_tables_own_fields_and_operators(pool: PgPool) {
    let api = Api::start(pool).await;
    let (s, schema) = api.call(Method::GET, "/api/v1/schema", None).await;
    assert_eq!(s, StatusCode::OK);
    let fields = |t: &str| -> Vec<String> {
        schema["tables"][t]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["field"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(fields("contacts").contains(&"organization".to_string()));
    assert!(!fields("contacts").contains(&"department".to_string()));
    assert!(fields("chats").contains(&"department".to_string()));
    assert!(!fields("chats").contains(&"organization".to_string()));
    let ops = |t: &str, f: &str| -> Vec<String> {
        schema["tables"][t]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["field"] == f)
            .unwrap()["operators"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o.as_str().unwrap().to_string())
            .collect()
    };
    assert!(ops("contacts", "created_at").contains(&"on".to_string()));
    assert!(!ops("contacts", "name").contains(&"gt".to_string()));
    assert_eq!(ops("chats", "situation"), ["eq", "ne", "in", "not_in"]);
}

/// `PUT` bumps the task's version and leaves runs already made on theirs; `DELETE` keeps
/// the task's runs going unless `?cancel_runs=true`, which cancels those not ended.
#[sqlx::test(migrator = "MIGRATOR")]
async fn edits_bump_the_version_and_delete_can_cancel_the_runs(pool: PgPool) {
    let api = Api::start(pool).await;
    let id = api.create(&rotik()).await;
    let new_run = |request_id: &'static str| runs::NewRun {
        account_id: api.account_id,
        task_id: id,
        request_id,
        trigger: "manual",
        scheduled_for: None,
        requested_by: None,
    };
    let (first, _) = runs::create_or_get(&api.pool, &new_run("r-1"))
        .await
        .unwrap();
    let (s, updated) = api
        .call(Method::PUT, &format!("/api/v1/tasks/{id}"), Some(&daily()))
        .await;
    assert_eq!(
        (s, updated["version"].clone()),
        (StatusCode::OK, json!(2)),
        "{updated}"
    );
    let (second, _) = runs::create_or_get(&api.pool, &new_run("r-2"))
        .await
        .unwrap();
    for (run, version) in [(first.id, 1), (second.id, 2)] {
        let (_, v) = api
            .call(Method::GET, &format!("/api/v1/runs/{run}"), None)
            .await;
        assert_eq!(v["task_version"], version, "{v}");
    }
    runs::cancel(&api.pool, None, first.id, "test")
        .await
        .unwrap();
    let (s, v) = api
        .call(
            Method::DELETE,
            &format!("/api/v1/tasks/{id}?cancel_runs=maybe"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (s, _) = api
        .call(
            Method::DELETE,
            &format!("/api/v1/tasks/{id}?cancel_runs=true"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (_, v) = api
        .call(Method::GET, &format!("/api/v1/runs/{}", second.id), None)
        .await;
    assert_eq!(v["status"], "cancelled", "{v}");
    assert_eq!(v["status_reason"], "task deleted by teste", "{v}");
    let (_, v) = api
        .call(Method::GET, &format!("/api/v1/runs/{}", first.id), None)
        .await;
    assert_eq!(
        v["status_reason"], "test",
        "an ended run is left alone: {v}"
    );

    // Without cancel_runs, the runs go on.
    let other = api.create(&rotik()).await;
    let (going, _) = runs::create_or_get(
        &api.pool,
        &runs::NewRun {
            task_id: other,
            ..new_run("r-3")
        },
    )
    .await
    .unwrap();
    let (s, _) = api
        .call(Method::DELETE, &format!("/api/v1/tasks/{other}"), None)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (_, v) = api
        .call(Method::GET, &format!("/api/v1/runs/{}", going.id), None)
        .await;
    assert_eq!(v["status"], "planning", "{v}");
}
