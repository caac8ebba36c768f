//! Failures a test can switch on at any moment to see how a client copes: dropped
//! connections mid-cursor or mid-conversation, slow batches, failing commands. Shared by
//! every connection of one server instance.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use crate::error::CommandError;

/// Commands a driver sends on its own to open and monitor connections. They are neither
/// counted by nor cut by [`Faults::close_after_commands`], so a test's count does not
/// depend on when the driver happens to open a connection or send a heartbeat.
const CONNECTION_SETUP_COMMANDS: &[&str] =
    &["hello", "isMaster", "ismaster", "saslStart", "saslContinue"];

#[derive(Debug, Default)]
struct State {
    documents_left: Option<u64>,
    commands_left: Option<u64>,
    batch_delay: Option<Duration>,
    failing: HashMap<String, FailingCommand>,
    /// Commands whose connection is closed instead of answered, with how many times left.
    closing: HashMap<String, Option<u32>>,
    /// Commands answered only after a pause (a slow or busy server).
    delaying: HashMap<String, Duration>,
}

#[derive(Debug)]
struct FailingCommand {
    error: CommandError,
    times_left: Option<u32>,
}

/// Fault switches. Every setter takes effect on the next message of every connection.
#[derive(Debug, Default)]
pub struct Faults {
    // Lets the per-message path skip the lock entirely while nothing is set.
    armed: AtomicBool,
    state: Mutex<State>,
    /// Cursor batches sent while a batch fault was set, so a test can act at a known point
    /// of a dump instead of sleeping.
    batches_sent: tokio::sync::watch::Sender<u64>,
    /// Commands held back by [`Faults::delay_command`] so far.
    commands_delayed: tokio::sync::watch::Sender<u64>,
}

/// What the connection must do with one command.
#[derive(Debug, PartialEq)]
pub(crate) enum CommandFault {
    Proceed,
    Close,
    Fail(CommandError),
    /// Answer, after this pause.
    Delay(Duration),
}

/// What the connection must do with one cursor batch.
#[derive(Debug, PartialEq)]
pub(crate) enum BatchFault {
    Send { delay: Option<Duration> },
    Close,
}

impl Faults {
    /// Closes the connection instead of sending the cursor batch (firstBatch or nextBatch)
    /// that would take the number of documents sent from now on past `n`. Fires once.
    pub fn close_after_documents(&self, n: u64) {
        self.update(|s| s.documents_left = Some(n));
    }

    /// Answers `n` more commands, then closes the connection that sends the next one
    /// without answering it. Fires once. Connection setup and monitoring commands (hello,
    /// isMaster, saslStart, saslContinue) are not counted.
    pub fn close_after_commands(&self, n: u64) {
        self.update(|s| s.commands_left = Some(n));
    }

    /// Holds back every cursor batch by `delay` before it is sent.
    pub fn delay_batches(&self, delay: Duration) {
        self.update(|s| s.batch_delay = Some(delay));
    }

    /// Fails the command named `name` (matched exactly, as mongod names commands) with
    /// `error`, `times` times or, with `None`, until cleared.
    pub fn fail_command(&self, name: &str, error: CommandError, times: Option<u32>) {
        self.update(|s| {
            s.failing.insert(
                name.to_owned(),
                FailingCommand {
                    error,
                    times_left: times,
                },
            );
        });
    }

    /// Closes the connection that sends the command named `name` (matched exactly) instead
    /// of answering it, `times` times or, with `None`, until cleared: the server going away
    /// in the middle of that command. Setup commands (hello, saslStart…) can be named too.
    pub fn close_on_command(&self, name: &str, times: Option<u32>) {
        self.update(|s| {
            s.closing.insert(name.to_owned(), times);
        });
    }

    /// Holds back every command named `name` by `delay` before running it, until cleared:
    /// a slow target, so a test can act while e.g. a restore's inserts are under way.
    pub fn delay_command(&self, name: &str, delay: Duration) {
        self.update(|s| {
            s.delaying.insert(name.to_owned(), delay);
        });
    }

    /// Commands held back by [`Faults::delay_command`] so far.
    pub fn commands_delayed(&self) -> u64 {
        *self.commands_delayed.borrow()
    }

    /// Waits until at least `n` commands have been held back by [`Faults::delay_command`].
    pub async fn wait_commands_delayed(&self, n: u64) {
        let mut rx = self.commands_delayed.subscribe();
        let _ = rx.wait_for(|delayed| *delayed >= n).await;
    }

    /// Cursor batches sent so far while a batch fault (a delay or a document budget) was set.
    pub fn batches_sent(&self) -> u64 {
        *self.batches_sent.borrow()
    }

    /// Waits until at least `n` cursor batches have been sent while a batch fault was set
    /// (e.g. with [`Faults::delay_batches`] on, "the dump is inside its second batch").
    pub async fn wait_batches_sent(&self, n: u64) {
        let mut rx = self.batches_sent.subscribe();
        let _ = rx.wait_for(|sent| *sent >= n).await;
    }

    /// Switches every fault off.
    pub fn clear(&self) {
        self.update(|s| *s = State::default());
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock only means a test thread panicked while holding it; the state
        // itself is always consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn update(&self, f: impl FnOnce(&mut State)) {
        let mut state = self.lock();
        f(&mut state);
        let armed = state.documents_left.is_some()
            || state.commands_left.is_some()
            || state.batch_delay.is_some()
            || !state.failing.is_empty()
            || !state.closing.is_empty()
            || !state.delaying.is_empty();
        self.armed.store(armed, Ordering::Release);
    }

