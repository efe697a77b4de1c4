//! A SCRIPTED FAKE of Garage's admin API v2 and of a minimal S3 API: not
//! Garage. It exists for faults a real Garage produces only rarely or at
//! moments no test can hit on purpose: a change that lands and whose answer
//! is lost (a 500, or a connection reset), a layout lost right after it was
//! applied, another writer applying a layout between garage-init's stage and
//! apply, a node id that changes between two observations. Everything else
//! is tested against real Garage processes.
//!
//! It answers with Garage's shapes and error codes for the endpoints
//! garage-init uses (`../shared/docs/garage-admin-api.md` §1–§6): JSON
//! errors `{code, message, region, path}`, 403 without the token, 400 for
//! an unknown endpoint, 500 "Layout not ready" for keys and buckets before
//! a layout, 500 "Invalid new layout version", 409 on an existing key or
//! alias, 404 on a missing one; `/health` 503 until the node has a role.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// How a faulty call is answered after its change took effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// 500 `InternalError`, as a node that failed after writing would.
    Status500,
    /// The connection closes without an answer.
    Reset,
}

/// What happens to the node right after a call was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A restart without `meta/cluster_layout`: version 0, no roles, nothing
    /// staged; the key and bucket tables are kept.
    LoseLayout,
    /// A restart without `meta/`: a new node id, no layout, empty tables.
    LoseMetadata,
}

#[derive(Debug, Clone)]
enum Fault {
    AfterEffect {
        endpoint: String,
        nth: u32,
        answer: Answer,
    },
    After {
        endpoint: String,
        nth: u32,
        event: Event,
    },
    /// Before the next `ApplyClusterLayout`, another writer applies what is staged.
    RaceApply,
    /// Every call to the endpoint fails with this 500 message, with no effect.
    Refuse {
        endpoint: String,
        message: String,
    },
    /// The nth `CreateBucket` stores the bucket, then the node dies before
    /// storing its alias (Garage writes the two one after the other).
    CreateCrashesBeforeAlias {
        nth: u32,
    },
    /// The nth `CreateBucket` stores the bucket and its alias in the alias
    /// table, then the node dies before writing the alias into the bucket's
    /// own record (Garage writes those two one after the other as well).
    CreateCrashesBetweenAliasWrites {
        nth: u32,
    },
}

#[derive(Debug, Clone)]
struct Key {
    secret: String,
    name: String,
}

#[derive(Debug, Clone)]
struct Bucket {
    id: String,
    /// Aliases that name this bucket (the alias table): lookups find it by these.
    aliases: Vec<String>,
    /// Of `aliases`, those missing from the bucket's own record, which
    /// listings, bucket info and key views show.
    unrecorded: Vec<String>,
    /// Key id → (read, write, owner).
    grants: BTreeMap<String, (bool, bool, bool)>,
    objects: BTreeMap<String, Vec<u8>>,
}

#[derive(Debug)]
struct State {
    token: String,
    node_id: String,
    /// A counter, so that each new node id and bucket id differs.
    serial: u64,
    version: u64,
    /// Node id → role JSON (`{zone, tags, capacity}`).
    roles: BTreeMap<String, Value>,
    /// Staged changes: node id → role JSON, or `{"remove": true}`.
    staged: BTreeMap<String, Value>,
    keys: BTreeMap<String, Key>,
    buckets: Vec<Bucket>,
    calls: BTreeMap<String, u32>,
    effects: BTreeMap<String, u32>,
    faults: Vec<Fault>,
}

/// What one call got.
enum Reply {
    Answer { status: u16, content_type: &'static str, body: Vec<u8> },
    Reset,
}

fn hex_id(serial: u64, len: usize) -> String {
    let base = format!("{serial:016x}");
    base.repeat(len / 16 + 1)[..len].to_string()
}

impl State {
    fn json(status: u16, body: Value) -> Reply {
        Reply::Answer { status, content_type: "application/json", body: serde_json::to_vec_pretty(&body).unwrap() }
    }

