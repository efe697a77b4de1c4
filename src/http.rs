//! The one plain-HTTP client shape for Garage's admin and S3 APIs and the
//! registry, and the one way answers are read: streamed, and never more
//! than a cap, so that a peer that announces or streams an endless body
//! costs garage-init a bounded amount of memory.

use std::time::Duration;

use reqwest::header::HeaderMap;

/// How long one request may take, its body included. Garage answers in
/// milliseconds; its own RPC quorum timeouts surface as 503 well before this.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Pooled keep-alive connections, bounded connect and request times, no
/// proxy discovery (a compose network needs none), no TLS stack.
pub fn client(headers: HeaderMap) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .default_headers(headers)
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .no_proxy()
        .tcp_nodelay(true)
        .build()
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
