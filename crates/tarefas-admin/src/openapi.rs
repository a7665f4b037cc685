//! The OpenAPI 3.1 document of the admin API, built from the route table ([`crate::routes`])
//! with the schemas below: every route the router serves is documented, and nothing else.

use serde_json::{json, Map, Value};

/// What the document says about one route.
#[derive(Debug, Clone)]
pub struct RouteDoc {
    /// HTTP method, upper case.
    pub method: &'static str,
    /// Path, with `{param}` segments (axum and OpenAPI share the syntax).
    pub path: &'static str,
    /// One line.
    pub summary: &'static str,
    params: Vec<Value>,
    body: Option<&'static str>,
    responses: Vec<(u16, &'static str, String)>,
    stream: bool,
}

/// Starts the documentation of a route.
pub fn doc(method: &'static str, path: &'static str, summary: &'static str) -> RouteDoc {
    RouteDoc {
        method,
        path,
        summary,
        params: Vec::new(),
        body: None,
        responses: Vec::new(),
        stream: false,
    }
}

impl RouteDoc {
    /// A `{id}` path parameter (a task or run id).
    pub fn id(self) -> Self {
        self.path_param("id", "integer", "task or run id")
    }

    /// A path parameter.
    pub fn path_param(mut self, name: &str, ty: &str, description: &str) -> Self {
        self.params.push(json!({
            "name": name, "in": "path", "required": true, "description": description,
            "schema": {"type": ty},
        }));
        self
    }

    /// A query parameter.
    pub fn query(mut self, name: &str, ty: &str, description: &str) -> Self {
        self.params.push(json!({
            "name": name, "in": "query", "required": false, "description": description,
            "schema": {"type": ty},
        }));
        self
    }

    /// A JSON request body of schema `schema`.
    pub fn body(mut self, schema: &'static str) -> Self {
        self.body = Some(schema);
        self
    }

    /// `200` with a JSON body of schema `schema`.
    pub fn ok(self, schema: &'static str) -> Self {
        self.status(200, schema, "OK")
    }

    /// A response (`schema` empty: no body).
    pub fn status(mut self, code: u16, schema: &'static str, description: &str) -> Self {
        self.responses.push((code, schema, description.to_string()));
        self
    }

    /// `422` with every problem at its path.
    pub fn invalid(self) -> Self {
        self.status(
            422,
            "Problems",
            "the definition is invalid: every problem, each at its path (as `tarefas task validate` prints them)",
        )
        .bad_request()
    }

    /// `400` for a body or query that cannot be read.
    pub fn bad_request(self) -> Self {
        self.status(400, "Error", "the body or a query parameter cannot be read")
    }

    /// A `text/event-stream` response.
    pub fn stream(mut self) -> Self {
        self.stream = true;
        self
    }

    fn operation(&self) -> Value {
        let mut responses = Map::new();
        for (code, schema, description) in &self.responses {
            let mut r = json!({ "description": description });
            if !schema.is_empty() {
                r["content"] = json!({"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}});
            }
            responses.insert(code.to_string(), r);
        }
        if self.stream {
            responses.insert(
                "200".into(),
                json!({
                    "description": "server-sent events; each `data:` is a Run as JSON",
                    "content": {"text/event-stream": {"schema": {"type": "string"}}},
                }),
            );
        }
        responses.insert(
            "401".into(),
            json!({"description": "missing, unknown or revoked token", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}),
        );
        if self.path.contains('{') {
            responses.insert(
                "404".into(),
                json!({"description": "not found in the token's account", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}),
            );
        }
        let mut op = json!({
            "summary": self.summary,
            "operationId": operation_id(self.method, self.path),
            "tags": [if self.path.starts_with("/api/v1/runs") || self.path.starts_with("/api/v1/requests") { "runs" } else { "tasks" }],
            "parameters": self.params,
            "responses": responses,
        });
        if let Some(schema) = self.body {
            op["requestBody"] = json!({
                "required": true,
                "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}},
            });
        }
        op
    }
}

fn operation_id(method: &str, path: &str) -> String {
    let mut id = method.to_lowercase();
    for part in path.trim_start_matches("/api/v1/").split('/') {
        let part = part.trim_start_matches('{').trim_end_matches('}');
        id.push('_');
        id.push_str(&part.replace('-', "_"));
    }
    id
}

/// The document for `routes`.
pub fn document(routes: &[RouteDoc]) -> Value {
    let mut paths = Map::new();
    for r in routes {
        let entry = paths.entry(r.path.to_string()).or_insert_with(|| json!({}));
        entry[r.method.to_lowercase()] = r.operation();
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Tarefas admin API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Tasks, segment previews, \"Executar Tarefa\", runs and their live progress. Every request carries an operator token (`tarefas token create --account ACCOUNT`) and sees only that account: another account's ids answer 404.",
        },
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": schemas(),
        },
    })
}

