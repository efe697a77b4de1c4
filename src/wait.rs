//! Waiting: one overall deadline, and the delays between attempts.
//!
//! Delays start fast, so that a Garage starting alongside garage-init is seen
//! within milliseconds, then back off with jitter so that a slow or dead
//! server is not hammered. The deadline itself is enforced once, around the
//! whole run, by `tokio::time::timeout`; [`Progress`] records every step
//! still unfinished and why its last attempt failed, so that the deadline
//! error can say what was awaited, and why.

use std::fmt::Display;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
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
    std::iter::repeat_n(FAST_DELAY, FAST_ATTEMPTS).chain(slow_delays())
}

/// The delays after the fast phase: exponential with jitter, never above 1 s.
fn slow_delays() -> impl Iterator<Item = Duration> + Send + Sync + Unpin {
    ExponentialBuilder::default()
        .with_min_delay(SLOW_MIN)
        .with_max_delay(SLOW_MAX)
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
        .build()
}

/// A step the run has not finished, and why its last attempt failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// What it is, with where: "Garage's admin API at http://garage:3903", "key GK… (buildkit-key)".
    pub step: String,
    /// `None`: not attempted yet, or its request was still in flight.
    pub last_error: Option<String>,
}

/// Every unfinished step of a run, in the order they began; read when the
/// deadline passes, so that the error names all of them.
#[derive(Debug, Default)]
pub struct Progress {
    steps: Mutex<Vec<Pending>>,
}

impl Progress {
    /// Records a failed attempt of `step`, starting the step if it is new.
    pub fn failed(&self, step: &str, why: &dyn Display) {
        let mut steps = self.steps.lock().unwrap();
        let why = Some(why.to_string());
        match steps.iter_mut().find(|p| p.step == step) {
            Some(p) => p.last_error = why,
            None => steps.push(Pending { step: step.to_string(), last_error: why }),
        }
    }

    /// Starts `step` unless it is already under way.
    pub fn started(&self, step: &str) {
        let mut steps = self.steps.lock().unwrap();
        if !steps.iter().any(|p| p.step == step) {
            steps.push(Pending { step: step.to_string(), last_error: None });
        }
    }

    pub fn finished(&self, step: &str) {
        self.steps.lock().unwrap().retain(|p| p.step != step);
    }

    pub fn unfinished(&self) -> Vec<Pending> {
        self.steps.lock().unwrap().clone()
    }
}

/// Requests sent and not answered yet, so that the deadline error can name
/// the ones it cut off. Cheap to clone: clones share the list.
#[derive(Debug, Clone, Default)]
pub struct InFlight {
    requests: Arc<Mutex<Vec<(u64, String, Instant)>>>,
    next: Arc<AtomicU64>,
}

/// One request in flight; dropping it (answered, failed, or abandoned) removes it.
#[derive(Debug)]
pub struct Sent {
    requests: Arc<Mutex<Vec<(u64, String, Instant)>>>,
    id: u64,
}

impl InFlight {
    /// Records a request: `what` as messages name it, "GetClusterStatus at http://garage:3903".
    pub fn sent(&self, what: String) -> Sent {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.requests.lock().unwrap().push((id, what, Instant::now()));
        Sent { requests: Arc::clone(&self.requests), id }
    }

    /// Each request still without an answer, oldest first, with how long it has waited:
    /// "GetClusterStatus at http://garage:3903 (sent 2.9s earlier)".
    pub fn waiting(&self) -> Vec<String> {
        let now = Instant::now();
        let requests = self.requests.lock().unwrap();
        requests
            .iter()
            .map(|(_, what, since)| format!("{what} (sent {:.1}s earlier)", now.duration_since(*since).as_secs_f64()))
            .collect()
    }
}

impl Drop for Sent {
    fn drop(&mut self) {
        self.requests.lock().unwrap().retain(|(id, _, _)| *id != self.id);
    }
}