    fn error(status: u16, code: &str, message: &str, path: &str) -> Reply {
        Self::json(status, json!({"code": code, "message": message, "region": "garage", "path": path}))
    }

    fn layout_json(&self) -> Value {
        let roles: Vec<Value> = self
            .roles
            .iter()
            .map(|(id, r)| {
                json!({"id": id, "zone": r["zone"], "tags": r["tags"], "capacity": r["capacity"],
                       "storedPartitions": 256, "usableCapacity": r["capacity"]})
            })
            .collect();
        let staged: Vec<Value> = self
            .staged
            .iter()
            .map(|(id, c)| {
                let mut c = c.clone();
                c["id"] = json!(id);
                c
            })
            .collect();
        json!({"version": self.version, "roles": roles, "parameters": {"zoneRedundancy": "maximum"},
               "partitionSize": 0, "stagedRoleChanges": staged, "stagedParameters": null})
    }

    fn status_json(&self) -> Value {
        let mut ids: Vec<&String> = self.roles.keys().collect();
        if !ids.contains(&&self.node_id) {
            ids.push(&self.node_id);
        }
        ids.sort();
        let nodes: Vec<Value> = ids
            .into_iter()
            .map(|id| {
                let me = *id == self.node_id;
                json!({"id": id, "garageVersion": "fake", "hostname": "fake", "addr": "127.0.0.1:3901",
                       "isUp": me, "lastSeenSecsAgo": null, "role": self.roles.get(id).cloned(),
                       "draining": false,
                       "dataPartition": {"available": 500_000_000_000u64, "total": 1_000_000_000_000u64}})
            })
            .collect();
        json!({"layoutVersion": self.version, "nodes": nodes})
    }

    fn healthy(&self) -> bool {
        self.version > 0 && self.roles.get(&self.node_id).is_some_and(|r| !r["capacity"].is_null())
    }

    fn key_json(&self, id: &str, with_secret: bool) -> Value {
        let k = &self.keys[id];
        let buckets: Vec<Value> = self
            .buckets
            .iter()
            .filter_map(|b| {
                let (r, w, o) = *b.grants.get(id)?;
                Some(json!({"id": b.id, "globalAliases": recorded(b), "localAliases": [],
                            "permissions": {"read": r, "write": w, "owner": o}}))
            })
            .collect();
        let mut v = json!({"accessKeyId": id, "name": k.name, "created": null, "expiration": null,
                           "expired": false, "permissions": {"createBucket": false}, "buckets": buckets});
        if with_secret {
            v["secretAccessKey"] = json!(k.secret);
        }
        v
    }

    fn bucket_json(&self, b: &Bucket) -> Value {
        let keys: Vec<Value> = b
            .grants
            .iter()
            .map(|(id, (r, w, o))| {
                let name = self.keys.get(id).map(|k| k.name.clone()).unwrap_or_default();
                json!({"accessKeyId": id, "name": name, "permissions": {"read": r, "write": w, "owner": o},
                       "bucketLocalAliases": []})
            })
            .collect();
        json!({"id": b.id, "created": null, "globalAliases": recorded(b), "websiteAccess": false,
               "websiteConfig": null, "keys": keys, "objects": b.objects.len(),
               "bytes": b.objects.values().map(Vec::len).sum::<usize>(), "unfinishedUploads": 0,
               "unfinishedMultipartUploads": 0, "unfinishedMultipartUploadParts": 0,
               "unfinishedMultipartUploadBytes": 0, "quotas": {"maxSize": null, "maxObjects": null}})
    }

    fn apply_staged(&mut self) {
        for (id, change) in std::mem::take(&mut self.staged) {
            if change.get("remove") == Some(&json!(true)) {
                self.roles.remove(&id);
            } else {
                self.roles.insert(id, change);
            }
        }
        self.version += 1;
    }

