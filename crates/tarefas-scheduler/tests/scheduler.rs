//! The scheduler against a real Postgres: fires emitted once at their time, fires due at
//! once coalesced into the latest (the others recorded with why), misfires recorded with one
//! catch-up, each `overlap` policy with a run still going, edits made after a due time, and
//! several schedulers racing over the same due tasks.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tarefas_core::task::{parse_task, Format};
use tarefas_proto::v1::Trigger;
use tarefas_scheduler::{tick, SchedulerConfig};
use tarefas_store::accounts::{self, NewAccount};
use tarefas_store::runs::{self, NewRun};
use tarefas_store::tasks::{self, TaskStatus};

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

async fn account(pool: &PgPool) -> i64 {
    accounts::add(
        pool,
        &NewAccount {
            name: "acme".into(),
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

async fn task(pool: &PgPool, acct: i64, recurrence: &str, created: DateTime<Utc>) -> i64 {
    let yaml = format!("name: T\ntime_zone: UTC\nrecurrence: {recurrence}\ntable: chats\naction: {{chat: reopen}}\n");
    let spec = parse_task(&yaml, Format::Yaml).unwrap();
    tasks::create(pool, acct, &spec, created).await.unwrap().id
}

async fn outbox(pool: &PgPool) -> Vec<tarefas_proto::v1::ExecuteTask> {
    let rows: Vec<(Vec<u8>,)> = sqlx::query_as("SELECT payload FROM outbox ORDER BY id")
        .fetch_all(pool)
        .await
        .unwrap();
    rows.iter()
        .map(|(p,)| tarefas_proto::decode_execute_task(p).unwrap())
        .collect()
}

#[sqlx::test(migrator = "tarefas_store::MIGRATOR")]
async fn a_due_fire_is_emitted_once_and_the_task_moves_on(pool: PgPool) {
    let acct = account(&pool).await;
    let id = task(
        &pool,
        acct,
        "{kind: daily, at: '09:00'}",
        utc("2026-12-01T08:00:00Z"),
    )
    .await;
    let cfg = SchedulerConfig::default();
    // Not yet due.
    assert_eq!(
        tick(&pool, utc("2026-12-01T08:59:59Z"), &cfg)
            .await
            .unwrap()
            .emitted,
        0
    );
    let r = tick(&pool, utc("2026-12-01T09:00:30Z"), &cfg)
        .await
        .unwrap();
    assert_eq!((r.tasks, r.emitted, r.missed), (1, 1, 0));
    assert_eq!(r.lateness, [std::time::Duration::from_secs(30)]);
    let msgs = outbox(&pool).await;
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].task_id, id);
    assert_eq!(msgs[0].account, "acme");
    assert_eq!(msgs[0].trigger, Trigger::Scheduled as i32);
    assert_eq!(
        msgs[0].scheduled_for_unix_ms,
        utc("2026-12-01T09:00:00Z").timestamp_millis()
    );
    assert_eq!(
        msgs[0].request_id,
        tarefas_core::run::scheduled_request_id(id, utc("2026-12-01T09:00:00Z"))
    );
    let t = tasks::get(&pool, None, id).await.unwrap();
    assert_eq!(t.next_fire_at, Some(utc("2026-12-02T09:00:00Z")));
    assert_eq!(t.last_fire_at, Some(utc("2026-12-01T09:00:00Z")));
    // Ticking again at the same time emits nothing more.
    assert_eq!(
        tick(&pool, utc("2026-12-01T09:00:40Z"), &cfg)
            .await
            .unwrap()
            .emitted,
        0
    );
    assert_eq!(outbox(&pool).await.len(), 1);
}

#[sqlx::test(migrator = "tarefas_store::MIGRATOR")]
async fn misfires_are_recorded_and_replaced_by_one_catch_up(pool: PgPool) {
    let acct = account(&pool).await;
    let id = task(
        &pool,
        acct,
        "{kind: daily, at: '09:00'}",
        utc("2026-12-01T08:00:00Z"),
    )
    .await;
    // The scheduler was down for three days.
    let r = tick(
        &pool,
        utc("2026-12-04T10:00:00Z"),
        &SchedulerConfig::default(),
    )
    .await
    .unwrap();
    assert_eq!(
        (r.emitted, r.missed),
        (1, 3),
        "fires of 1, 2, 3 and 4 Dec were all late: the latest runs, the others are missed"
    );
    let msgs = outbox(&pool).await;
    assert_eq!(
        msgs[0].scheduled_for_unix_ms,
        utc("2026-12-04T09:00:00Z").timestamp_millis()
    );
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].requested_by, "scheduler (catch-up)");
    assert_eq!(
        missed(&pool, id).await,
        [
            (
                "2026-12-01T09:00:00Z".to_string(),
                "later than the misfire grace (5m)".to_string()
            ),
            (
                "2026-12-02T09:00:00Z".to_string(),
                "later than the misfire grace (5m)".to_string()
            ),
            (
                "2026-12-03T09:00:00Z".to_string(),
                "later than the misfire grace (5m)".to_string()
            ),
        ]
    );
    assert_eq!(
        tasks::get(&pool, None, id).await.unwrap().next_fire_at,
        Some(utc("2026-12-05T09:00:00Z"))
    );
}

