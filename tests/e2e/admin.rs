//! The admin commands against a real Postgres (a fresh database per test): accounts, tasks,
//! account scoping, sync from a fake Huggy process, and preview.

use serde_json::Value;

use crate::support::{FakeProcess, TestDb};

const SECRET: &str = "tok-8f3a1c9e-super-secret";

fn json(out: &crate::support::Output) -> Value {
    assert_eq!(out.code, 0, "{out:?}");
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out:?}"))
}

#[test]
fn accounts_and_tasks_round_trip() {
    let db = TestDb::new();
    let env = [("DEMO_TOKEN", SECRET)];
    let out = db.tarefas_env(
        &[
            "account",
            "add",
            "demo",
            "--token-env",
            "DEMO_TOKEN",
            "--rate-limit",
            "25/s",
        ],
        &env,
    );
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (0, "account demo added\n"),
        "{out:?}"
    );
    let again = db.tarefas_env(
        &["account", "add", "demo", "--token-env", "DEMO_TOKEN"],
        &env,
    );
    assert_eq!(again.code, 1);
    assert!(again.stderr.contains("already exists"), "{again:?}");
    let accounts = json(&db.tarefas(&["account", "list", "--json"]));
    assert_eq!(accounts[0]["name"], "demo");
    assert_eq!(accounts[0]["rate_limit_per_s"], 25);
    assert_eq!(accounts[0]["token_ref"], "env:DEMO_TOKEN");

    let mut ids = Vec::new();
    for entry in std::fs::read_dir(crate::support::repo().join("examples")).unwrap() {
        let path = entry.unwrap().path();
        let out = db.tarefas(&["task", "create", "-f", path.to_str().unwrap()]);
        assert_eq!(out.code, 0, "{}: {out:?}", path.display());
        ids.push(
            out.stdout
                .trim()
                .parse::<i64>()
                .expect("task create prints the id"),
        );
    }
    let list = json(&db.tarefas(&["task", "list", "--json"]));
    assert_eq!(list.as_array().unwrap().len(), ids.len());

    let id = ids[0].to_string();
    let shown = json(&db.tarefas(&["task", "show", &id, "--json"]));
    assert_eq!(shown["id"].as_i64(), Some(ids[0]));
    assert_eq!(shown["account"], "demo");

    // A scheduled task: pause clears the next fire, resume computes it again.
    let monthly = list
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["recurrence_kind"] == "month_day")
        .unwrap();
    let mid = monthly["id"].to_string();
    assert!(monthly["next_fire_at"].is_string());
    let paused = json(&db.tarefas(&["task", "pause", &mid, "--json"]));
    assert_eq!(
        (paused["status"].as_str(), paused["next_fire_at"].is_null()),
        (Some("paused"), true)
    );
    let resumed = json(&db.tarefas(&["task", "resume", &mid, "--json"]));
    assert_eq!(resumed["status"], "active");
    assert!(
        resumed["next_fire_at"]
            .as_str()
            .unwrap()
            .ends_with("T12:00:00Z"),
        "09:00 in São Paulo"
    );

    let deleted = db.tarefas(&["task", "delete", &id]);
    assert_eq!(deleted.code, 0, "{deleted:?}");
    let gone = db.tarefas(&["task", "show", &id]);
    assert_eq!(gone.code, 1);
    assert!(
        gone.stderr.contains(&format!("task {id} not found")),
        "{gone:?}"
    );
    assert_eq!(
        json(&db.tarefas(&["task", "list", "--json"]))
            .as_array()
            .unwrap()
            .len(),
        ids.len() - 1
    );

    // The token is never printed nor stored.
    for out in [
        db.tarefas(&["account", "list"]),
        db.tarefas(&["task", "list"]),
        db.tarefas(&["task", "show", &mid]),
    ] {
        assert!(!out.stdout.contains(SECRET) && !out.stderr.contains(SECRET));
    }
    let dump = db.query_texts("SELECT row_to_json(a)::text FROM accounts a");
    assert!(!dump.iter().any(|r| r.contains(SECRET)), "{dump:?}");
}

