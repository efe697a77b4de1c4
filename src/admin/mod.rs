//! Client for Garage's admin API v2: one method per endpoint used, typed
//! answers, typed errors. Every request carries exactly
//! `Authorization: Bearer <token>` and has a timeout.

pub mod types;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use url::Url;

use crate::secret::Secret;
use types::*;

/// How long one admin request may take. Garage answers in milliseconds; its
/// own RPC quorum timeouts surface as 503 well before this.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// No HTTP answer: refused, reset, timed out, name not resolved.
    #[error("{endpoint}: no answer: {reason}")]
    Transport { endpoint: &'static str, reason: String },
    /// Garage answered with an error body.
    #[error("{endpoint}: Garage answered {status} {code}: {message}")]
    Api { endpoint: &'static str, status: u16, code: String, message: String },
    /// Garage answered 200 with something that is not the expected JSON.
    #[error("{endpoint}: unexpected answer from Garage: {reason}")]
    Decode { endpoint: &'static str, reason: String },
}

impl AdminError {
    /// Worth retrying within the deadline: the server is starting, restarting,
    /// waiting for a layout, or short of quorum.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Transport { .. } => true,
            Self::Api { status, .. } => matches!(*status, 502..=504) || self.is_layout_not_ready(),
            Self::Decode { .. } => false,
        }
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
}

pub struct AdminClient {
    http: reqwest::Client,
    base: Url,
    /// Requests sent, counted for the final report.
    requests: AtomicU32,
}

impl AdminClient {
    pub fn new(mut base: Url, token: &Secret) -> Result<Self, AdminError> {
        // `join` replaces the last path segment unless the path ends with '/'.
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let mut auth =
            HeaderValue::from_str(&format!("Bearer {}", token.expose())).map_err(|_| AdminError::Decode {
                endpoint: "configuration",
                reason: "the admin token cannot be sent as an HTTP header".into(),
            })?;
        // Keeps the value out of any debug output of the HTTP stack.
        auth.set_sensitive(true);
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, auth);
        let http = http_client(headers).map_err(|e| AdminError::Decode {
            endpoint: "configuration",
            reason: format!("cannot build the HTTP client: {e}"),
        })?;
        Ok(Self { http, base, requests: AtomicU32::new(0) })
    }

    pub fn base_url(&self) -> &Url {
        &self.base
    }

    /// Requests sent so far, `/health` included.
    pub fn requests(&self) -> u32 {
        self.requests.load(Ordering::Relaxed)
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        endpoint: &'static str,
        query: &[(&str, &str)],
        body: Option<&dyn ErasedSerialize>,
    ) -> Result<T, AdminError> {
        let mut url = self.base.join(&format!("v2/{endpoint}")).expect("endpoint names are valid URL paths");
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let mut request = self.http.request(method.clone(), url);
        if let Some(body) = body {
            let json = body.to_json().map_err(|e| AdminError::Decode { endpoint, reason: e.to_string() })?;
            request = request.header("content-type", "application/json").body(json);
        }
        self.requests.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(endpoint, "admin request");
        let response =
            request.send().await.map_err(|e| AdminError::Transport { endpoint, reason: transport_reason(&e) })?;
        let status = response.status();
        let bytes =
            response.bytes().await.map_err(|e| AdminError::Transport { endpoint, reason: transport_reason(&e) })?;
        if status == StatusCode::OK {
            return serde_json::from_slice(&bytes).map_err(|e| AdminError::Decode { endpoint, reason: e.to_string() });
        }
        let (code, message) = match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(b) => (b.code, b.message),
            Err(_) => (
                status.canonical_reason().unwrap_or("error").to_string(),
                String::from_utf8_lossy(&bytes).chars().take(200).collect(),
            ),
        };
        tracing::debug!(endpoint, status = status.as_u16(), %code, "admin error");
        Err(AdminError::Api { endpoint, status: status.as_u16(), code, message })
    }

    async fn get<T: DeserializeOwned>(&self, endpoint: &'static str, query: &[(&str, &str)]) -> Result<T, AdminError> {
        self.call(Method::GET, endpoint, query, None).await
    }

    async fn post<T: DeserializeOwned>(
        &self,
        endpoint: &'static str,
        query: &[(&str, &str)],
        body: &dyn ErasedSerialize,
    ) -> Result<T, AdminError> {
        self.call(Method::POST, endpoint, query, Some(body)).await
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
        self.requests.fetch_add(1, Ordering::Relaxed);
        let response = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| AdminError::Transport { endpoint, reason: transport_reason(&e) })?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        match status {
            StatusCode::OK => Ok(None),
            StatusCode::SERVICE_UNAVAILABLE => Ok(Some(text.lines().next().unwrap_or("unavailable").to_string())),
            _ => Err(AdminError::Api { endpoint, status: status.as_u16(), code: String::new(), message: text }),
        }
    }

    /// The id of the node that answers at this URL.
    pub async fn own_node_id(&self) -> Result<String, AdminError> {
        let info: NodeInfoResponse = self.get("GetNodeInfo", &[("node", "self")]).await?;
        info.success
            .into_keys()
            .next()
            .ok_or(AdminError::Decode { endpoint: "GetNodeInfo", reason: "the node did not report its own id".into() })
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

    // ---- keys ----

    /// `None` when Garage has no such key (404), including a deleted one.
    pub async fn key_info_with_secret(&self, id: &str) -> Result<Option<KeyInfo>, AdminError> {
        not_found_as_none(self.get("GetKeyInfo", &[("id", id), ("showSecretKey", "true")]).await)
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

    pub async fn create_bucket(&self, alias: &str) -> Result<BucketInfo, AdminError> {
        self.post("CreateBucket", &[], &CreateBucketRequest { global_alias: alias }).await
    }

    /// Adds a global alias; Garage answers 200 when it already points to this bucket.
    pub async fn add_bucket_alias(&self, bucket_id: &str, alias: &str) -> Result<BucketInfo, AdminError> {
        self.post("AddBucketAlias", &[], &serde_json::json!({ "bucketId": bucket_id, "globalAlias": alias })).await
    }

    /// Sets both quotas (Garage replaces both; `None` is unlimited).
    pub async fn set_bucket_quotas(&self, bucket_id: &str, quotas: Quotas) -> Result<BucketInfo, AdminError> {
        self.post("UpdateBucket", &[("id", bucket_id)], &serde_json::json!({ "quotas": quotas })).await
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

/// One plain-HTTP client shape for Garage and the registry: pooled
/// keep-alive connections, bounded connect and request times, no proxy
/// discovery (a compose network needs none), no TLS stack.
pub(crate) fn http_client(headers: HeaderMap) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .default_headers(headers)
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .no_proxy()
        .tcp_nodelay(true)
        .build()
}

/// The innermost cause of a transport error ("Connection refused (os error
/// 111)", "failed to lookup address information: ..."), without the URL.
pub(crate) fn transport_reason(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return "timed out".into();
    }
    let mut cause: &dyn std::error::Error = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    let text = cause.to_string();
    if text.is_empty() { "request failed".into() } else { text }
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