#[sqlx::test(migrator = "tarefas_store::MIGRATOR")]
async fn fires_within_the_grace_coalesce_into_the_latest(pool: PgPool) {
    let acct = account(&pool).await;
    let id = task(
        &pool,
        acct,
        "{kind: every_minutes, n: 1, starts_at: '2026-12-01T09:00'}",
        utc("2026-12-01T08:00:00Z"),
    )
    .await;
    let r = tick(
        &pool,
        utc("2026-12-01T09:02:10Z"),
        &SchedulerConfig::default(),
    )
    .await
    .unwrap();
    assert_eq!(
        (r.emitted, r.missed),
        (1, 2),
        "09:02 runs; 09:00 and 09:01 do not"
    );
    let msgs = outbox(&pool).await;
    assert_eq!(msgs.len(), 1);
    assert_eq!(
        msgs[0].request_id,
        tarefas_core::run::scheduled_request_id(id, utc("2026-12-01T09:02:00Z")),
        "the latest fire keeps its own time and request id"
    );
    assert_eq!(
        missed(&pool, id).await,
        [
            (
                "2026-12-01T09:00:00Z".to_string(),
                "coalesced into 2026-12-01T09:02:00Z".to_string()
            ),
            (
                "2026-12-01T09:01:00Z".to_string(),
                "coalesced into 2026-12-01T09:02:00Z".to_string()
            ),
        ]
    );
}

#[sqlx::test(migrator = "tarefas_store::MIGRATOR")]
async fn four_minutes_down_an_every_minute_task_runs_once(pool: PgPool) {
    let acct = account(&pool).await;
    let id = task(
        &pool,
        acct,
        "{kind: every_minutes, n: 1, starts_at: '2026-12-03T10:00'}",
        utc("2026-12-03T09:59:30Z"),
    )
    .await;
    let cfg = SchedulerConfig::default();
    // The scheduler emits 10:00 and its run is made and ends; then it is down from 10:00:30
    // to 10:04:20.
    assert_eq!(
        tick(&pool, utc("2026-12-03T10:00:01Z"), &cfg)
            .await
            .unwrap()
            .emitted,
        1
    );
    let run = make_run(&pool, acct, id, "2026-12-03T10:00:00Z").await;
    end_run(&pool, run).await;
    let r = tick(&pool, utc("2026-12-03T10:04:20Z"), &cfg)
        .await
        .unwrap();
    assert_eq!((r.tasks, r.emitted, r.missed), (1, 1, 3), "{r:?}");
    assert_eq!(r.lateness, [std::time::Duration::from_secs(20)]);
    let fires: Vec<i64> = outbox(&pool)
        .await
        .iter()
        .map(|m| m.scheduled_for_unix_ms)
        .collect();
    assert_eq!(
        fires,
        [
            utc("2026-12-03T10:00:00Z").timestamp_millis(),
            utc("2026-12-03T10:04:00Z").timestamp_millis()
        ]
    );
    let reasons: Vec<String> = missed(&pool, id).await.into_iter().map(|m| m.1).collect();
    assert_eq!(reasons, ["coalesced into 2026-12-03T10:04:00Z"; 3]);
    // Ticking on within the minute: nothing more.
    let r = tick(&pool, utc("2026-12-03T10:04:21Z"), &cfg)
        .await
        .unwrap();
    assert_eq!((r.emitted, r.missed), (0, 0));
    assert_eq!(
        tasks::get(&pool, None, id).await.unwrap().next_fire_at,
        Some(utc("2026-12-03T10:05:00Z"))
    );
}

