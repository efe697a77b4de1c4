//! The proof: with the access key, PUT a small object through Garage's S3
//! API, GET it back and compare the bytes, then DELETE it. Requests are
//! signed with AWS SigV4 (presigned, path-style URLs from rusty-s3) and sent
//! with the same plain-HTTP client as the admin calls.
//!
//! [`Prover`] is apply's last step, [`probe_once`] the single attempt of
//! `check`; both return why a round trip failed, and the caller decides
//! whether to wait.

use std::time::Duration;

use reqwest::header::HeaderMap;
use rusty_s3::actions::{DeleteObject, GetObject, PutObject};
use rusty_s3::{Bucket, Credentials, Method, S3Action, UrlStyle};
use tokio::time::Instant;
use url::Url;

use crate::converge::lifecycle::{self, Rule};
use crate::desired::KeyWant;
use crate::error::{Error, display_url};
use crate::http::{NoAnswer, ReadError, human_limit, read_capped};

/// How long presigned URLs stay valid; each is used at once.
const SIGNATURE_TTL: Duration = Duration::from_secs(300);
/// S3 answers that can be a moment of propagation rather than a real
/// failure (another node has not seen the new key or bucket yet) are
/// retried for this long before they count.
pub const PROPAGATION_GRACE: Duration = Duration::from_secs(15);
const PROBE_BYTES: usize = 1024;
/// S3 answers to the probe are its 1 KiB object or an error document: a
/// larger answer is not an S3 API's, and is not read past this.
const MAX_ANSWER_BYTES: usize = 64 << 10;
/// A lifecycle configuration holds at most 1000 rules (S3's limit) of a few
/// hundred bytes each; someone else's may be that long.
const MAX_LIFECYCLE_BYTES: usize = 1 << 20;

/// Why one round trip failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// No HTTP answer: waited out until the deadline.
    Transport(String),
    /// An S3 error answer.
    Status { op: &'static str, status: u16, code: String, message: String },
    /// The GET returned other bytes than the PUT sent.
    Mismatch { got: usize },
    /// An answer larger than any S3 answer to the probe: the read stopped at the cap.
    TooLarge { op: &'static str, limit: usize },
    /// The request could not be built from the settings.
    Setup(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Transport(reason) => write!(f, "no answer: {reason}"),
            Self::Status { op, status, code, message } if message.is_empty() => {
                write!(f, "{op} answered {status} {code}")
            }
            Self::Status { op, status, code, message } => write!(f, "{op} answered {status} {code}: {message}"),
            Self::Mismatch { got } => {
                write!(f, "GET returned {got} bytes that differ from the {PROBE_BYTES} bytes written")
            }
            Self::Setup(reason) => write!(f, "cannot build the S3 request: {reason}"),
            Self::TooLarge { op, limit } => {
                write!(f, "{op} answered with more than {}, more than an S3 API sends to it", human_limit(*limit))
            }
        }
    }
}

impl Failure {
    /// The S3 error code (`NoSuchBucket`, `AccessDenied`, ...), when S3 answered with one.
    pub fn s3_code(&self) -> Option<&str> {
        match self {
            Self::Status { code, .. } => Some(code),
            _ => None,
        }
    }

    /// A lifecycle request refused because its key is not (yet) an owner of
    /// the bucket, or not yet known to S3.
    pub fn not_owner_yet(&self) -> bool {
        matches!(self, Self::Status { status: 403, code, .. } if code == LIFECYCLE_DENIED || code == "InvalidAccessKeyId")
    }

    /// An answer that another node not yet aware of a new key or bucket gives.
    pub fn may_be_propagation(&self) -> bool {
        match self {
            Self::Transport(_) => true,
            Self::Status { status, code, .. } => {
                *status >= 500
                    || matches!(
                        code.as_str(),
                        "InvalidAccessKeyId" | "NoSuchBucket" | "AccessDenied" | LIFECYCLE_DENIED
                    )
            }
            Self::Mismatch { .. } | Self::Setup(_) | Self::TooLarge { .. } => false,
        }
    }
}

