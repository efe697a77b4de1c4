//! Observation: every read garage-init makes of Garage before it decides,
//! in one place. An [`Observed`] is a snapshot of what Garage holds now for
//! the wanted resources; nothing in it comes from an earlier snapshot.
//!
//! Reads are few on purpose: each token-checked admin request costs Garage
//! an argon2 hash (tens of milliseconds). A converged single node is
//! observed with two of them, `GetClusterStatus` and `GetKeyInfo`, sent
//! together: the status carries every node's role, and the key's own view
//! carries its bucket and its permissions on it. `GetClusterLayout` is read
//! only where a role could be staged, buckets only where the key's view does
//! not say enough. Readiness is read from `/health`, which checks no token.
//!
//! A bucket that declares a lifecycle has its rules read through S3
//! (`GetBucketLifecycleConfiguration`, no token check): the admin API has
//! no lifecycle endpoint.
//!
//! `GetCurrentAdminTokenInfo` is never used: it can crash Garage 2.1.0.

use futures_util::future::join_all;
use tokio::time::Instant;

use std::collections::BTreeSet;

use crate::admin::types::{BucketInfo, ClusterLayout, ClusterStatus, KeyInfo, LayoutHistory};
use crate::admin::{AdminClient, AdminError};
use crate::desired::{Desired, NodeWant, NodesWant};
use crate::error::{Error, display_url};
use crate::s3check::{self, Prover};

use super::bucket::AliasElsewhere;
use super::layout::{KnownNode, layout_from_status, needs_layout};
use super::lifecycle::Rule;

/// The admin API of one node garage-init talks to.
pub struct Member {
    /// The node as the spec lists it; `None` for the one `--admin-url` node.
    pub want: Option<NodeWant>,
    pub client: AdminClient,
}

impl Member {
    pub fn url(&self) -> String {
        display_url(self.client.base_url())
    }
}

/// Why an observation or an action did not go through.
#[derive(Debug)]
pub enum Failure {
    /// Worth another look after a pause: Garage is starting, restarting,
    /// short of quorum, or answered in a way that needs a fresh observation.
    Retry(String),
    /// Worth another look, but not every few milliseconds: a host name does
    /// not resolve (each attempt is a DNS lookup).
    Unresolved(String),
    /// Waiting cannot fix it.
    Fatal(Error),
}

impl Failure {
    /// Why to look again, and whether to wait longer first; `None` when waiting cannot help.
    pub fn retry(self) -> Result<(String, bool), Error> {
        match self {
            Self::Retry(why) => Ok((why, false)),
            Self::Unresolved(why) => Ok((why, true)),
            Self::Fatal(e) => Err(e),
        }
    }

    /// An admin error from `member`: a rejected token is fatal, anything
    /// transient a reason to look again, the rest an unexpected answer.
    pub fn from_admin(e: AdminError, member: &Member) -> Self {
        if e.is_unresolved() {
            Self::Unresolved(e.to_string())
        } else if e.is_transient() {
            Self::Retry(e.to_string())
        } else {
            Self::Fatal(Error::from_admin(e, member.client.base_url()))
        }
    }
}

/// A listed node as this observation found it.
#[derive(Debug, Clone)]
pub struct NodeSeen {
    /// Its id, from its own `GetNodeInfo?node=self`; `None` when it did not answer.
    pub id: Option<String>,
    /// Why it did not answer.
    pub silent: Option<String>,
}

/// A wanted bucket as found by its name (a global alias).
#[derive(Debug, Clone, Default)]
pub struct BucketSeen {
    pub found: Option<BucketInfo>,
    /// Wanted aliases that name another bucket.
    pub elsewhere: Vec<AliasElsewhere>,
    /// When the bucket is missing and a create of it got no answer: the
    /// empty bucket without any alias that create left (Garage stores a new
    /// bucket, then its alias; a crash or a lost quorum in between leaves it
    /// nameless). Only a bucket that did not exist before that create.
    pub orphan: Option<String>,
}

/// A bucket's lifecycle rules, for a bucket that declares a lifecycle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LifecycleSeen {
    /// Not declared; or not readable yet: the key that reads them is not
    /// yet an owner of the bucket, or not yet imported.
    Unread,
    /// What Garage holds; none for a bucket that does not exist yet.
    Read(Vec<Rule>),
}