/// An every-minute task with `overlap`, created before 09:00.
async fn overlapping(pool: &PgPool, acct: i64, overlap: &str) -> i64 {
    let yaml = format!(
        "name: T\ntime_zone: UTC\nrecurrence: {{kind: every_minutes, n: 1, starts_at: '2026-12-01T09:00'}}\n\
         table: chats\naction: {{chat: reopen}}\noverlap: {overlap}\n"
    );
    let spec = parse_task(&yaml, Format::Yaml).unwrap();
    tasks::create(pool, acct, &spec, utc("2026-12-01T08:00:00Z"))
        .await
        .unwrap()
        .id
}

/// The run a worker makes for the fire `at` of `task` (status `planning`).
async fn make_run(pool: &PgPool, acct: i64, task: i64, at: &str) -> i64 {
    let at = utc(at);
    let request = tarefas_core::run::scheduled_request_id(task, at);
    let (run, created) = runs::create_or_get(
        pool,
        &NewRun {
            account_id: acct,
            task_id: task,
            request_id: &request,
            trigger: "scheduled",
            scheduled_for: Some(at),
            requested_by: Some("scheduler"),
        },
    )
    .await
    .unwrap();
    assert!(created);
    run.id
}

async fn set_run(pool: &PgPool, run: i64, status: &str) {
    sqlx::query("UPDATE runs SET status = $2 WHERE id = $1")
        .bind(run)
        .bind(status)
        .execute(pool)
        .await
        .unwrap();
}

async fn end_run(pool: &PgPool, run: i64) {
    set_run(pool, run, "done").await;
}

/// `(scheduled_for, reason)` of the task's missed fires, oldest first.
async fn missed(pool: &PgPool, task: i64) -> Vec<(String, String)> {
    tasks::missed_fires(pool, None, Some(task), None, 1000)
        .await
        .unwrap()
        .into_iter()
        .rev()
        .map(|m| {
            (
                m.scheduled_for
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                m.reason,
            )
        })
        .collect()
}

/// The fires in the outbox, as `(HH:MM of the fire, requested_by)`.
async fn emitted(pool: &PgPool) -> Vec<(String, String)> {
    outbox(pool)
        .await
        .iter()
        .map(|m| {
            let at = DateTime::<Utc>::from_timestamp_millis(m.scheduled_for_unix_ms).unwrap();
            (at.format("%H:%M").to_string(), m.requested_by.clone())
        })
        .collect()
}

#[sqlx::test(migrator = "tarefas_store::MIGRATOR")]
async fn overlap_skip_records_the_fire_while_the_run_goes_on(pool: PgPool) {
    let acct = account(&pool).await;
    let id = overlapping(&pool, acct, "skip").await;
    let cfg = SchedulerConfig::default();
    tick(&pool, utc("2026-12-01T09:00:01Z"), &cfg)
        .await
        .unwrap();
    // Emitted, its run not made yet (the message waits): it counts as in progress.
    let r = tick(&pool, utc("2026-12-01T09:01:01Z"), &cfg)
        .await
        .unwrap();
    assert_eq!((r.emitted, r.missed), (0, 1));
    let run = make_run(&pool, acct, id, "2026-12-01T09:00:00Z").await;
    tick(&pool, utc("2026-12-01T09:02:01Z"), &cfg)
        .await
        .unwrap();
    set_run(&pool, run, "running").await;
    tick(&pool, utc("2026-12-01T09:03:01Z"), &cfg)
        .await
        .unwrap();
    set_run(&pool, run, "paused").await;
    tick(&pool, utc("2026-12-01T09:04:01Z"), &cfg)
        .await
        .unwrap();
    assert_eq!(
        missed(&pool, id).await,
        [
            (
                "2026-12-01T09:01:00Z".into(),
                "overlap: the run of 2026-12-01T09:00:00Z has not started yet".into()
            ),
            (
                "2026-12-01T09:02:00Z".into(),
                format!("overlap: run {run} still planning")
            ),
            (
                "2026-12-01T09:03:00Z".into(),
                format!("overlap: run {run} still running")
            ),
            (
                "2026-12-01T09:04:00Z".into(),
                format!("overlap: run {run} still paused")
            ),
        ]
    );
    assert_eq!(
        emitted(&pool).await.len(),
        1,
        "no second run while the first goes on"
    );
    // Once it ends, the next fire runs.
    end_run(&pool, run).await;
    let r = tick(&pool, utc("2026-12-01T09:05:01Z"), &cfg)
        .await
        .unwrap();
    assert_eq!((r.emitted, r.missed), (1, 0));
    assert_eq!(emitted(&pool).await[1].0, "09:05");
}

