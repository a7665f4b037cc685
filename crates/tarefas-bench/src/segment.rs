//! `tarefas-bench segment`: a compound segment (a custom field, a relative date and an OR
//! group) over 1,000,000 contacts of one account, plus 100,000 of a second account in the
//! same table, compiled by [`tarefas_store::segment`] and measured against the same query
//! written by hand the way a developer naturally would (`lower()`, guarded `jsonb ->>`
//! casts, `now() - interval`).
//!
//! * **count**: [`segment::count`] vs a hand `SELECT count(*)`, each pair in one transaction
//!   whose `now()` is the segment's run start, so both mean exactly the same rows;
//! * **stream**: every matching id in keyset pages with [`SegmentPages`] vs a hand keyset
//!   loop; both digested (count and an order-sensitive hash) and compared, never kept;
//! * **scoping**: the count over the small second account (same table);
//! * **walk**: every id of the big account (1M, no filter), for memory over many pages.
//!
//! Pairs are interleaved (A B, B A, …) after a warm-up, and summarized by medians and their
//! ratio. Resident memory is sampled while streaming. Any disagreement between Tarefas and
//! the hand-written SQL fails the run.
//!
//! The data is loaded once (with the mirror's own batch upsert) and kept in its own
//! database between runs; `--reload` loads it again.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::{Connection, PgConnection, PgPool};
use tarefas_core::segment::{parse_filter, Filter, Table};
use tarefas_core::Problems;
use tarefas_store::accounts::{self, NewAccount};
use tarefas_store::mirror;
use tarefas_store::segment::{self, SegmentPages, SegmentQuery};
use tokio::task::JoinSet;

use crate::contacts::Generator;
use crate::db;
use crate::measure::{mib, rss_bytes, secs, Comparison, IdDigest, Memory, PeakSampler, Samples};

/// Options of `tarefas-bench segment`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The benchmark's own database (created if missing, kept between runs).
    #[arg(
        long,
        env = "TAREFAS_BENCH_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/tarefas_bench"
    )]
    database_url: String,
    /// Contacts of the measured account.
    #[arg(long, default_value_t = 1_000_000)]
    contacts: u64,
    /// Contacts of a second account in the same table (scoping must make them free).
    #[arg(long, default_value_t = 100_000)]
    other_contacts: u64,
    /// Load the data again even when the database already holds it.
    #[arg(long)]
    reload: bool,
    /// Reload when the data is older than this many days (relative dates drift with it).
    #[arg(long, default_value_t = 30)]
    max_age_days: i64,
    /// Contacts per mirror upsert while loading.
    #[arg(long, default_value_t = 10_000)]
    batch: u64,
    /// Interleaved pairs for each count measurement.
    #[arg(long, default_value_t = 11)]
    reps: usize,
    /// Interleaved pairs for each stream measurement.
    #[arg(long, default_value_t = 7)]
    stream_reps: usize,
    /// Ids per keyset page.
    #[arg(long, default_value_t = 5_000)]
    page_size: i64,
    /// The most Tarefas may take, as a multiple of the hand-written SQL.
    #[arg(long, default_value_t = 2.0)]
    target_ratio: f64,
    /// Where to write the JSON report.
    #[arg(long, default_value = "target/bench/segment.json")]
    out: PathBuf,
    /// Exit with status 3 when a target is missed.
    #[arg(long)]
    strict: bool,
    /// After measuring, print the plans (EXPLAIN ANALYZE, BUFFERS) of both count queries,
    /// through the server's auto_explain.
    #[arg(long)]
    explain: bool,
    /// Measure only: the data must already be loaded (used after a load, to measure in a
    /// fresh process whose memory the load did not touch).
    #[arg(long, hide = true)]
    skip_load: bool,
}

/// A segment measured: as a task file's `filter`, and the same condition written by hand.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Shape {
    /// Short name, for the table.
    pub name: &'static str,
    /// The task file's `filter` (YAML).
    pub filter_yaml: &'static str,
    /// The hand-written `WHERE` clause (`$1` is the account).
    pub hand_where: &'static str,
}