/// Whether the cluster can serve key and bucket requests, as `/health` (and,
/// on other listed nodes, their layout version) says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// Not read since the last observation or layout change.
    Unknown,
    Ready,
    /// Why not, one reason per node.
    NotReady(Vec<String>),
}

/// One snapshot of Garage, for one plan.
#[derive(Debug, Clone)]
pub struct Observed {
    /// Index of the member every change goes through: the only one without
    /// a spec, else the first listed node that answered.
    pub coordinator: usize,
    pub status: ClusterStatus,
    /// Read where a role could be staged; elsewhere as the status shows it.
    pub layout: ClusterLayout,
    /// Read only where a listed cluster has a node down that holds data only
    /// in an older layout version (Garage may wait for it forever).
    pub history: Option<LayoutHistory>,
    /// Per listed node, in spec order (empty without a node list).
    pub nodes: Vec<NodeSeen>,
    /// Per wanted key, in spec order; `None`: Garage has no such key.
    pub keys: Vec<Option<KeyInfo>>,
    /// Per wanted key: the ids of other keys that already carry its name.
    /// `apply` reads them only where the key is to be imported (a converged
    /// run spends no request on it); `plan` reads them always.
    pub namesakes: Vec<Vec<String>>,
    /// Per wanted bucket, in spec order.
    pub buckets: Vec<BucketSeen>,
    /// Per wanted bucket: its lifecycle rules, read through S3.
    pub lifecycles: Vec<LifecycleSeen>,
    pub readiness: Readiness,
    /// When the reads were made.
    pub at: Instant,
}

impl Observed {
    /// Listed nodes whose id is known.
    pub fn known_nodes(&self, desired: &Desired) -> Vec<KnownNode> {
        let NodesWant::Listed(wants) = &desired.cluster.nodes else {
            return Vec::new();
        };
        wants
            .iter()
            .zip(&self.nodes)
            .filter_map(|(want, seen)| Some(KnownNode { id: seen.id.clone()?, want: want.clone() }))
            .collect()
    }
}

/// When the key list is read, to find other keys named like a wanted one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyListing {
    /// Only when a wanted key is to be imported.
    OnImport,
    /// Whenever Garage has a layout (`plan`, which has no request budget).
    Always,
}

/// A wanted bucket whose create got no answer (or a 5xx) in this run, and
/// the ids of every bucket Garage listed before that create was sent: a
/// nameless bucket among them is someone else's, never the create's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnansweredCreate {
    pub bucket: usize,
    pub existed_before: BTreeSet<String>,
}