#[sqlx::test(migrator = "tarefas_store::MIGRATOR")]
async fn a_manual_run_in_progress_holds_back_scheduled_fires(pool: PgPool) {
    let acct = account(&pool).await;
    let id = overlapping(&pool, acct, "skip").await;
    let (run, _) = runs::create_or_get(
        &pool,
        &NewRun {
            account_id: acct,
            task_id: id,
            request_id: "manual-1",
            trigger: "manual",
            scheduled_for: None,
            requested_by: Some("ana"),
        },
    )
    .await
    .unwrap();
    let r = tick(
        &pool,
        utc("2026-12-01T09:00:01Z"),
        &SchedulerConfig::default(),
    )
    .await
    .unwrap();
    assert_eq!((r.emitted, r.missed), (0, 1));
    assert_eq!(
        missed(&pool, id).await[0].1,
        format!("overlap: run {} still planning", run.id)
    );
}

#[sqlx::test(migrator = "tarefas_store::MIGRATOR")]
async fn an_unstarted_fire_stops_holding_the_task_after_the_hold(pool: PgPool) {
    let acct = account(&pool).await;
    overlapping(&pool, acct, "skip").await;
    let cfg = SchedulerConfig {
        pending_start_hold: std::time::Duration::from_secs(90),
        ..SchedulerConfig::default()
    };
    tick(&pool, utc("2026-12-01T09:00:01Z"), &cfg)
        .await
        .unwrap();
    let r = tick(&pool, utc("2026-12-01T09:01:01Z"), &cfg)
        .await
        .unwrap();
    assert_eq!((r.emitted, r.missed), (0, 1), "within the hold");
    let r = tick(&pool, utc("2026-12-01T09:02:01Z"), &cfg)
        .await
        .unwrap();
    assert_eq!(
        (r.emitted, r.missed),
        (1, 0),
        "past the hold: the message is taken as lost"
    );
}

#[sqlx::test(migrator = "tarefas_store::MIGRATOR")]
async fn overlap_queue_one_keeps_one_fire_until_the_run_ends(pool: PgPool) {
    let acct = account(&pool).await;
    let id = overlapping(&pool, acct, "queue_one").await;
    let cfg = SchedulerConfig::default();
    tick(&pool, utc("2026-12-01T09:00:01Z"), &cfg)
        .await
        .unwrap();
    let run = make_run(&pool, acct, id, "2026-12-01T09:00:00Z").await;
    let r = tick(&pool, utc("2026-12-01T09:01:01Z"), &cfg)
        .await
        .unwrap();
    assert_eq!((r.emitted, r.queued, r.missed), (0, 1, 0));
    // A second fire while one is queued replaces it.
    let r = tick(&pool, utc("2026-12-01T09:02:01Z"), &cfg)
        .await
        .unwrap();
    assert_eq!((r.emitted, r.queued, r.missed), (0, 1, 1));
    assert_eq!(
        missed(&pool, id).await,
        [(
            "2026-12-01T09:01:00Z".into(),
            "overlap: replaced by the queued fire of 2026-12-01T09:02:00Z".into()
        )]
    );
    // Nothing while the run goes on, between fires.
    let r = tick(&pool, utc("2026-12-01T09:02:30Z"), &cfg)
        .await
        .unwrap();
    assert_eq!((r.emitted, r.released), (0, 0));
    // The run ends: the queued fire goes at the next tick, once.
    end_run(&pool, run).await;
    let r = tick(&pool, utc("2026-12-01T09:02:40Z"), &cfg)
        .await
        .unwrap();
    assert_eq!((r.emitted, r.released, r.tasks), (1, 1, 0), "{r:?}");
    let r = tick(&pool, utc("2026-12-01T09:02:50Z"), &cfg)
        .await
        .unwrap();
    assert_eq!((r.emitted, r.released), (0, 0));
    assert_eq!(
        emitted(&pool).await,
        [
            ("09:00".to_string(), "scheduler".to_string()),
            ("09:02".to_string(), "scheduler (queued)".to_string())
        ]
    );
    let msgs = outbox(&pool).await;
    assert_eq!(
        msgs[1].request_id,
        tarefas_core::run::scheduled_request_id(id, utc("2026-12-01T09:02:00Z"))
    );
    let t = tasks::get(&pool, None, id).await.unwrap();
    assert_eq!(t.last_fire_at, Some(utc("2026-12-01T09:02:00Z")));
    assert_eq!(t.next_fire_at, Some(utc("2026-12-01T09:03:00Z")));
    // The released fire has not started: 09:03 queues behind it, and goes when its run ends.
    let r = tick(&pool, utc("2026-12-01T09:03:01Z"), &cfg)
        .await
        .unwrap();
    assert_eq!((r.emitted, r.queued), (0, 1));
    let second = make_run(&pool, acct, id, "2026-12-01T09:02:00Z").await;
    let r = tick(&pool, utc("2026-12-01T09:03:10Z"), &cfg)
        .await
        .unwrap();
    assert_eq!(r.released, 0);
    end_run(&pool, second).await;
    let r = tick(&pool, utc("2026-12-01T09:03:20Z"), &cfg)
        .await
        .unwrap();
    assert_eq!(r.released, 1);
    assert_eq!(emitted(&pool).await.len(), 3);
}

