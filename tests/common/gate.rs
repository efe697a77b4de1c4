//! A pass-through HTTP/1.1 proxy that can hold garage-init at an exact point
//! of its run: once a given admin endpoint (or S3 request) has been called, every later
//! request waits at the proxy until the test releases it. The test then does
//! to Garage what a crash would (kill it, damage its files, start it again)
//! while garage-init is known to be between two requests.
//!
//! Nothing is scripted here: every request reaches the real Garage, and every
//! answer comes back, byte for byte; or, in its other mode, one chosen
//! request is lost on the way, as a network can lose it. The one change is `Connection: close` on
//! each forwarded request, so that each request has its own connection and
//! can be held on its own.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

pub struct Gate {
    port: u16,
    state: Arc<State>,
    accept: tokio::task::JoinHandle<()>,
}

type Matcher = Box<dyn Fn(&str) -> bool + Send + Sync>;

struct State {
    upstream: SocketAddr,
    /// The request after whose answer requests are held, as messages name it.
    hold_after: String,
    /// Whether a request line (`POST /v2/ApplyClusterLayout HTTP/1.1`) is that request.
    matches: Matcher,
    /// The path whose first request is lost: read, never sent on, its
    /// connection closed without an answer.
    lose_first: Option<String>,
    inner: Mutex<Inner>,
    changed: Notify,
}

#[derive(Default)]
struct Inner {
    /// The `hold_after` call went by: the gate has closed once, and does not close again.
    closed_once: bool,
    /// The `lose_first` request was lost.
    lost: bool,
    /// Requests that arrive now wait.
    holding: bool,
    /// The `hold_after` call has been answered (its answer is on its way to the client).
    answered: bool,
    /// Requests waiting at the gate right now.
    held: usize,
    /// Request lines, in arrival order, for failure messages.
    seen: Vec<String>,
    /// Each request's path and body, in arrival order.
    bodies: Vec<(String, String)>,
}

impl Gate {
    /// Proxies `127.0.0.1:<port>` to `upstream_port`, and holds every request
    /// that arrives after the first call of `endpoint` (an admin API v2
    /// endpoint name) was sent on, until [`Gate::release`]. The gate closes
    /// only once: later calls of `endpoint` pass.
    pub async fn hold_after(upstream_port: u16, endpoint: &str) -> Self {
        let path = format!("/v2/{endpoint}");
        let what = path.clone();
        let matches = move |line: &str| line.split(' ').nth(1).unwrap_or("").split('?').next() == Some(path.as_str());
        Self::start(upstream_port, Some((what, Box::new(matches))), None).await
    }

    /// Like [`Gate::hold_after`], for an S3 request: the first `method` whose
    /// query string has the sub-resource `query` (`PUT /bucket?lifecycle`).
    pub async fn hold_after_s3(upstream_port: u16, method: &str, query: &str) -> Self {
        let (method, query) = (method.to_string(), query.to_string());
        let what = format!("{method} ?{query}");
        let matches = move |line: &str| {
            let mut parts = line.split(' ');
            parts.next() == Some(method.as_str())
                && parts
                    .next()
                    .and_then(|t| t.split_once('?'))
                    .is_some_and(|(_, q)| q.split('&').any(|p| p == query || p.starts_with(&format!("{query}="))))
        };
        Self::start(upstream_port, Some((what, Box::new(matches))), None).await
    }

    /// Proxies `127.0.0.1:<port>` to `upstream_port`, and loses the first
    /// request to `endpoint`: it never reaches Garage, and the client gets
    /// no answer (as when a network drops a request). Holds nothing.
    pub async fn lose_first(upstream_port: u16, endpoint: &str) -> Self {
        Self::start(upstream_port, None, Some(endpoint)).await
    }

