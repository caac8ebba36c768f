//! The signals that ask a run to stop: SIGTERM (systemd, Kubernetes, `timeout`, ECS) and
//! SIGINT (Ctrl-C). A command that gets one stops cleanly instead of dying where it stands.

/// Resolves when SIGTERM or SIGINT arrives, with the signal's name. If the handlers cannot be
/// installed, never resolves (the process then keeps the default behaviour).
pub async fn stop_requested() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        }
    }
    #[cfg(not(unix))]
    {
        match tokio::signal::ctrl_c().await {
            Ok(()) => "SIGINT",
            Err(_) => std::future::pending().await,
        }
    }
}
