//! Client for Garage's admin API v2: one method per endpoint used, typed
//! answers, typed errors. Every request carries exactly
//! `Authorization: Bearer <token>` and has a timeout; one client per node,
//! its connections pooled and at most a fixed number of its requests in
//! flight at once, however many tasks share it.

pub mod types;

use std::sync::atomic::{AtomicU32, Ordering};

use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use url::Url;

use crate::http::{NoAnswer, ReadError, RequestLimit, read_capped, redirected_to};
use crate::secret::Secret;
use crate::wait::InFlight;
use types::*;

/// Admin answers larger than this are refused: Garage's answers for the
/// endpoints used here are kilobytes (a 256-node cluster status, a bucket
/// with thousands of keys stays far below).
pub const MAX_ANSWER_BYTES: usize = 4 << 20;
/// The answers that list every bucket or key, or a key's every bucket, grow
/// with the cluster: about 200 bytes a bucket, so 16 MiB holds ~80 000.
pub const MAX_LIST_BYTES: usize = 16 << 20;
/// `/health` answers with one line of text.
const MAX_HEALTH_BYTES: usize = 64 << 10;

#[derive(Debug, Clone, thiserror::Error)]
pub enum AdminError {
    /// No HTTP answer: refused, reset, timed out, name not resolved.
    #[error("{endpoint} at {at}: no answer: {reason}")]
    Transport { endpoint: &'static str, at: String, reason: String, unresolved: bool },
    /// Garage answered with an error body.
    #[error("{endpoint} at {at}: Garage answered {status} {code}: {message}")]
    Api { endpoint: &'static str, at: String, status: u16, code: String, message: String },
    /// Garage answered 200 with JSON that is not the expected shape.
    #[error("{endpoint} at {at}: unexpected answer from Garage: {reason}")]
    Decode { endpoint: &'static str, at: String, reason: String },
    /// The answer is not Garage's admin API's: another service listens there.
    #[error("{endpoint} at {at}: {what}")]
    Foreign { endpoint: &'static str, at: String, what: String },
    /// The answer is larger than any admin API answer: the read stopped at the cap.
    #[error(
        "{endpoint} at {at}: the answer is larger than {}, far more than Garage's admin API sends; reading stopped",
        crate::http::human_limit(*.limit)
    )]
    TooLarge { endpoint: &'static str, at: String, limit: usize },
    /// The client could not be set up from the settings.
    #[error("{0}")]
    Setup(String),
}

impl AdminError {
    /// Worth retrying within the deadline: the server is starting, restarting,
    /// waiting for a layout, or short of quorum.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Transport { .. } => true,
            Self::Api { status, .. } => matches!(*status, 502..=504) || self.is_layout_not_ready(),
            Self::Decode { .. } | Self::Foreign { .. } | Self::TooLarge { .. } | Self::Setup(_) => false,
        }
    }

    /// No answer because the host name does not resolve (yet).
    pub fn is_unresolved(&self) -> bool {
        matches!(self, Self::Transport { unresolved: true, .. })
    }

    /// Another service, not Garage's admin API, answers at the URL.
    pub fn is_foreign(&self) -> bool {
        matches!(self, Self::Foreign { .. } | Self::TooLarge { .. })
    }

    /// Garage's 500 "Layout not ready": key and bucket tables need an applied layout.
    pub fn is_layout_not_ready(&self) -> bool {
        matches!(self, Self::Api { status: 500, message, .. } if message.contains("Layout not ready"))
    }

    pub fn is_auth(&self) -> bool {
        matches!(self, Self::Api { status: 403, .. })
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Api { status: 404, .. })
    }

    pub fn is_conflict(&self) -> bool {
        matches!(self, Self::Api { status: 409, .. })
    }

    /// Garage's answer to applying a version other than current + 1: another run got there first.
    pub fn is_layout_version_race(&self) -> bool {
        matches!(self, Self::Api { status: 500, message, .. } if message.contains("Invalid new layout version"))
    }