/// Reads everything the plan needs, from scratch. `unanswered_creates`: the
/// wanted buckets whose create got no answer in this run (their nameless
/// leftovers are looked for).
pub async fn observe(
    members: &[Member],
    s3: &Prover,
    desired: &Desired,
    unanswered_creates: &[UnansweredCreate],
    listing: KeyListing,
) -> Result<Observed, Failure> {
    let (nodes, coordinator) = match &desired.cluster.nodes {
        NodesWant::Listed(_) => {
            let nodes = identify(members).await?;
            let Some(first) = nodes.iter().position(|n| n.id.is_some()) else {
                let silent: Vec<String> = members
                    .iter()
                    .zip(&nodes)
                    .map(|(m, n)| format!("{} ({})", m.url(), n.silent.as_deref().unwrap_or("no answer")))
                    .collect();
                return Err(Failure::Retry(format!("nodes not answering: {}", silent.join(", "))));
            };
            (nodes, first)
        }
        _ => (Vec::new(), 0),
    };
    let member = &members[coordinator];
    let client = &member.client;
    // The keys are read alongside the status: on a converged cluster their
    // views answer for the buckets and grants too.
    let (status, keys) = tokio::join!(
        client.cluster_status(),
        join_all(desired.keys.iter().map(|k| client.key_info_with_secret(&k.id)))
    );
    let status = status.map_err(|e| Failure::from_admin(e, member))?;
    tracing::debug!(layout_version = status.layout_version, nodes = status.nodes.len(), "observed the cluster");
    // Without a layout, Garage's tables cannot be read or hold anything:
    // every key and bucket is absent. (A table that survived the loss of its
    // layout shows up as a 409 to the create, which leads to a fresh look.)
    let fresh = status.layout_version == 0;
    let keys = keys
        .into_iter()
        .map(|read| match read {
            Ok(found) => Ok(found),
            Err(e) if fresh && e.is_layout_not_ready() => Ok(None),
            Err(e) => Err(Failure::from_admin(e, member)),
        })
        .collect::<Result<Vec<_>, _>>()?;

    let mut observed = Observed {
        coordinator,
        layout: layout_from_status(&status),
        history: None,
        status,
        nodes,
        namesakes: vec![Vec::new(); desired.keys.len()],
        keys,
        buckets: Vec::new(),
        lifecycles: vec![LifecycleSeen::Unread; desired.buckets.len()],
        readiness: Readiness::Unknown,
        at: Instant::now(),
    };
    let known = observed.known_nodes(desired);
    let read_layout = needs_layout(&observed.status, &desired.cluster, &known);
    // A key to import may find its name taken by another key.
    let list_keys = !fresh && (listing == KeyListing::Always || observed.keys.iter().any(Option::is_none));
    let read_history = matches!(desired.cluster.nodes, NodesWant::Listed(_))
        && observed.status.nodes.iter().any(|n| n.draining && !n.is_up);
    let (layout, history, buckets, listed) = tokio::join!(
        async {
            match read_layout {
                true => client.cluster_layout().await.map(Some),
                false => Ok(None),
            }
        },
        async {
            match read_history {
                true => client.cluster_layout_history().await.map(Some),
                false => Ok(None),
            }
        },
        observe_buckets(member, desired, &observed.keys, fresh, unanswered_creates),
        async {
            match list_keys {
                true => client.list_keys().await.map(Some),
                false => Ok(None),
            }
        },
    );
    if let Some(listed) = listed.map_err(|e| Failure::from_admin(e, member))? {
        for (i, want) in desired.keys.iter().enumerate() {
            observed.namesakes[i] =
                listed.iter().filter(|k| k.name == want.name && k.id != want.id).map(|k| k.id.clone()).collect();
        }
    }
    if let Some(layout) = layout.map_err(|e| Failure::from_admin(e, member))? {
        observed.layout = layout;
    }
    observed.history = history.map_err(|e| Failure::from_admin(e, member))?;
    observed.buckets = buckets?;
    read_lifecycles(s3, desired, &mut observed).await?;
    Ok(observed)
}

/// Reads the lifecycle rules of the buckets that declare them, each with the
/// key that owns it; a bucket still to be made has none. A key not yet an
/// owner, or not yet known to S3, leaves the rules unread: the plan reads
/// them again once the grant is in place.
async fn read_lifecycles(s3: &Prover, desired: &Desired, observed: &mut Observed) -> Result<(), Failure> {
    let declared = |i: &usize| desired.buckets[*i].lifecycle.is_some();
    let (existing, missing): (Vec<usize>, Vec<usize>) =
        (0..desired.buckets.len()).filter(declared).partition(|&i| observed.buckets[i].found.is_some());
    for i in missing {
        observed.lifecycles[i] = LifecycleSeen::Read(Vec::new());
    }
    let reads = existing.iter().map(|&i| {
        let key = desired.lifecycle_key(i).expect("a declared lifecycle has an owner key");
        s3.lifecycle(&desired.buckets[i].name, key)
    });
    for (&i, read) in existing.iter().zip(join_all(reads).await) {
        observed.lifecycles[i] = match read {
            Ok(rules) => LifecycleSeen::Read(rules),
            Err(f) if f.not_owner_yet() => LifecycleSeen::Unread,
            Err(f) if f.may_be_propagation() => {
                return Err(Failure::Retry(format!("S3 API at {}: {f}", display_url(s3.url()))));
            }
            Err(f) => return Err(Failure::Fatal(s3check::lifecycle_error(s3.url(), &desired.buckets[i].name, f))),
        };
    }
    Ok(())
}

/// Each listed node's id, from its own admin API; silent nodes are noted, not waited for.
async fn identify(members: &[Member]) -> Result<Vec<NodeSeen>, Failure> {
    let answers = join_all(members.iter().map(|m| m.client.own_node_id())).await;
    let mut nodes = Vec::new();
    for (m, answer) in members.iter().zip(answers) {
        nodes.push(match answer {
            Ok(id) => NodeSeen { id: Some(id), silent: None },
            Err(e) if e.is_transient() => NodeSeen { id: None, silent: Some(e.to_string()) },
            Err(e) => return Err(Failure::from_admin(e, m)),
        });
    }
    Ok(nodes)
}