    fn event(&mut self, event: Event) {
        self.version = 0;
        self.roles.clear();
        self.staged.clear();
        if event == Event::LoseMetadata {
            self.serial += 1;
            self.node_id = hex_id(0xd00d_0000 + self.serial, 64);
            self.keys.clear();
            self.buckets.clear();
        }
    }

    /// One admin call: the endpoint's effect and Garage's answer.
    fn admin(&mut self, method: &str, endpoint: &str, query: &BTreeMap<String, String>, body: &Value) -> Reply {
        let path = format!("/v2/{endpoint}");
        let not_ready = || Self::error(500, "InternalError", "Internal error: Layout not ready", &path);
        let q = |name: &str| query.get(name).cloned().unwrap_or_default();
        let effect = |s: &mut Self| *s.effects.entry(endpoint.to_string()).or_default() += 1;
        match (method, endpoint) {
            ("GET", "GetClusterStatus") => Self::json(200, self.status_json()),
            ("GET", "GetNodeInfo") => {
                Self::json(200, json!({"success": {self.node_id.clone(): {"nodeId": self.node_id}}, "error": {}}))
            }
            ("GET", "GetClusterLayout") => Self::json(200, self.layout_json()),
            ("POST", "UpdateClusterLayout") => {
                for role in body["roles"].as_array().cloned().unwrap_or_default() {
                    let id = role["id"].as_str().unwrap_or_default().to_string();
                    let mut change = role.clone();
                    change.as_object_mut().unwrap().remove("id");
                    self.staged.insert(id, change);
                }
                effect(self);
                Self::json(200, self.layout_json())
            }
            ("POST", "ApplyClusterLayout") => {
                if body["version"].as_u64() != Some(self.version + 1) {
                    return Self::error(500, "InternalError", "Internal error: Invalid new layout version", &path);
                }
                self.apply_staged();
                effect(self);
                Self::json(200, json!({"message": [], "layout": self.layout_json()}))
            }
            ("GET", "GetKeyInfo")
            | ("GET", "ListKeys")
            | ("POST", "ImportKey")
            | ("POST", "UpdateKey")
            | ("GET", "GetBucketInfo")
            | ("POST", "CreateBucket")
            | ("POST", "AllowBucketKey")
                if self.version == 0 =>
            {
                not_ready()
            }
            ("GET", "GetKeyInfo") => match self.keys.contains_key(&q("id")) {
                true => Self::json(200, self.key_json(&q("id"), q("showSecretKey") == "true")),
                false => Self::error(404, "NoSuchAccessKey", &format!("Key not found: {}", q("id")), &path),
            },
            ("GET", "ListBuckets") => {
                let buckets: Vec<Value> = self
                    .buckets
                    .iter()
                    .map(|b| {
                        json!({"id": b.id, "created": format!("2026-01-01T00:00:{:02}Z", b.id.len() % 60),
                                    "globalAliases": recorded(b), "localAliases": []})
                    })
                    .collect();
                Self::json(200, json!(buckets))
            }
            ("GET", "ListKeys") => {
                let keys: Vec<Value> = self
                    .keys
                    .iter()
                    .map(|(id, k)| json!({"id": id, "name": k.name, "created": null, "expiration": null, "expired": false}))
                    .collect();
                Self::json(200, json!(keys))
            }
            ("POST", "ImportKey") => {
                let id = body["accessKeyId"].as_str().unwrap_or_default().to_string();
                if self.keys.contains_key(&id) {
                    return Self::error(409, "KeyAlreadyExists", &format!("Key {id} already exists"), &path);
                }
                let name = body["name"].as_str().unwrap_or("Imported key").to_string();
                self.keys.insert(id.clone(), Key { secret: body["secretAccessKey"].as_str().unwrap().into(), name });
                effect(self);
                Self::json(200, self.key_json(&id, false))
            }
            ("POST", "UpdateKey") => match self.keys.get_mut(&q("id")) {
                Some(k) => {
                    if let Some(name) = body["name"].as_str() {
                        k.name = name.into();
                    }
                    effect(self);
                    Self::json(200, self.key_json(&q("id"), false))
                }
                None => Self::error(404, "NoSuchAccessKey", "Key not found", &path),
            },
            ("GET", "GetBucketInfo") => {
                let found = self.buckets.iter().find(|b| b.aliases.contains(&q("globalAlias")) || b.id == q("id"));
                match found {
                    Some(b) => Self::json(200, self.bucket_json(b)),
                    None => Self::error(404, "NoSuchBucket", "Bucket not found", &path),
                }
            }
            ("POST", "CreateBucket") => {
                let alias = body["globalAlias"].as_str().unwrap_or_default().to_string();
                if self.buckets.iter().any(|b| b.aliases.contains(&alias)) {
                    return Self::error(409, "BucketAlreadyExists", "Bucket already exists", &path);
                }
                self.serial += 1;
                let bucket = Bucket {
                    id: hex_id(0xb0c4_0000 + self.serial, 64),
                    aliases: vec![alias],
                    unrecorded: vec![],
                    grants: BTreeMap::new(),
                    objects: BTreeMap::new(),
                };
                self.buckets.push(bucket);
                effect(self);
                Self::json(200, self.bucket_json(self.buckets.last().unwrap()))
            }
            ("POST", "AddBucketAlias") => {
                // Idempotent for the same bucket; 400 when the alias names another one.
                let alias = body["globalAlias"].as_str().unwrap_or_default().to_string();
                let Some(i) = self.buckets.iter().position(|b| body["bucketId"] == json!(b.id)) else {
                    return Self::error(404, "NoSuchBucket", "Bucket not found", &path);
                };
                if self.buckets.iter().enumerate().any(|(j, b)| j != i && b.aliases.contains(&alias)) {
                    return Self::error(400, "InvalidRequest", "Bad request: Alias already exists", &path);
                }
                self.buckets[i].unrecorded.retain(|a| *a != alias);
                if !self.buckets[i].aliases.contains(&alias) {
                    self.buckets[i].aliases.push(alias);
                }
                effect(self);
                Self::json(200, self.bucket_json(&self.buckets[i]))
            }
            ("POST", "AllowBucketKey") => {
                let key = body["accessKeyId"].as_str().unwrap_or_default().to_string();
                if !self.keys.contains_key(&key) {
                    return Self::error(404, "NoSuchAccessKey", "Key not found", &path);
                }
                let Some(i) = self.buckets.iter().position(|b| body["bucketId"] == json!(b.id)) else {
                    return Self::error(404, "NoSuchBucket", "Bucket not found", &path);
                };
                let p = &body["permissions"];
                let flag = |n: &str| p[n].as_bool().unwrap_or(false);
                let had = self.buckets[i].grants.get(&key).copied().unwrap_or_default();
                let now = (had.0 || flag("read"), had.1 || flag("write"), had.2 || flag("owner"));
                self.buckets[i].grants.insert(key, now);
                effect(self);
                Self::json(200, self.bucket_json(&self.buckets[i]))
            }
            _ => Self::error(400, "InvalidRequest", &format!("Bad request: Unknown API endpoint: {endpoint}"), &path),
        }
    }

