//! The admin API through the binary, as another tool would use it: `tarefas token create`,
//! `tarefas admin`, a task created over HTTP, "Executar Tarefa" over HTTP, relayed through
//! RabbitMQ by a real `tarefas worker` to the fake Huggy, and followed as server-sent events
//! until the run ends.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::{runtime, Stack};

fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

/// Reads server-sent events until `end`; returns the last run and how many events came.
async fn follow(resp: &mut reqwest::Response, deadline: Duration) -> (Value, usize) {
    let until = tokio::time::Instant::now() + deadline;
    let mut buf = String::new();
    let mut events = 0;
    loop {
        let chunk = tokio::time::timeout_at(until, resp.chunk())
            .await
            .expect("the run ends within the deadline")
            .unwrap()
            .expect("the stream closes only after `end`");
        buf.push_str(std::str::from_utf8(&chunk).unwrap());
        while let Some(i) = buf.find("\n\n") {
            let block: String = buf.drain(..i + 2).collect();
            let event = block
                .lines()
                .find_map(|l| l.strip_prefix("event:"))
                .map(str::trim)
                .unwrap_or("")
                .to_string();
            let data: String = block
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(str::trim)
                .collect();
            if data.is_empty() {
                continue;
            }
            events += 1;
            if event == "end" {
                return (serde_json::from_str(&data).unwrap(), events);
            }
        }
    }
}

#[test]
fn executar_tarefa_over_http_runs_through_rabbitmq_to_the_end() {
    let mut stack = Stack::new(&["--contacts", "300", "--chats", "100"], 1_000);
    let out = stack.tarefas(&["token", "create", "--account", "demo", "--name", "e2e"]);
    assert_eq!(out.code, 0, "{out:?}");
    let token = out.stdout.trim().to_string();
    assert!(
        token.starts_with("tarefas_") && token.len() == 8 + 64,
        "{token}"
    );
    let listed = stack.tarefas(&["token", "list", "--json"]);
    assert_eq!(listed.code, 0, "{listed:?}");
    assert!(listed.stdout.contains("\"e2e\"") && !listed.stdout.contains(&token));
    let addr = free_addr();
    stack.spawn(&["admin", "--listen", &addr]);
    stack.spawn(&["worker"]);
    let base = format!("http://{addr}");
    let definition: Value = serde_yaml::from_str(
        &std::fs::read_to_string(
            crate::support::repo().join("examples/01-manual-contacts-flow-rotik.yaml"),
        )
        .unwrap(),
    )
    .unwrap();

    let run_id = runtime().block_on(async {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(90))
            .build()
            .unwrap();
        let started = Instant::now();
        while http.get(format!("{base}/healthz")).send().await.is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "admin did not start"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let resp = http
            .post(format!("{base}/api/v1/tasks"))
            .bearer_auth(&token)
            .json(&definition)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201);
        let task: Value = resp.json().await.unwrap();
        let id = task["id"].as_i64().unwrap();
        let preview: Value = http
            .get(format!("{base}/api/v1/tasks/{id}/preview"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let count = preview["count"].as_i64().unwrap();
        assert!(count >= 1, "{preview}");

        let resp = http
            .post(format!("{base}/api/v1/tasks/{id}/run"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 202);
        let request_id = resp.json::<Value>().await.unwrap()["request_id"]
            .as_str()
            .unwrap()
            .to_string();
        let started = Instant::now();
        let run_id = loop {
            let r: Value = http
                .get(format!("{base}/api/v1/requests/{request_id}"))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if let Some(id) = r["run"]["id"].as_i64() {
                break id;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "no worker planned the request"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let mut events = http
            .get(format!("{base}/api/v1/runs/{run_id}/events"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(events.status(), 200);
        let (last, n) = follow(&mut events, Duration::from_secs(90)).await;
        assert!(n >= 1);
        assert_eq!(last["status"], "done", "{last}");
        assert_eq!(last["counts"]["planned"], json!(count));
        assert_eq!(
            last["counts"]["done"].as_i64().unwrap() + last["counts"]["skipped"].as_i64().unwrap(),
            count,
            "{last}"
        );
        assert_eq!(last["counts"]["pending"], 0);
        run_id
    });
    // The commands see the same run; one Flow call per matching contact reached Huggy.
    let shown = stack.tarefas(&["run", "show", &run_id.to_string(), "--json"]);
    assert_eq!(shown.code, 0, "{shown:?}");
    let shown: Value = serde_json::from_str(&shown.stdout).unwrap();
    assert_eq!(shown["status"], "done");
    let mut contacts: Vec<i64> = stack
        .calls()
        .into_iter()
        .filter(|c| c["method"] == "POST" && c["status"].as_u64().is_some_and(|s| s < 300))
        .filter_map(|c| c["contact_id"].as_i64())
        .collect();
    let calls = contacts.len();
    contacts.sort_unstable();
    contacts.dedup();
    assert_eq!(contacts.len(), calls, "a contact got two Flow calls");
    assert!(calls as i64 >= shown["counts"]["done"].as_i64().unwrap());
    // A revoked token stops working at once.
    let id = stack.tarefas(&["token", "list", "--json"]);
    let id = serde_json::from_str::<Value>(&id.stdout).unwrap()[0]["id"]
        .as_i64()
        .unwrap();
    assert_eq!(stack.tarefas(&["token", "revoke", &id.to_string()]).code, 0);
    let status = runtime().block_on(async {
        reqwest::Client::new()
            .get(format!("{base}/api/v1/tasks"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .status()
    });
    assert_eq!(status, 401);
}
