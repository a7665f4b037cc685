//! Running the `tarefas` binary and reading what it printed.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// What one run of the binary produced.
#[derive(Debug)]
pub struct Output {
    /// Exit status code.
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Output {
    /// Standard output's lines.
    pub fn lines(&self) -> Vec<&str> {
        self.stdout.lines().collect()
    }
}

/// The repository's root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// Runs `tarefas ARGS` with `stdin` as standard input.
pub fn tarefas_with_stdin(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tarefas"))
        .args(args)
        .current_dir(repo())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tarefas");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs `tarefas ARGS`.
pub fn tarefas(args: &[&str]) -> Output {
    tarefas_with_stdin(args, "")
}

/// Writes `text` to a temporary file with `ext`, returning its path.
pub fn temp_file(text: &str, ext: &str) -> tempfile::TempPath {
    let mut f = tempfile::Builder::new().suffix(ext).tempfile().unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f.into_temp_path()
}

/// A fresh database for one test, dropped at the end. `url()` is what the binary gets as
/// `TAREFAS_DATABASE_URL`.
pub struct TestDb {
    name: String,
    /// URL of the server's `postgres` database (the shared server unless made with
    /// [`TestDb::new_on`]).
    admin: String,
}

fn admin_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

impl TestDb {
    /// A new, migrated database.
    pub fn new() -> TestDb {
        TestDb::new_on(&admin_url())
    }

    /// A new, migrated database on the server whose `postgres` database is at `admin`.
    pub fn new_on(admin: &str) -> TestDb {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let db = TestDb {
            name: format!(
                "tarefas_e2e_{}_{}_{nanos}",
                std::process::id(),
                N.fetch_add(1, Ordering::SeqCst)
            ),
            admin: admin.to_string(),
        };
        let out = db.tarefas(&["migrate"]);
        assert_eq!(out.code, 0, "migrate: {out:?}");
        db
    }

    /// The database's URL.
    pub fn url(&self) -> String {
        let admin = self.admin.clone();
        let base = admin
            .rsplit_once('/')
            .map(|(b, _)| b.to_string())
            .unwrap_or(admin);
        format!("{base}/{}", self.name)
    }

    /// Runs `tarefas ARGS` against this database with extra environment variables.
    pub fn tarefas_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tarefas"));
        cmd.args(args)
            .current_dir(repo())
            .env("TAREFAS_DATABASE_URL", self.url())
            .env_remove("TAREFAS_ACCOUNT");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("run tarefas");
        Output {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Runs `tarefas ARGS` against this database.
    pub fn tarefas(&self, args: &[&str]) -> Output {
        self.tarefas_env(args, &[])
    }

    /// Runs one SQL query returning one text column, for assertions.
    pub fn query_texts(&self, sql: &str) -> Vec<String> {
        let url = self.url();
        let sql = sql.to_string();
        runtime().block_on(async move {
            let pool = sqlx::PgPool::connect(&url).await.unwrap();
            let rows: Vec<(String,)> = sqlx::query_as(&sql).fetch_all(&pool).await.unwrap();
            pool.close().await;
            rows.into_iter().map(|r| r.0).collect()
        })
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (name, admin) = (self.name.clone(), self.admin.clone());
        runtime().block_on(async move {
            if let Ok(pool) = sqlx::PgPool::connect(&admin).await {
                let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&pool)
                    .await;
                pool.close().await;
            }
        });
    }
}

/// A small runtime for the few async steps of these synchronous tests.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A `tarefas fake-huggy` process, stopped when dropped.
pub struct FakeProcess {
    child: std::process::Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
}

impl FakeProcess {
    /// Starts `tarefas fake-huggy` with `args` on a free port and waits until it answers.
    pub fn start(args: &[&str]) -> FakeProcess {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let listen = format!("127.0.0.1:{port}");
        let mut child = Command::new(env!("CARGO_BIN_EXE_tarefas"))
            .arg("fake-huggy")
            .args(["--listen", &listen])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let url = format!("http://{listen}");
        for _ in 0..200 {
            if std::net::TcpStream::connect(&listen).is_ok() {
                return FakeProcess { child, url };
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("fake-huggy did not start on {listen}");
    }
}

impl Drop for FakeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A whole Tarefas on this machine for one test: its own database, queue and key prefix, a
/// fake Huggy process, and worker and scheduler processes started on demand.
pub struct Stack {
    /// The database.
    pub db: TestDb,
    /// The fake Huggy.
    pub fake: FakeProcess,
    prefix: String,
    children: Vec<(String, std::process::Child)>,
    /// Extra environment for every command (e.g. private services' URLs).
    extra_env: Vec<(&'static str, String)>,
}

impl Stack {
    /// Fake Huggy with `fake_args`, a migrated database, account `demo` (rate `rate`/s)
    /// synced from the fake.
    pub fn new(fake_args: &[&str], rate: u32) -> Stack {
        Stack::new_with(fake_args, rate, TestDb::new(), Vec::new())
    }

    /// [`Stack::new`] on database `db`, with `extra_env` for every command it runs (e.g.
    /// `TAREFAS_AMQP_URL` or `TAREFAS_REDIS_URL` of a private service).
    pub fn new_with(
        fake_args: &[&str],
        rate: u32,
        db: TestDb,
        extra_env: Vec<(&'static str, String)>,
    ) -> Stack {
        let fake = FakeProcess::start(fake_args);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let stack = Stack {
            db,
            fake,
            prefix: format!("e2e-{}-{nanos}", std::process::id()),
            children: Vec::new(),
            extra_env,
        };
        let out = stack.tarefas(&[
            "account",
            "add",
            "demo",
            "--token-env",
            "DEMO_TOKEN",
            "--rate-limit",
            &format!("{rate}/s"),
        ]);
        assert_eq!(out.code, 0, "{out:?}");
        let out = stack.tarefas(&["sync", "--once"]);
        assert_eq!(out.code, 0, "{out:?}");
        stack
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        let mut env = vec![
            ("DEMO_TOKEN", "fake-huggy-token".into()),
            ("TAREFAS_HUGGY_API_URL", self.fake.url.clone()),
            ("TAREFAS_QUEUE_PREFIX", self.prefix.clone()),
            ("TAREFAS_DATABASE_URL", self.db.url()),
            ("RUST_LOG", "warn".into()),
        ];
        env.extend(self.extra_env.iter().cloned());
        env
    }

    /// The stack's queue (and Redis key) prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Runs `tarefas ARGS` with the stack's settings.
    pub fn tarefas(&self, args: &[&str]) -> Output {
        let env = self.env();
        let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        self.db.tarefas_env(args, &pairs)
    }

    /// Starts a long-running `tarefas ARGS` (worker, scheduler); returns its index.
    pub fn spawn(&mut self, args: &[&str]) -> usize {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tarefas"));
        cmd.args(args)
            .current_dir(repo())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (k, v) in self.env() {
            cmd.env(k, v);
        }
        self.children
            .push((args.join(" "), cmd.spawn().expect("spawn tarefas")));
        self.children.len() - 1
    }

    /// Sends SIGTERM to a spawned process and waits for it (at most `within`); returns
    /// whether it exited successfully in time.
    pub fn terminate(&mut self, index: usize, within: std::time::Duration) -> bool {
        let child = &mut self.children[index].1;
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let started = std::time::Instant::now();
        while started.elapsed() < within {
            if let Ok(Some(status)) = child.try_wait() {
                return status.success();
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        false
    }

    /// Kills a spawned process with SIGKILL (no drain, no goodbye) and reaps it.
    pub fn kill(&mut self, index: usize) {
        let child = &mut self.children[index].1;
        let _ = child.kill();
        let _ = child.wait();
    }

    /// The fake's call log (`GET /__fake/calls`).
    pub fn calls(&self) -> Vec<serde_json::Value> {
        let url = format!("{}/__fake/calls", self.fake.url);
        runtime().block_on(async move {
            let v: serde_json::Value = reqwest::get(url).await.unwrap().json().await.unwrap();
            match v {
                serde_json::Value::Array(a) => a,
                other => other
                    .get("calls")
                    .and_then(|c| c.as_array())
                    .cloned()
                    .unwrap_or_default(),
            }
        })
    }

    /// Successful execFlow calls by contact id, from the fake's call log (what customers got).
    pub fn exec_flows(&self) -> std::collections::BTreeMap<i64, usize> {
        let mut by_contact = std::collections::BTreeMap::new();
        for c in self.calls() {
            if c["route"].as_str().is_some_and(|r| r.contains("execFlow"))
                && c["status"]
                    .as_u64()
                    .is_some_and(|s| (200..300).contains(&s))
            {
                *by_contact
                    .entry(c["contact_id"].as_i64().unwrap())
                    .or_insert(0) += 1;
            }
        }
        by_contact
    }

    /// Runs one SQL query returning text, on the stack's database.
    pub fn query(&self, sql: &str) -> Vec<String> {
        self.db.query_texts(sql)
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        // The stack's queues and exchanges go too: left behind, every test's quorum
        // queues pile up in the shared RabbitMQ (each a Raft log and processes) until the
        // node is too slow to answer new connections.
        let url = self
            .extra_env
            .iter()
            .find(|(k, _)| *k == tarefas_broker::AMQP_URL_ENV)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(tarefas_broker::BrokerConfig::url_from_env);
        if let Ok(names) = tarefas_broker::Names::new(self.prefix.clone()) {
            let _ = runtime().block_on(tarefas_broker::delete_topology(
                &url,
                &names,
                std::time::Duration::from_secs(10),
            ));
        }
    }
}