    /// One request of any kind, with the fault script applied.
    fn handle(&mut self, s3: bool, method: &str, target: &str, headers: &str, body: &[u8]) -> Reply {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let query: BTreeMap<String, String> = query
            .split('&')
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| (k.to_string(), percent_decode(v)))
            .collect();
        if s3 {
            return self.s3(method, path, &query, body);
        }
        if path == "/health" {
            *self.calls.entry("health".into()).or_default() += 1;
            return match self.healthy() {
                true => Reply::Answer {
                    status: 200,
                    content_type: "text/plain",
                    body: b"Garage is fully operational".to_vec(),
                },
                false => Reply::Answer {
                    status: 503,
                    content_type: "text/plain",
                    body: b"Quorum is not available for some/all partitions".to_vec(),
                },
            };
        }
        let endpoint = path.strip_prefix("/v2/").unwrap_or(path).to_string();
        let authorized = headers.lines().any(|l| {
            l.to_ascii_lowercase().starts_with("authorization:") && l[14..].trim() == format!("Bearer {}", self.token)
        });
        if !authorized {
            return Self::error(403, "AccessDenied", "Forbidden: Invalid bearer token", path);
        }
        let n = {
            let n = self.calls.entry(endpoint.clone()).or_default();
            *n += 1;
            *n
        };
        let body: Value =
            if body.is_empty() { Value::Null } else { serde_json::from_slice(body).unwrap_or(Value::Null) };
        if endpoint == "ApplyClusterLayout"
            && let Some(i) = self.faults.iter().position(|f| matches!(f, Fault::RaceApply))
        {
            self.faults.remove(i);
            self.apply_staged();
        }
        let refused = self.faults.iter().find_map(|f| match f {
            Fault::Refuse { endpoint: e, message } if *e == endpoint => Some(message.clone()),
            _ => None,
        });
        if let Some(message) = refused {
            return Self::error(500, "InternalError", &format!("Internal error: {message}"), path);
        }
        let crashes = self.faults.iter().any(|f| matches!(f, Fault::CreateCrashesBeforeAlias { nth } if *nth == n));
        if endpoint == "CreateBucket" && crashes && self.version > 0 {
            self.serial += 1;
            let id = hex_id(0x0bad_0000 + self.serial, 64);
            let bucket =
                Bucket { id, aliases: vec![], unrecorded: vec![], grants: BTreeMap::new(), objects: BTreeMap::new() };
            self.buckets.push(bucket);
            return Reply::Reset;
        }
        let half = self.faults.iter().any(|f| matches!(f, Fault::CreateCrashesBetweenAliasWrites { nth } if *nth == n));
        if endpoint == "CreateBucket" && half && self.version > 0 {
            self.serial += 1;
            let alias = body["globalAlias"].as_str().unwrap_or_default().to_string();
            let id = hex_id(0x0bad_1000 + self.serial, 64);
            let bucket = Bucket {
                id,
                aliases: vec![alias.clone()],
                unrecorded: vec![alias],
                grants: BTreeMap::new(),
                objects: BTreeMap::new(),
            };
            self.buckets.push(bucket);
            return Reply::Reset;
        }
        let reply = self.admin(method, &endpoint, &query, &body);
        let mut reply = Some(reply);
        for f in self.faults.clone() {
            match f {
                Fault::AfterEffect { endpoint: e, nth, answer } if e == endpoint && nth == n => {
                    reply = Some(match answer {
                        Answer::Status500 => {
                            Self::error(500, "InternalError", "Internal error: the node failed after the change", path)
                        }
                        Answer::Reset => Reply::Reset,
                    });
                }
                Fault::After { endpoint: e, nth, event } if e == endpoint && nth == n => self.event(event),
                _ => {}
            }
        }
        reply.unwrap()
    }

