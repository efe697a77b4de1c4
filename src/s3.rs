//! The S3 client, with the access key. The proof: PUT a small object
//! through Garage's S3 API, GET it back and compare the bytes, then DELETE
//! it; and a bucket's lifecycle rules, read and written. Requests are signed
//! with AWS SigV4 (presigned, path-style URLs from rusty-s3) and sent with
//! the same plain-HTTP client as the admin calls; every failure is an
//! [`S3Error`].
//!
//! [`S3Client`] is apply's (the proof is its last step), [`probe_once`] the
//! single attempt of `check`; both return why a round trip failed, and the
//! caller decides whether to wait. `cache`'s requests go through `send` too.

use std::time::Duration;

use reqwest::header::HeaderMap;
use rusty_s3::actions::{DeleteObject, GetObject, PutObject};
use rusty_s3::{Bucket, Credentials, Method, S3Action, UrlStyle};
use tokio::time::Instant;
use url::Url;

use crate::converge::lifecycle::{self, Rule};
use crate::desired::KeyWant;
use crate::error::{Error, display_url};
use crate::http::{NoAnswer, ReadError, RequestLimit, human_limit, read_capped, redirected_to};
use crate::wait::InFlight;

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

/// An S3 error code, as an S3 error document names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum S3Code {
    NoSuchBucket,
    AccessDenied,
    InvalidAccessKeyId,
    SignatureDoesNotMatch,
    AuthorizationHeaderMalformed,
    /// Any other code, as given.
    Other(String),
}