/// The segment of the issue: a custom field, a relative date and an OR group. The hand
/// version is written as a developer naturally would: `lower()` on the raw text, the
/// numeric cast guarded by a regular expression, `now()` for the relative date (the
/// session's zone is UTC, so 90 days are 90 × 24 h, as in the task file).
pub const COMPOUND: Shape = Shape {
    name: "compound",
    filter_yaml: "\
all:
  - {field: custom.plano, op: eq, value: gold}
  - {field: updated_at, op: within_last, value: 90d}
  - any:
      - {field: organization, op: eq, value: Rotik}
      - {field: custom.pontos, op: gte, value: 500}
",
    hand_where: r"account_id = $1
  AND lower(custom->>'plano') = 'gold'
  AND updated_at >= now() - interval '90 days'
  AND (lower(organization_name) = 'rotik'
       OR (CASE WHEN custom->>'pontos' ~ '^-?[0-9]+(\.[0-9]+)?$'
                THEN (custom->>'pontos')::numeric END) >= 500)",
};

/// A narrow segment (a recent window that an index serves, and a custom field): guards
/// that the plan shaping for wide segments does not make narrow ones walk the account.
pub const NARROW: Shape = Shape {
    name: "narrow",
    filter_yaml: "\
all:
  - {field: updated_at, op: within_last, value: 2d}
  - {field: custom.plano, op: eq, value: gold}
",
    hand_where: r"account_id = $1
  AND updated_at >= now() - interval '2 days'
  AND lower(custom->>'plano') = 'gold'",
};

impl Shape {
    fn count_sql(&self) -> String {
        format!("SELECT count(*) FROM contacts WHERE {}", self.hand_where)
    }

    fn page_sql(&self) -> String {
        format!(
            "SELECT id FROM contacts WHERE {} AND id > $2 ORDER BY id LIMIT $3",
            self.hand_where
        )
    }

    /// The filter, validated exactly as a task file's.
    fn filter(&self) -> Result<Filter> {
        let value: Value = serde_yaml::from_str(self.filter_yaml)?;
        let mut problems = Problems::default();
        let filter = parse_filter(&value, Table::Contacts, TZ, "filter", &mut problems);
        match filter {
            Some(f) if problems.is_empty() => Ok(f),
            _ => bail!("the {} filter does not validate: {problems}", self.name),
        }
    }
}

/// Bump when the generated data changes, so that a kept database is reloaded.
const DATA_VERSION: i64 = 1;
const SEED: u64 = 0x7a2e_fa5b_e4c4;
const ACCOUNT_A: &str = "bench-a";
const ACCOUNT_B: &str = "bench-b";
const TZ: Tz = chrono_tz::America::Sao_Paulo;
/// Warm-up executions of each count (more than the five custom plans Postgres makes before
/// it may settle on a generic one).
const WARM_UP: usize = 7;

const HAND_WALK_SQL: &str =
    "SELECT id FROM contacts WHERE account_id = $1 AND id > $2 ORDER BY id LIMIT $3";

/// What the kept database holds (a row of `tarefas_bench_meta`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct DataSet {
    version: i64,
    seed: u64,
    contacts: u64,
    other_contacts: u64,
    /// The "now" the data was generated around.
    base: DateTime<Utc>,
    /// How long the load took (mirror upserts, then VACUUM ANALYZE), seconds.
    load_seconds: f64,
    account_a: i64,
    account_b: i64,
}

/// The machine the run was taken on.
#[derive(Debug, Serialize)]
struct Machine {
    cpus: usize,
    cpu_model: Option<String>,
    memory_bytes: Option<u64>,
    postgres: String,
}

#[derive(Debug, Serialize)]
struct MemoryReport {
    /// Streaming the segment with `SegmentPages` (the last timed pair).
    tarefas_stream: Memory,
    /// The hand keyset loop, same pair.
    hand_stream: Memory,
    /// Walking every id of the big account with `SegmentPages`.
    tarefas_walk: Memory,
    walk_ids: u64,
    walk_pages: u64,
}