#[sqlx::test(migrator = "tarefas_store::MIGRATOR")]
async fn overlap_allow_runs_alongside(pool: PgPool) {
    let acct = account(&pool).await;
    let id = overlapping(&pool, acct, "allow").await;
    let cfg = SchedulerConfig::default();
    tick(&pool, utc("2026-12-01T09:00:01Z"), &cfg)
        .await
        .unwrap();
    make_run(&pool, acct, id, "2026-12-01T09:00:00Z").await;
    let r = tick(&pool, utc("2026-12-01T09:01:01Z"), &cfg)
        .await
        .unwrap();
    assert_eq!((r.emitted, r.missed, r.queued), (1, 0, 0));
    assert!(missed(&pool, id).await.is_empty());
}

#[sqlx::test(migrator = "tarefas_store::MIGRATOR")]
async fn schedulers_racing_over_busy_tasks_decide_once(pool: PgPool) {
    let acct = account(&pool).await;
    let mut ids = Vec::new();
    for _ in 0..40 {
        let id = overlapping(&pool, acct, "queue_one").await;
        tick(
            &pool,
            utc("2026-12-01T09:00:01Z"),
            &SchedulerConfig::default(),
        )
        .await
        .unwrap();
        make_run(&pool, acct, id, "2026-12-01T09:00:00Z").await;
        ids.push(id);
    }
    let before = outbox(&pool).await.len();
    assert_eq!(before, 40);
    let cfg = SchedulerConfig {
        batch: 5,
        ..SchedulerConfig::default()
    };
    let now = utc("2026-12-01T09:01:01Z");
    let (a, b, c) = tokio::join!(
        tick(&pool, now, &cfg),
        tick(&pool, now, &cfg),
        tick(&pool, now, &cfg)
    );
    let queued = a.unwrap().queued + b.unwrap().queued + c.unwrap().queued;
    assert_eq!(queued, 40);
    sqlx::query("UPDATE runs SET status = 'done'")
        .execute(&pool)
        .await
        .unwrap();
    let now = utc("2026-12-01T09:01:30Z");
    let (a, b, c) = tokio::join!(
        tick(&pool, now, &cfg),
        tick(&pool, now, &cfg),
        tick(&pool, now, &cfg)
    );
    let released = a.unwrap().released + b.unwrap().released + c.unwrap().released;
    assert_eq!(released, 40);
    let msgs = outbox(&pool).await;
    let distinct: BTreeSet<&str> = msgs.iter().map(|m| m.request_id.as_str()).collect();
    assert_eq!((msgs.len(), distinct.len()), (80, 80));
}

#[sqlx::test(migrator = "tarefas_store::MIGRATOR")]
async fn an_edit_after_the_due_time_keeps_the_unclaimed_fire(pool: PgPool) {
    let acct = account(&pool).await;
    let id = task(
        &pool,
        acct,
        "{kind: daily, at: '09:00'}",
        utc("2026-12-01T08:00:00Z"),
    )
    .await;
    // Due at 09:00; the scheduler is down; the operator edits the task at 09:03 (now 09:30).
    let yaml = "name: T2\ntime_zone: UTC\nrecurrence: {kind: daily, at: '09:30'}\ntable: chats\naction: {chat: close}\n";
    let spec = parse_task(yaml, Format::Yaml).unwrap();
    let t = tasks::update(&pool, None, id, &spec, utc("2026-12-01T09:03:00Z"))
        .await
        .unwrap();
    assert_eq!(
        t.next_fire_at,
        Some(utc("2026-12-01T09:00:00Z")),
        "the due fire is kept"
    );
    let r = tick(
        &pool,
        utc("2026-12-01T09:03:05Z"),
        &SchedulerConfig::default(),
    )
    .await
    .unwrap();
    assert_eq!((r.emitted, r.missed), (1, 0));
    assert_eq!(
        emitted(&pool).await,
        [("09:00".to_string(), "scheduler".to_string())]
    );
    // Then the new definition's schedule.
    assert_eq!(
        tasks::get(&pool, None, id).await.unwrap().next_fire_at,
        Some(utc("2026-12-01T09:30:00Z"))
    );
    // An edit before the due time recomputes as before.
    let spec = parse_task(&yaml.replace("09:30", "10:15"), Format::Yaml).unwrap();
    let t = tasks::update(&pool, None, id, &spec, utc("2026-12-01T09:10:00Z"))
        .await
        .unwrap();
    assert_eq!(t.next_fire_at, Some(utc("2026-12-01T10:15:00Z")));
}

