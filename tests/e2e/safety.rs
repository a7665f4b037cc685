//! Campaign safety through the real binary: the per-record report and retry-failed, the
//! audience guard (a run held for approval), dry runs and test runs, the opt-out list (CLI,
//! CSV, webhook), the frequency cap under four workers and overlapping tasks, and a send
//! window that opens during a run. What a customer would get is counted in the fake Huggy's
//! call log.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::{runtime, temp_file, Stack, TestDb};

const CHANNEL: &str = "5f0c3a52-7d1e-4c8b-9a2f-0b6e4d3c2a11";

/// A manual Flow task on contacts of `account` with `filter`, `policy` and extra top-level
/// lines; returns its id.
fn task(stack: &Stack, account: &str, filter: &str, policy: &str, extra: &str) -> String {
    let file = temp_file(
        &format!(
            "name: Safety\naccount: {account}\ntime_zone: UTC\ntable: contacts\nfilter: {filter}\n\
             action:\n  flow: {{project: 1, flow: 42, channel: {CHANNEL}}}\n  policy: {policy}\n{extra}"
        ),
        ".yaml",
    );
    let out = stack.tarefas(&["task", "create", "-f", file.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{out:?}");
    out.stdout.trim().to_string()
}

const RUN_ALL: &str =
    "{when_in_chat: run_remove_agent, when_in_queue: abort_and_start, when_in_auto: run_keep_auto}";

fn exec_flow_calls(stack: &Stack) -> usize {
    stack
        .calls()
        .iter()
        .filter(|c| c["route"].as_str().is_some_and(|r| r.contains("execFlow")))
        .count()
}

fn json_of(out: &crate::support::Output) -> Value {
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out:?}"))
}

/// `task run ID --wait`: the run id and the watch's exit code.
fn run_wait(stack: &Stack, args: &[&str]) -> (i64, i32, String) {
    let out = stack.tarefas(args);
    let run = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("run ").and_then(|r| r.trim().parse().ok()))
        .unwrap_or_else(|| panic!("no run id: {out:?}"));
    (run, out.code, out.stdout)
}

fn run_show(stack: &Stack, run: i64) -> Value {
    json_of(&stack.tarefas(&["run", "show", &run.to_string(), "--json"]))
}