/// A measured segment and what it selects.
#[derive(Debug, Serialize)]
struct SegmentReport {
    shape: Shape,
    /// The keyset page statement Tarefas runs (values bound, never in the text).
    tarefas_page_sql: String,
    hand_count_sql: String,
    hand_page_sql: String,
    /// Ids selected in the big account, and its share of the account.
    matched: i64,
    selectivity: f64,
    /// Ids selected in the small account.
    matched_other_account: i64,
}

#[derive(Debug, Serialize)]
struct Report {
    benchmark: &'static str,
    taken_at: DateTime<Utc>,
    machine: Machine,
    data: DataSet,
    page_size: i64,
    warm_up: usize,
    segments: Vec<SegmentReport>,
    comparisons: Vec<Comparison>,
    memory: MemoryReport,
    targets_met: bool,
}

/// Runs the benchmark.
pub async fn run(args: Args) -> Result<()> {
    let pool = db::prepare(&args.database_url, 2).await?;
    let data = if args.skip_load {
        read_meta(&pool)
            .await?
            .context("--skip-load: the database holds no benchmark data")?
    } else {
        match current_data(&pool, &args).await? {
            Some(data) => {
                eprintln!(
                    "data: kept from {} ({} + {} contacts)",
                    data.base.format("%Y-%m-%d %H:%M UTC"),
                    data.contacts,
                    data.other_contacts
                );
                data
            }
            None => {
                load(&pool, &args).await?;
                pool.close().await;
                // Measure in a fresh process, whose memory the load did not touch.
                let status = std::process::Command::new(std::env::current_exe()?)
                    .args(std::env::args_os().skip(1))
                    .arg("--skip-load")
                    .status()
                    .context("re-running the benchmark after the load")?;
                std::process::exit(status.code().unwrap_or(1));
            }
        }
    };
    measure(&pool, &args, data).await
}

/// The kept data set, when it is the one these options ask for and is recent enough.
async fn current_data(pool: &PgPool, args: &Args) -> Result<Option<DataSet>> {
    if args.reload {
        return Ok(None);
    }
    let Some(data) = read_meta(pool).await? else {
        return Ok(None);
    };
    let fresh = Utc::now() - data.base < chrono::Duration::days(args.max_age_days);
    let same = data.version == DATA_VERSION
        && data.seed == SEED
        && data.contacts == args.contacts
        && data.other_contacts == args.other_contacts;
    if !(fresh && same) {
        return Ok(None);
    }
    // The rows must still be there (nobody truncated the table).
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM contacts WHERE account_id = $1")
        .bind(data.account_a)
        .fetch_one(pool)
        .await?;
    Ok((rows as u64 == data.contacts).then_some(data))
}

async fn read_meta(pool: &PgPool) -> Result<Option<DataSet>> {
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS tarefas_bench_meta (name TEXT PRIMARY KEY, value JSONB NOT NULL)",
    )
    .execute(pool)
    .await?;
    let value: Option<Value> =
        sqlx::query_scalar("SELECT value FROM tarefas_bench_meta WHERE name = 'segment'")
            .fetch_optional(pool)
            .await?;
    Ok(value.and_then(|v| serde_json::from_value(v).ok()))
}