    pub(crate) fn on_command(&self, name: &str) -> CommandFault {
        if !self.armed.load(Ordering::Acquire) {
            return CommandFault::Proceed;
        }
        let mut verdict = CommandFault::Proceed;
        self.update(|s| {
            if !CONNECTION_SETUP_COMMANDS.contains(&name) {
                match s.commands_left {
                    Some(0) => {
                        s.commands_left = None;
                        verdict = CommandFault::Close;
                        return;
                    }
                    Some(n) => s.commands_left = Some(n - 1),
                    None => {}
                }
            }
            if let Some(times_left) = s.closing.get_mut(name) {
                verdict = CommandFault::Close;
                match times_left {
                    Some(n) if *n <= 1 => {
                        s.closing.remove(name);
                    }
                    Some(n) => *n -= 1,
                    None => {}
                }
                return;
            }
            if let Some(failing) = s.failing.get_mut(name) {
                verdict = CommandFault::Fail(failing.error.clone());
                match &mut failing.times_left {
                    Some(1) => {
                        s.failing.remove(name);
                    }
                    Some(n) => *n -= 1,
                    None => {}
                }
                return;
            }
            if let Some(delay) = s.delaying.get(name) {
                verdict = CommandFault::Delay(*delay);
            }
        });
        if matches!(verdict, CommandFault::Delay(_)) {
            self.commands_delayed.send_modify(|n| *n += 1);
        }
        verdict
    }

    pub(crate) fn on_batch(&self, documents: u64) -> BatchFault {
        if !self.armed.load(Ordering::Acquire) {
            return BatchFault::Send { delay: None };
        }
        let mut verdict = BatchFault::Send { delay: None };
        self.update(|s| {
            if let Some(left) = s.documents_left {
                if documents > left {
                    s.documents_left = None;
                    verdict = BatchFault::Close;
                    return;
                }
                s.documents_left = Some(left - documents);
            }
            verdict = BatchFault::Send {
                delay: s.batch_delay,
            };
        });
        if matches!(verdict, BatchFault::Send { .. }) {
            self.batches_sent.send_modify(|n| *n += 1);
        }
        verdict
    }

    /// Whether any batch fault is set, so replies need only be inspected when it matters.
    pub(crate) fn watches_batches(&self) -> bool {
        if !self.armed.load(Ordering::Acquire) {
            return false;
        }
        let s = self.lock();
        s.documents_left.is_some() || s.batch_delay.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_budget_closes_on_the_crossing_batch_once() {
        let f = Faults::default();
        assert!(!f.watches_batches());
        f.close_after_documents(5);
        assert!(f.watches_batches());
        assert_eq!(f.on_batch(3), BatchFault::Send { delay: None });
        assert_eq!(f.on_batch(2), BatchFault::Send { delay: None });
        assert_eq!(f.on_batch(0), BatchFault::Send { delay: None });
        assert_eq!(f.on_batch(1), BatchFault::Close);
        assert_eq!(f.on_batch(1), BatchFault::Send { delay: None });
        assert!(!f.watches_batches());
        assert_eq!(f.batches_sent(), 3);
    }

    #[test]
    fn command_budget_ignores_handshakes_and_fires_once() {
        let f = Faults::default();
        f.close_after_commands(2);
        assert_eq!(f.on_command("find"), CommandFault::Proceed);
        assert_eq!(f.on_command("hello"), CommandFault::Proceed);
        assert_eq!(f.on_command("getMore"), CommandFault::Proceed);
        assert_eq!(f.on_command("saslStart"), CommandFault::Proceed);
        assert_eq!(f.on_command("getMore"), CommandFault::Close);
        assert_eq!(f.on_command("getMore"), CommandFault::Proceed);
    }

    #[test]
    fn failing_command_counts_down() {
        let f = Faults::default();
        let err = CommandError::new(91, "ShutdownInProgress", "shutting down");
        f.fail_command("find", err.clone(), Some(2));
        assert_eq!(f.on_command("insert"), CommandFault::Proceed);
        assert_eq!(f.on_command("find"), CommandFault::Fail(err.clone()));
        assert_eq!(f.on_command("find"), CommandFault::Fail(err));
        assert_eq!(f.on_command("find"), CommandFault::Proceed);
    }

    #[test]
    fn closing_on_a_named_command_counts_down() {
        let f = Faults::default();
        f.close_on_command("listCollections", Some(2));
        assert_eq!(f.on_command("find"), CommandFault::Proceed);
        assert_eq!(f.on_command("listCollections"), CommandFault::Close);
        assert_eq!(f.on_command("listCollections"), CommandFault::Close);
        assert_eq!(f.on_command("listCollections"), CommandFault::Proceed);
        f.close_on_command("getMore", None);
        for _ in 0..3 {
            assert_eq!(f.on_command("getMore"), CommandFault::Close);
        }
        f.clear();
        assert_eq!(f.on_command("getMore"), CommandFault::Proceed);
    }

    #[test]
    fn delay_and_clear() {
        let f = Faults::default();
        f.delay_batches(Duration::from_millis(5));
        assert_eq!(
            f.on_batch(10),
            BatchFault::Send {
                delay: Some(Duration::from_millis(5))
            }
        );
        f.fail_command("ping", CommandError::command_not_found("ping"), None);
        f.clear();
        assert_eq!(f.on_batch(10), BatchFault::Send { delay: None });
        assert_eq!(f.on_command("ping"), CommandFault::Proceed);
    }
}
