//! The terminal progress bar: a task that samples [`Progress`] a few times a second.

use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::cli::human_bytes;
use crate::progress::Progress;

pub struct Bar {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

pub fn spawn(progress: Arc<Progress>) -> Bar {
    let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr_with_hz(4));
    let style = ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} namespaces  {msg}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    let (stop, mut stopped) = oneshot::channel();
    let task = tokio::spawn(async move {
        let started = std::time::Instant::now();
        loop {
            let s = progress.snapshot();
            bar.set_length(s.namespaces_total);
            bar.set_position(s.namespaces_done);
            let rate = s.bytes as f64 / started.elapsed().as_secs_f64().max(0.001);
            bar.set_message(format!(
                "{} docs, {} read, {} stored, {}/s",
                s.documents,
                human_bytes(s.bytes),
                human_bytes(s.stored_bytes),
                human_bytes(rate as u64)
            ));
            tokio::select! {
                _ = &mut stopped => break,
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            }
        }
        bar.finish_and_clear();
    });
    Bar { stop, task }
}

impl Bar {
    pub async fn finish(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}