/// Loads both accounts with the mirror's batch upsert, then `VACUUM (ANALYZE)`.
async fn load(pool: &PgPool, args: &Args) -> Result<DataSet> {
    let started = Instant::now();
    sqlx::raw_sql("TRUNCATE contacts; DELETE FROM tarefas_bench_meta WHERE name = 'segment'")
        .execute(pool)
        .await?;
    let mut ids = Vec::new();
    for name in [ACCOUNT_A, ACCOUNT_B] {
        let id = match accounts::by_name(pool, name).await {
            Ok(a) => a.id,
            Err(_) => {
                accounts::add(
                    pool,
                    &NewAccount {
                        name: name.to_string(),
                        company_id: None,
                        token_ref: None,
                        webhook_token_ref: None,
                        rate_limit_per_s: 10,
                    },
                )
                .await?
                .id
            }
        };
        ids.push(id);
    }
    let base = Utc::now();
    let generators = [
        (ids[0], args.contacts, 10_000_000),
        (ids[1], args.other_contacts, 90_000_000),
    ];
    for (account, n, first_id) in generators {
        let g = Generator {
            seed: SEED ^ account as u64,
            first_id,
            base,
        };
        load_account(pool, account, g, n, args.batch.max(1)).await?;
    }
    eprintln!("load: VACUUM (ANALYZE) contacts …");
    sqlx::raw_sql("VACUUM (ANALYZE) contacts")
        .execute(pool)
        .await?;
    let data = DataSet {
        version: DATA_VERSION,
        seed: SEED,
        contacts: args.contacts,
        other_contacts: args.other_contacts,
        base,
        load_seconds: started.elapsed().as_secs_f64(),
        account_a: ids[0],
        account_b: ids[1],
    };
    sqlx::query(
        "INSERT INTO tarefas_bench_meta (name, value) VALUES ('segment', $1)
         ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value",
    )
    .bind(serde_json::to_value(&data)?)
    .execute(pool)
    .await?;
    eprintln!("load: done in {}", secs(data.load_seconds));
    Ok(data)
}

/// Writes `n` contacts of `account`, two batches in flight (one generating while the other
/// is written).
async fn load_account(pool: &PgPool, account: i64, g: Generator, n: u64, batch: u64) -> Result<()> {
    let started = Instant::now();
    let synced_at = Utc::now();
    let mut in_flight = JoinSet::new();
    let mut written = 0u64;
    let mut start = 0;
    while start < n || !in_flight.is_empty() {
        if start < n && in_flight.len() < 2 {
            let end = (start + batch).min(n);
            let pool = pool.clone();
            in_flight.spawn(async move {
                let contacts: Vec<_> = (start..end).map(|i| g.contact(i)).collect();
                mirror::upsert_contacts(&pool, account, &contacts, synced_at).await
            });
            start = end;
            continue;
        }
        if let Some(done) = in_flight.join_next().await {
            written += done??;
            if written % 100_000 < batch {
                eprintln!(
                    "load: account {account}: {written}/{n} contacts ({:.0}/s)",
                    written as f64 / started.elapsed().as_secs_f64()
                );
            }
        }
    }
    ensure!(written == n, "wrote {written} contacts, expected {n}");
    Ok(())
}

async fn tx_now(conn: &mut PgConnection) -> Result<DateTime<Utc>> {
    Ok(sqlx::query_scalar("SELECT now()").fetch_one(conn).await?)
}

/// One interleaved count pair, in one transaction on the hand-written side's connection
/// whose `now()` is the segment's run start. Returns (Tarefas time, hand time, count).
async fn count_pair(
    conn: &mut PgConnection,
    account: i64,
    filter: &Filter,
    hand_sql: &str,
    tarefas_first: bool,
) -> Result<(Duration, Duration, i64)> {
    let mut tx = conn.begin().await?;
    let now = tx_now(&mut tx).await?;
    let (mut ta, mut tb, mut na, mut nb) = (Duration::ZERO, Duration::ZERO, 0, 0);
    for turn in 0..2 {
        if (turn == 0) == tarefas_first {
            let t = Instant::now();
            let q = SegmentQuery::new(Table::Contacts, Some(filter), TZ, now);
            na = segment::count(&mut *tx, account, &q).await?;
            ta = t.elapsed();
        } else {
            let t = Instant::now();
            nb = sqlx::query_scalar::<_, i64>(hand_sql)
                .bind(account)
                .fetch_one(&mut *tx)
                .await?;
            tb = t.elapsed();
        }
    }
    tx.commit().await?;
    ensure!(
        na == nb,
        "COUNT MISMATCH for account {account} at {now}: tarefas {na}, hand-written SQL {nb}"
    );
    Ok((ta, tb, na))
}

/// What one stream produced.
struct Stream {
    elapsed: Duration,
    digest: IdDigest,
    pages: u64,
    memory: Memory,
}

