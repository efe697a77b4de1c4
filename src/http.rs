//! The one plain-HTTP client shape for Garage's admin and S3 APIs and the
//! registry, the one way answers are read: streamed, and never more than a
//! cap, so that a peer that announces or streams an endless body costs
//! garage-init a bounded amount of memory; and the bound on requests in
//! flight to one endpoint, so that a spec of a thousand buckets costs Garage
//! a handful of connections, not a thousand.

use std::time::Duration;

use reqwest::header::HeaderMap;
use tokio::sync::Semaphore;

/// How long one request may take, its body included. Garage answers in
/// milliseconds; its own RPC quorum timeouts surface as 503 well before this.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Pooled keep-alive connections, bounded connect and request times, no
/// proxy discovery (a compose network needs none), no TLS stack. One client
/// per endpoint, kept for the whole run: with at most `in_flight` requests
/// at once, the pool never holds more connections than that.
pub fn client(headers: HeaderMap, in_flight: usize) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .default_headers(headers)
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .pool_max_idle_per_host(in_flight)
        .no_proxy()
        .tcp_nodelay(true)
        .build()
}

/// At most a fixed number of requests in flight to one endpoint; the others
/// wait their turn, first come first served. A request holds its place from
/// sending until its answer is read, so the connections open to the endpoint
/// never outnumber the places. Shared by every task that talks to the
/// endpoint: however many actions a plan has, the endpoint sees this many.
#[derive(Debug)]
pub struct RequestLimit {
    places: Semaphore,
    limit: usize,
}

impl RequestLimit {
    /// `limit` places; at least one.
    pub fn new(limit: usize) -> Self {
        let limit = limit.max(1);
        Self { places: Semaphore::new(limit), limit }
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Runs `request` once a place is free, and frees it when `request` is done.
    pub async fn run<T>(&self, request: impl Future<Output = T>) -> T {
        // The semaphore is never closed, so a place always comes.
        let _place = self.places.acquire().await.expect("the semaphore is never closed");
        request.await
    }
}

/// Why a request got no (complete) answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoAnswer {
    /// The innermost cause, without the URL: "Connection refused (os error 111)".
    pub reason: String,
    /// The host name did not resolve: worth retrying, but not every few milliseconds.
    pub unresolved: bool,
}

impl NoAnswer {
    pub fn from_reqwest(e: &reqwest::Error) -> Self {
        if e.is_timeout() {
            return Self { reason: "timed out".into(), unresolved: false };
        }
        let mut unresolved = false;
        let mut cause: &dyn std::error::Error = e;
        loop {
            let text = cause.to_string();
            unresolved |= text.contains("dns error") || text.contains("failed to lookup address");
            match cause.source() {
                Some(next) => cause = next,
                None => break,
            }
        }
        let text = cause.to_string();
        Self { reason: if text.is_empty() { "request failed".into() } else { text }, unresolved }
    }
}

impl std::fmt::Display for NoAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason)
    }
}

/// A body read failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadError {
    NoAnswer(NoAnswer),
    /// The body is (or announces to be) larger than the cap.
    TooLarge {
        limit: usize,
    },
}

/// Reads a whole body, at most `limit` bytes of it: a larger announced
/// length fails before anything is read, a longer stream as soon as it
/// passes the cap.
pub async fn read_capped(mut response: reqwest::Response, limit: usize) -> Result<Vec<u8>, ReadError> {
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(ReadError::TooLarge { limit });
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| ReadError::NoAnswer(NoAnswer::from_reqwest(&e)))? {
        if body.len() + chunk.len() > limit {
            return Err(ReadError::TooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Where a redirect led, when the answer came from elsewhere than the URL
/// requested: scheme, host, port and path only (a query can hold a
/// signature, a user part a password).
pub fn redirected_to(requested: &url::Url, answered: &url::Url) -> Option<String> {
    if answered == requested {
        return None;
    }
    let mut shown = answered.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.set_query(None);
    shown.set_fragment(None);
    Some(shown.to_string())
}

/// "4 MiB", "64 KiB", "512 B".
pub fn human_limit(limit: usize) -> String {
    match limit {
        n if n >= 1 << 20 && n % (1 << 20) == 0 => format!("{} MiB", n >> 20),
        n if n >= 1 << 10 && n % (1 << 10) == 0 => format!("{} KiB", n >> 10),
        n => format!("{n} B"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::atomic::{AtomicUsize, Ordering};

    use futures_util::future::join_all;

    #[tokio::test(start_paused = true)]
    async fn no_more_requests_than_the_limit_are_ever_in_flight() {
        let limit = RequestLimit::new(4);
        let (now, most) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let request = || async {
            let n = now.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(n, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(10)).await;
            now.fetch_sub(1, Ordering::SeqCst);
        };
        let started = tokio::time::Instant::now();
        join_all((0..100).map(|_| limit.run(request()))).await;
        assert_eq!(most.load(Ordering::SeqCst), 4, "requests in flight at most");
        // 100 requests of 10 ms, 4 at a time: 25 turns, none of them idle.
        assert_eq!(started.elapsed(), Duration::from_millis(250));
    }

    #[tokio::test(start_paused = true)]
    async fn a_limit_of_zero_still_lets_requests_through_one_at_a_time() {
        let limit = RequestLimit::new(0);
        assert_eq!(limit.limit(), 1);
        let started = tokio::time::Instant::now();
        join_all((0..3).map(|_| limit.run(async { tokio::time::sleep(Duration::from_millis(10)).await }))).await;
        assert_eq!(started.elapsed(), Duration::from_millis(30));
    }

    #[test]
    fn a_redirect_target_is_shown_without_its_user_part_or_query() {
        let requested: url::Url = "http://garage:3903/v2/GetClusterStatus".parse().unwrap();
        assert_eq!(redirected_to(&requested, &requested), None);
        let elsewhere: url::Url = "http://u:secret@proxy:8080/login?sig=abc#x".parse().unwrap();
        assert_eq!(redirected_to(&requested, &elsewhere).as_deref(), Some("http://proxy:8080/login"));
    }

    #[test]
    fn limits_read_like_sizes() {
        assert_eq!(human_limit(4 << 20), "4 MiB");
        assert_eq!(human_limit(64 << 10), "64 KiB");
        assert_eq!(human_limit(1000), "1000 B");
    }
}
