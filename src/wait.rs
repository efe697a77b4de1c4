//! Waiting: one overall deadline, and the delays between attempts.
//!
//! Delays start fast, so that a Garage starting alongside garage-init is seen
//! within milliseconds, then back off with jitter so that a slow or dead
//! server is not hammered. The deadline itself is enforced once, around the
//! whole run, by `tokio::time::timeout`; waits only record what they last
//! saw so that the deadline error can say why it gave up.

use std::fmt::Display;
use std::sync::Mutex;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use tokio::time::Instant;

/// Delay between the first attempts: at most 50 ms. A refused connection
/// costs nothing, so a Garage starting alongside is seen within 5 ms.
const FAST_DELAY: Duration = Duration::from_millis(5);
/// How many fast attempts before backing off (about 300 ms of them).
const FAST_ATTEMPTS: usize = 60;
/// Backoff bounds after the fast phase. Jitter adds up to 100%, so no delay exceeds 1 s.
const SLOW_MIN: Duration = Duration::from_millis(25);
const SLOW_MAX: Duration = Duration::from_millis(500);
/// How often a continuing wait is reported at info level.
const REPORT_EVERY: Duration = Duration::from_secs(5);

/// The delays between attempts of one wait: 60 × 5 ms, then exponential with jitter, never above 1 s.
pub fn delays() -> impl Iterator<Item = Duration> + Send + Sync + Unpin {
    std::iter::repeat_n(FAST_DELAY, FAST_ATTEMPTS).chain(
        ExponentialBuilder::default()
            .with_min_delay(SLOW_MIN)
            .with_max_delay(SLOW_MAX)
            .with_factor(2.0)
            .with_jitter()
            .without_max_times()
            .build(),
    )
}

/// What the run is doing, and why its last attempt failed; read when the deadline passes.
#[derive(Debug, Default)]
pub struct Progress {
    state: Mutex<(String, Option<String>)>,
}

impl Progress {
    /// Starts a step: `what` names it with its URL, e.g. "Garage's admin API at http://garage:3903".
    pub fn step(&self, what: &str) {
        *self.state.lock().unwrap() = (what.to_string(), None);
    }

    pub fn failed_attempt(&self, why: &dyn Display) {
        self.state.lock().unwrap().1 = Some(why.to_string());
    }

    /// `(step, last error)`.
    pub fn snapshot(&self) -> (String, Option<String>) {
        self.state.lock().unwrap().clone()
    }
}

/// One wait: sleeps between attempts and keeps users informed.
pub struct Waiter<'a> {
    progress: &'a Progress,
    delays: Box<dyn Iterator<Item = Duration> + Send + Sync + Unpin>,
    started: Instant,
    reported: Option<Instant>,
}

impl<'a> Waiter<'a> {
    /// Starts the step `what` (see [`Progress::step`]).
    pub fn new(what: &str, progress: &'a Progress) -> Self {
        progress.step(what);
        Self { progress, delays: Box::new(delays()), started: Instant::now(), reported: None }
    }

    /// Records why the last attempt did not succeed, logs it (at info once
    /// every few seconds, at debug otherwise), and sleeps before the next one.
    pub async fn pause(&mut self, why: &dyn Display) {
        self.progress.failed_attempt(why);
        let now = Instant::now();
        let due = match self.reported {
            None => now.duration_since(self.started) >= Duration::from_millis(500),
            Some(at) => now.duration_since(at) >= REPORT_EVERY,
        };
        let (what, _) = self.progress.snapshot();
        if due {
            self.reported = Some(now);
            let elapsed_ms = now.duration_since(self.started).as_millis() as u64;
            tracing::info!(waiting_for = %what, reason = %why, elapsed_ms, "still waiting");
        } else {
            tracing::debug!(waiting_for = %what, reason = %why, "retrying");
        }
        let delay = self.delays.next().unwrap_or(SLOW_MAX);
        tokio::time::sleep(delay).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_start_fast_then_back_off_to_at_most_one_second() {
        let d: Vec<Duration> = delays().take(200).collect();
        assert!(d[..FAST_ATTEMPTS].iter().all(|x| *x <= Duration::from_millis(50)));
        assert!(d.iter().all(|x| *x <= Duration::from_secs(1)), "{d:?}");
        // After the fast phase the delays grow: the late ones are at least the cap without jitter.
        assert!(d[150..].iter().all(|x| *x >= SLOW_MAX), "{:?}", &d[150..]);
        // Jitter: not every late delay is the same.
        assert!(d[150..].windows(2).any(|w| w[0] != w[1]));
    }

    #[tokio::test(start_paused = true)]
    async fn a_minute_of_waiting_costs_about_a_hundred_and_fifty_attempts() {
        let progress = Progress::default();
        let mut waiter = Waiter::new("test", &progress);
        let start = Instant::now();
        let mut attempts = 0;
        while start.elapsed() < Duration::from_secs(60) {
            waiter.pause(&"refused").await;
            attempts += 1;
        }
        // 60 fast attempts, then on average one every 750 ms.
        assert!((90..=200).contains(&attempts), "{attempts} attempts");
        assert_eq!(progress.snapshot(), ("test".into(), Some("refused".into())));
    }
}