/// Streams a segment with [`SegmentPages`], digesting the ids page by page.
async fn tarefas_stream(
    pool: &PgPool,
    account: i64,
    query: SegmentQuery,
    page_size: i64,
) -> Result<Stream> {
    let mut memory = Memory {
        before: rss_bytes(),
        ..Memory::default()
    };
    let sampler = PeakSampler::start();
    let t = Instant::now();
    let mut pages = SegmentPages::new(pool.clone(), account, query, page_size);
    let (mut digest, mut n) = (IdDigest::default(), 0);
    while let Some(ids) = pages.next_page().await? {
        digest.add(&ids)?;
        n += 1;
        let rss = rss_bytes();
        if n == 1 {
            memory.first_page = rss;
        }
        memory.last_page = rss;
    }
    let elapsed = t.elapsed();
    memory.peak = sampler.finish();
    Ok(Stream {
        elapsed,
        digest,
        pages: n,
        memory,
    })
}

/// Streams with a hand keyset loop (`id > $2 ORDER BY id LIMIT $3`) on `conn`.
async fn hand_stream(
    conn: &mut PgConnection,
    sql: &str,
    account: i64,
    page_size: i64,
) -> Result<Stream> {
    let mut memory = Memory {
        before: rss_bytes(),
        ..Memory::default()
    };
    let sampler = PeakSampler::start();
    let t = Instant::now();
    let (mut digest, mut n, mut after) = (IdDigest::default(), 0, 0i64);
    loop {
        let ids: Vec<i64> = sqlx::query_scalar(sql)
            .bind(account)
            .bind(after)
            .bind(page_size)
            .fetch_all(&mut *conn)
            .await?;
        if !ids.is_empty() {
            digest.add(&ids)?;
            n += 1;
            let rss = rss_bytes();
            if n == 1 {
                memory.first_page = rss;
            }
            memory.last_page = rss;
        }
        match ids.last() {
            Some(&last) if ids.len() as i64 == page_size => after = last,
            _ => break,
        }
    }
    let elapsed = t.elapsed();
    memory.peak = sampler.finish();
    Ok(Stream {
        elapsed,
        digest,
        pages: n,
        memory,
    })
}

/// One interleaved stream pair. The hand loop runs in a transaction on `conn` (so its
/// `now()` stays put across pages) whose `now()` is also the segment's run start;
/// `SegmentPages` reads through the pool's other connection. Returns (Tarefas, hand).
async fn stream_pair(
    pool: &PgPool,
    conn: &mut PgConnection,
    account: i64,
    filter: Option<&Filter>,
    hand_sql: &str,
    page_size: i64,
    tarefas_first: bool,
) -> Result<(Stream, Stream)> {
    let mut tx = conn.begin().await?;
    let now = tx_now(&mut tx).await?;
    let mut a = None;
    let mut b = None;
    for turn in 0..2 {
        if (turn == 0) == tarefas_first {
            let q = SegmentQuery::new(Table::Contacts, filter, TZ, now);
            a = Some(tarefas_stream(pool, account, q, page_size).await?);
        } else {
            b = Some(hand_stream(&mut tx, hand_sql, account, page_size).await?);
        }
    }
    tx.commit().await?;
    let (a, b) = (a.context("tarefas stream")?, b.context("hand stream")?);
    ensure!(
        a.digest == b.digest,
        "STREAM MISMATCH for account {account} at {now}: tarefas {:?}, hand-written SQL {:?}",
        a.digest,
        b.digest
    );
    Ok((a, b))
}

/// The hand-written side's run of a segment: its statements.
struct Hand {
    count: String,
    page: String,
}

