//! The one policy for waiting between attempts, wherever nightdump tries something again on
//! top of the AWS SDK's own retries: a first pause growing by a factor up to a cap, jittered
//! where several writers may have failed together (so they spread out instead of colliding
//! again).

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The pause before the first retry.
    pub first: Duration,
    /// Each pause is this many times the one before…
    pub factor: u32,
    /// …up to this.
    pub max: Duration,
    /// Each pause is drawn between half and all of its nominal length.
    pub jitter: bool,
}

impl Backoff {
    pub const fn new(first: Duration, factor: u32, max: Duration) -> Self {
        Self {
            first,
            factor,
            max,
            jitter: false,
        }
    }

    pub const fn jittered(self) -> Self {
        Self {
            jitter: true,
            ..self
        }
    }

    /// The pause before retry number `retry` (0: the first retry).
    pub fn delay(&self, retry: u32) -> Duration {
        let growth = self.factor.saturating_pow(retry.min(16));
        let nominal = self.first.saturating_mul(growth).min(self.max);
        if !self.jitter {
            return nominal;
        }
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(retry);
        let fraction = 0.5 + (h.finish() % 1000) as f64 / 2000.0;
        nominal.mul_f64(fraction)
    }

    /// Sleeps for [`Backoff::delay`] of `retry`.
    pub async fn wait(&self, retry: u32) {
        tokio::time::sleep(self.delay(retry)).await;
    }
}

/// Rounds of a conditional replace (latest.json) that lost to another writer.
pub const CONDITIONAL_UPDATE: Backoff =
    Backoff::new(Duration::from_millis(40), 2, Duration::from_secs(1)).jittered();
/// AbortMultipartUpload tried again (an unaborted upload costs money).
pub const ABORT_UPLOAD: Backoff =
    Backoff::new(Duration::from_millis(250), 4, Duration::from_secs(16));
/// A download resumed from where it broke off.
pub const RESUME_READ: Backoff =
    Backoff::new(Duration::from_millis(200), 2, Duration::from_secs(10));
/// Waiting for another run's manifest after losing the race to store a backup.
pub const OTHER_RUNS_MANIFEST: Backoff =
    Backoff::new(Duration::from_millis(50), 2, Duration::from_secs(2));

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_grow_to_the_cap_and_jitter_stays_within_half() {
        let b = Backoff::new(Duration::from_millis(100), 2, Duration::from_millis(500));
        let d: Vec<u128> = (0..5).map(|r| b.delay(r).as_millis()).collect();
        assert_eq!(d, [100, 200, 400, 500, 500]);
        for retry in 0..20 {
            let j = b.jittered().delay(retry);
            let nominal = b.delay(retry);
            assert!(j <= nominal && j >= nominal / 2, "{j:?} of {nominal:?}");
        }
        assert_eq!(b.delay(u32::MAX), Duration::from_millis(500));
    }
}
