//! Test support: an isolated RabbitMQ environment per test.
//!
//! Each test gets its own vhost (`rabbitmqctl add_vhost`, permissions for the
//! URL's user), deleted when the test ends, so tests never see each other's
//! queues and never touch anything else on the shared server. If
//! `rabbitmqctl` cannot be used, the test falls back to a unique name prefix
//! in the URL's vhost and deletes its exchanges and queues at the end.

#![allow(dead_code)]

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
use lapin::{Connection, ConnectionProperties};
use tarefas_broker::{Broker, BrokerConfig, Names};
use tarefas_proto::v1::{self, ExecuteTask, ItemBatch};
use tarefas_proto::SCHEMA_VERSION;

/// Short retry delays for tests.
pub const DELAYS: [Duration; 2] = [Duration::from_millis(200), Duration::from_millis(400)];

pub struct TestEnv {
    pub url: String,
    pub names: Names,
    /// Our own vhost, deleted on drop; `None` in prefix mode (the queues and
    /// exchanges of `names` are deleted on drop instead).
    vhost: Option<String>,
}

fn base_url() -> String {
    BrokerConfig::url_from_env()
}

fn unique(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "tarefas-broker-test-{tag}-{}-{}-{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn rabbitmqctl(args: &[&str]) -> Result<(), String> {
    let out = Command::new("rabbitmqctl")
        .args(["-q"])
        .args(args)
        .output()
        .map_err(|e| format!("cannot run rabbitmqctl: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "rabbitmqctl {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// The user name in an amqp:// URL.
fn url_user(url: &str) -> String {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    match rest.split('/').next().unwrap_or_default().rsplit_once('@') {
        Some((userinfo, _)) => userinfo.split(':').next().unwrap_or("guest").to_owned(),
        None => "guest".to_owned(),
    }
}

/// `url` with its vhost replaced.
fn with_vhost(url: &str, vhost: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("amqp URL");
    let authority = rest.split('/').next().unwrap_or_default();
    let authority = authority.split('?').next().unwrap_or_default();
    format!("{scheme}://{authority}/{vhost}")
}

impl TestEnv {
    /// A fresh environment with the short test delays.
    pub fn new(tag: &str) -> Self {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "warn,lapin=off".into()),
            )
            .with_test_writer()
            .try_init();
        let name = unique(tag);
        let names = Names::new("t").unwrap().with_retry_delays(DELAYS).unwrap();
        let base = base_url();
        let vhost_ready = rabbitmqctl(&["add_vhost", &name]).and_then(|()| {
            rabbitmqctl(&[
                "set_permissions",
                "-p",
                &name,
                &url_user(&base),
                ".*",
                ".*",
                ".*",
            ])
        });
        match vhost_ready {
            Ok(()) => TestEnv {
                url: with_vhost(&base, &name),
                names,
                vhost: Some(name),
            },
            Err(e) => {
                eprintln!("no vhost of our own ({e}); using a unique prefix instead");
                let _ = rabbitmqctl(&["delete_vhost", &name]);
                TestEnv {
                    url: base,
                    names: Names::new(name).unwrap().with_retry_delays(DELAYS).unwrap(),
                    vhost: None,
                }
            }
        }
    }

    pub fn config(&self) -> BrokerConfig {
        let mut config = BrokerConfig::new(self.url.clone(), self.names.clone());
        config.startup_timeout = Duration::from_secs(20);
        config.publish_timeout = Duration::from_secs(15);
        config.backoff.max = Duration::from_millis(500);
        config.connection_name = "tarefas-broker-test".to_owned();
        config
    }

    pub async fn broker(&self) -> Broker {
        Broker::connect_with(self.config()).await.expect("connect")
    }

    /// A plain lapin connection to the test's vhost.
    pub async fn raw_connection(&self) -> Connection {
        Connection::connect(&self.url, ConnectionProperties::default())
            .await
            .expect("raw connection")
    }

    /// Whether this environment has a vhost of its own (needed to force-close
    /// connections server-side without touching anybody else's).
    pub fn has_own_vhost(&self) -> bool {
        self.vhost.is_some()
    }

    /// Close every connection to this test's vhost from the server side, as
    /// a broker restart would. Only in vhost mode.
    pub fn close_server_side_connections(&self) -> bool {
        let Some(vhost) = &self.vhost else {
            return false;
        };
        rabbitmqctl(&[
            "close_all_connections",
            "-p",
            vhost,
            "tarefas-broker test: forced close",
        ])
        .expect("close_all_connections");
        true
    }

    /// Delete what the test created: the vhost, or in prefix mode the queues
    /// and exchanges of its names. (Dropping does it too, also when a test
    /// fails; this only makes the end of a test explicit.)
    pub async fn finish(self) {
        drop(self);
    }

    fn cleanup(&mut self) {
        match self.vhost.take() {
            Some(vhost) => {
                if let Err(e) = rabbitmqctl(&["delete_vhost", &vhost]) {
                    eprintln!("{e}");
                }
            }
            None => {
                // Drop is synchronous and may run inside a runtime: clean up
                // on a thread with a runtime of its own.
                let (url, names) = (self.url.clone(), self.names.clone());
                let cleaner = std::thread::spawn(move || {
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap()
                        .block_on(delete_objects(&url, &names));
                });
                let _ = cleaner.join();
            }
        }
    }
}

/// Delete the queues and exchanges of `names` (prefix mode).
async fn delete_objects(url: &str, names: &Names) {
    let Ok(conn) = Connection::connect(url, ConnectionProperties::default()).await else {
        eprintln!("cannot connect to delete the test's queues");
        return;
    };
    let channel = conn.create_channel().await.unwrap();
    for queue in names.all_queues() {
        let _ = channel
            .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
            .await;
    }
    for exchange in names.all_exchanges() {
        let _ = channel
            .exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
            .await;
    }
    let _ = conn.close(200, "test done".into()).await;
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        self.cleanup();
    }
}

pub fn execute_task(task_id: i64) -> ExecuteTask {
    ExecuteTask {
        schema_version: SCHEMA_VERSION,
        task_id,
        account: "acme".to_owned(),
        request_id: format!("req-{task_id}"),
        trigger: v1::Trigger::Manual.into(),
        requested_by: "ana@acme.example".to_owned(),
        ..Default::default()
    }
}

pub fn item_batch(run_id: i64, items: impl IntoIterator<Item = i64>) -> ItemBatch {
    ItemBatch {
        schema_version: SCHEMA_VERSION,
        run_id,
        task_id: 42,
        account: "acme".to_owned(),
        item_ids: items.into_iter().collect(),
        attempt: 1,
        ..Default::default()
    }
}

/// A shutdown signal: the future to give the consumer, and the trigger.
pub fn shutdown_signal() -> (
    tokio::sync::oneshot::Sender<()>,
    impl std::future::Future<Output = ()> + Send + 'static,
) {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    (tx, async move {
        let _ = rx.await;
    })
}

/// Poll `check` until it is true or `timeout` passes.
pub async fn eventually<F, Fut>(timeout: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