impl S3Code {
    pub fn parse(code: &str) -> Self {
        match code {
            "NoSuchBucket" => Self::NoSuchBucket,
            "AccessDenied" => Self::AccessDenied,
            "InvalidAccessKeyId" => Self::InvalidAccessKeyId,
            "SignatureDoesNotMatch" => Self::SignatureDoesNotMatch,
            "AuthorizationHeaderMalformed" => Self::AuthorizationHeaderMalformed,
            other => Self::Other(other.to_string()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::NoSuchBucket => "NoSuchBucket",
            Self::AccessDenied => "AccessDenied",
            Self::InvalidAccessKeyId => "InvalidAccessKeyId",
            Self::SignatureDoesNotMatch => "SignatureDoesNotMatch",
            Self::AuthorizationHeaderMalformed => "AuthorizationHeaderMalformed",
            Self::Other(code) => code,
        }
    }
}

impl std::fmt::Display for S3Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an S3 request, or the proof's round trip, failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum S3Error {
    /// No HTTP answer: waited out until the deadline.
    Transport(String),
    /// An error answer. `code` and `message` come from its S3 error document
    /// (XML, entities decoded); `code` is `None` when the body is not one
    /// (Garage answers a bucket without lifecycle rules with a bare 404).
    /// `redirected`: where a redirect led, when the answer came from there.
    Status { op: &'static str, status: u16, code: Option<S3Code>, message: String, redirected: Option<String> },
    /// A lifecycle request refused because the key is not an owner of the
    /// bucket (S3 lets only an owner read or write lifecycle rules).
    NotOwner { op: &'static str, message: String },
    /// A 200 answer whose document cannot be read.
    Unreadable { op: &'static str, reason: String },
    /// The GET returned other bytes than the PUT sent.
    Mismatch { got: usize },
    /// An answer larger than any S3 answer to the probe: the read stopped at the cap.
    TooLarge { op: &'static str, limit: usize },
    /// The request could not be built from the settings.
    Setup(String),
}

impl std::fmt::Display for S3Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Transport(reason) => write!(f, "no answer: {reason}"),
            Self::Status { op, status, code, message, redirected } => {
                write!(f, "{op}")?;
                if let Some(target) = redirected {
                    write!(f, ", redirected to {target},")?;
                }
                match code {
                    Some(code) => write!(f, " answered {status} {code}")?,
                    None => {
                        let reason = reqwest::StatusCode::from_u16(*status).ok().and_then(|s| s.canonical_reason());
                        write!(f, " answered {status} {}", reason.unwrap_or("without an S3 error document"))?
                    }
                }
                if !message.is_empty() {
                    write!(f, ": {message}")?;
                }
                Ok(())
            }
            Self::NotOwner { op, message } if message.is_empty() => {
                write!(f, "{op} answered 403 AccessDenied: the key is not an owner of the bucket")
            }
            Self::NotOwner { op, message } => {
                write!(f, "{op} answered 403 AccessDenied: the key is not an owner of the bucket ({message})")
            }
            Self::Unreadable { op, reason } => {
                write!(f, "{op} answered with a document garage-init cannot read: {reason}")
            }
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

impl S3Error {
    /// The S3 error code (`NoSuchBucket`, `AccessDenied`, ...), when S3 answered with one.
    pub fn s3_code(&self) -> Option<&S3Code> {
        match self {
            Self::Status { code, .. } => code.as_ref(),
            _ => None,
        }
    }

    /// A lifecycle request refused because its key is not (yet) an owner of
    /// the bucket, or not yet known to S3.
    pub fn not_owner_yet(&self) -> bool {
        matches!(self, Self::NotOwner { .. } | Self::Status { status: 403, code: Some(S3Code::InvalidAccessKeyId), .. })
    }

    /// An answer that another node not yet aware of a new key or bucket gives.
    pub fn may_be_propagation(&self) -> bool {
        match self {
            Self::Transport(_) | Self::NotOwner { .. } => true,
            Self::Status { status, code, .. } => {
                *status >= 500
                    || matches!(code, Some(S3Code::InvalidAccessKeyId | S3Code::NoSuchBucket | S3Code::AccessDenied))
            }
            Self::Unreadable { .. } | Self::Mismatch { .. } | Self::Setup(_) | Self::TooLarge { .. } => false,
        }
    }

    /// Garage's answer that its own storage fails (a full disk, an I/O
    /// error), which waiting does not mend.
    pub fn storage_failure(&self) -> bool {
        matches!(self, Self::Status { status, message, .. } if *status >= 500 && crate::error::storage_failure(message))
    }
}

/// Why S3 refused a request's key. Garage answers an unknown key and a
/// wrong secret with AccessDenied too, and says which in its message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// S3 does not know the access key.
    UnknownKey,
    /// S3 knows the key with another secret: the signature does not match.
    WrongSecret,
    /// The key is known, and lacks the permission.
    NotAllowed,
}

impl S3Error {
    /// Why S3 refused the key, when it did.
    pub fn refusal(&self) -> Option<Refusal> {
        let Self::Status { code: Some(code), message, .. } = self else { return None };
        match code {
            S3Code::InvalidAccessKeyId => Some(Refusal::UnknownKey),
            S3Code::SignatureDoesNotMatch => Some(Refusal::WrongSecret),
            // Garage: "Forbidden: No such key: GK…", "Forbidden: Invalid signature".
            S3Code::AccessDenied if message.contains("No such key") => Some(Refusal::UnknownKey),
            S3Code::AccessDenied if message.contains("signature") => Some(Refusal::WrongSecret),
            S3Code::AccessDenied => Some(Refusal::NotAllowed),
            _ => None,
        }
    }
}

/// What to check when S3 refuses the key.
fn hint_for(failure: &S3Error) -> String {
    if failure.storage_failure() {
        return crate::error::STORAGE_HINT.to_string();
    }
    if let S3Error::NotOwner { .. } = failure {
        return "Garage lets only a key with the owner permission read or write lifecycle rules: grant it with \
                `garage bucket allow --owner --key <key> <bucket>`, or add `owner` to the key's grant in the spec."
            .to_string();
    }
    match failure.s3_code() {
        Some(S3Code::SignatureDoesNotMatch | S3Code::AuthorizationHeaderMalformed) => {
            "Check that --s3-region (GARAGE_INIT_S3_REGION) matches s3_api.s3_region in garage.toml, \
             and that --s3-url points at Garage's S3 port."
        }
        Some(S3Code::InvalidAccessKeyId) => {
            "The S3 endpoint does not know the key: is --s3-url the same Garage cluster as --admin-url?"
        }
        Some(S3Code::NoSuchBucket) => {
            "The S3 endpoint does not know the bucket: is --s3-url the same Garage cluster as --admin-url?"
        }
        Some(S3Code::AccessDenied) => {
            "The key lacks a permission on the bucket; `garage bucket info <bucket>` shows its grants."
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
) -> Result<Probed, S3Error> {
    probe_tracked(http, s3_url, region, bucket_name, key, &InFlight::default()).await
}

/// [`probe_once`], its requests recorded in `in_flight` while they wait for an answer.
async fn probe_tracked(
    http: &reqwest::Client,
    s3_url: &Url,
    region: &str,
    bucket_name: &str,
    key: &KeyWant,
    in_flight: &InFlight,
) -> Result<Probed, S3Error> {
    let bucket = Bucket::new(s3_url.clone(), UrlStyle::Path, bucket_name.to_string(), region.to_string())
        .map_err(|e| S3Error::Setup(e.to_string()))?;
    let credentials = Credentials::new(key.id.clone(), key.secret.expose().to_string());
    let object = probe_object_name();
    let probe = RoundTrip { http, bucket: &bucket, credentials: &credentials, object: &object, in_flight };
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

/// The run's S3 client: the proof `apply` makes (one round trip per call),
/// and the reads and writes of lifecycle rules, with one HTTP client for the
/// run and at most a fixed number of requests in flight, however many
/// buckets are worked on at once. Retrying is the caller's: it decides
/// between waiting, observing Garage again, and giving up.
pub struct S3Client {
    http: reqwest::Client,
    s3_url: Url,
    region: String,
    /// Requests without an answer yet, for the deadline error.
    in_flight: InFlight,
    /// The bound on requests in flight through S3.
    limit: RequestLimit,
}

impl S3Client {
    /// With at most `in_flight` requests at once.
    pub fn new(s3_url: &Url, region: &str, in_flight: usize) -> Result<Self, S3Error> {
        let http = crate::http::client(HeaderMap::new(), in_flight).map_err(|e| S3Error::Setup(e.to_string()))?;
        Ok(Self::with_client(http, s3_url, region, in_flight))
    }

    /// With an HTTP client the caller already has.
    pub fn with_client(http: reqwest::Client, s3_url: &Url, region: &str, limit: usize) -> Self {
        let (s3_url, region) = (s3_url.clone(), region.to_string());
        Self { http, s3_url, region, in_flight: InFlight::default(), limit: RequestLimit::new(limit) }
    }

    /// Requests sent and not answered yet.
    pub fn in_flight(&self) -> &InFlight {
        &self.in_flight
    }

    /// One PUT, GET, DELETE round trip; returns the report detail. Its three
    /// requests go one after the other, in one place among those in flight.
    pub async fn prove(&self, bucket_name: &str, key: &KeyWant) -> Result<String, S3Error> {
        let Probed { object, took } = self
            .limit
            .run(probe_tracked(&self.http, &self.s3_url, &self.region, bucket_name, key, &self.in_flight))
            .await?;
        let ms = took.as_millis();
        Ok(format!("PUT, GET, DELETE of {object} in {bucket_name} as {} ({ms} ms)", key.id))
    }

    pub fn url(&self) -> &Url {
        &self.s3_url
    }

    fn bucket(&self, name: &str) -> Result<Bucket, S3Error> {
        Bucket::new(self.s3_url.clone(), UrlStyle::Path, name.to_string(), self.region.clone())
            .map_err(|e| S3Error::Setup(e.to_string()))
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
    pub async fn lifecycle(&self, bucket_name: &str, key: &KeyWant) -> Result<Vec<Rule>, S3Error> {
        let bucket = self.bucket(bucket_name)?;
        let url = self.lifecycle_url(&bucket, key, Method::Get);
        let op = "GetBucketLifecycleConfiguration";
        match self.limit.run(send(op, self.http.get(url), MAX_LIFECYCLE_BYTES, &self.in_flight)).await {
            Ok(body) => {
                let text = std::str::from_utf8(&body)
                    .map_err(|_| S3Error::Unreadable { op, reason: "the answer is not UTF-8 text".into() })?;
                lifecycle::parse(text).map_err(|reason| S3Error::Unreadable { op, reason })
            }
            // Garage answers a bucket without rules with a bare 404 (AWS with NoSuchLifecycleConfiguration).
            Err(S3Error::Status { status: 404, code, .. }) if code != Some(S3Code::NoSuchBucket) => Ok(Vec::new()),
            Err(f) => Err(owner_needed(f)),
        }
    }

    /// Writes `rules` as the bucket's whole lifecycle configuration
    /// (PutBucketLifecycleConfiguration); no rules deletes it.
    pub async fn set_lifecycle(&self, bucket_name: &str, key: &KeyWant, rules: &[Rule]) -> Result<(), S3Error> {
        let bucket = self.bucket(bucket_name)?;
        let sent = if rules.is_empty() {
            let url = self.lifecycle_url(&bucket, key, Method::Delete);
            self.limit
                .run(send("DeleteBucketLifecycle", self.http.delete(url), MAX_ANSWER_BYTES, &self.in_flight))
                .await
        } else {
            let url = self.lifecycle_url(&bucket, key, Method::Put);
            let request = self.http.put(url).header("content-type", "application/xml").body(lifecycle::render(rules));
            self.limit.run(send("PutBucketLifecycleConfiguration", request, MAX_ANSWER_BYTES, &self.in_flight)).await
        };
        sent.map(drop).map_err(owner_needed)
    }
}

/// A lifecycle request refused with AccessDenied: the key is no owner.
fn owner_needed(f: S3Error) -> S3Error {
    match f {
        S3Error::Status { op, status: 403, code: Some(S3Code::AccessDenied), message, .. } => {
            S3Error::NotOwner { op, message }
        }
        f => f,
    }
}

/// The error a failed lifecycle read or write ends a run with.
pub fn lifecycle_error(s3_url: &Url, bucket: &str, failure: S3Error) -> Error {
    if failure.storage_failure() {
        let at = display_url(s3_url);
        return Error::Storage {
            answer: format!("lifecycle rules of bucket {bucket}, through the S3 API at {at}: {failure}"),
        };
    }
    let hint = hint_for(&failure);
    Error::Lifecycle { bucket: bucket.to_string(), url: display_url(s3_url), reason: failure.to_string(), hint }
}

/// The error a failed proof ends a run with.
pub fn verify_error(s3_url: &Url, failure: S3Error) -> Error {
    if failure.storage_failure() {
        return Error::Storage { answer: format!("S3 check against {}: {failure}", display_url(s3_url)) };
    }
    let hint = hint_for(&failure);
    Error::Verify { url: display_url(s3_url), reason: failure.to_string(), hint }
}

struct RoundTrip<'a> {
    http: &'a reqwest::Client,
    bucket: &'a Bucket,
    credentials: &'a Credentials,
    object: &'a str,
    in_flight: &'a InFlight,
}

impl RoundTrip<'_> {
    async fn round_trip(&self, body: &[u8]) -> Result<(), S3Error> {
        let put = PutObject::new(self.bucket, Some(self.credentials), self.object).sign(SIGNATURE_TTL);
        send("PUT", self.http.put(put).body(body.to_vec()), MAX_ANSWER_BYTES, self.in_flight).await?;

        let get = GetObject::new(self.bucket, Some(self.credentials), self.object).sign(SIGNATURE_TTL);
        let got = send("GET", self.http.get(get), MAX_ANSWER_BYTES, self.in_flight).await?;
        let matches = got.as_slice() == body;

        // Clean up even when the bytes differ.
        let delete = DeleteObject::new(self.bucket, Some(self.credentials), self.object).sign(SIGNATURE_TTL);
        send("DELETE", self.http.delete(delete), MAX_ANSWER_BYTES, self.in_flight).await?;

        if matches { Ok(()) } else { Err(S3Error::Mismatch { got: got.len() }) }
    }
}

/// Sends one S3 request; its answer's body (read up to `limit`), or the S3 error it carries.
pub(crate) async fn send(
    op: &'static str,
    request: reqwest::RequestBuilder,
    limit: usize,
    in_flight: &InFlight,
) -> Result<Vec<u8>, S3Error> {
    let (http, request) = request.build_split();
    let request = request.map_err(|e| S3Error::Setup(e.to_string()))?;
    let requested = request.url().clone();
    let _sent = in_flight.sent(format!("S3 {op} at {}", requested.origin().ascii_serialization()));
    let response = http.execute(request).await.map_err(|e| S3Error::Transport(NoAnswer::from_reqwest(&e).reason))?;
    let status = response.status();
    let redirected = redirected_to(&requested, response.url());
    let bytes = read_capped(response, limit).await.map_err(|e| match e {
        ReadError::NoAnswer(n) => S3Error::Transport(n.reason),
        ReadError::TooLarge { limit } => S3Error::TooLarge { op, limit },
    })?;
    tracing::debug!(op, status = status.as_u16(), "S3 request");
    if status.is_success() {
        return Ok(bytes.to_vec());
    }
    let (code, message) = match error_document(&bytes) {
        Some((code, message)) => (Some(code), message),
        None => (None, String::new()),
    };
    Err(S3Error::Status { op, status: status.as_u16(), code, message, redirected })
}

/// The longest error message kept from an S3 error document.
const MAX_MESSAGE_CHARS: usize = 300;

/// The code and message of an S3 error document
/// (`<Error><Code>…</Code><Message>…</Message></Error>`), with its entities
/// decoded; `None` when the body is not one.
fn error_document(body: &[u8]) -> Option<(S3Code, String)> {
    let doc = roxmltree::Document::parse(std::str::from_utf8(body).ok()?).ok()?;
    let root = doc.root_element();
    if !root.has_tag_name("Error") {
        return None;
    }
    let field = |name: &str| root.children().find(|n| n.has_tag_name(name)).map(|n| element_text(&n));
    let code = field("Code").filter(|c| !c.is_empty())?;
    // Control characters (a line break, an escape sequence) never reach a terminal.
    let message: String = field("Message")
        .unwrap_or_default()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_MESSAGE_CHARS)
        .collect();
    Some((S3Code::parse(&code), message))
}

/// The text of an element, all of it (entities decoded, CDATA included), trimmed.
pub(crate) fn element_text(node: &roxmltree::Node<'_, '_>) -> String {
    let text: String = node.descendants().filter(|d| d.is_text()).filter_map(|d| d.text()).collect();
    text.trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_error_documents_are_read_as_xml() {
        let body = b"<?xml version=\"1.0\"?><Error><Code>SignatureDoesNotMatch</Code><Message>Forbidden: bad sig</Message></Error>";
        assert_eq!(error_document(body), Some((S3Code::SignatureDoesNotMatch, "Forbidden: bad sig".into())));
        // Garage's own message quotes a node's error: entities are decoded, not shown as written.
        let body = br#"<?xml version="1.0" encoding="UTF-8"?><Error><Code>ServiceUnavailable</Code><Message>Internal error: Could not reach quorum of 1. 0 of 1 request succeeded, others returned errors: [&quot;9d16: DB error: LMDB: No space left on device (os error 28)&quot;]</Message><Resource>/b/o</Resource><Region>garage</Region></Error>"#;
        let (code, message) = error_document(body).unwrap();
        assert_eq!(code, S3Code::Other("ServiceUnavailable".into()));
        assert!(message.ends_with(r#"["9d16: DB error: LMDB: No space left on device (os error 28)"]"#), "{message}");
        assert_eq!(
            error_document(b"<Error><Code><![CDATA[NoSuch]]>Bucket</Code></Error>").unwrap().0,
            S3Code::NoSuchBucket
        );
        let body = b"<Error><Code>AccessDenied</Code><Message>line\nbreak&#9;tab</Message></Error>";
        assert_eq!(error_document(body).unwrap().1, "line break tab");
        for not_one in [&b"not xml"[..], b"<Error><Message>m</Message></Error>", b"<html><Code>X</Code></html>", b""] {
            assert_eq!(error_document(not_one), None);
        }
        // A document type declaration (entity expansion) is refused, not expanded.
        let dtd = b"<!DOCTYPE e [<!ENTITY a \"aaaa\">]><Error><Code>&a;</Code></Error>";
        assert_eq!(error_document(dtd), None);
    }

    #[test]
    fn failures_read_as_what_s3_said() {
        let status = |code: Option<S3Code>, message: &str, redirected: Option<&str>| S3Error::Status {
            op: "PUT",
            status: 404,
            code,
            message: message.into(),
            redirected: redirected.map(Into::into),
        };
        assert_eq!(status(Some(S3Code::NoSuchBucket), "", None).to_string(), "PUT answered 404 NoSuchBucket");
        assert_eq!(status(None, "", None).to_string(), "PUT answered 404 Not Found");
        assert_eq!(
            status(Some(S3Code::NoSuchBucket), "Bucket not found: b", Some("http://other:3900/b/o")).to_string(),
            "PUT, redirected to http://other:3900/b/o, answered 404 NoSuchBucket: Bucket not found: b"
        );
        let owner = S3Error::NotOwner { op: "GetBucketLifecycleConfiguration", message: "Forbidden".into() };
        assert!(owner.not_owner_yet() && owner.may_be_propagation());
        assert!(hint_for(&owner).contains("--owner"));
    }

    #[test]
    fn refusals_are_told_apart_by_code_and_by_garages_message() {
        let refused = |code: &str, message: &str| S3Error::Status {
            op: "PUT",
            status: 403,
            code: Some(S3Code::parse(code)),
            message: message.into(),
            redirected: None,
        };
        assert_eq!(refused("InvalidAccessKeyId", "").refusal(), Some(Refusal::UnknownKey));
        assert_eq!(refused("AccessDenied", "Forbidden: No such key: GK1").refusal(), Some(Refusal::UnknownKey));
        assert_eq!(refused("SignatureDoesNotMatch", "").refusal(), Some(Refusal::WrongSecret));
        assert_eq!(refused("AccessDenied", "Forbidden: Invalid signature").refusal(), Some(Refusal::WrongSecret));
        assert_eq!(refused("AccessDenied", "Forbidden: Operation is not allowed").refusal(), Some(Refusal::NotAllowed));
        assert_eq!(refused("NoSuchBucket", "").refusal(), None);
        assert_eq!(S3Error::Transport("reset".into()).refusal(), None);
    }

    #[test]
    fn region_mismatch_points_at_the_region_setting() {
        let refused = |code| S3Error::Status {
            op: "PUT",
            status: 403,
            code: Some(code),
            message: String::new(),
            redirected: None,
        };
        assert!(hint_for(&refused(S3Code::AuthorizationHeaderMalformed)).contains("--s3-region"));
        assert!(hint_for(&refused(S3Code::SignatureDoesNotMatch)).contains("s3_region"));
    }

    #[test]
    fn only_propagation_like_failures_are_retried() {
        let status = |code: &str, status| S3Error::Status {
            op: "PUT",
            status,
            code: Some(S3Code::parse(code)),
            message: String::new(),
            redirected: None,
        };
        assert!(status("InvalidAccessKeyId", 403).may_be_propagation());
        assert!(status("ServiceUnavailable", 503).may_be_propagation());
        assert!(!status("SignatureDoesNotMatch", 403).may_be_propagation());
        assert!(!S3Error::Mismatch { got: 3 }.may_be_propagation());
        assert!(!S3Error::Unreadable { op: "GET", reason: "x".into() }.may_be_propagation());
    }
}