    fn s3(&mut self, method: &str, path: &str, query: &BTreeMap<String, String>, body: &[u8]) -> Reply {
        *self.calls.entry(format!("S3 {method}")).or_default() += 1;
        let xml = |status: u16, code: &str| Reply::Answer {
            status,
            content_type: "application/xml",
            body: format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code><Message>{code}</Message></Error>"
            )
            .into_bytes(),
        };
        if self.version == 0 {
            return xml(503, "ServiceUnavailable");
        }
        let (bucket, object) = path.trim_start_matches('/').split_once('/').unwrap_or((path, ""));
        let key = query.get("X-Amz-Credential").and_then(|c| c.split('/').next()).unwrap_or_default().to_string();
        let Some(b) = self.buckets.iter_mut().find(|b| b.aliases.iter().any(|a| a == bucket)) else {
            return xml(404, "NoSuchBucket");
        };
        if !self.keys.contains_key(&key) {
            return xml(403, "InvalidAccessKeyId");
        }
        if !matches!(b.grants.get(&key), Some((true, true, _))) {
            return xml(403, "AccessDenied");
        }
        let ok = |status: u16, body: Vec<u8>| Reply::Answer { status, content_type: "application/octet-stream", body };
        match method {
            "PUT" => {
                b.objects.insert(object.to_string(), body.to_vec());
                ok(200, Vec::new())
            }
            "GET" => match b.objects.get(object) {
                Some(o) => ok(200, o.clone()),
                None => xml(404, "NoSuchKey"),
            },
            "DELETE" => {
                b.objects.remove(object);
                ok(204, Vec::new())
            }
            _ => xml(400, "InvalidRequest"),
        }
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The fake: an admin port and an S3 port on loopback, one state behind them.
pub struct FakeGarage {
    pub admin_url: String,
    pub s3_url: String,
    pub token: String,
    state: Arc<Mutex<State>>,
}

impl FakeGarage {
    /// A fresh node: no layout, no key, no bucket.
    pub async fn start() -> Self {
        let token = format!("fake-{}", super::random_hex(8));
        let state = Arc::new(Mutex::new(State {
            token: token.clone(),
            node_id: hex_id(0xd00d_0000, 64),
            serial: 0,
            version: 0,
            roles: BTreeMap::new(),
            staged: BTreeMap::new(),
            keys: BTreeMap::new(),
            buckets: Vec::new(),
            calls: BTreeMap::new(),
            effects: BTreeMap::new(),
            faults: Vec::new(),
        }));
        let admin_url = serve(state.clone(), false).await;
        let s3_url = serve(state.clone(), true).await;
        Self { admin_url, s3_url, token, state }
    }

