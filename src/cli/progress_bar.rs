//! The terminal progress display: a task that samples [`Progress`] a few times a second.
//! One overall bar always; when the operation follows namespaces (restore does), also one
//! bar per namespace being worked on (at most [`Progress::parallel`] of them) and one summary
//! line for the others, so hundreds of namespaces never scroll.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::human_bytes;
use nightdump::progress::{NamespaceProgress, NamespaceState, Progress};

pub struct Bar {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar())
}

pub fn spawn(progress: Arc<Progress>) -> Bar {
    let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(4));
    let overall = multi.add(ProgressBar::new(0));
    overall.set_style(style(
        "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} namespaces  {msg}",
    ));
    let (stop, mut stopped) = oneshot::channel();
    let task = tokio::spawn(async move {
        let started = Instant::now();
        let mut lines = Lines::default();
        loop {
            let s = progress.snapshot();
            overall.set_length(s.namespaces_total);
            overall.set_position(s.namespaces_done);
            let rate = s.bytes as f64 / started.elapsed().as_secs_f64().max(0.001);
            let stored = if s.stored_bytes > 0 {
                format!(", {} stored", human_bytes(s.stored_bytes))
            } else {
                String::new()
            };
            overall.set_message(format!(
                "{} docs, {}{stored}, {}/s",
                s.documents,
                human_bytes(s.bytes),
                human_bytes(rate as u64)
            ));
            lines.update(&multi, &overall, &progress);
            tokio::select! {
                _ = &mut stopped => break,
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            }
        }
        // One last look, so a failure in the final moments still leaves its line.
        lines.update(&multi, &overall, &progress);
        lines.clear(&multi);
        overall.finish_and_clear();
        let _ = multi.clear();
    });
    Bar { stop, task }
}

impl Bar {
    pub async fn finish(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// The per-namespace bars on screen and the summary line under them.
#[derive(Default)]
struct Lines {
    shown: Vec<Shown>,
    summary: Option<ProgressBar>,
    /// Namespaces whose failure was already printed.
    reported: usize,
}

struct Shown {
    ns: Arc<NamespaceProgress>,
    bar: ProgressBar,
    since: Instant,
}

const NAME_WIDTH: usize = 36;

impl Lines {
    fn update(&mut self, multi: &MultiProgress, overall: &ProgressBar, progress: &Progress) {
        let all = progress.namespaces();
        if all.is_empty() {
            return;
        }
        let limit = usize::try_from(progress.parallel.load(Ordering::Relaxed))
            .unwrap_or(1)
            .max(1);
        let summary = self
            .summary
            .get_or_insert_with(|| {
                let bar = multi.insert_before(overall, ProgressBar::new_spinner());
                bar.set_style(style("  {msg}"));
                bar
            })
            .clone();
        // Finished bars collapse into the summary; failures also leave a line above.
        self.shown.retain(|s| {
            let state = s.ns.state();
            if state.active() {
                return true;
            }
            s.bar.finish_and_clear();
            multi.remove(&s.bar);
            false
        });
        let failed: Vec<&Arc<NamespaceProgress>> = all
            .iter()
            .filter(|n| n.state() == NamespaceState::Failed)
            .collect();
        for ns in failed.iter().skip(self.reported) {
            let _ = multi.println(format!("✗ {} {}", ns.name, describe(&snapshot(ns, None))));
        }
        self.reported = failed.len();
        for ns in all.iter().filter(|n| n.state().active()) {
            if self.shown.len() >= limit {
                break;
            }
            if self.shown.iter().any(|s| Arc::ptr_eq(&s.ns, ns)) {
                continue;
            }
            let bar = multi.insert_before(&summary, ProgressBar::new(0));
            let template = if ns.bytes_total.or(ns.documents_total).is_some() {
                "  {prefix} {bar:20} {msg}"
            } else {
                "  {prefix} {spinner:^20} {msg}"
            };
            bar.set_style(style(template));
            bar.set_prefix(fit(&ns.name, NAME_WIDTH));
            self.shown.push(Shown {
                ns: Arc::clone(ns),
                bar,
                since: Instant::now(),
            });
        }
        for s in &self.shown {
            let line = snapshot(&s.ns, Some(s.since.elapsed()));
            let (pos, len) = match (s.ns.bytes_total, s.ns.documents_total) {
                (Some(total), _) if total > 0 => (line.bytes, total),
                (_, Some(total)) => (line.documents, total),
                _ => (0, 0),
            };
            s.bar.set_length(len);
            s.bar.set_position(pos.min(len));
            s.bar.set_message(describe(&line));
            s.bar.tick();
        }
        let mut counts = Counts::default();
        for ns in &all {
            counts.add(ns.state());
        }
        counts.active = counts.active.saturating_sub(self.shown.len());
        summary.set_message(counts.to_string());
    }

    fn clear(&mut self, multi: &MultiProgress) {
        for s in self.shown.drain(..) {
            s.bar.finish_and_clear();
            multi.remove(&s.bar);
        }
        if let Some(summary) = self.summary.take() {
            summary.finish_and_clear();
            multi.remove(&summary);
        }
    }
}

/// What one namespace's line says.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Line {
    pub state: NamespaceState,
    pub documents: u64,
    pub documents_total: Option<u64>,
    pub bytes: u64,
    pub bytes_total: Option<u64>,
    /// How long its line has been on screen; gives the rate.
    pub elapsed: Option<Duration>,
}

fn snapshot(ns: &NamespaceProgress, elapsed: Option<Duration>) -> Line {
    Line {
        state: ns.state(),
        documents: ns.documents.load(Ordering::Relaxed),
        documents_total: ns.documents_total,
        bytes: ns.bytes.load(Ordering::Relaxed),
        bytes_total: ns.bytes_total,
        elapsed,
    }
}

fn of_total(n: u64, total: Option<u64>, show: impl Fn(u64) -> String) -> String {
    match total {
        Some(t) => format!("{}/{}", show(n), show(t)),
        None => show(n),
    }
}

pub fn describe(l: &Line) -> String {
    let docs = of_total(l.documents, l.documents_total, |n| n.to_string());
    match l.state {
        NamespaceState::Queued => "queued".into(),
        NamespaceState::Creating => "creating".into(),
        NamespaceState::Inserting => {
            let bytes = of_total(l.bytes, l.bytes_total, human_bytes);
            let rate = l
                .elapsed
                .filter(|e| e.as_secs_f64() >= 0.5)
                .map(|e| {
                    format!(
                        ", {}/s",
                        human_bytes((l.bytes as f64 / e.as_secs_f64()) as u64)
                    )
                })
                .unwrap_or_default();
            format!("inserting {docs} docs, {bytes}{rate}")
        }
        NamespaceState::Loaded => format!("{} docs inserted, indexes pending", l.documents),
        NamespaceState::Indexes => format!("indexes ({} docs inserted)", l.documents),
        NamespaceState::Done => format!("done, {} docs", l.documents),
        NamespaceState::Failed => format!("failed after {} docs", l.documents),
    }
}

/// The summary line: how many namespaces are in each state beyond those with a bar.
#[derive(Debug, Default, PartialEq)]
pub struct Counts {
    pub done: usize,
    pub failed: usize,
    pub active: usize,
    pub loaded: usize,
    pub queued: usize,
}

impl Counts {
    fn add(&mut self, state: NamespaceState) {
        match state {
            NamespaceState::Done => self.done += 1,
            NamespaceState::Failed => self.failed += 1,
            NamespaceState::Loaded => self.loaded += 1,
            NamespaceState::Queued => self.queued += 1,
            NamespaceState::Creating | NamespaceState::Inserting | NamespaceState::Indexes => {
                self.active += 1
            }
        }
    }
}

impl std::fmt::Display for Counts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = vec![format!("{} done", self.done)];
        for (n, what) in [
            (self.failed, "failed"),
            (self.active, "more in progress"),
            (self.loaded, "awaiting indexes"),
            (self.queued, "queued"),
        ] {
            if n > 0 {
                parts.push(format!("{n} {what}"));
            }
        }
        write!(f, "namespaces: {}", parts.join(", "))
    }
}