/// One wait: sleeps between attempts and keeps users informed.
pub struct Waiter {
    what: String,
    delays: Box<dyn Iterator<Item = Duration> + Send + Sync + Unpin>,
    started: Instant,
    reported: Option<Instant>,
    slowed: bool,
}

impl Waiter {
    /// A wait for `what`, e.g. "Garage's admin API at http://garage:3903" (for log lines).
    pub fn new(what: &str) -> Self {
        Self {
            what: what.to_string(),
            delays: Box::new(delays()),
            started: Instant::now(),
            reported: None,
            slowed: false,
        }
    }

    /// [`pause`](Self::pause), or with `slow`, first leaves the fast phase:
    /// for failures that cost something to retry (a DNS lookup of a name
    /// that does not resolve).
    pub async fn pause_paced(&mut self, why: &dyn Display, slow: bool) {
        if slow && !self.slowed {
            self.slowed = true;
            self.delays = Box::new(slow_delays());
        }
        self.pause(why).await;
    }

    /// Logs why the last attempt did not succeed (at info once every few
    /// seconds, at debug otherwise), and sleeps before the next one.
    pub async fn pause(&mut self, why: &dyn Display) {
        let now = Instant::now();
        let due = match self.reported {
            None => now.duration_since(self.started) >= Duration::from_millis(500),
            Some(at) => now.duration_since(at) >= REPORT_EVERY,
        };
        if due {
            self.reported = Some(now);
            let elapsed_ms = now.duration_since(self.started).as_millis() as u64;
            tracing::info!(waiting_for = %self.what, reason = %why, elapsed_ms, "still waiting");
        } else {
            tracing::debug!(waiting_for = %self.what, reason = %why, "retrying");
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
        let mut waiter = Waiter::new("test");
        let start = Instant::now();
        let mut attempts = 0;
        while start.elapsed() < Duration::from_secs(60) {
            waiter.pause(&"refused").await;
            attempts += 1;
        }
        // 60 fast attempts, then on average one every 750 ms.
        assert!((90..=200).contains(&attempts), "{attempts} attempts");
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_pace_skips_the_fast_phase() {
        let count = |slow: bool| async move {
            let mut waiter = Waiter::new("test");
            let start = Instant::now();
            let mut attempts = 0;
            while start.elapsed() < Duration::from_millis(300) {
                waiter.pause_paced(&"failed to lookup address information", slow).await;
                attempts += 1;
            }
            attempts
        };
        let (fast, slow) = (count(false).await, count(true).await);
        assert!(fast >= 55, "{fast} fast attempts");
        assert!(slow <= 8, "{slow} slow attempts in 300 ms");
    }

    #[tokio::test(start_paused = true)]
    async fn requests_in_flight_are_listed_until_their_answer_or_abandon() {
        let in_flight = InFlight::default();
        let status = in_flight.sent("GetClusterStatus at http://garage:3903".into());
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let key = in_flight.clone().sent("GetKeyInfo at http://garage:3903".into());
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(
            in_flight.waiting(),
            [
                "GetClusterStatus at http://garage:3903 (sent 2.0s earlier)",
                "GetKeyInfo at http://garage:3903 (sent 0.5s earlier)"
            ]
        );
        drop(status);
        assert_eq!(in_flight.waiting(), ["GetKeyInfo at http://garage:3903 (sent 0.5s earlier)"]);
        drop(key);
        assert!(in_flight.waiting().is_empty());
    }

    #[test]
    fn progress_keeps_every_unfinished_step_with_its_last_error() {
        let progress = Progress::default();
        progress.started("layout");
        progress.failed("key", &"503 Service Unavailable");
        progress.failed("key", &"Connection refused");
        progress.started("key");
        progress.failed("bucket", &"timed out");
        progress.finished("bucket");
        let pending = |step: &str, e: Option<&str>| Pending { step: step.into(), last_error: e.map(Into::into) };
        assert_eq!(progress.unfinished(), vec![pending("layout", None), pending("key", Some("Connection refused"))]);
        progress.finished("layout");
        assert_eq!(progress.unfinished(), vec![pending("key", Some("Connection refused"))]);
    }
}