    /// The environment that points garage-init at the fake.
    pub fn init_env(&self) -> Vec<(String, String)> {
        vec![
            ("GARAGE_INIT_ADMIN_URL".into(), self.admin_url.clone()),
            ("GARAGE_INIT_S3_URL".into(), self.s3_url.clone()),
            ("GARAGE_INIT_ADMIN_TOKEN".into(), self.token.clone()),
            ("GARAGE_INIT_DEADLINE".into(), "20s".into()),
        ]
    }

    /// The `nth` call (from 1) to `endpoint` takes effect, then is answered with `answer`.
    pub fn after_effect(&self, endpoint: &str, nth: u32, answer: Answer) {
        self.state.lock().unwrap().faults.push(Fault::AfterEffect { endpoint: endpoint.into(), nth, answer });
    }

    /// Right after the `nth` call to `endpoint` (from 1), `event` happens to the node.
    pub fn after(&self, endpoint: &str, nth: u32, event: Event) {
        self.state.lock().unwrap().faults.push(Fault::After { endpoint: endpoint.into(), nth, event });
    }

    /// Before the next `ApplyClusterLayout`, another writer applies what is staged.
    pub fn race_next_apply(&self) {
        self.state.lock().unwrap().faults.push(Fault::RaceApply);
    }

    /// The `nth` `CreateBucket` stores a bucket without its alias, and its connection resets.
    pub fn create_bucket_crashes_before_alias(&self, nth: u32) {
        self.state.lock().unwrap().faults.push(Fault::CreateCrashesBeforeAlias { nth });
    }

    /// The `nth` `CreateBucket` stores a bucket whose alias reaches the alias
    /// table but not the bucket's record, and its connection resets.
    pub fn create_bucket_crashes_between_alias_writes(&self, nth: u32) {
        self.state.lock().unwrap().faults.push(Fault::CreateCrashesBetweenAliasWrites { nth });
    }

    /// Every call to `endpoint` fails with a 500 carrying `message`, and changes nothing.
    pub fn refuse(&self, endpoint: &str, message: &str) {
        self.state.lock().unwrap().faults.push(Fault::Refuse { endpoint: endpoint.into(), message: message.into() });
    }

    /// Calls per endpoint (`health` and `S3 PUT` etc. included).
    pub fn calls(&self) -> BTreeMap<String, u32> {
        self.state.lock().unwrap().calls.clone()
    }