/// What to check when S3 refuses the key.
fn hint_for(code: &str) -> String {
    match code {
        "SignatureDoesNotMatch" | "AuthorizationHeaderMalformed" => {
            "Check that --s3-region (GARAGE_INIT_S3_REGION) matches s3_api.s3_region in garage.toml, \
             and that --s3-url points at Garage's S3 port."
        }
        "InvalidAccessKeyId" => {
            "The S3 endpoint does not know the key: is --s3-url the same Garage cluster as --admin-url?"
        }
        "NoSuchBucket" => {
            "The S3 endpoint does not know the bucket: is --s3-url the same Garage cluster as --admin-url?"
        }
        "AccessDenied" => "The key lacks a permission on the bucket; `garage bucket info <bucket>` shows its grants.",
        LIFECYCLE_DENIED => {
            "Garage lets only a key with the owner permission read or write lifecycle rules: grant it with \
             `garage bucket allow --owner --key <key> <bucket>`, or add `owner` to the key's grant in the spec."
        }
        _ => "Run `garage-init` again with RUST_LOG=debug, and check `docker compose logs garage`.",
    }
    .to_string()
}

/// A round trip that passed: the probe object's name and how long it took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probed {
    pub object: String,
    pub took: Duration,
}

/// One PUT, GET, DELETE round trip of a fresh probe object, without any
/// retry: the single attempt `garage-init check` makes. Returns the object
/// name and how long the round trip took.
pub async fn probe_once(
    http: &reqwest::Client,
    s3_url: &Url,
    region: &str,
    bucket_name: &str,
    key: &KeyWant,
) -> Result<Probed, Failure> {
    let bucket = Bucket::new(s3_url.clone(), UrlStyle::Path, bucket_name.to_string(), region.to_string())
        .map_err(|e| Failure::Setup(e.to_string()))?;
    let credentials = Credentials::new(key.id.clone(), key.secret.expose().to_string());
    let object = probe_object_name();
    let probe = Probe { http, bucket: &bucket, credentials: &credentials, object: &object };
    let started = Instant::now();
    probe.round_trip(&probe_body()).await?;
    Ok(Probed { object, took: started.elapsed() })
}

fn probe_object_name() -> String {
    format!("garage-init-probe/{:016x}", fastrand::u64(..))
}

fn probe_body() -> Vec<u8> {
    std::iter::repeat_with(|| fastrand::u8(..)).take(PROBE_BYTES).collect()
}

/// The code a lifecycle request refused for want of the owner permission is reported with.
const LIFECYCLE_DENIED: &str = "AccessDenied (lifecycle)";

/// The run's S3 client: the proof `apply` makes (one round trip per call),
/// and the reads and writes of lifecycle rules, with one HTTP client for the
/// run. Retrying is the caller's: it decides between waiting, observing
/// Garage again, and giving up.
pub struct Prover {
    http: reqwest::Client,
    s3_url: Url,
    region: String,
}

impl Prover {
    pub fn new(s3_url: &Url, region: &str) -> Result<Self, Failure> {
        let http = crate::http::client(HeaderMap::new()).map_err(|e| Failure::Setup(e.to_string()))?;
        Ok(Self::with_client(http, s3_url, region))
    }

    /// With an HTTP client the caller already has.
    pub fn with_client(http: reqwest::Client, s3_url: &Url, region: &str) -> Self {
        Self { http, s3_url: s3_url.clone(), region: region.to_string() }
    }

    /// One PUT, GET, DELETE round trip; returns the report detail.
    pub async fn prove(&self, bucket_name: &str, key: &KeyWant) -> Result<String, Failure> {
        let Probed { object, took } = probe_once(&self.http, &self.s3_url, &self.region, bucket_name, key).await?;
        let ms = took.as_millis();
        Ok(format!("PUT, GET, DELETE of {object} in {bucket_name} as {} ({ms} ms)", key.id))
    }