#[sqlx::test(migrator = "tarefas_store::MIGRATOR")]
async fn an_edit_to_manual_records_the_unclaimed_fire_as_missed(pool: PgPool) {
    let acct = account(&pool).await;
    let id = task(
        &pool,
        acct,
        "{kind: daily, at: '09:00'}",
        utc("2026-12-01T08:00:00Z"),
    )
    .await;
    let spec = parse_task(
        "name: T\ntime_zone: UTC\nrecurrence: {kind: manual}\ntable: chats\naction: {chat: close}\n",
        Format::Yaml,
    )
    .unwrap();
    let t = tasks::update(&pool, None, id, &spec, utc("2026-12-01T09:03:00Z"))
        .await
        .unwrap();
    assert_eq!(t.next_fire_at, None);
    assert_eq!(
        missed(&pool, id).await,
        [("2026-12-01T09:00:00Z".into(), "task edited".into())]
    );
    let r = tick(
        &pool,
        utc("2026-12-01T09:03:05Z"),
        &SchedulerConfig::default(),
    )
    .await
    .unwrap();
    assert_eq!(r.emitted, 0);
}

#[sqlx::test(migrator = "tarefas_store::MIGRATOR")]
async fn manual_paused_and_deleted_tasks_never_fire(pool: PgPool) {
    let acct = account(&pool).await;
    let created = utc("2026-12-01T08:00:00Z");
    task(&pool, acct, "{kind: manual}", created).await;
    let paused = task(&pool, acct, "{kind: daily, at: '09:00'}", created).await;
    let deleted = task(&pool, acct, "{kind: daily, at: '09:00'}", created).await;
    tasks::set_status(&pool, None, paused, TaskStatus::Paused, created)
        .await
        .unwrap();
    tasks::set_status(&pool, None, deleted, TaskStatus::Deleted, created)
        .await
        .unwrap();
    let r = tick(
        &pool,
        utc("2026-12-01T09:00:01Z"),
        &SchedulerConfig::default(),
    )
    .await
    .unwrap();
    assert_eq!(r.emitted, 0);
}

#[sqlx::test(migrator = "tarefas_store::MIGRATOR")]
async fn three_schedulers_over_a_thousand_due_tasks_emit_each_fire_once(pool: PgPool) {
    let acct = account(&pool).await;
    sqlx::query(
        "INSERT INTO tasks (account_id, name, definition, table_name, recurrence_kind, time_zone, next_fire_at)
         SELECT $1, 'T' || g, $2, 'chats', 'daily', 'UTC', $3 FROM generate_series(1, 1000) g",
    )
    .bind(acct)
    .bind(serde_json::json!({"name": "T", "time_zone": "UTC", "recurrence": {"kind": "daily", "at": "09:00"},
                             "table": "chats", "action": {"chat": "reopen"}}))
    .bind(utc("2026-12-01T09:00:00Z"))
    .execute(&pool)
    .await
    .unwrap();
    let cfg = SchedulerConfig {
        batch: 50,
        ..SchedulerConfig::default()
    };
    let now = utc("2026-12-01T09:00:05Z");
    let (a, b, c) = tokio::join!(
        tick(&pool, now, &cfg),
        tick(&pool, now, &cfg),
        tick(&pool, now, &cfg)
    );
    let emitted = a.unwrap().emitted + b.unwrap().emitted + c.unwrap().emitted;
    assert_eq!(emitted, 1000);
    let msgs = outbox(&pool).await;
    let distinct: BTreeSet<&str> = msgs.iter().map(|m| m.request_id.as_str()).collect();
    assert_eq!((msgs.len(), distinct.len()), (1000, 1000));
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM tasks WHERE next_fire_at <= $1")
        .bind(now)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(left, 0);
}