async fn measure(pool: &PgPool, args: &Args, data: DataSet) -> Result<()> {
    let (a, b) = (data.account_a, data.account_b);
    let ps = args.page_size.max(1);
    // The hand-written side keeps one connection for the whole run, so that its prepared
    // statements (sqlx's default) reach Postgres's steady state (a cached generic plan may
    // replace the custom ones after five executions); Tarefas's unnamed statements are
    // planned at every execution and read through the pool's other connection.
    let mut hand = pool.acquire().await?;
    let hand = &mut *hand;

    // Warm-up: caches, the hand side's plan cache, and the first agreement checks.
    eprintln!("warm-up …");
    let mut segments = Vec::new();
    let mut filters = Vec::new();
    for shape in [COMPOUND, NARROW] {
        let filter = shape.filter()?;
        let h = Hand {
            count: shape.count_sql(),
            page: shape.page_sql(),
        };
        let (mut matched, mut matched_b) = (0, 0);
        for _ in 0..WARM_UP {
            matched = count_pair(hand, a, &filter, &h.count, true).await?.2;
            matched_b = count_pair(hand, b, &filter, &h.count, true).await?.2;
        }
        // Enough streams for the hand page statement to pass the five custom plans too.
        let (s, _) = stream_pair(pool, hand, a, Some(&filter), &h.page, ps, true).await?;
        for _ in 1..WARM_UP.div_ceil(s.pages.max(1) as usize) {
            stream_pair(pool, hand, a, Some(&filter), &h.page, ps, true).await?;
        }
        ensure!(
            s.digest.count as i64 == matched,
            "{}: the stream returned {} ids but count says {matched}",
            shape.name,
            s.digest.count
        );
        eprintln!(
            "{}: matches {matched} of {} contacts ({:.2}%); {matched_b} of {} in the other account",
            shape.name,
            data.contacts,
            100.0 * matched as f64 / data.contacts as f64,
            data.other_contacts
        );
        segments.push(SegmentReport {
            shape,
            tarefas_page_sql: SegmentQuery::new(Table::Contacts, Some(&filter), TZ, Utc::now())
                .explain()
                .0,
            hand_count_sql: h.count.clone(),
            hand_page_sql: h.page.clone(),
            matched,
            selectivity: matched as f64 / data.contacts as f64,
            matched_other_account: matched_b,
        });
        filters.push((shape, filter, h));
    }
    stream_pair(pool, hand, a, None, HAND_WALK_SQL, ps, true).await?;

    let mut comparisons = Vec::new();
    let target = Some(args.target_ratio);
    let mut stream_memory = (Memory::default(), Memory::default());
    for (shape, filter, h) in &filters {
        let is_target = shape.name == COMPOUND.name;
        let accounts: &[(i64, String)] = if is_target {
            &[
                (a, "count".to_string()),
                (b, format!("count, other account ({})", data.other_contacts)),
            ]
        } else {
            &[(a, "count".to_string())]
        };
        for (account, what) in accounts {
            eprintln!("{} {what}: {} interleaved pairs …", shape.name, args.reps);
            let (mut ta, mut tb) = (Samples::default(), Samples::default());
            for rep in 0..args.reps {
                let (x, y, _) = count_pair(hand, *account, filter, &h.count, rep % 2 == 0).await?;
                ta.push(x);
                tb.push(y);
            }
            let t = (is_target && *account == a).then_some(args.target_ratio);
            comparisons.push(Comparison::new(
                &format!("{} {what}", shape.name),
                ta,
                tb,
                t,
            ));
        }

        eprintln!(
            "{} stream: {} interleaved pairs …",
            shape.name, args.stream_reps
        );
        let (mut ta, mut tb) = (Samples::default(), Samples::default());
        let mut pages = 0;
        for rep in 0..args.stream_reps {
            let (x, y) =
                stream_pair(pool, hand, a, Some(filter), &h.page, ps, rep % 2 == 0).await?;
            ta.push(x.elapsed);
            tb.push(y.elapsed);
            pages = x.pages;
            if is_target {
                stream_memory = (x.memory, y.memory);
            }
        }
        comparisons.push(Comparison::new(
            &format!("{} stream ids ({pages} pages)", shape.name),
            ta,
            tb,
            if is_target { target } else { None },
        ));
    }

    eprintln!("walk: every id of the big account …");
    let (mut ta, mut tb) = (Samples::default(), Samples::default());
    let mut walk = None;
    for rep in 0..args.stream_reps.clamp(1, 3) {
        let (x, y) = stream_pair(pool, hand, a, None, HAND_WALK_SQL, ps, rep % 2 == 0).await?;
        ta.push(x.elapsed);
        tb.push(y.elapsed);
        walk = Some(x);
    }
    let walk = walk.context("no walk")?;
    comparisons.push(Comparison::new(
        &format!("walk all ids ({} pages)", walk.pages),
        ta,
        tb,
        None,
    ));

    let report = Report {
        benchmark: "segment",
        taken_at: Utc::now(),
        machine: machine(pool).await?,
        page_size: ps,
        warm_up: WARM_UP,
        segments,
        targets_met: comparisons.iter().all(Comparison::met),
        comparisons,
        memory: MemoryReport {
            tarefas_stream: stream_memory.0,
            hand_stream: stream_memory.1,
            tarefas_walk: walk.memory,
            walk_ids: walk.digest.count,
            walk_pages: walk.pages,
        },
        data,
    };
    print_table(&report);
    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.out, serde_json::to_string_pretty(&report)?)
        .with_context(|| format!("writing {}", args.out.display()))?;
    println!("\nwrote {}", args.out.display());

    if args.explain {
        for (shape, filter, h) in &filters {
            explain(pool, a, shape, filter, h).await?;
        }
    }
    if args.strict && !report.targets_met {
        eprintln!("a target was missed");
        std::process::exit(3);
    }
    Ok(())
}