/// `name` cut to `width` characters (keeping its end, which tells collections apart), padded.
fn fit(name: &str, width: usize) -> String {
    let chars = name.chars().count();
    if chars <= width {
        format!("{name:<width$}")
    } else {
        let tail: String = name.chars().skip(chars - (width - 1)).collect();
        format!("…{tail}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(state: NamespaceState) -> Line {
        Line {
            state,
            documents: 1500,
            documents_total: Some(6000),
            bytes: 3 * 1024 * 1024,
            bytes_total: Some(12 * 1024 * 1024),
            elapsed: Some(Duration::from_secs(2)),
        }
    }

    #[test]
    fn each_state_says_what_it_is() {
        use NamespaceState::*;
        assert_eq!(describe(&line(Queued)), "queued");
        assert_eq!(describe(&line(Creating)), "creating");
        assert_eq!(
            describe(&line(Inserting)),
            format!(
                "inserting 1500/6000 docs, {}/{}, {}/s",
                human_bytes(3 * 1024 * 1024),
                human_bytes(12 * 1024 * 1024),
                human_bytes(3 * 1024 * 1024 / 2)
            )
        );
        assert_eq!(
            describe(&line(Loaded)),
            "1500 docs inserted, indexes pending"
        );
        assert_eq!(describe(&line(Indexes)), "indexes (1500 docs inserted)");
        assert_eq!(describe(&line(Done)), "done, 1500 docs");
        assert_eq!(describe(&line(Failed)), "failed after 1500 docs");
    }

    #[test]
    fn unknown_totals_and_a_fresh_line_show_only_what_is_known() {
        let l = Line {
            documents_total: None,
            bytes_total: None,
            elapsed: Some(Duration::from_millis(100)),
            ..line(NamespaceState::Inserting)
        };
        assert_eq!(
            describe(&l),
            format!("inserting 1500 docs, {}", human_bytes(3 * 1024 * 1024))
        );
    }

    #[test]
    fn the_summary_counts_what_has_no_bar() {
        use NamespaceState::*;
        let mut c = Counts::default();
        for s in [
            Done, Done, Failed, Inserting, Loaded, Queued, Queued, Queued,
        ] {
            c.add(s);
        }
        c.active -= 1; // the one with a bar
        assert_eq!(
            c.to_string(),
            "namespaces: 2 done, 1 failed, 1 awaiting indexes, 3 queued"
        );
    }

    #[test]
    fn long_names_keep_their_end() {
        assert_eq!(fit("a.b", 5), "a.b  ");
        assert_eq!(fit("shop.orders_2026_archive", 10), "…6_archive");
    }

    #[test]
    fn a_failed_namespace_stays_failed() {
        let p = Progress::default();
        let ns = p.track("a.b", None, None);
        ns.set_state(NamespaceState::Failed);
        ns.finish(NamespaceState::Done);
        assert_eq!(ns.state(), NamespaceState::Failed);
        let other = p.track("a.c", None, None);
        other.finish(NamespaceState::Done);
        assert_eq!(other.state(), NamespaceState::Done);
        assert_eq!(p.namespaces().len(), 2);
    }
}