fn wait_status(stack: &Stack, run: i64, want: &[&str], within: Duration) -> Value {
    let started = Instant::now();
    loop {
        let r = run_show(stack, run);
        if want.iter().any(|w| r["status"] == *w) {
            return r;
        }
        assert!(started.elapsed() < within, "run {run} never {want:?}: {r}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn fake_url(stack: &Stack, path: &str) -> String {
    format!("{}{path}", stack.fake.url)
}

fn fake_get(stack: &Stack, path: &str) -> Value {
    let url = fake_url(stack, path);
    runtime().block_on(async move { reqwest::get(url).await.unwrap().json().await.unwrap() })
}

fn fake_send(stack: &Stack, method: reqwest::Method, path: &str, body: Option<Value>) -> u16 {
    let url = fake_url(stack, path);
    runtime().block_on(async move {
        let mut r = reqwest::Client::new().request(method, url);
        if let Some(b) = body {
            r = r.json(&b);
        }
        r.send().await.unwrap().status().as_u16()
    })
}

fn clear_calls(stack: &Stack) {
    assert_eq!(
        fake_send(stack, reqwest::Method::DELETE, "/__fake/calls", None),
        204
    );
}

#[test]
fn the_report_lists_every_record_and_retry_failed_resends_only_the_failed_ones() {
    let mut stack = Stack::new(&["--contacts", "60", "--chats", "0"], 1_000);
    let id = task(
        &stack,
        "demo",
        "{field: id, op: lte, value: 1020}",
        RUN_ALL,
        "",
    );
    // Two contacts vanish from Huggy: their calls answer 404 and the items fail.
    let gone: Vec<Value> = [1005, 1012]
        .iter()
        .map(|c| fake_get(&stack, &format!("/__fake/contacts/{c}")))
        .collect();
    for c in [1005, 1012] {
        let path = format!("/__fake/contacts/{c}");
        assert_eq!(fake_send(&stack, reqwest::Method::DELETE, &path, None), 204);
    }
    stack.spawn(&["worker"]);
    let (run, code, _) = run_wait(&stack, &["task", "run", &id, "--wait"]);
    assert_ne!(code, 0, "a run with failures does not end done");
    let report = json_of(&stack.tarefas(&["run", "items", &run.to_string(), "--json"]));
    let report = report.as_array().unwrap();
    assert_eq!(report.len(), 20, "one line per record");
    assert!(report.iter().all(|r| r["time"].is_string()), "{report:?}");
    let failed = json_of(&stack.tarefas(&[
        "run",
        "items",
        &run.to_string(),
        "--outcome",
        "failed",
        "--json",
    ]));
    let ids: Vec<i64> = failed
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, vec![1005, 1012]);
    assert!(
        failed[0]["reason"].as_str().unwrap().contains("404"),
        "{failed}"
    );
    let csv = stack.tarefas(&["run", "items", &run.to_string(), "--csv"]);
    let lines = csv.lines();
    assert_eq!(lines[0], "id,outcome,reason,time");
    assert_eq!(lines.len(), 21, "{csv:?}");
    assert!(lines.iter().any(|l| l.starts_with("1005,failed,")));
    let bad = stack.tarefas(&["run", "items", &run.to_string(), "--outcome", "lost"]);
    assert_ne!(bad.code, 0);
    assert!(bad.stderr.contains("not an outcome"), "{bad:?}");

    // They come back; "Reenviar falhas" sends to them, once each, and to nobody else.
    for c in &gone {
        let path = format!("/__fake/contacts/{}", c["id"]);
        assert_eq!(
            fake_send(&stack, reqwest::Method::PUT, &path, Some(c.clone())),
            200
        );
    }
    clear_calls(&stack);
    let out = stack.tarefas(&["run", "retry-failed", &run.to_string(), "--json"]);
    assert_eq!(out.code, 0, "{out:?}");
    let req = json_of(&out);
    assert_eq!(req["records"], 2);
    let request_id = req["request_id"].as_str().unwrap().to_string();
    let started = Instant::now();
    let retry = loop {
        let rows = stack.query(&format!(
            "SELECT id::text FROM runs WHERE request_id = '{request_id}'"
        ));
        if let Some(r) = rows.first() {
            break r.parse::<i64>().unwrap();
        }
        assert!(started.elapsed() < Duration::from_secs(60), "no retry run");
        std::thread::sleep(Duration::from_millis(200));
    };
    let r = wait_status(&stack, retry, &["done"], Duration::from_secs(60));
    assert_eq!(r["counts"]["planned"], 2, "{r}");
    assert_eq!(r["retry_of"], run, "{r}");
    let got = stack.exec_flows();
    assert_eq!(got, BTreeMap::from([(1005, 1), (1012, 1)]));
    // The retried run has no failures left: nothing to retry.
    let out = stack.tarefas(&["run", "retry-failed", &retry.to_string()]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("no failed items"), "{out:?}");
}

#[test]
fn a_run_over_max_records_waits_for_approval_and_makes_no_call_until_approved() {
    let mut stack = Stack::new(&["--contacts", "40", "--chats", "0"], 1_000);
    let id = task(
        &stack,
        "demo",
        "{field: id, op: lte, value: 1030}",
        RUN_ALL,
        "max_records: 10\n",
    );
    stack.spawn(&["worker"]);
    let (run, code, stdout) = run_wait(&stack, &["task", "run", &id, "--wait"]);
    assert_ne!(code, 0, "held, not done: {stdout}");
    let r = run_show(&stack, run);
    assert_eq!(r["status"], "awaiting_approval", "{r}");
    assert_eq!(r["counts"]["planned"], 30);
    assert!(
        r["status_reason"]
            .as_str()
            .unwrap()
            .contains("max_records 10"),
        "{r}"
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(exec_flow_calls(&stack), 0, "no call before approval");

    let out = stack.tarefas(&["run", "approve", &run.to_string()]);
    assert_eq!(out.code, 0, "{out:?}");
    let r = wait_status(&stack, run, &["done"], Duration::from_secs(60));
    assert_eq!(r["counts"]["done"], 30, "{r}");
    assert_eq!(stack.exec_flows().len(), 30);
    assert!(stack.exec_flows().values().all(|n| *n == 1));
    // Approving twice is refused.
    assert_ne!(stack.tarefas(&["run", "approve", &run.to_string()]).code, 0);

    // A held run may be cancelled instead: nothing is sent.
    clear_calls(&stack);
    let (run, _, _) = run_wait(&stack, &["task", "run", &id, "--wait"]);
    wait_status(&stack, run, &["awaiting_approval"], Duration::from_secs(30));
    assert_eq!(stack.tarefas(&["run", "cancel", &run.to_string()]).code, 0);
    let r = run_show(&stack, run);
    assert_eq!(r["status"], "cancelled");
    assert_eq!(r["counts"]["skipped"], 30);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(exec_flow_calls(&stack), 0);
}

#[test]
fn a_dry_run_calls_nobody_and_its_counts_are_what_the_real_run_then_does() {
    let mut stack = Stack::new(&["--contacts", "120", "--chats", "150"], 1_000);
    let id = task(
        &stack,
        "demo",
        "{field: id, op: lte, value: 1120}",
        "{when_in_chat: skip, when_in_queue: skip, when_in_auto: run_keep_auto}",
        "",
    );
    let out = stack.tarefas(&["suppress", "add", "demo", "1003", "1004"]);
    assert_eq!(out.code, 0, "{out:?}");
    let dry = json_of(&stack.tarefas(&["task", "run", &id, "--dry-run", "--json"]));
    assert_eq!(exec_flow_calls(&stack), 0, "a dry run never calls Huggy");
    assert_eq!(dry["count"], 120, "{dry}");
    let keys: Vec<&str> = dry
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    assert_eq!(keys, ["count", "records", "skipped", "would_call"]);
    let skipped = dry["skipped"].as_object().unwrap().clone();
    assert_eq!(skipped["opted out"], 2, "{dry}");
    assert!(skipped.contains_key("policy: in chat"), "{dry}");
    assert!(skipped.contains_key("policy: in queue"), "{dry}");
    assert_eq!(dry["records"].as_array().unwrap().len(), 120);
    let text = stack.tarefas(&["task", "run", &id, "--dry-run"]);
    assert!(text.stdout.contains("1003\tskipped: opted out"), "{text:?}");
    assert!(text.stdout.contains("Huggy was not called"), "{text:?}");
    assert_eq!(exec_flow_calls(&stack), 0);
    assert_eq!(
        stack.query("SELECT count(*)::text FROM runs"),
        vec!["0".to_string()],
        "a dry run creates no run"
    );

    stack.spawn(&["worker"]);
    let (run, _, _) = run_wait(&stack, &["task", "run", &id, "--wait"]);
    let r = run_show(&stack, run);
    assert_eq!(r["counts"]["done"], dry["would_call"], "{r} vs {dry}");
    let items = json_of(&stack.tarefas(&[
        "run",
        "items",
        &run.to_string(),
        "--outcome",
        "skipped",
        "--json",
    ]));
    let mut real: BTreeMap<String, i64> = BTreeMap::new();
    for i in items.as_array().unwrap() {
        *real
            .entry(i["reason"].as_str().unwrap().to_string())
            .or_insert(0) += 1;
    }
    let want: BTreeMap<String, i64> = skipped
        .iter()
        .map(|(k, v)| (k.clone(), v.as_i64().unwrap()))
        .collect();
    assert_eq!(real, want, "per reason, the dry run is what the run did");
    // On Contacts, Huggy applies the policy itself (its flags): every record but the two
    // opted out reached Huggy; the opted out never did.
    let called = stack.exec_flows();
    assert_eq!(called.len(), 118, "{called:?}");
    assert!(!called.contains_key(&1003) && !called.contains_key(&1004));

    // A test run: only the chosen records of the segment.
    clear_calls(&stack);
    let (run, _, _) = run_wait(
        &stack,
        &["task", "run", &id, "--only", "1001,1002,9999", "--wait"],
    );
    let r = run_show(&stack, run);
    assert_eq!(r["counts"]["planned"], 2, "9999 is not in the segment: {r}");
    let got: Vec<i64> = stack.exec_flows().keys().copied().collect();
    assert!(got.iter().all(|c| [1001, 1002].contains(c)), "{got:?}");
    let dry =
        json_of(&stack.tarefas(&["task", "run", &id, "--dry-run", "--only", "1003", "--json"]));
    assert_eq!(dry["count"], 1);
    assert_eq!(dry["skipped"]["opted out"], 1, "{dry}");
}

#[test]
fn opt_outs_from_the_cli_a_csv_and_a_webhook_message_are_never_sent_a_flow() {
    let db = TestDb::new();
    let mut stack = Stack::new_with(
        &["--contacts", "30", "--chats", "0"],
        1_000,
        db,
        vec![("SHOP_HOOK", "shop-webhook-secret".to_string())],
    );
    let out = stack.tarefas(&[
        "account",
        "add",
        "shop",
        "--token-env",
        "DEMO_TOKEN",
        "--webhook-token-env",
        "SHOP_HOOK",
        "--rate-limit",
        "1000/s",
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        stack.tarefas(&["sync", "--once", "--account", "shop"]).code,
        0
    );
    let id = task(
        &stack,
        "shop",
        "{field: id, op: lte, value: 1020}",
        RUN_ALL,
        "",
    );
    // CLI.
    assert_eq!(stack.tarefas(&["suppress", "add", "shop", "1001"]).code, 0);
    assert_eq!(stack.tarefas(&["suppress", "add", "shop", "1020"]).code, 0);
    assert_eq!(
        stack.tarefas(&["suppress", "remove", "shop", "1020"]).code,
        0
    );
    // CSV: a bad file changes nothing; a good one (header, `;`) adds its ids.
    let bad = temp_file("contact_id\n1002\nabc\n", ".csv");
    let out = stack.tarefas(&["suppress", "import", "shop", "--csv", bad.to_str().unwrap()]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stdout.contains("line 3"), "{out:?}");
    let good = temp_file("nome;contact_id\nAna;1002\nBia;1003\n", ".csv");
    let out = stack.tarefas(&[
        "suppress",
        "import",
        "shop",
        "--csv",
        good.to_str().unwrap(),
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    // Webhook: the customer of contact 1004 answers "Parar" (any case, accents ignored);
    // 1005 writes a sentence that merely contains the word; an agent's "SAIR" counts not.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    stack.spawn(&["sync", "--listen", &listen, "--resync-every", "1h"]);
    let started = Instant::now();
    while std::net::TcpStream::connect(&listen).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "sync did not listen"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let msg = |contact: i64, body: &str, sender: &str| {
        json!({"id": contact * 10, "body": body, "senderType": sender,
               "chat": {"id": 900_000 + contact, "situation": "auto", "customer": {"id": contact}}})
    };
    let hook = json!({"token": "shop-webhook-secret", "messages": {"receivedAllMessage": [
        msg(1004, " parár ", "customer"),
        msg(1005, "não quero sair agora", "customer"),
        msg(1006, "SAIR", "agent"),
    ]}});
    let url = format!("http://{listen}/webhooks/shop");
    let status = runtime().block_on(async move {
        reqwest::Client::new()
            .post(url)
            .json(&hook)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    });
    assert_eq!(status, 200);
    let list = json_of(&stack.tarefas(&["suppress", "list", "shop", "--json"]));
    let listed: Vec<(i64, String)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["contact_id"].as_i64().unwrap(),
                s["source"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        vec![
            (1001, "cli".to_string()),
            (1002, "csv".to_string()),
            (1003, "csv".to_string()),
            (1004, "webhook".to_string()),
        ]
    );
    // The demo account's list is its own.
    let other = json_of(&stack.tarefas(&["suppress", "list", "demo", "--json"]));
    assert_eq!(other, json!([]));

    stack.spawn(&["worker"]);
    let (run, _, _) = run_wait(&stack, &["task", "run", &id, "--wait"]);
    let got = stack.exec_flows();
    for c in 1001..=1004 {
        assert!(
            !got.contains_key(&c),
            "contact {c} opted out but got a Flow"
        );
    }
    assert_eq!(got.len(), 16, "{got:?}");
    let skipped = json_of(&stack.tarefas(&[
        "run",
        "items",
        &run.to_string(),
        "--outcome",
        "skipped",
        "--json",
    ]));
    assert_eq!(skipped.as_array().unwrap().len(), 4);
    assert!(skipped
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["reason"] == "opted out"));
}

#[test]
fn the_frequency_cap_holds_across_four_workers_and_three_overlapping_tasks() {
    let mut stack = Stack::new(
        &["--contacts", "120", "--chats", "0", "--latency-ms", "5"],
        2_000,
    );
    // Before the cap is set: contacts 1001..=1010 get one Flow. It counts.
    let early = task(
        &stack,
        "demo",
        "{field: id, op: lte, value: 1010}",
        RUN_ALL,
        "",
    );
    for _ in 0..4 {
        stack.spawn(&["worker", "--channel-rate", "2000"]);
    }
    let (run, code, out) = run_wait(&stack, &["task", "run", &early, "--wait"]);
    assert_eq!(code, 0, "{run}: {out}");
    let out = stack.tarefas(&[
        "account",
        "update",
        "demo",
        "--max-flows-per-contact",
        "2/1d",
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    let bad = stack.tarefas(&["account", "update", "demo", "--max-flows-per-contact", "2"]);
    assert_eq!(bad.code, 2, "{bad:?}");
    // Three overlapping tasks, run at once.
    let segments: [(i64, i64); 3] = [(1001, 1060), (1031, 1090), (1001, 1090)];
    let ids: Vec<String> = segments
        .iter()
        .map(|(lo, hi)| {
            task(
                &stack,
                "demo",
                &format!("{{all: [{{field: id, op: gte, value: {lo}}}, {{field: id, op: lte, value: {hi}}}]}}"),
                RUN_ALL,
                "",
            )
        })
        .collect();
    let requests: Vec<String> = ids
        .iter()
        .map(|id| {
            let out = stack.tarefas(&["task", "run", id, "--json"]);
            json_of(&out)["request_id"].as_str().unwrap().to_string()
        })
        .collect();
    let started = Instant::now();
    loop {
        let ended = stack.query(&format!(
            "SELECT count(*)::text FROM runs WHERE request_id IN ('{}') AND finished_at IS NOT NULL",
            requests.join("', '")
        ));
        if ended[0] == "3" {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "runs did not end"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let got = stack.exec_flows();
    let mut capped = 0;
    for contact in 1001..=1090 {
        let wanted = segments
            .iter()
            .filter(|(lo, hi)| (*lo..=*hi).contains(&contact))
            .count()
            + usize::from(contact <= 1010);
        let n = got.get(&contact).copied().unwrap_or(0);
        assert_eq!(
            n,
            wanted.min(2),
            "contact {contact}: {n} Flows, wanted {wanted}"
        );
        capped += wanted.saturating_sub(2);
    }
    let skipped = stack.query(&format!(
        "SELECT count(*)::text FROM run_items i JOIN runs r ON r.id = i.run_id
         WHERE r.request_id IN ('{}') AND i.reason = 'frequency cap'",
        requests.join("', '")
    ));
    assert_eq!(skipped[0], capped.to_string());
    // A stricter task cap: one Flow per contact per day for this task, and every contact
    // of 1091..=1095 is new, so each gets exactly one of the two runs.
    let strict = task(
        &stack,
        "demo",
        "{all: [{field: id, op: gte, value: 1091}, {field: id, op: lte, value: 1095}]}",
        RUN_ALL,
        "frequency_cap: {max: 1, per: 1d}\n",
    );
    run_wait(&stack, &["task", "run", &strict, "--wait"]);
    run_wait(&stack, &["task", "run", &strict, "--wait"]);
    let got = stack.exec_flows();
    for c in 1091..=1095 {
        assert_eq!(got.get(&c), Some(&1), "contact {c}");
    }
}

#[test]
fn items_outside_the_send_window_wait_and_go_when_it_opens() {
    let now = chrono::Utc::now();
    // The window opens at the next minute (at least 20 s away) and lasts 30 minutes, UTC.
    let mut opens = (now + chrono::Duration::seconds(80))
        .format("%H:%M")
        .to_string();
    if now.format("%H:%M:%S").to_string().as_str() > "23:28:00" {
        // Too close to midnight for a window that ends the same day: wait it out.
        std::thread::sleep(Duration::from_secs(40 * 60));
        opens = (chrono::Utc::now() + chrono::Duration::seconds(80))
            .format("%H:%M")
            .to_string();
    }
    let to = (chrono::NaiveTime::parse_from_str(&opens, "%H:%M").unwrap()
        + chrono::Duration::minutes(30))
    .format("%H:%M")
    .to_string();
    let opens_at = chrono::NaiveTime::parse_from_str(&opens, "%H:%M").unwrap();
    let mut stack = Stack::new(&["--contacts", "30", "--chats", "0"], 1_000);
    let id = task(
        &stack,
        "demo",
        "{field: id, op: lte, value: 1015}",
        RUN_ALL,
        &format!("send_window: {{from: \"{opens}\", to: \"{to}\"}}\n"),
    );
    stack.spawn(&["worker"]);
    let out = stack.tarefas(&["task", "run", &id, "--json"]);
    let request = json_of(&out)["request_id"].as_str().unwrap().to_string();
    let started = Instant::now();
    let run = loop {
        if let Some(r) = stack
            .query(&format!(
                "SELECT id::text FROM runs WHERE request_id = '{request}'"
            ))
            .first()
        {
            break r.parse::<i64>().unwrap();
        }
        assert!(started.elapsed() < Duration::from_secs(30));
        std::thread::sleep(Duration::from_millis(200));
    };
    // Before the window: waiting, said so with when it opens, nothing sent, nothing failed.
    let shown = loop {
        let r = run_show(&stack, run);
        if r["waiting"].is_string() {
            break r;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{r}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(shown["waiting"], "aguardando janela de envio");
    let at =
        chrono::DateTime::parse_from_rfc3339(shown["window_opens_at"].as_str().unwrap()).unwrap();
    assert_eq!(at.time(), opens_at, "{shown}");
    let text = stack.tarefas(&["run", "show", &run.to_string()]);
    assert!(
        text.stdout.contains("aguardando janela de envio"),
        "{text:?}"
    );
    assert_eq!(shown["counts"]["failed"], 0);
    assert_eq!(exec_flow_calls(&stack), 0);
    // It opens: every item goes, once.
    let r = wait_status(
        &stack,
        run,
        &["done", "done_with_errors"],
        Duration::from_secs(150),
    );
    assert_eq!(r["status"], "done", "{r}");
    assert_eq!(r["counts"]["done"], 15);
    let got = stack.exec_flows();
    assert_eq!(got.len(), 15);
    assert!(got.values().all(|n| *n == 1));
    let first = stack
        .calls()
        .iter()
        .filter(|c| c["route"].as_str().is_some_and(|r| r.contains("execFlow")))
        .filter_map(|c| c["at"].as_str().map(|s| s.to_string()))
        .min();
    if let Some(first) = first {
        let first = chrono::DateTime::parse_from_rfc3339(&first).unwrap();
        assert!(
            first.time() >= opens_at,
            "a call at {first}, before {opens_at}"
        );
    }
}

#[test]
fn the_admin_api_serves_the_report_the_dry_run_approval_and_the_opt_out_list() {
    let mut stack = Stack::new(&["--contacts", "40", "--chats", "0"], 1_000);
    let token = stack
        .tarefas(&["token", "create", "--account", "demo", "--name", "e2e"])
        .stdout
        .trim()
        .to_string();
    let id = task(
        &stack,
        "demo",
        "{field: id, op: lte, value: 1012}",
        RUN_ALL,
        "max_records: 5\n",
    );
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    stack.spawn(&["admin", "--listen", &addr]);
    stack.spawn(&["worker"]);
    let base = format!("http://{addr}");
    let rt = runtime();
    let http = reqwest::Client::new();
    let call =
        |method: reqwest::Method, path: &str, body: Option<(&str, String)>| -> (u16, String) {
            let (url, http, token) = (format!("{base}{path}"), http.clone(), token.clone());
            rt.block_on(async move {
                let started = Instant::now();
                loop {
                    let mut r = http.request(method.clone(), &url).bearer_auth(&token);
                    if let Some((ct, b)) = &body {
                        r = r.header("content-type", *ct).body(b.clone());
                    }
                    match r.send().await {
                        Ok(resp) => {
                            let s = resp.status().as_u16();
                            return (s, resp.text().await.unwrap());
                        }
                        Err(_) if started.elapsed() < Duration::from_secs(30) => {
                            tokio::time::sleep(Duration::from_millis(200)).await
                        }
                        Err(e) => panic!("{url}: {e}"),
                    }
                }
            })
        };
    let post = reqwest::Method::POST;
    let get = reqwest::Method::GET;
    // The opt-out list: a CSV import (all or nothing), a removal, the list.
    let (s, b) = call(
        post.clone(),
        "/api/v1/suppressions/import",
        Some(("text/csv", "contact_id\n1001\nx\n".into())),
    );
    assert_eq!(s, 422, "{b}");
    let (s, b) = call(
        post.clone(),
        "/api/v1/suppressions/import",
        Some(("text/csv", "contact_id\n1001\n1002\n".into())),
    );
    assert_eq!(s, 200, "{b}");
    let (s, _) = call(
        post.clone(),
        "/api/v1/suppressions/remove",
        Some(("application/json", r#"{"contact_ids": [1002]}"#.into())),
    );
    assert_eq!(s, 200);
    let (_, b) = call(get.clone(), "/api/v1/suppressions", None);
    let list: Value = serde_json::from_str(&b).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["contact_id"], 1001);
    // "Simular".
    let (s, b) = call(post.clone(), &format!("/api/v1/tasks/{id}/dry-run"), None);
    assert_eq!(s, 200, "{b}");
    let dry: Value = serde_json::from_str(&b).unwrap();
    assert_eq!(
        (dry["count"].as_i64(), dry["would_call"].as_i64()),
        (Some(12), Some(11)),
        "{dry}"
    );
    assert_eq!(dry["skipped"]["opted out"], 1);
    assert_eq!(dry["max_records"], 5);
    // "Executar Tarefa": held; "Aprovar envio" over HTTP; then the report as CSV.
    let (s, b) = call(post.clone(), &format!("/api/v1/tasks/{id}/run"), None);
    assert_eq!(s, 202, "{b}");
    let request = serde_json::from_str::<Value>(&b).unwrap()["request_id"]
        .as_str()
        .unwrap()
        .to_string();
    let started = Instant::now();
    let run = loop {
        let (_, b) = call(get.clone(), &format!("/api/v1/requests/{request}"), None);
        let v: Value = serde_json::from_str(&b).unwrap();
        if v["run"]["status"] == "awaiting_approval" {
            break v["run"]["id"].as_i64().unwrap();
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{v}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(exec_flow_calls(&stack), 0);
    let (s, b) = call(post.clone(), &format!("/api/v1/runs/{run}/approve"), None);
    assert_eq!(s, 200, "{b}");
    let (s, _) = call(post.clone(), &format!("/api/v1/runs/{run}/approve"), None);
    assert_eq!(s, 409);
    wait_status(&stack, run, &["done"], Duration::from_secs(60));
    let (s, csv) = call(
        get.clone(),
        &format!("/api/v1/runs/{run}/items?format=csv&outcome=skipped"),
        None,
    );
    assert_eq!(s, 200);
    assert_eq!(
        csv,
        "id,outcome,reason,time\n".to_string()
            + &csv
                .lines()
                .skip(1)
                .map(|l| format!("{l}\n"))
                .collect::<String>()
    );
    assert_eq!(csv.lines().count(), 2, "{csv}");
    assert!(
        csv.lines()
            .nth(1)
            .unwrap()
            .starts_with("1001,skipped,opted out,"),
        "{csv}"
    );
    let (s, b) = call(
        get.clone(),
        &format!("/api/v1/runs/{run}/items?outcome=lost"),
        None,
    );
    assert_eq!(s, 400, "{b}");
    let (s, _) = call(
        post.clone(),
        &format!("/api/v1/runs/{run}/retry-failed"),
        None,
    );
    assert_eq!(s, 409, "nothing failed");
    // The console loads its safety script.
    let (s, js) = call(get.clone(), "/console/safety.js", None);
    assert_eq!(s, 200);
    assert!(
        js.contains("Reenviar falhas") && js.contains("Aprovar envio") && js.contains("Simular")
    );
    let (_, html) = call(get, "/", None);
    assert!(html.contains("/console/safety.js"));
}

#[test]
fn account_update_sets_the_defaults_every_task_of_the_account_follows() {
    let stack = Stack::new(&["--contacts", "20", "--chats", "0"], 1_000);
    let out = stack.tarefas(&[
        "account",
        "update",
        "demo",
        "--max-records",
        "3",
        "--send-window",
        "08:00-20:00@mon,tue",
        "--opt-out-words",
        "Não quero, SAIR",
        "--max-flows-per-contact",
        "1/7d",
        "--json",
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    let g = json_of(&out);
    assert_eq!(g["max_records"], 3);
    assert_eq!(g["max_flows_per_contact"], "1/7d");
    assert_eq!(
        g["send_window"],
        json!({"from": "08:00", "to": "20:00", "days": ["mon", "tue"]})
    );
    assert_eq!(g["opt_out_words"], json!(["Não quero", "SAIR"]));
    for (flag, value, says) in [
        ("--send-window", "20:00-08:00", "must be after from"),
        ("--max-records", "0", "not a positive number"),
        ("--max-flows-per-contact", "3/never", "not a cap"),
    ] {
        let bad = stack.tarefas(&["account", "update", "demo", flag, value]);
        assert_eq!(bad.code, 2, "{bad:?}");
        assert!(bad.stderr.contains(says), "{bad:?}");
    }
    // A task with no guards of its own follows the account's: the dry run says so.
    let id = task(
        &stack,
        "demo",
        "{field: id, op: lte, value: 1010}",
        RUN_ALL,
        "",
    );
    let dry = stack.tarefas(&["task", "run", &id, "--dry-run"]);
    assert!(dry.stdout.contains("max_records 3"), "{dry:?}");
    let out = stack.tarefas(&[
        "account",
        "update",
        "demo",
        "--max-records",
        "off",
        "--opt-out-words",
        "default",
        "--json",
    ]);
    let g = json_of(&out);
    assert_eq!(g["max_records"], Value::Null);
    assert_eq!(g["max_flows_per_contact"], "1/7d", "untouched");
    assert_eq!(
        g["opt_out_words"],
        json!(["SAIR", "PARAR", "STOP", "CANCELAR"])
    );
    let dry = stack.tarefas(&["task", "run", &id, "--dry-run"]);
    assert!(!dry.stdout.contains("max_records"), "{dry:?}");
}