    /// Calls per endpoint that changed the state.
    pub fn effects(&self) -> BTreeMap<String, u32> {
        self.state.lock().unwrap().effects.clone()
    }

    pub fn node_id(&self) -> String {
        self.state.lock().unwrap().node_id.clone()
    }

    /// What a converged node must hold, as one line per fact; empty when all hold.
    pub fn unconverged(&self, key_id: &str, bucket: &str) -> Vec<String> {
        let s = self.state.lock().unwrap();
        let mut wrong = Vec::new();
        if s.version == 0 || !s.roles.contains_key(&s.node_id) {
            wrong.push(format!("layout version {} has no role for node {}: {:?}", s.version, s.node_id, s.roles));
        }
        if !s.staged.is_empty() {
            wrong.push(format!("changes left staged: {:?}", s.staged));
        }
        if s.keys.len() != 1 || !s.keys.contains_key(key_id) {
            wrong.push(format!("keys: {:?}", s.keys.keys().collect::<Vec<_>>()));
        }
        let named: Vec<&Bucket> = s.buckets.iter().filter(|b| b.aliases.iter().any(|a| a == bucket)).collect();
        if s.buckets.len() != 1 || named.len() != 1 {
            wrong.push(format!("buckets: {:?}", s.buckets.iter().map(|b| &b.aliases).collect::<Vec<_>>()));
        } else if !named[0].unrecorded.is_empty() {
            wrong.push(format!("aliases only in the alias table, not on the bucket: {:?}", named[0].unrecorded));
        } else if named[0].grants.get(key_id) != Some(&(true, true, true)) {
            wrong.push(format!("grants on {bucket}: {:?}", named[0].grants));
        }
        wrong
    }

    /// The id of the bucket with this alias.
    pub fn bucket_id(&self, alias: &str) -> Option<String> {
        let s = self.state.lock().unwrap();
        s.buckets.iter().find(|b| b.aliases.iter().any(|a| a == alias)).map(|b| b.id.clone())
    }
}

/// The aliases a bucket's own record holds.
fn recorded(b: &Bucket) -> Vec<&String> {
    b.aliases.iter().filter(|a| !b.unrecorded.contains(a)).collect()
}

/// Serves HTTP/1.1 with keep-alive on a fresh loopback port; returns its URL.
async fn serve(state: Arc<Mutex<State>>, s3: bool) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let state = state.clone();
            tokio::spawn(async move {
                let mut stream = BufReader::new(stream);
                loop {
                    let mut head = String::new();
                    loop {
                        let mut line = String::new();
                        match stream.read_line(&mut line).await {
                            Ok(0) | Err(_) => return,
                            Ok(_) if line == "\r\n" => break,
                            Ok(_) => head.push_str(&line),
                        }
                    }
                    let (request_line, headers) = head.split_once("\r\n").unwrap_or((&head, ""));
                    let mut parts = request_line.split_whitespace();
                    let (method, target) =
                        (parts.next().unwrap_or("").to_string(), parts.next().unwrap_or("").to_string());
                    let length: usize = headers
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length").then(|| v.trim().parse().ok())?
                        })
                        .unwrap_or(0);
                    let mut body = vec![0; length];
                    if stream.read_exact(&mut body).await.is_err() {
                        return;
                    }
                    let reply = state.lock().unwrap().handle(s3, &method, &target, headers, &body);
                    let Reply::Answer { status, content_type, body } = reply else {
                        return; // Reset: close without an answer.
                    };
                    let reason = match status {
                        200 => "OK",
                        204 => "No Content",
                        400 => "Bad Request",
                        403 => "Forbidden",
                        404 => "Not Found",
                        409 => "Conflict",
                        500 => "Internal Server Error",
                        _ => "Service Unavailable",
                    };
                    let head = format!(
                        "HTTP/1.1 {status} {reason}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\r\n",
                        body.len()
                    );
                    let stream = stream.get_mut();
                    if stream.write_all(head.as_bytes()).await.is_err() || stream.write_all(&body).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    url
}