/// Each wanted bucket by its name, and the owners of wanted aliases it lacks.
async fn observe_buckets(
    member: &Member,
    desired: &Desired,
    keys: &[Option<KeyInfo>],
    fresh: bool,
    unanswered_creates: &[UnansweredCreate],
) -> Result<Vec<BucketSeen>, Failure> {
    if fresh {
        return Ok(vec![BucketSeen::default(); desired.buckets.len()]);
    }
    let client = &member.client;
    let reads = desired.buckets.iter().map(|want| async move {
        // A key's view knows the bucket's id, aliases and this key's
        // permissions: enough unless quotas or other keys' grants matter.
        let view = keys.iter().flatten().find_map(|k| k.bucket_view(&want.name)).filter(|v| {
            !desired.exhaustive && want.quotas.is_none() && want.aliases.iter().all(|a| v.global_aliases.contains(a))
        });
        let found = match view {
            Some(v) => Some(v),
            None => client.bucket_by_alias(&want.name).await?,
        };
        let has = |alias: &String| found.as_ref().is_some_and(|b| b.global_aliases.contains(alias));
        let mut elsewhere = Vec::new();
        for alias in want.aliases.iter().filter(|a| !has(a)) {
            if let Some(other) = client.bucket_by_alias(alias).await? {
                elsewhere.push(AliasElsewhere { alias: alias.clone(), bucket_id: other.id });
            }
        }
        Ok::<_, AdminError>(BucketSeen { found, elsewhere, orphan: None })
    });
    let mut seen = join_all(reads)
        .await
        .into_iter()
        .map(|r| r.map_err(|e| Failure::from_admin(e, member)))
        .collect::<Result<Vec<_>, _>>()?;
    let missing: Vec<&UnansweredCreate> =
        unanswered_creates.iter().filter(|c| seen[c.bucket].found.is_none()).collect();
    if !missing.is_empty() {
        let mut orphans = orphans(client).await.map_err(|e| Failure::from_admin(e, member))?;
        for create in missing {
            let newest_unknown = orphans.iter().rposition(|id| !create.existed_before.contains(id));
            seen[create.bucket].orphan = newest_unknown.map(|at| orphans.remove(at));
        }
    }
    Ok(seen)
}

/// Empty buckets without any alias and without any key, newest last:
/// what an interrupted create leaves.
async fn orphans(client: &AdminClient) -> Result<Vec<String>, AdminError> {
    let mut nameless: Vec<_> = client
        .list_buckets()
        .await?
        .into_iter()
        .filter(|b| b.global_aliases.is_empty() && b.local_aliases.is_empty())
        .collect();
    nameless.sort_by(|a, b| a.created.cmp(&b.created));
    let mut ids = Vec::new();
    for b in nameless {
        if let Some(info) = client.bucket_by_id(&b.id).await?
            && info.keys.is_empty()
            && info.objects == 0
        {
            ids.push(info.id);
        }
    }
    Ok(ids)
}

/// Reads readiness: `/health` of the coordinator and of every other listed
/// node that answered, and the layout version of those others (a node that
/// has not received the layout yet may still call itself healthy).
pub async fn readiness(members: &[Member], observed: &Observed) -> Result<Readiness, Failure> {
    let targets: Vec<usize> = if observed.nodes.is_empty() {
        vec![observed.coordinator]
    } else {
        observed.nodes.iter().enumerate().filter(|(_, n)| n.id.is_some()).map(|(i, _)| i).collect()
    };
    let version = observed.layout.version;
    let several = targets.len() > 1;
    let checks = targets.iter().map(|&i| async move {
        let m = &members[i];
        let why = match m.client.health().await {
            Ok(None) if i == observed.coordinator => None,
            Ok(None) => match m.client.cluster_status().await {
                Ok(s) if s.layout_version < version => {
                    Some(format!("layout version {} of {version}", s.layout_version))
                }
                Ok(_) => None,
                Err(e) => return Err(Failure::from_admin(e, m)),
            },
            Ok(Some(why)) => Some(why),
            Err(e) => return Err(Failure::from_admin(e, m)),
        };
        Ok(why.map(|w| if several { format!("{} ({w})", m.url()) } else { w }))
    });
    let mut waiting = Vec::new();
    for answer in join_all(checks).await {
        waiting.extend(answer?);
    }
    Ok(if waiting.is_empty() { Readiness::Ready } else { Readiness::NotReady(waiting) })
}
