//! `tarefas fake-huggy`: a stand-in for Huggy's API with a deterministic data set, for tests,
//! the demo and the benchmarks.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Args;
use tarefas_fake_huggy::{serve, FakeConfig, Faults, DEFAULT_TOKEN};

/// Flags of `fake-huggy`.
#[derive(Debug, Args)]
pub struct FakeArgs {
    /// Address to listen on.
    #[arg(
        long,
        default_value = "127.0.0.1:8089",
        env = "TAREFAS_FAKE_HUGGY_LISTEN"
    )]
    listen: SocketAddr,
    /// Contacts to generate.
    #[arg(long, default_value_t = 10_000)]
    contacts: usize,
    /// Chats to generate (each belongs to a contact).
    #[arg(long, default_value_t = 6_000)]
    chats: usize,
    /// Seed: the same seed gives the same data set.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// The API token clients must send (Authorization: Bearer …).
    #[arg(long, default_value = DEFAULT_TOKEN, env = "TAREFAS_FAKE_HUGGY_TOKEN", hide_env_values = true)]
    token: String,
    /// Latency added to every API answer, in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Share (0..1) of API calls answered 429.
    #[arg(long, default_value_t = 0.0)]
    rate_429: f64,
    /// Retry-After seconds sent with injected 429s.
    #[arg(long)]
    retry_after: Option<u64>,
    /// Share (0..1) of API calls answered 503.
    #[arg(long, default_value_t = 0.0)]
    rate_5xx: f64,
    /// Requests per second served before answering 429.
    #[arg(long)]
    capacity_rps: Option<f64>,
    /// Don't keep the call log (GET /__fake/calls) — for long benchmarks.
    #[arg(long)]
    no_call_log: bool,
}

/// Serves until Ctrl-C or SIGTERM.
pub async fn run(args: FakeArgs) -> anyhow::Result<ExitCode> {
    let config = FakeConfig {
        contacts: args.contacts,
        chats: args.chats,
        seed: args.seed,
        token: args.token,
        faults: Faults {
            latency_ms: args.latency_ms,
            rate_429: args.rate_429,
            retry_after_secs: args.retry_after,
            rate_5xx: args.rate_5xx,
            capacity_rps: args.capacity_rps,
            ..Faults::default()
        },
        record_calls: !args.no_call_log,
        ..FakeConfig::default()
    };
    if let Err(e) = config.faults.validate() {
        eprintln!("error: {e}");
        return Ok(ExitCode::from(crate::EXIT_INVALID));
    }
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", args.listen))?;
    eprintln!(
        "fake Huggy on http://{} ({} contacts, {} chats, seed {})",
        listener.local_addr()?,
        config.contacts,
        config.chats,
        config.seed
    );
    serve(listener, config, crate::shutdown::token().cancelled_owned()).await?;
    Ok(ExitCode::SUCCESS)
}