    /// Garage's answer to `ClusterLayoutSkipDeadNodes` once no older layout
    /// version is active: nothing is waited for any more.
    pub fn is_single_layout_version(&self) -> bool {
        matches!(self, Self::Api { status: 400, message, .. } if message.contains("only one live cluster layout version"))
    }
}

/// What an answer that is not Garage's JSON error says about who answered.
/// Garage's admin API answers every error with `{code, message, …}`; an S3
/// XML error means the URL is an S3 port (Garage's own, typically 3900).
fn foreign(status: StatusCode, body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let snippet: String = text.chars().filter(|c| !c.is_control()).take(120).collect();
    if is_s3_error_document(&text) {
        return format!(
            "this is an S3 API (it answered {} with an S3 XML error), not Garage's admin API; \
             the admin API listens on port 3903 by default ([admin] api_bind_addr in garage.toml)",
            status.as_u16()
        );
    }
    let answer = format!("{} {}", status.as_u16(), status.canonical_reason().unwrap_or(""));
    if snippet.trim().is_empty() {
        format!("answered {} with no Garage error body: this is not Garage's admin API", answer.trim())
    } else {
        format!("answered {} with `{snippet}`: this is not Garage's admin API", answer.trim())
    }
}

/// Whether `text` is an S3 error document: XML whose root is `<Error>` with a `<Code>`.
fn is_s3_error_document(text: &str) -> bool {
    roxmltree::Document::parse(text).is_ok_and(|doc| {
        let root = doc.root_element();
        root.has_tag_name("Error") && root.children().any(|n| n.has_tag_name("Code"))
    })
}

pub struct AdminClient {
    http: reqwest::Client,
    base: Url,
    /// The base URL as messages show it.
    at: String,
    /// Kept only to keep it out of messages (see `redact`).
    token: Secret,
    /// Requests sent, counted for the final report.
    requests: AtomicU32,
    /// Requests without an answer yet, for the deadline error.
    in_flight: InFlight,
    /// The bound on requests in flight to this node.
    limit: RequestLimit,
}

