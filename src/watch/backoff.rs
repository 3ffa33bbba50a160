//! Exponential backoff between retries of a failed reconcile.

use std::time::Duration;

/// Delays that double from `min` up to `max`, until reset by a success.
#[derive(Clone, Debug)]
pub(crate) struct Backoff {
    min: Duration,
    max: Duration,
    last: Option<Duration>,
}

impl Backoff {
    /// Starts at `min`, caps at `max`.
    pub fn new(min: Duration, max: Duration) -> Backoff {
        Backoff {
            min,
            max: max.max(min),
            last: None,
        }
    }

    /// The next delay: `min`, then twice the last one, never above `max`.
    pub fn next_delay(&mut self) -> Duration {
        let next = match self.last {
            None => self.min,
            Some(last) => last.saturating_mul(2).min(self.max),
        };
        self.last = Some(next);
        next
    }

    /// After a success: the next failure waits `min` again.
    pub fn reset(&mut self) {
        self.last = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_and_resets() {
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(5));
        let delays: Vec<u64> = (0..5).map(|_| backoff.next_delay().as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 5, 5]);
        backoff.reset();
        assert_eq!(backoff.next_delay(), Duration::from_secs(1));
    }
}