    async fn start(upstream_port: u16, hold_after: Option<(String, Matcher)>, lose_first: Option<&str>) -> Self {
        let (hold_after, matches) = hold_after.unwrap_or_else(|| (String::new(), Box::new(|_: &str| false)));
        let listener = TcpListener::bind(("127.0.0.1", super::free_port())).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(State {
            upstream: SocketAddr::from(([127, 0, 0, 1], upstream_port)),
            hold_after,
            matches,
            lose_first: lose_first.map(|e| format!("/v2/{e}")),
            inner: Mutex::new(Inner::default()),
            changed: Notify::new(),
        });
        let accept = tokio::spawn({
            let state = state.clone();
            async move {
                while let Ok((client, _)) = listener.accept().await {
                    // A connection the proxy cannot complete is closed: to the
                    // client, that is Garage going away, which it must survive.
                    tokio::spawn(forward(state.clone(), client));
                }
            }
        });
        Self { port, state, accept }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Waits until the `hold_after` call was answered and a later request is
    /// waiting at the gate: the client is then stopped between two requests.
    pub async fn until_holding(&self, within: Duration) {
        let waited = tokio::time::timeout(within, async {
            loop {
                let notified = self.state.changed.notified();
                {
                    let inner = self.state.inner.lock().unwrap();
                    if inner.answered && inner.held > 0 {
                        return;
                    }
                }
                notified.await;
            }
        })
        .await;
        assert!(
            waited.is_ok(),
            "no request reached the gate after {} within {within:?}; requests seen:\n{}",
            self.state.hold_after,
            self.requests().join("\n")
        );
    }

    /// Lets held and later requests through.
    pub fn release(&self) {
        self.state.inner.lock().unwrap().holding = false;
        self.state.changed.notify_waiters();
    }

    /// The request lines seen so far (`POST /v2/ApplyClusterLayout HTTP/1.1`).
    pub fn requests(&self) -> Vec<String> {
        self.state.inner.lock().unwrap().seen.clone()
    }

    /// The bodies of the requests to an admin API v2 endpoint seen so far.
    pub fn bodies(&self, endpoint: &str) -> Vec<String> {
        let path = format!("/v2/{endpoint}");
        self.state.inner.lock().unwrap().bodies.iter().filter(|(p, _)| *p == path).map(|(_, b)| b.clone()).collect()
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn forward(state: Arc<State>, mut client: TcpStream) {
    let Some((request_line, request)) = read_request(&mut client).await else { return };
    let path = request_line.split(' ').nth(1).unwrap_or("").split('?').next().unwrap_or("").to_string();
    let is_hold_after = (state.matches)(&request_line);
    let body = request.windows(4).position(|w| w == b"\r\n\r\n").map(|i| &request[i + 4..]).unwrap_or_default();
    let held = {
        let mut inner = state.inner.lock().unwrap();
        inner.seen.push(request_line);
        inner.bodies.push((path.clone(), String::from_utf8_lossy(body).into_owned()));
        if inner.holding {
            inner.held += 1;
        }
        inner.holding
    };
    if held {
        state.changed.notify_waiters();
        loop {
            let notified = state.changed.notified();
            if !state.inner.lock().unwrap().holding {
                break;
            }
            notified.await;
        }
        state.inner.lock().unwrap().held -= 1;
    }
    let lose = state.lose_first.as_deref() == Some(path.as_str()) && {
        let mut inner = state.inner.lock().unwrap();
        !std::mem::replace(&mut inner.lost, true)
    };
    if lose {
        return;
    }
    let Ok(mut upstream) = TcpStream::connect(state.upstream).await else { return };
    if upstream.write_all(&request).await.is_err() {
        return;
    }
    // The first `hold_after` call closes the gate, before its answer is
    // passed on: the client's next request, whenever it comes, is held.
    let gated = is_hold_after && {
        let mut inner = state.inner.lock().unwrap();
        let first = !inner.closed_once;
        inner.closed_once = true;
        inner.holding |= first;
        first
    };
    // `Connection: close`: Garage closes the connection after its answer.
    let _ = tokio::io::copy(&mut upstream, &mut client).await;
    let _ = client.shutdown().await;
    if gated {
        state.inner.lock().unwrap().answered = true;
        state.changed.notify_waiters();
    }
}

/// Reads one request (head and `Content-Length` body) and returns its request
/// line and the bytes to send on, with `Connection: close` in place of any
/// `Connection` header.
async fn read_request(client: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_len = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = client.read(&mut chunk).await.ok().filter(|n| *n > 0)?;
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_len]).into_owned();
    let mut lines = head.split("\r\n").filter(|l| !l.is_empty());
    let request_line = lines.next()?.to_string();
    let headers: Vec<&str> = lines.collect();
    let content_length = headers
        .iter()
        .filter_map(|h| h.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    while buf.len() < head_len + content_length {
        let n = client.read(&mut chunk).await.ok().filter(|n| *n > 0)?;
        buf.extend_from_slice(&chunk[..n]);
    }
    let mut out = format!("{request_line}\r\n");
    for h in headers.iter().filter(|h| !h.to_ascii_lowercase().starts_with("connection:")) {
        out.push_str(h);
        out.push_str("\r\n");
    }
    out.push_str("Connection: close\r\n\r\n");
    let mut out = out.into_bytes();
    out.extend_from_slice(&buf[head_len..head_len + content_length]);
    Some((request_line, out))
}