impl AdminClient {
    /// A client for the admin API at `base`, with at most `in_flight` requests at once.
    pub fn new(mut base: Url, token: &Secret, in_flight: usize) -> Result<Self, AdminError> {
        // `join` replaces the last path segment unless the path ends with '/'.
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let mut auth = HeaderValue::from_str(&format!("Bearer {}", token.expose()))
            .map_err(|_| AdminError::Setup("the admin token cannot be sent as an HTTP header".into()))?;
        // Keeps the value out of any debug output of the HTTP stack.
        auth.set_sensitive(true);
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, auth);
        let http = crate::http::client(headers, in_flight)
            .map_err(|e| AdminError::Setup(format!("cannot build the HTTP client: {e}")))?;
        let at = base.as_str().trim_end_matches('/').to_string();
        let limit = RequestLimit::new(in_flight);
        let in_flight = InFlight::default();
        Ok(Self { http, base, at, token: token.clone(), requests: AtomicU32::new(0), in_flight, limit })
    }

    pub fn base_url(&self) -> &Url {
        &self.base
    }

    /// Requests sent and not answered yet.
    pub fn in_flight(&self) -> &InFlight {
        &self.in_flight
    }

    /// Requests sent so far, `/health` included.
    pub fn requests(&self) -> u32 {
        self.requests.load(Ordering::Relaxed)
    }

    /// One request, once a place among the requests in flight is free; its
    /// answer read up to `limit` bytes.
    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        endpoint: &'static str,
        query: &[(&str, &str)],
        body: Option<&dyn ErasedSerialize>,
        limit: usize,
    ) -> Result<T, AdminError> {
        let mut url = self.base.join(&format!("v2/{endpoint}")).expect("endpoint names are valid URL paths");
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let mut request = self.http.request(method.clone(), url.clone());
        if let Some(body) = body {
            let json = body.to_json().map_err(|e| AdminError::Setup(format!("{endpoint}: {e}")))?;
            request = request.header("content-type", "application/json").body(json);
        }
        let (status, answered_at, bytes) = self
            .limit
            .run(async {
                self.requests.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(endpoint, "admin request");
                let _sent = self.in_flight.sent(format!("{endpoint} at {}", self.at));
                let response = request.send().await.map_err(|e| self.no_answer(endpoint, &url, &e))?;
                let answered_at = self.answered_at(&url, response.url());
                let status = response.status();
                let bytes = self.read(endpoint, &answered_at, response, limit).await?;
                Ok::<_, AdminError>((status, answered_at, bytes))
            })
            .await?;
        let at = || answered_at.clone();
        if status == StatusCode::OK {
            if serde_json::from_slice::<serde::de::IgnoredAny>(&bytes).is_err() {
                return Err(AdminError::Foreign { endpoint, at: at(), what: self.redact(foreign(status, &bytes)) });
            }
            return serde_json::from_slice(&bytes).map_err(|e| AdminError::Decode {
                endpoint,
                at: at(),
                reason: e.to_string(),
            });
        }
        let (code, message) = match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(b) => (b.code, b.message),
            // A proxy's 502-504 while Garage restarts: worth waiting for, like Garage's own 503.
            Err(_) if matches!(status.as_u16(), 502..=504) => {
                (status.canonical_reason().unwrap_or("error").to_string(), String::new())
            }
            Err(_) => {
                return Err(AdminError::Foreign { endpoint, at: at(), what: self.redact(foreign(status, &bytes)) });
            }
        };
        tracing::debug!(endpoint, status = status.as_u16(), %code, "admin error");
        Err(AdminError::Api { endpoint, at: at(), status: status.as_u16(), code, message: self.redact(message) })
    }

    fn no_answer(&self, endpoint: &'static str, requested: &Url, e: &reqwest::Error) -> AdminError {
        let n = NoAnswer::from_reqwest(e);
        let at = e.url().map_or_else(|| self.at.clone(), |failed| self.answered_at(requested, failed));
        AdminError::Transport { endpoint, at, reason: n.reason, unresolved: n.unresolved }
    }

    /// The base URL as messages show it, and where a redirect led, if the answer came from there.
    fn answered_at(&self, requested: &Url, answered: &Url) -> String {
        match redirected_to(requested, answered) {
            Some(target) => format!("{} (redirected to {target})", self.at),
            None => self.at.clone(),
        }
    }

    /// Reads a body of at most `limit` bytes; `at` is where it comes from.
    async fn read(
        &self,
        endpoint: &'static str,
        at: &str,
        response: reqwest::Response,
        limit: usize,
    ) -> Result<Vec<u8>, AdminError> {
        read_capped(response, limit).await.map_err(|e| match e {
            ReadError::NoAnswer(n) => {
                AdminError::Transport { endpoint, at: at.to_string(), reason: n.reason, unresolved: n.unresolved }
            }
            ReadError::TooLarge { limit } => AdminError::TooLarge { endpoint, at: at.to_string(), limit },
        })
    }

    /// A server that echoes the request must not make the token reach a message.
    fn redact(&self, text: String) -> String {
        let token = self.token.expose();
        if text.contains(token) { text.replace(token, "<redacted>") } else { text }
    }

    async fn get<T: DeserializeOwned>(&self, endpoint: &'static str, query: &[(&str, &str)]) -> Result<T, AdminError> {
        self.call(Method::GET, endpoint, query, None, MAX_ANSWER_BYTES).await
    }

    /// A read whose answer grows with the number of buckets or keys.
    async fn get_list<T: DeserializeOwned>(
        &self,
        endpoint: &'static str,
        query: &[(&str, &str)],
    ) -> Result<T, AdminError> {
        self.call(Method::GET, endpoint, query, None, MAX_LIST_BYTES).await
    }

    async fn post<T: DeserializeOwned>(
        &self,
        endpoint: &'static str,
        query: &[(&str, &str)],
        body: &dyn ErasedSerialize,
    ) -> Result<T, AdminError> {
        self.call(Method::POST, endpoint, query, Some(body), MAX_ANSWER_BYTES).await
    }

    // ---- cluster ----

    pub async fn cluster_status(&self) -> Result<ClusterStatus, AdminError> {
        self.get("GetClusterStatus", &[]).await
    }

    /// `GET /health`, which needs no token (and so costs Garage no password
    /// hash check): `Ok(None)` when the cluster has quorum, `Ok(Some(why))`
    /// when it answers 503 "unavailable". It computes the same status as
    /// `GetClusterHealth`; it is not usable before a layout exists.
    pub async fn health(&self) -> Result<Option<String>, AdminError> {
        let endpoint = "health";
        let url = self.base.join("health").expect("valid path");
        let (status, at, body) = self
            .limit
            .run(async {
                self.requests.fetch_add(1, Ordering::Relaxed);
                let _sent = self.in_flight.sent(format!("/health at {}", self.at));
                let response =
                    self.http.get(url.clone()).send().await.map_err(|e| self.no_answer(endpoint, &url, &e))?;
                let at = self.answered_at(&url, response.url());
                let status = response.status();
                let body = self.read(endpoint, &at, response, MAX_HEALTH_BYTES).await?;
                Ok::<_, AdminError>((status, at, body))
            })
            .await?;
        let text = String::from_utf8_lossy(&body);
        match status {
            StatusCode::OK => Ok(None),
            StatusCode::SERVICE_UNAVAILABLE => {
                let first: String = text.lines().next().unwrap_or("").chars().take(200).collect();
                Ok(Some(if first.trim().is_empty() { "unavailable".into() } else { self.redact(first) }))
            }
            // A proxy's 502-504 while Garage restarts: worth waiting for, as in `call`.
            s if matches!(s.as_u16(), 502..=504) => Err(AdminError::Api {
                endpoint,
                at,
                status: s.as_u16(),
                code: s.canonical_reason().unwrap_or("error").to_string(),
                message: String::new(),
            }),
            _ => Err(AdminError::Foreign { endpoint, at, what: self.redact(foreign(status, &body)) }),
        }
    }

    /// The id of the node that answers at this URL.
    pub async fn own_node_id(&self) -> Result<String, AdminError> {
        let info: NodeInfoResponse = self.get("GetNodeInfo", &[("node", "self")]).await?;
        info.success.into_keys().next().ok_or_else(|| AdminError::Decode {
            endpoint: "GetNodeInfo",
            at: self.at.clone(),
            reason: "the node did not report its own id".into(),
        })
    }

    pub async fn connect_nodes(&self, peers: &[String]) -> Result<Vec<ConnectResult>, AdminError> {
        self.post("ConnectClusterNodes", &[], &peers).await
    }

    // ---- layout ----

    pub async fn cluster_layout(&self) -> Result<ClusterLayout, AdminError> {
        self.get("GetClusterLayout", &[]).await
    }

    pub async fn update_layout(&self, request: &UpdateLayoutRequest) -> Result<ClusterLayout, AdminError> {
        self.post("UpdateClusterLayout", &[], request).await
    }

    pub async fn apply_layout(&self, version: u64) -> Result<ClusterLayout, AdminError> {
        let response: ApplyLayoutResponse =
            self.post("ApplyClusterLayout", &[], &serde_json::json!({ "version": version })).await?;
        Ok(response.layout)
    }

    pub async fn cluster_layout_history(&self) -> Result<LayoutHistory, AdminError> {
        self.get("GetClusterLayoutHistory", &[]).await
    }

    /// Stops waiting for the nodes that are down to take part in layout
    /// `version`; with `allow_missing_data`, also for every node to sync it.
    pub async fn skip_dead_nodes(&self, request: &SkipDeadNodesRequest) -> Result<SkipDeadNodesResponse, AdminError> {
        self.post("ClusterLayoutSkipDeadNodes", &[], request).await
    }

    // ---- keys ----

    /// `None` when Garage has no such key (404), including a deleted one.
    pub async fn key_info_with_secret(&self, id: &str) -> Result<Option<KeyInfo>, AdminError> {
        not_found_as_none(self.get_list("GetKeyInfo", &[("id", id), ("showSecretKey", "true")]).await)
    }

    /// Every key's id and name (Garage lists at most 10 000).
    pub async fn list_keys(&self) -> Result<Vec<ListedKey>, AdminError> {
        self.get_list("ListKeys", &[]).await
    }

    pub async fn import_key(&self, id: &str, secret: &Secret, name: &str) -> Result<KeyInfo, AdminError> {
        let body = ImportKeyRequest { access_key_id: id, secret_access_key: secret.expose(), name };
        self.post("ImportKey", &[], &body).await
    }

    pub async fn rename_key(&self, id: &str, name: &str) -> Result<KeyInfo, AdminError> {
        self.post("UpdateKey", &[("id", id)], &RenameKeyRequest { name }).await
    }

    // ---- buckets ----

    /// `None` when no bucket has this global alias.
    pub async fn bucket_by_alias(&self, alias: &str) -> Result<Option<BucketInfo>, AdminError> {
        not_found_as_none(self.get("GetBucketInfo", &[("globalAlias", alias)]).await)
    }

    /// `None` when no bucket has this id.
    pub async fn bucket_by_id(&self, id: &str) -> Result<Option<BucketInfo>, AdminError> {
        not_found_as_none(self.get("GetBucketInfo", &[("id", id)]).await)
    }

    pub async fn list_buckets(&self) -> Result<Vec<ListedBucket>, AdminError> {
        self.get_list("ListBuckets", &[]).await
    }

    pub async fn create_bucket(&self, alias: &str) -> Result<BucketInfo, AdminError> {
        self.post("CreateBucket", &[], &CreateBucketRequest { global_alias: alias }).await
    }

    /// Adds a global alias; Garage answers 200 when it already points to this bucket.
    pub async fn add_bucket_alias(&self, bucket_id: &str, alias: &str) -> Result<BucketInfo, AdminError> {
        self.post("AddBucketAlias", &[], &serde_json::json!({ "bucketId": bucket_id, "globalAlias": alias })).await
    }

    /// Sets both quotas (Garage replaces both; `None` is unlimited).
    pub async fn update_bucket(&self, bucket_id: &str, update: &BucketUpdate) -> Result<BucketInfo, AdminError> {
        self.post("UpdateBucket", &[("id", bucket_id)], update).await
    }

    pub async fn allow_bucket_key(
        &self,
        bucket_id: &str,
        access_key_id: &str,
        permissions: Permissions,
    ) -> Result<BucketInfo, AdminError> {
        self.post("AllowBucketKey", &[], &AllowBucketKeyRequest { bucket_id, access_key_id, permissions }).await
    }
}