#[test]
fn task_create_needs_a_known_account() {
    let db = TestDb::new();
    let no_account =
        crate::support::temp_file("name: X\ntable: chats\naction: {chat: reopen}\n", ".yaml");
    let out = db.tarefas(&["task", "create", "-f", no_account.to_str().unwrap()]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("no account"), "{out:?}");
    let out = db.tarefas(&[
        "task",
        "create",
        "-f",
        no_account.to_str().unwrap(),
        "--account",
        "ghost",
    ]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("account \"ghost\" not found"),
        "{out:?}"
    );
    db.tarefas(&["account", "add", "a"]);
    let out = db.tarefas(&[
        "task",
        "create",
        "-f",
        "examples/01-manual-contacts-flow-rotik.yaml",
        "--account",
        "a",
    ]);
    assert_eq!(out.code, 2, "the file says demo: {out:?}");
    let out = db.tarefas(&[
        "task",
        "create",
        "-f",
        no_account.to_str().unwrap(),
        "--account",
        "a",
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    let invalid = crate::support::temp_file("name: X\ntable: chats\n", ".yaml");
    let out = db.tarefas(&[
        "task",
        "create",
        "-f",
        invalid.to_str().unwrap(),
        "--account",
        "a",
    ]);
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (2, "action: required: flow or chat\n")
    );
}

#[test]
fn an_account_never_reaches_another_accounts_tasks() {
    let db = TestDb::new();
    db.tarefas(&["account", "add", "a"]);
    db.tarefas(&["account", "add", "b"]);
    let file = crate::support::temp_file(
        "name: Só de A\ntable: chats\naction: {chat: reopen}\n",
        ".yaml",
    );
    let id = db
        .tarefas(&[
            "task",
            "create",
            "-f",
            file.to_str().unwrap(),
            "--account",
            "a",
        ])
        .stdout
        .trim()
        .to_string();
    for cmd in ["show", "pause", "resume", "delete", "preview"] {
        let out = db.tarefas(&["task", cmd, &id, "--account", "b"]);
        assert_eq!(out.code, 1, "{cmd}: {out:?}");
        assert!(out.stderr.contains("not found"), "{cmd}: {out:?}");
    }
    assert_eq!(
        json(&db.tarefas(&["task", "list", "--json", "--account", "b"])),
        serde_json::json!([])
    );
    assert_eq!(
        json(&db.tarefas(&["task", "show", &id, "--json", "--account", "a"]))["status"],
        "active"
    );
}

#[test]
fn sync_then_preview_counts_the_segment() {
    let fake = FakeProcess::start(&[
        "--contacts",
        "800",
        "--chats",
        "500",
        "--seed",
        "3",
        "--token",
        SECRET,
    ]);
    let db = TestDb::new();
    let env = [
        ("DEMO_TOKEN", SECRET),
        ("TAREFAS_HUGGY_API_URL", fake.url.as_str()),
    ];
    assert_eq!(
        db.tarefas_env(
            &["account", "add", "demo", "--token-env", "DEMO_TOKEN"],
            &env
        )
        .code,
        0
    );
    let report = json(&db.tarefas_env(&["sync", "--once", "--json"], &env));
    assert_eq!(report["report"]["contacts"], 800);
    let contacts = db.query_texts("SELECT count(*)::text FROM contacts");
    assert_eq!(contacts, ["800"]);

    let rotik = db
        .query_texts("SELECT count(*)::text FROM contacts WHERE organization_name = 'Rotik'")[0]
        .parse::<i64>()
        .unwrap();
    assert!(rotik > 0, "the fake data set has Rotik contacts");
    let file = crate::support::temp_file(
        "name: Rotik\naccount: demo\ntable: contacts\nfilter: {field: organization, op: eq, value: rotik}\n\
         action: {flow: {project: 1, flow: 2, channel: c}}\n",
        ".yaml",
    );
    let id = db
        .tarefas(&["task", "create", "-f", file.to_str().unwrap()])
        .stdout
        .trim()
        .to_string();
    let preview = json(&db.tarefas(&["task", "preview", &id, "--json"]));
    assert_eq!(preview["count"].as_i64(), Some(rotik));
    let sample = preview["sample"].as_array().unwrap();
    assert_eq!(sample.len(), 10.min(rotik as usize));
    let sample_ids: Vec<i64> = sample.iter().map(|r| r["id"].as_i64().unwrap()).collect();
    assert!(
        sample_ids.windows(2).all(|w| w[0] < w[1]),
        "the first ten, by id"
    );
    assert!(sample.iter().all(|r| r["organization"] == "Rotik"));
    let human = db.tarefas(&["task", "preview", &id]);
    assert!(
        human
            .stdout
            .starts_with(&format!("task {id} (Rotik): {rotik} contacts match now")),
        "{human:?}"
    );

    // A bad token: the sync fails, says why, and removes nothing.
    let bad = db.tarefas_env(
        &["sync", "--once"],
        &[
            ("DEMO_TOKEN", "wrong"),
            ("TAREFAS_HUGGY_API_URL", fake.url.as_str()),
        ],
    );
    assert_eq!(bad.code, 1);
    assert!(bad.stderr.contains("nothing removed"), "{bad:?}");
    assert_eq!(
        db.query_texts("SELECT count(*)::text FROM contacts"),
        ["800"]
    );
}