async fn machine(pool: &PgPool) -> Result<Machine> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    Ok(Machine {
        cpus: std::thread::available_parallelism().map_or(0, usize::from),
        cpu_model: cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string()),
        memory_bytes: meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb * 1024),
        postgres: db::server_version(pool).await?,
    })
}

fn print_table(r: &Report) {
    println!(
        "\nsegment benchmark: {} + {} contacts (two accounts, one table); {} cpus; {}",
        r.data.contacts,
        r.data.other_contacts,
        r.machine.cpus,
        r.machine
            .postgres
            .split(" on ")
            .next()
            .unwrap_or(&r.machine.postgres)
    );
    for s in &r.segments {
        println!(
            "  {}: {} ids ({:.2}%) of the big account, {} of the small one",
            s.shape.name,
            s.matched,
            100.0 * s.selectivity,
            s.matched_other_account
        );
    }
    println!(
        "\n| {:<40} | {:>12} | {:>12} | {:>6} | {:>13} | {:>6} |",
        "measure (medians, interleaved pairs)",
        "tarefas",
        "hand SQL",
        "ratio",
        "pair ratios",
        "target"
    );
    println!(
        "|{:-<42}|{:->14}|{:->14}|{:->8}|{:->15}|{:->8}|",
        "", "", "", "", "", ""
    );
    for c in &r.comparisons {
        let target = match c.target {
            Some(t) if c.met() => format!("≤{t} ok"),
            Some(t) => format!("≤{t} MISSED"),
            None => "-".to_string(),
        };
        println!(
            "| {:<40} | {:>12} | {:>12} | {:>6.2} | {:>13} | {:>6} |",
            format!("{} ×{}", c.name, c.tarefas.0.len()),
            secs(c.tarefas.median()),
            secs(c.hand.median()),
            c.ratio,
            format!("{:.2}–{:.2}", c.pair_ratio_min, c.pair_ratio_max),
            target
        );
    }
    let m = &r.memory;
    println!("\nresident memory while streaming (VmRSS):");
    for (name, mem, ids) in [
        (
            "compound, SegmentPages",
            m.tarefas_stream,
            r.segments[0].matched as u64,
        ),
        (
            "compound, hand loop",
            m.hand_stream,
            r.segments[0].matched as u64,
        ),
        ("walk all, SegmentPages", m.tarefas_walk, m.walk_ids),
    ] {
        println!(
            "  {name:<24} {ids:>8} ids: before {}, peak {}, first→last page {}",
            mib(mem.before as i64, false),
            mib(mem.peak as i64, false),
            mib(mem.growth(), true)
        );
    }
    println!(
        "\ntargets: {}",
        if r.targets_met { "met" } else { "MISSED" }
    );
}