fn not_found_as_none<T>(result: Result<T, AdminError>) -> Result<Option<T>, AdminError> {
    match result {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

/// `serde::Serialize` is not object safe; this is the one thing the client needs of a body.
trait ErasedSerialize {
    fn to_json(&self) -> serde_json::Result<Vec<u8>>;
}

impl<T: Serialize + ?Sized> ErasedSerialize for T {
    fn to_json(&self) -> serde_json::Result<Vec<u8>> {
        serde_json::to_vec(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_s3_error_document_is_recognised_as_xml_not_by_its_words() {
        let s3 = br#"<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code><Message>Forbidden</Message></Error>"#;
        assert!(foreign(StatusCode::FORBIDDEN, s3).starts_with("this is an S3 API (it answered 403"));
        let namespaced = br#"<Error xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Code>NoSuchKey</Code></Error>"#;
        assert!(foreign(StatusCode::NOT_FOUND, namespaced).starts_with("this is an S3 API"));
        // The words alone, in a page that is not an S3 error document, are not one.
        let page = b"<html><body>Use <Error> and <Code> in your XML</body></html>";
        assert!(foreign(StatusCode::NOT_FOUND, page).starts_with("answered 404 Not Found with `<html>"));
        assert_eq!(
            foreign(StatusCode::BAD_GATEWAY, b""),
            "answered 502 Bad Gateway with no Garage error body: this is not Garage's admin API"
        );
    }
}
