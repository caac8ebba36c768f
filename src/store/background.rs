//! Clean-up work that outlives the value that started it (an `Upload` dropped unfinished).
//!
//! The tasks are counted so that [`super::Store::settle`] can wait for them: a Lambda
//! invocation that returns while an abort is in flight would freeze it half done.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::watch;

#[derive(Clone)]
pub(crate) struct Background {
    pending: Arc<watch::Sender<usize>>,
}

impl Default for Background {
    fn default() -> Self {
        Background {
            pending: Arc::new(watch::Sender::new(0)),
        }
    }
}

/// Decrements the count when the task ends, also when it is cancelled by runtime shutdown.
struct Pending(Arc<watch::Sender<usize>>);

impl Drop for Pending {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

impl Background {
    /// Runs `work` on the current tokio runtime; returns false when there is none.
    pub(crate) fn spawn<F>(&self, work: F) -> bool
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return false;
        };
        self.pending.send_modify(|n| *n += 1);
        let pending = Pending(Arc::clone(&self.pending));
        handle.spawn(async move {
            let _pending = pending;
            work.await;
        });
        true
    }

    pub(crate) async fn settle(&self) {
        let mut rx = self.pending.subscribe();
        // The sender lives in `self`, so the channel cannot close while we wait.
        let _ = rx.wait_for(|n| *n == 0).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn settle_waits_for_spawned_work() {
        let bg = Background::default();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = Arc::clone(&done);
        assert!(bg.spawn(async move {
            let _ = rx.await;
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
        }));
        let settled = bg.settle();
        tokio::pin!(settled);
        assert!(futures_util::poll!(&mut settled).is_pending());
        tx.send(()).unwrap();
        settled.await;
        assert!(done.load(std::sync::atomic::Ordering::SeqCst));
    }

    #[test]
    fn spawn_without_runtime_reports_failure() {
        assert!(!Background::default().spawn(async {}));
    }
}
