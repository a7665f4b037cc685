//! One shutdown signal for every service: Ctrl-C or SIGTERM cancels the process's one
//! [`CancellationToken`], which each service is given (or a child of it).

use std::sync::OnceLock;

use tokio_util::sync::CancellationToken;

/// The process's shutdown token, cancelled on Ctrl-C or SIGTERM. Created (and the signals
/// listened to) on the first call; every later call returns the same token.
pub fn token() -> CancellationToken {
    static TOKEN: OnceLock<CancellationToken> = OnceLock::new();
    TOKEN
        .get_or_init(|| {
            let token = CancellationToken::new();
            let cancel = token.clone();
            tokio::spawn(async move {
                signal().await;
                cancel.cancel();
            });
            token
        })
        .clone()
}

/// Completes on Ctrl-C or SIGTERM.
async fn signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    eprintln!("shutting down");
}