    pub fn url(&self) -> &Url {
        &self.s3_url
    }

    fn bucket(&self, name: &str) -> Result<Bucket, Failure> {
        Bucket::new(self.s3_url.clone(), UrlStyle::Path, name.to_string(), self.region.clone())
            .map_err(|e| Failure::Setup(e.to_string()))
    }

    /// `?lifecycle` on the bucket, signed for `method`.
    fn lifecycle_url(&self, bucket: &Bucket, key: &KeyWant, method: Method) -> Url {
        rusty_s3::signing::sign(
            &jiff::Timestamp::now(),
            method,
            bucket.base_url().clone(),
            &key.id,
            key.secret.expose(),
            None,
            &self.region,
            SIGNATURE_TTL.as_secs(),
            std::iter::once(("lifecycle", "")),
            std::iter::empty(),
        )
    }

    /// The bucket's lifecycle rules (GetBucketLifecycleConfiguration); none
    /// when it has no configuration.
    pub async fn lifecycle(&self, bucket_name: &str, key: &KeyWant) -> Result<Vec<Rule>, Failure> {
        let bucket = self.bucket(bucket_name)?;
        let url = self.lifecycle_url(&bucket, key, Method::Get);
        let op = "GetBucketLifecycleConfiguration";
        match send(op, self.http.get(url), MAX_LIFECYCLE_BYTES).await {
            Ok(body) => lifecycle::parse(&String::from_utf8_lossy(&body)).map_err(|why| Failure::Status {
                op,
                status: 200,
                code: "MalformedXML".into(),
                message: why,
            }),
            // Garage answers a bucket without rules with a bare 404 (AWS with NoSuchLifecycleConfiguration).
            Err(Failure::Status { status: 404, code, .. }) if code != "NoSuchBucket" => Ok(Vec::new()),
            Err(f) => Err(owner_needed(f)),
        }
    }

    /// Writes `rules` as the bucket's whole lifecycle configuration
    /// (PutBucketLifecycleConfiguration); no rules deletes it.
    pub async fn set_lifecycle(&self, bucket_name: &str, key: &KeyWant, rules: &[Rule]) -> Result<(), Failure> {
        let bucket = self.bucket(bucket_name)?;
        let sent = if rules.is_empty() {
            let url = self.lifecycle_url(&bucket, key, Method::Delete);
            send("DeleteBucketLifecycle", self.http.delete(url), MAX_ANSWER_BYTES).await
        } else {
            let url = self.lifecycle_url(&bucket, key, Method::Put);
            let request = self.http.put(url).header("content-type", "application/xml").body(lifecycle::render(rules));
            send("PutBucketLifecycleConfiguration", request, MAX_ANSWER_BYTES).await
        };
        sent.map(drop).map_err(owner_needed)
    }
}

/// A lifecycle request refused with AccessDenied: the key is no owner.
fn owner_needed(f: Failure) -> Failure {
    match f {
        Failure::Status { op, status: 403, code, message } if code == "AccessDenied" => {
            let message = format!(
                "the key is not an owner of the bucket{}",
                if message.is_empty() { String::new() } else { format!(" ({message})") }
            );
            Failure::Status { op, status: 403, code: LIFECYCLE_DENIED.into(), message }
        }
        f => f,
    }
}

/// The error a failed lifecycle read or write ends a run with.
pub fn lifecycle_error(s3_url: &Url, bucket: &str, failure: Failure) -> Error {
    let hint = hint_for(failure.s3_code().unwrap_or_default());
    Error::Lifecycle { bucket: bucket.to_string(), url: display_url(s3_url), reason: failure.to_string(), hint }
}

/// The error a failed proof ends a run with.
pub fn verify_error(s3_url: &Url, failure: Failure) -> Error {
    let hint = hint_for(failure.s3_code().unwrap_or_default());
    Error::Verify { url: display_url(s3_url), reason: failure.to_string(), hint }
}