fn schemas() -> Value {
    let counts = json!({
        "type": "object",
        "properties": {
            "planned": {"type": "integer"}, "done": {"type": "integer"}, "skipped": {"type": "integer"},
            "failed": {"type": "integer"}, "unknown": {"type": "integer"}, "pending": {"type": "integer"},
        },
    });
    let run = json!({
        "type": "object",
        "required": ["id", "task_id", "status", "counts", "ended"],
        "properties": {
            "id": {"type": "integer"}, "task_id": {"type": "integer"},
            "task_version": {"type": "integer", "description": "the version of the task's definition the run executes (its snapshot, taken when it was planned)"},
            "status": {"enum": ["planning", "awaiting_approval", "running", "paused", "done", "done_with_errors", "failed", "cancelled"]},
            "status_reason": {"type": ["string", "null"]},
            "trigger": {"enum": ["manual", "scheduled"]},
            "request_id": {"type": "string"},
            "scheduled_for": {"type": ["string", "null"], "format": "date-time"},
            "requested_by": {"type": ["string", "null"]},
            "started_at": {"type": "string", "format": "date-time"},
            "finished_at": {"type": ["string", "null"], "format": "date-time"},
            "ended": {"type": "boolean", "description": "the status is final"},
            "counts": counts,
            "items": {"type": "object", "additionalProperties": {"type": "integer"}, "description": "items by state (GET /runs/{id} only)"},
        },
    });
    json!({
        "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
        "Problems": {
            "type": "object",
            "required": ["error", "problems"],
            "properties": {
                "error": {"type": "string"},
                "problems": {"type": "array", "items": {
                    "type": "object", "required": ["path", "message"],
                    "properties": {
                        "path": {"type": "string", "description": "e.g. filter.all[1].any[0].op; empty for the whole definition"},
                        "message": {"type": "string"},
                    },
                }},
            },
        },
        "Me": {"type": "object", "properties": {"account": {"type": "string"}, "token_name": {"type": "string"}}},
        "Schema": {"type": "object", "description": "tables → fields → operators", "properties": {
            "tables": {"type": "object", "additionalProperties": {"type": "array", "items": {
                "type": "object", "properties": {
                    "field": {"type": "string"}, "kind": {"type": "string"},
                    "operators": {"type": "array", "items": {"type": "string"}},
                }}}},
            "situations": {"type": "array", "items": {"type": "string"}},
        }},
        "TaskDefinition": {
            "type": "object",
            "description": "The task file (docs/task-file.md) as JSON. `account` may be left out: it is the token's.",
            "required": ["name", "table", "action"],
            "properties": {
                "version": {"type": "integer"},
                "name": {"type": "string", "maxLength": 120},
                "objective": {"type": "string"},
                "account": {"type": "string"},
                "time_zone": {"type": "string", "default": "America/Sao_Paulo"},
                "recurrence": {"type": "object", "description": "{kind: manual | every_minutes | every_hours | daily | weekdays | month_day | cron, …}"},
                "table": {"enum": ["contacts", "chats"]},
                "filter": {"type": "object", "description": "{all: [...]} (E+), {any: [...]} (OU+) or {field, op, value}"},
                "action": {"type": "object", "description": "{flow: {project, flow, channel?, variables?}, policy?} or {chat: …}"},
            },
        },
        "Task": {
            "type": "object",
            "properties": {
                "id": {"type": "integer"}, "account": {"type": "string"}, "name": {"type": "string"},
                "objective": {"type": ["string", "null"]}, "definition": {"$ref": "#/components/schemas/TaskDefinition"},
                "table_name": {"enum": ["contacts", "chats"]}, "recurrence_kind": {"type": "string"},
                "time_zone": {"type": "string"}, "status": {"enum": ["active", "paused"]},
                "next_fire_at": {"type": ["string", "null"], "format": "date-time"},
                "last_fire_at": {"type": ["string", "null"], "format": "date-time"},
                "created_at": {"type": "string", "format": "date-time"},
                "updated_at": {"type": "string", "format": "date-time"},
                "version": {"type": "integer", "description": "1 at creation, one more on every edit"},
                "last_run": {"oneOf": [{"$ref": "#/components/schemas/Run"}, {"type": "null"}]},
            },
        },
        "TaskList": {"type": "array", "items": {"$ref": "#/components/schemas/Task"}},
        "Preview": {"type": "object", "required": ["count", "sample"], "properties": {
            "count": {"type": "integer"},
            "sample": {"type": "array", "items": {"type": "object"}},
        }},
        "RunRequested": {"type": "object", "properties": {"task_id": {"type": "integer"}, "request_id": {"type": "string"}}},
        "RequestStatus": {"type": "object", "properties": {
            "request_id": {"type": "string"},
            "run": {"oneOf": [{"$ref": "#/components/schemas/Run"}, {"type": "null"}]},
        }},
        "Run": run,
        "RunList": {"type": "array", "items": {"$ref": "#/components/schemas/Run"}},
        "RunItems": {"type": "array", "items": {"type": "object", "required": ["id", "outcome"], "properties": {
            "id": {"type": "integer", "description": "the record (contact or chat id)"},
            "outcome": {"enum": ["pending", "sending", "done", "skipped", "failed", "unknown"]},
            "reason": {"type": ["string", "null"]},
            "time": {"type": ["string", "null"], "format": "date-time"},
        }}},
        "DryRun": {"type": "object", "required": ["count", "would_call", "skipped", "records"], "properties": {
            "count": {"type": "integer"}, "would_call": {"type": "integer"},
            "skipped": {"type": "object", "additionalProperties": {"type": "integer"}, "description": "records that would be skipped, by reason"},
            "records": {"type": "array", "items": {"type": "object", "properties": {
                "id": {"type": "integer"}, "outcome": {"enum": ["call", "skipped"]}, "reason": {"type": "string"},
            }}},
        }},
        "DryRunRequest": {"type": "object", "properties": {"only": {"type": "array", "items": {"type": "integer"}, "description": "only these records of the segment"}}},
        "Suppressions": {"type": "array", "items": {"type": "object", "properties": {
            "contact_id": {"type": "integer"}, "source": {"enum": ["cli", "api", "csv", "webhook"]},
            "added_at": {"type": "string", "format": "date-time"},
        }}},
        "SuppressionChange": {"type": "object", "required": ["contact_ids"], "properties": {"contact_ids": {"type": "array", "items": {"type": "integer"}}}},
        "SuppressionResult": {"type": "object", "properties": {"changed": {"type": "integer"}, "read": {"type": "integer"}}},
    })
}
