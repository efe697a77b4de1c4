//! The S3 requests of `cache`: a listing read one page at a time, a capped
//! object read, and deletion in batches (`DeleteObjects`). Presigned with
//! rusty-s3 and sent with the shared plain-HTTP client; reads are retried a
//! few times on no answer or a 5xx, since a listing of millions of objects
//! takes long enough to meet one.

use std::time::Duration;

use rusty_s3::actions::{DeleteObjects, GetObject, ListObjectsV2, ObjectIdentifier};
use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};
use url::Url;

use crate::desired::KeyWant;
use crate::s3::{S3Error, send};

/// How long presigned URLs stay valid; each is used at once.
const SIGNATURE_TTL: Duration = Duration::from_secs(300);
/// A page of 1000 keys is well under a megabyte of XML.
const MAX_PAGE_BYTES: usize = 16 << 20;
/// The largest manifest read. BuildKit's manifests hold a few kilobytes per
/// layer and record; one past this is reported, never read whole.
pub const MAX_MANIFEST_BYTES: usize = 64 << 20;
/// S3 deletes at most 1000 keys per `DeleteObjects`.
pub const DELETE_BATCH: usize = 1000;
const MAX_DELETE_ANSWER_BYTES: usize = 16 << 20;
/// Tries of a request that got no answer or a 5xx.
const TRIES: u32 = 4;

/// One listed object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    pub key: String,
    pub size: u64,
    /// As S3 gives it: `2026-12-02T04:02:43.000Z`.
    pub last_modified: String,
    pub etag: String,
}

/// One page of a listing, and where the next starts.
#[derive(Debug, Clone)]
pub struct Page {
    pub objects: Vec<Object>,
    /// `None`: this was the last page.
    pub next: Option<String>,
}

/// The bucket, the key, and the HTTP client of one `cache` run.
pub struct Store {
    http: reqwest::Client,
    bucket: Bucket,
    credentials: Credentials,
    /// Requests without an answer yet (the shape `send` keeps for every S3 client).
    in_flight: crate::wait::InFlight,
}

impl Store {
    pub fn new(s3_url: &Url, region: &str, bucket: &str, key: &KeyWant) -> Result<Self, S3Error> {
        let http = crate::http::client(reqwest::header::HeaderMap::new(), crate::validate::DEFAULT_REQUESTS_PER_NODE)
            .map_err(|e| S3Error::Setup(e.to_string()))?;
        let bucket = Bucket::new(s3_url.clone(), UrlStyle::Path, bucket.to_string(), region.to_string())
            .map_err(|e| S3Error::Setup(e.to_string()))?;
        let credentials = Credentials::new(key.id.clone(), key.secret.expose().to_string());
        Ok(Self { http, bucket, credentials, in_flight: Default::default() })
    }

    /// One page of the keys under `prefix`: from the start, after a
    /// continuation token, or after a key.
    pub async fn list(&self, prefix: &str, from: ListFrom<'_>) -> Result<Page, S3Error> {
        let mut action = ListObjectsV2::new(&self.bucket, Some(&self.credentials));
        action.with_prefix(prefix);
        action.with_max_keys(1000);
        match from {
            ListFrom::Start => {}
            ListFrom::Token(token) => action.with_continuation_token(token),
            ListFrom::After(key) => action.with_start_after(key),
        }
        let url = action.sign(SIGNATURE_TTL);
        let body =
            retried(|| send("ListObjectsV2", self.http.get(url.clone()), MAX_PAGE_BYTES, &self.in_flight)).await?;
        let text = String::from_utf8_lossy(&body);
        let parsed = ListObjectsV2::parse_response(&text).map_err(|e| S3Error::Unreadable {
            op: "ListObjectsV2",
            reason: format!("the listing cannot be read: {e}"),
        })?;
        let objects = parsed
            .contents
            .into_iter()
            .map(|c| Object {
                key: c.key,
                size: c.size.unwrap_or(0),
                last_modified: c.last_modified.unwrap_or_default(),
                etag: c.etag.unwrap_or_default(),
            })
            .collect();
        Ok(Page { objects, next: parsed.next_continuation_token })
    }

    /// Every object under `prefix`, read page by page into one list: for the
    /// manifests, which are few.
    pub async fn list_all(&self, prefix: &str) -> Result<Vec<Object>, S3Error> {
        let mut all = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let from = token.as_deref().map_or(ListFrom::Start, ListFrom::Token);
            let page = self.list(prefix, from).await?;
            all.extend(page.objects);
            match page.next {
                Some(next) => token = Some(next),
                None => return Ok(all),
            }
        }
    }

    /// An object's bytes, at most `limit` of them.
    pub async fn get(&self, key: &str, limit: usize) -> Result<Vec<u8>, S3Error> {
        let url = GetObject::new(&self.bucket, Some(&self.credentials), key).sign(SIGNATURE_TTL);
        retried(|| send("GetObject", self.http.get(url.clone()), limit, &self.in_flight)).await
    }

    /// Deletes up to [`DELETE_BATCH`] keys in one request; returns the keys
    /// S3 could not delete, each with its error.
    pub async fn delete(&self, keys: &[String]) -> Result<Vec<(String, String)>, S3Error> {
        assert!(keys.len() <= DELETE_BATCH, "one DeleteObjects takes at most {DELETE_BATCH} keys");
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let objects: Vec<ObjectIdentifier> = keys.iter().map(|k| ObjectIdentifier::new(k.clone())).collect();
        let mut action = DeleteObjects::new(&self.bucket, Some(&self.credentials), objects.iter());
        action.set_quiet(true);
        let url = action.sign(SIGNATURE_TTL);
        let (body, md5) = action.body_with_md5();
        let answer = retried(|| {
            let request = self.http.post(url.clone()).header("content-md5", md5.as_str()).body(body.clone());
            send("DeleteObjects", request, MAX_DELETE_ANSWER_BYTES, &self.in_flight)
        })
        .await?;
        let text = String::from_utf8_lossy(&answer);
        let parsed = rusty_s3::actions::DeleteObjectsResponse::parse(&text).map_err(|e| S3Error::Unreadable {
            op: "DeleteObjects",
            reason: format!("the answer cannot be read: {e}"),
        })?;
        Ok(parsed.errors.into_iter().map(|e| (e.key, format!("{} {}", e.code, e.message).trim().to_string())).collect())
    }
}

/// Where a listing page starts.
#[derive(Debug, Clone, Copy)]
pub enum ListFrom<'a> {
    Start,
    /// After the page that gave this continuation token.
    Token(&'a str),
    /// After this key.
    After(&'a str),
}

/// Sends again, after a short pause, what got no answer or a 5xx; any other
/// answer is final. Every request here is a read or an idempotent delete.
async fn retried<F, Fut>(mut attempt: F) -> Result<Vec<u8>, S3Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Vec<u8>, S3Error>>,
{
    let mut pause = Duration::from_millis(200);
    let mut tries = 1;
    loop {
        match attempt().await {
            Err(f) if tries < TRIES && transient(&f) => {
                tracing::debug!(failure = %f, "S3 request failed; sending it again");
                tokio::time::sleep(pause).await;
                pause *= 3;
                tries += 1;
            }
            result => return result,
        }
    }
}

fn transient(f: &S3Error) -> bool {
    match f {
        S3Error::Transport(_) => true,
        S3Error::Status { status, .. } => *status >= 500,
        _ => false,
    }
}
