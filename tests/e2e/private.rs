//! Private instances of Redis, PostgreSQL and RabbitMQ for the fault tests: each on free
//! ports with its data in a temporary directory, stopped, started again and removed by the
//! test that owns it. The shared services on the default ports are never touched.
//!
//! The binaries are the ones `scripts/services.sh` installs (Debian's packages). PostgreSQL
//! and RabbitMQ refuse to run as root, so when the tests run as root those two run as the
//! `postgres` and `rabbitmq` users (`runuser`).

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free TCP port on 127.0.0.1 (free when asked; the service binds it soon after).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until `127.0.0.1:port` accepts connections; false after `within`.
pub fn wait_for_port(port: u16, within: Duration) -> bool {
    let started = Instant::now();
    while started.elapsed() < within {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// Waits until nothing listens on `127.0.0.1:port` any more; false after `within`.
pub fn wait_port_closed(port: u16, within: Duration) -> bool {
    let started = Instant::now();
    while started.elapsed() < within {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// A command run as `user` when we are root (else as ourselves).
fn as_user(user: &str, program: &str) -> Command {
    if is_root() {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", user, "--", program]);
        cmd
    } else {
        Command::new(program)
    }
}

/// A temporary directory that `user` (when we are root) owns.
fn temp_dir_for(user: &str, tag: &str) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix(&format!("tarefas-chaos-{tag}-"))
        .tempdir()
        .unwrap();
    if is_root() {
        let status = Command::new("chown")
            .args([&format!("{user}:"), dir.path().to_str().unwrap()])
            .status()
            .unwrap();
        assert!(status.success(), "chown {user} {}", dir.path().display());
    }
    dir
}

fn unique(tag: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{tag}{}x{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

// ---------------------------------------------------------------------------------------
// Redis

/// A private `redis-server` (append-only file on, as a production Redis holding
/// idempotency keys would have it, so that a stop and start keeps the keys).
pub struct PrivateRedis {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl PrivateRedis {
    /// Starts it on a free port.
    pub fn start() -> PrivateRedis {
        let mut redis = PrivateRedis {
            port: free_port(),
            dir: tempfile::Builder::new()
                .prefix("tarefas-chaos-redis-")
                .tempdir()
                .unwrap(),
            child: None,
        };
        redis.start_again();
        redis
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts the stopped server again on the same port and data directory.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "already running");
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--daemonize", "no"])
            .args(["--appendonly", "yes", "--appendfsync", "always"])
            .args(["--dir", self.dir.path().to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        assert!(
            wait_for_port(self.port, Duration::from_secs(20)),
            "private redis did not start on {}",
            self.port
        );
    }

    /// Stops it (SIGTERM: it flushes the append-only file and exits) and waits until the
    /// port is closed.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(10) {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        assert!(wait_port_closed(self.port, Duration::from_secs(10)));
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------
// PostgreSQL

fn pg_bin(name: &str) -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    // The newest major version.
    dirs.sort_by_key(|d| {
        d.file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.parse::<u32>().ok())
            .unwrap_or(0)
    });
    let dir = dirs
        .last()
        .expect("PostgreSQL is installed under /usr/lib/postgresql (scripts/services.sh)");
    dir.join("bin").join(name)
}

/// A private PostgreSQL cluster (trust authentication, on 127.0.0.1 only).
pub struct PrivatePostgres {
    port: u16,
    dir: tempfile::TempDir,
    running: bool,
}

impl PrivatePostgres {
    /// `initdb`s a cluster in a temporary directory and starts it on a free port.
    pub fn start() -> PrivatePostgres {
        let dir = temp_dir_for("postgres", "pg");
        let data = dir.path().join("data");
        let out = as_user("postgres", pg_bin("initdb").to_str().unwrap())
            .args(["-D", data.to_str().unwrap()])
            .args(["-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8"])
            .args(["--locale", "C.UTF-8"])
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut pg = PrivatePostgres {
            port: free_port(),
            dir,
            running: false,
        };
        pg.start_again();
        pg
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The URL of its `postgres` database (for [`crate::support::TestDb::new_on`]).
    pub fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn pg_ctl(&self, args: &[&str]) {
        let out = as_user("postgres", pg_bin("pg_ctl").to_str().unwrap())
            .args(["-D", self.data().to_str().unwrap()])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run pg_ctl");
        assert!(
            out.status.success(),
            "pg_ctl {args:?}: {} {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts the stopped server again (same port, same data).
    pub fn start_again(&mut self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("log");
        self.pg_ctl(&[
            "-w",
            "-t",
            "60",
            "-o",
            &options,
            "-l",
            log.to_str().unwrap(),
            "start",
        ]);
        self.running = true;
        assert!(wait_for_port(self.port, Duration::from_secs(30)));
    }

    /// Stops it abruptly (`pg_ctl stop -m immediate`: every backend is dropped, the next
    /// start runs crash recovery), like a crash of the database host's process.
    pub fn crash(&mut self) {
        self.pg_ctl(&["-w", "-m", "immediate", "stop"]);
        self.running = false;
        assert!(wait_port_closed(self.port, Duration::from_secs(10)));
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        if self.running {
            let _ = as_user("postgres", pg_bin("pg_ctl").to_str().unwrap())
                .args(["-D", self.data().to_str().unwrap()])
                .args(["-w", "-m", "immediate", "stop"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

// ---------------------------------------------------------------------------------------
// RabbitMQ

/// A private RabbitMQ node (its own node name, ports, Mnesia and log directories, no
/// plugins) with its own epmd on its own port.
///
/// Its own epmd keeps it from ever meeting the shared node on 5672 over Erlang
/// distribution (same machine, same cookie): stopping and killing it mid-run must not
/// disturb the node every other test uses.
pub struct PrivateRabbit {
    node: String,
    port: u16,
    dist_port: u16,
    epmd_port: u16,
    dir: tempfile::TempDir,
    running: bool,
    /// `runuser … rabbitmq-server`, which exits when the node stops.
    child: Option<Child>,
}

impl PrivateRabbit {
    /// Starts a node on free ports (RabbitMQ takes some seconds to boot).
    pub fn start() -> PrivateRabbit {
        let dir = temp_dir_for("rabbitmq", "rmq");
        let port = free_port();
        let conf = dir.path().join("rabbitmq.conf");
        std::fs::write(
            &conf,
            format!("listeners.tcp.1 = 127.0.0.1:{port}\nloopback_users = none\n"),
        )
        .unwrap();
        std::fs::write(dir.path().join("enabled_plugins"), "[].\n").unwrap();
        if is_root() {
            let _ = Command::new("chown")
                .args(["-R", "rabbitmq:", dir.path().to_str().unwrap()])
                .status();
        }
        let mut rabbit = PrivateRabbit {
            node: format!("{}@localhost", unique("tchaos")),
            port,
            dist_port: free_port(),
            epmd_port: free_port(),
            dir,
            running: false,
            child: None,
        };
        rabbit.start_again();
        rabbit
    }

    /// `amqp://guest:guest@127.0.0.1:PORT/%2f`.
    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_str().unwrap().to_string()
    }

    /// Starts the stopped node again (same name, ports and Mnesia: durable queues and
    /// their messages survive).
    pub fn start_again(&mut self) {
        let home = if Path::new("/var/lib/rabbitmq/.erlang.cookie").exists() && is_root() {
            "/var/lib/rabbitmq".to_string()
        } else {
            std::env::var("HOME").unwrap_or_else(|_| "/tmp".into())
        };
        let mut cmd = as_user("rabbitmq", "/usr/lib/rabbitmq/bin/rabbitmq-server");
        cmd.current_dir(self.dir.path())
            .env("HOME", home)
            .env("ERL_EPMD_PORT", self.epmd_port.to_string())
            .env("RABBITMQ_NODENAME", &self.node)
            .env("RABBITMQ_NODE_PORT", self.port.to_string())
            .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
            .env("RABBITMQ_MNESIA_BASE", self.path("mnesia"))
            .env("RABBITMQ_LOG_BASE", self.path("log"))
            .env(
                "RABBITMQ_ENABLED_PLUGINS_FILE",
                self.path("enabled_plugins"),
            )
            .env("RABBITMQ_CONFIG_FILE", self.path("rabbitmq.conf"))
            .env("RABBITMQ_PID_FILE", self.path("pid"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // `runuser` keeps the environment we give it (no login shell).
        self.child = Some(cmd.spawn().expect("start rabbitmq-server"));
        self.running = true;
        assert!(
            wait_for_port(self.port, Duration::from_secs(90)),
            "private RabbitMQ node {} did not open {}; see {}",
            self.node,
            self.port,
            self.path("log")
        );
    }

    /// Stops the node (`rabbitmqctl -n NODE stop`, which waits for it to halt).
    pub fn stop(&mut self) {
        assert!(self.stop_quietly(), "node {} did not stop", self.node);
    }

    fn stop_quietly(&mut self) -> bool {
        let _ = Command::new("rabbitmqctl")
            .env("ERL_EPMD_PORT", self.epmd_port.to_string())
            .args(["-n", &self.node, "stop", &self.path("pid")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        self.running = false;
        let closed = wait_port_closed(self.port, Duration::from_secs(30));
        if let Some(mut child) = self.child.take() {
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(10) {
                if let Ok(Some(_)) = child.try_wait() {
                    return closed;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        closed
    }
}

impl Drop for PrivateRabbit {
    fn drop(&mut self) {
        if self.running && !self.stop_quietly() {
            // Last resort: the node's own process, by the pid it wrote.
            if let Ok(pid) = std::fs::read_to_string(self.path("pid")) {
                let _ = Command::new("kill").args(["-KILL", pid.trim()]).status();
            }
        }
        // The node's own epmd (started by the node, on its own port) goes with it.
        let _ = Command::new("epmd")
            .env("ERL_EPMD_PORT", self.epmd_port.to_string())
            .arg("-kill")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