struct Probe<'a> {
    http: &'a reqwest::Client,
    bucket: &'a Bucket,
    credentials: &'a Credentials,
    object: &'a str,
}

impl Probe<'_> {
    async fn round_trip(&self, body: &[u8]) -> Result<(), Failure> {
        let put = PutObject::new(self.bucket, Some(self.credentials), self.object).sign(SIGNATURE_TTL);
        send("PUT", self.http.put(put).body(body.to_vec()), MAX_ANSWER_BYTES).await?;

        let get = GetObject::new(self.bucket, Some(self.credentials), self.object).sign(SIGNATURE_TTL);
        let got = send("GET", self.http.get(get), MAX_ANSWER_BYTES).await?;
        let matches = got.as_slice() == body;

        // Clean up even when the bytes differ.
        let delete = DeleteObject::new(self.bucket, Some(self.credentials), self.object).sign(SIGNATURE_TTL);
        send("DELETE", self.http.delete(delete), MAX_ANSWER_BYTES).await?;

        if matches { Ok(()) } else { Err(Failure::Mismatch { got: got.len() }) }
    }
}

/// Sends one S3 request; its answer's body (read up to `limit`), or the S3 error it carries.
pub(crate) async fn send(op: &'static str, request: reqwest::RequestBuilder, limit: usize) -> Result<Vec<u8>, Failure> {
    let response = request.send().await.map_err(|e| Failure::Transport(NoAnswer::from_reqwest(&e).reason))?;
    let status = response.status();
    let bytes = read_capped(response, limit).await.map_err(|e| match e {
        ReadError::NoAnswer(n) => Failure::Transport(n.reason),
        ReadError::TooLarge { limit } => Failure::TooLarge { op, limit },
    })?;
    tracing::debug!(op, status = status.as_u16(), "S3 request");
    if status.is_success() {
        return Ok(bytes.to_vec());
    }
    let text = String::from_utf8_lossy(&bytes);
    Err(Failure::Status {
        op,
        status: status.as_u16(),
        code: xml_field(&text, "Code").unwrap_or_else(|| status.canonical_reason().unwrap_or("error").into()),
        message: xml_field(&text, "Message").unwrap_or_default(),
    })
}

/// The text of the first `<name>…</name>` element of an S3 error body.
fn xml_field(xml: &str, name: &str) -> Option<String> {
    let start = xml.find(&format!("<{name}>"))? + name.len() + 2;
    let end = start + xml[start..].find(&format!("</{name}>"))?;
    Some(xml[start..end].trim().chars().take(300).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_error_bodies_are_read() {
        let body = "<?xml version=\"1.0\"?><Error><Code>SignatureDoesNotMatch</Code><Message>Forbidden: bad sig</Message></Error>";
        assert_eq!(xml_field(body, "Code").as_deref(), Some("SignatureDoesNotMatch"));
        assert_eq!(xml_field(body, "Message").as_deref(), Some("Forbidden: bad sig"));
        assert_eq!(xml_field("not xml", "Code"), None);
    }

    #[test]
    fn region_mismatch_points_at_the_region_setting() {
        assert!(hint_for("AuthorizationHeaderMalformed").contains("--s3-region"));
        assert!(hint_for("SignatureDoesNotMatch").contains("s3_region"));
    }

    #[test]
    fn only_propagation_like_failures_are_retried() {
        let status =
            |code: &str, status| Failure::Status { op: "PUT", status, code: code.into(), message: String::new() };
        assert!(status("InvalidAccessKeyId", 403).may_be_propagation());
        assert!(status("ServiceUnavailable", 503).may_be_propagation());
        assert!(!status("SignatureDoesNotMatch", 403).may_be_propagation());
        assert!(!Failure::Mismatch { got: 3 }.may_be_propagation());
    }
}