/// Prints the plans of both sides (a count, and a keyset page from the middle of the
/// account), with actual rows and buffers, through the server's auto_explain (its output
/// arrives as notices).
async fn explain(
    pool: &PgPool,
    account: i64,
    shape: &Shape,
    filter: &Filter,
    hand: &Hand,
) -> Result<()> {
    notices::install();
    let mut conn = pool.acquire().await?;
    sqlx::raw_sql(
        "LOAD 'auto_explain';
         SET auto_explain.log_min_duration = 0;
         SET auto_explain.log_analyze = on;
         SET auto_explain.log_buffers = on;
         SET auto_explain.log_timing = on;
         SET client_min_messages = log",
    )
    .execute(&mut *conn)
    .await
    .context("loading auto_explain (needs a superuser)")?;
    let mut tx = conn.begin().await?;
    let now = tx_now(&mut tx).await?;
    let middle: i64 = sqlx::query_scalar(
        "SELECT id FROM contacts WHERE account_id = $1 ORDER BY id OFFSET $2 LIMIT 1",
    )
    .bind(account)
    .bind(500_000i64)
    .fetch_optional(&mut *tx)
    .await?
    .unwrap_or(0);
    let q = SegmentQuery::new(Table::Contacts, Some(filter), TZ, now);
    let mut plans = Vec::new();
    notices::take();
    segment::count(&mut *tx, account, &q).await?;
    plans.push(("tarefas count", notices::take()));
    sqlx::query_scalar::<_, i64>(&hand.count)
        .bind(account)
        .fetch_one(&mut *tx)
        .await?;
    plans.push(("hand-written count", notices::take()));
    segment::page(&mut *tx, account, &q, Some(middle), 5_000).await?;
    plans.push(("tarefas page", notices::take()));
    // The hand-written statements are cached: show the plan of its steady state.
    for _ in 0..WARM_UP {
        notices::take();
        sqlx::query_scalar::<_, i64>(&hand.page)
            .bind(account)
            .bind(middle)
            .bind(5_000i64)
            .fetch_all(&mut *tx)
            .await?;
    }
    plans.push(("hand-written page", notices::take()));
    tx.commit().await?;
    sqlx::raw_sql("SET client_min_messages = notice; SET auto_explain.log_min_duration = -1")
        .execute(&mut *conn)
        .await?;
    for (name, plan) in plans {
        println!("\n== {}: plan of the {name} ==\n{plan}", shape.name);
    }
    Ok(())
}

/// The server's notices, as sqlx reports them: tracing events of target
/// `sqlx::postgres::notice`, kept by a global subscriber that [`explain`] installs.
mod notices {
    use std::sync::Mutex;

    use tracing::field::{Field, Visit};
    use tracing::span::{Attributes, Id, Record};
    use tracing::{Event, Metadata, Subscriber};

    static TEXT: Mutex<String> = Mutex::new(String::new());

    struct Collector;

    struct Message<'a>(&'a mut String);

    impl Visit for Message<'_> {
        fn record_str(&mut self, field: &Field, value: &str) {
            if field.name() == "message" {
                self.0.push_str(value);
                self.0.push('\n');
            }
        }

        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            if field.name() == "message" {
                self.0.push_str(&format!("{value:?}"));
                self.0.push('\n');
            }
        }
    }

    impl Subscriber for Collector {
        fn enabled(&self, metadata: &Metadata<'_>) -> bool {
            metadata.target() == "sqlx::postgres::notice"
        }
        fn new_span(&self, _: &Attributes<'_>) -> Id {
            Id::from_u64(1)
        }
        fn record(&self, _: &Id, _: &Record<'_>) {}
        fn record_follows_from(&self, _: &Id, _: &Id) {}
        fn event(&self, event: &Event<'_>) {
            if let Ok(mut s) = TEXT.lock() {
                event.record(&mut Message(&mut s));
            }
        }
        fn enter(&self, _: &Id) {}
        fn exit(&self, _: &Id) {}
    }

    /// Installs the collector as the process's subscriber (once; later calls do nothing).
    pub fn install() {
        let _ = tracing::subscriber::set_global_default(Collector);
    }

    /// The notices collected since the last call.
    pub fn take() -> String {
        TEXT.lock()
            .map(|mut s| std::mem::take(&mut *s))
            .unwrap_or_default()
    }
}
