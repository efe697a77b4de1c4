//! Observation: every read garage-init makes of Garage before it decides,
//! in one place. An [`Observed`] is a snapshot of what Garage holds now for
//! the wanted resources; nothing in it comes from an earlier snapshot.
//!
//! Reads are few on purpose: each token-checked admin request costs Garage
//! an argon2 hash (tens of milliseconds). A converged single node is
//! observed with two of them, `GetClusterStatus` and `GetKeyInfo`, sent
//! together: the status carries every node's role, and the key's own view
//! carries its buckets and its permissions on them. `GetClusterLayout` is
//! read only where a role could be staged. Buckets are read by the list:
//! `ListBuckets` (every bucket's id and names, in one request) only when the
//! keys' views do not name every wanted bucket and alias, and a bucket's own
//! record (`GetBucketInfo`) only where neither can answer: its quotas are
//! managed, or a change of it failed in this run. So a spec of a thousand
//! buckets is observed with a handful of requests, not a thousand. Readiness
//! is read from `/health`, which checks no token.
//!
//! A bucket that declares a lifecycle has its rules read through S3
//! (`GetBucketLifecycleConfiguration`, no token check): the admin API has
//! no lifecycle endpoint.
//!
//! `GetCurrentAdminTokenInfo` is never used: it can crash Garage 2.1.0.

use std::collections::HashMap;

use futures_util::future::join_all;
use tokio::time::Instant;

use std::collections::BTreeSet;

use crate::admin::types::{BucketInfo, BucketKey, ClusterLayout, ClusterStatus, KeyInfo, LayoutHistory, ListedBucket};
use crate::admin::{AdminClient, AdminError};
use crate::desired::{Desired, NodeWant, NodesWant};
use crate::error::display_url;
use crate::s3::{self, S3Client};

use super::bucket::{AliasElsewhere, needs_own_record};
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

/// A read that did not go through. What it means for the run (look again,
/// stop) is [`super::policy`]'s to decide.
#[derive(Debug)]
pub enum ReadFailure {
    /// The admin API at `at` did not answer, or answered with an error.
    Admin { error: AdminError, at: Box<url::Url> },
    /// No listed node answered.
    Silent(String),
    /// A bucket's lifecycle rules could not be read through S3.
    Lifecycle { bucket: usize, failure: s3::S3Error },
}

impl ReadFailure {
    fn admin(error: AdminError, member: &Member) -> Self {
        Self::Admin { error, at: Box::new(member.client.base_url().clone()) }
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
    /// The id of every bucket Garage held, where this observation listed
    /// them (or saw no layout, hence no bucket): what a create that gets no
    /// answer is told apart from.
    pub bucket_ids: Option<BTreeSet<String>>,
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
    /// Every wanted bucket that exists was read whole ([`Reads::Audit`]): its
    /// quotas, and the grants of keys the spec does not declare, are known.
    /// Otherwise a bucket shows only the wanted keys' grants, and quotas only
    /// where the spec manages them.
    pub audited: bool,
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

/// How much an observation reads beyond what the plan's actions depend on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reads {
    /// What the actions depend on (`apply`): other keys' names only when a
    /// wanted key is to be imported; a bucket's own record only where its
    /// quotas are managed, or a change of it failed in this run.
    Decide,
    /// Also what only drift and warnings need (`plan`, which has no request
    /// budget): other keys named like a wanted one, and every wanted bucket's
    /// own record (quotas the spec leaves alone, grants of keys it does not
    /// declare), at most the per-node number of requests at once.
    Audit,
}

/// A wanted bucket whose create got no answer (or a 5xx) in this run, and
/// the ids of every bucket Garage held before that create was sent: a
/// nameless bucket among them is someone else's, never the create's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnansweredCreate {
    pub bucket: usize,
    pub existed_before: BTreeSet<String>,
}

/// What the run remembers of its own failed changes, for the next
/// observation to look at.
#[derive(Debug, Clone, Default)]
pub struct Leftovers {
    /// Wanted buckets whose create got no answer: the nameless bucket such a
    /// create may have left (and only one made since) is looked for.
    pub unanswered_creates: Vec<UnansweredCreate>,
    /// Wanted buckets a change of which failed: when the list does not show
    /// one, it is looked up by its name, which finds a bucket whose own record
    /// lacks the name that Garage's alias table has.
    pub failed_buckets: Vec<usize>,
}

/// Reads everything the plan needs, from scratch; `leftovers` says where
/// earlier changes of this run may have left something half done.
pub async fn observe(
    members: &[Member],
    s3: &S3Client,
    desired: &Desired,
    leftovers: &Leftovers,
    reads: Reads,
) -> Result<Observed, ReadFailure> {
    let (nodes, coordinator) = match &desired.cluster.nodes {
        NodesWant::Listed(_) => {
            let nodes = identify(members).await?;
            let Some(first) = nodes.iter().position(|n| n.id.is_some()) else {
                let silent: Vec<String> = members
                    .iter()
                    .zip(&nodes)
                    .map(|(m, n)| format!("{} ({})", m.url(), n.silent.as_deref().unwrap_or("no answer")))
                    .collect();
                return Err(ReadFailure::Silent(format!("nodes not answering: {}", silent.join(", "))));
            };
            (nodes, first)
        }
        _ => (Vec::new(), 0),
    };
    let member = &members[coordinator];
    let client = &member.client;
    // The keys are read alongside the status: on a converged cluster their
    // views answer for the buckets and grants too.
    // A status that fails ends the key reads too, rather than reading their
    // answers on to the cap.
    let (status, keys) =
        tokio::try_join!(async { client.cluster_status().await.map_err(|e| ReadFailure::admin(e, member)) }, async {
            Ok(join_all(desired.keys.iter().map(|k| client.key_info_with_secret(&k.id))).await)
        })?;
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
            Err(e) => Err(ReadFailure::admin(e, member)),
        })
        .collect::<Result<Vec<_>, _>>()?;

    let mut observed = Observed {
        coordinator,
        layout: layout_from_status(&status),
        history: None,
        bucket_ids: None,
        status,
        nodes,
        namesakes: vec![Vec::new(); desired.keys.len()],
        keys,
        buckets: Vec::new(),
        lifecycles: vec![LifecycleSeen::Unread; desired.buckets.len()],
        audited: reads == Reads::Audit,
        readiness: Readiness::Unknown,
        at: Instant::now(),
    };
    let known = observed.known_nodes(desired);
    let read_layout = needs_layout(&observed.status, &desired.cluster, &known);
    // A key to import may find its name taken by another key.
    let list_keys = !fresh && (reads == Reads::Audit || observed.keys.iter().any(Option::is_none));
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
        observe_buckets(member, desired, &observed.keys, fresh, leftovers, reads),
        async {
            match list_keys {
                true => client.list_keys().await.map(Some),
                false => Ok(None),
            }
        },
    );
    if let Some(listed) = listed.map_err(|e| ReadFailure::admin(e, member))? {
        for (i, want) in desired.keys.iter().enumerate() {
            observed.namesakes[i] =
                listed.iter().filter(|k| k.name == want.name && k.id != want.id).map(|k| k.id.clone()).collect();
        }
    }
    if let Some(layout) = layout.map_err(|e| ReadFailure::admin(e, member))? {
        observed.layout = layout;
    }
    observed.history = history.map_err(|e| ReadFailure::admin(e, member))?;
    (observed.buckets, observed.bucket_ids) = buckets?;
    read_lifecycles(s3, desired, &mut observed).await?;
    Ok(observed)
}

/// Reads the lifecycle rules of the buckets that declare them, each with the
/// key that owns it; a bucket still to be made has none. A key not yet an
/// owner, or not yet known to S3, leaves the rules unread: the plan reads
/// them again once the grant is in place.
async fn read_lifecycles(s3: &S3Client, desired: &Desired, observed: &mut Observed) -> Result<(), ReadFailure> {
    let (existing, missing): (Vec<_>, Vec<_>) =
        desired.lifecycles().map(|(i, _, owner)| (i, owner)).partition(|&(i, _)| observed.buckets[i].found.is_some());
    for (i, _) in missing {
        observed.lifecycles[i] = LifecycleSeen::Read(Vec::new());
    }
    let reads = existing.iter().map(|&(i, owner)| s3.lifecycle(&desired.buckets[i].name, &desired.keys[owner.0]));
    for (&(i, _), read) in existing.iter().zip(join_all(reads).await) {
        observed.lifecycles[i] = match read {
            Ok(rules) => LifecycleSeen::Read(rules),
            Err(f) if f.not_owner_yet() => LifecycleSeen::Unread,
            Err(failure) => return Err(ReadFailure::Lifecycle { bucket: i, failure }),
        };
    }
    Ok(())
}

/// Each listed node's id, from its own admin API; silent nodes are noted, not waited for.
async fn identify(members: &[Member]) -> Result<Vec<NodeSeen>, ReadFailure> {
    let answers = join_all(members.iter().map(|m| m.client.own_node_id())).await;
    let mut nodes = Vec::new();
    for (m, answer) in members.iter().zip(answers) {
        nodes.push(match answer {
            Ok(id) => NodeSeen { id: Some(id), silent: None },
            Err(e) if e.is_transient() => NodeSeen { id: None, silent: Some(e.to_string()) },
            Err(e) => return Err(ReadFailure::admin(e, m)),
        });
    }
    Ok(nodes)
}

/// Each wanted bucket by its name, and the owners of wanted aliases it lacks.
///
/// The wanted keys' views come first (read already): each names the buckets
/// its key has permissions on, with their global aliases. The list of every
/// bucket is read only when those views do not name every wanted bucket
/// with all its aliases; a bucket's own record only where the views and the
/// list cannot answer (see [`Reads`]), at most the per-node number at once.
async fn observe_buckets(
    member: &Member,
    desired: &Desired,
    keys: &[Option<KeyInfo>],
    fresh: bool,
    leftovers: &Leftovers,
    reads: Reads,
) -> Result<(Vec<BucketSeen>, Option<BTreeSet<String>>), ReadFailure> {
    if fresh {
        // Without a layout Garage holds no bucket at all.
        return Ok((vec![BucketSeen::default(); desired.buckets.len()], Some(BTreeSet::new())));
    }
    let client = &member.client;
    let admin = |e| ReadFailure::admin(e, member);
    let views = key_views(keys);
    let by_alias: HashMap<&str, &BucketInfo> =
        views.values().flat_map(|b| b.global_aliases.iter().map(move |a| (a.as_str(), b))).collect();
    let answered = |want: &crate::desired::BucketWant| {
        by_alias.get(want.name.as_str()).is_some_and(|b| want.aliases.iter().all(|a| b.global_aliases.contains(a)))
    };
    let mut listed = match desired.buckets.iter().all(answered) {
        true => None,
        false => Some(Listing::new(client.list_buckets().await.map_err(admin)?)),
    };

    // Found by the views, else by the list; each with the wanted keys' grants.
    let mut found: Vec<Option<BucketInfo>> = desired
        .buckets
        .iter()
        .map(|want| match by_alias.get(want.name.as_str()) {
            Some(view) => Some((*view).clone()),
            None => listed.as_ref().and_then(|l| l.named(&want.name)).map(|b| BucketInfo {
                id: b.id.clone(),
                created: b.created.clone(),
                global_aliases: b.global_aliases.clone(),
                keys: views.get(&b.id).map(|v| v.keys.clone()).unwrap_or_default(),
                ..BucketInfo::default()
            }),
        })
        .collect();

    // The buckets' own records, where the views and the list cannot answer.
    let whole: Vec<(usize, Lookup)> = desired
        .buckets
        .iter()
        .enumerate()
        .filter_map(|(i, want)| match (&found[i], reads) {
            (Some(b), Reads::Audit) => Some((i, Lookup::Id(b.id.clone()))),
            (Some(b), Reads::Decide) if needs_own_record(want) => Some((i, Lookup::Id(b.id.clone()))),
            (None, Reads::Audit) => Some((i, Lookup::Name)),
            (None, Reads::Decide) if leftovers.failed_buckets.contains(&i) => Some((i, Lookup::Name)),
            _ => None,
        })
        .collect();
    let records = join_all(whole.iter().map(|(i, lookup)| async move {
        match lookup {
            Lookup::Id(id) => client.bucket_by_id(id).await,
            Lookup::Name => client.bucket_by_alias(&desired.buckets[*i].name).await,
        }
    }))
    .await;
    for ((i, _), record) in whole.iter().zip(records) {
        found[*i] = record.map_err(admin)?;
    }

    // Wanted aliases a bucket lacks: free, or another bucket's (a conflict).
    let lacks = |i: usize, alias: &String| !found[i].as_ref().is_some_and(|b| b.global_aliases.contains(alias));
    let any_lacking = desired.buckets.iter().enumerate().any(|(i, w)| w.aliases.iter().any(|a| lacks(i, a)));
    let missing: Vec<&UnansweredCreate> =
        leftovers.unanswered_creates.iter().filter(|c| found.get(c.bucket).is_some_and(Option::is_none)).collect();
    if listed.is_none() && (any_lacking || !missing.is_empty()) {
        listed = Some(Listing::new(client.list_buckets().await.map_err(admin)?));
    }
    let elsewhere: Vec<Vec<AliasElsewhere>> = desired
        .buckets
        .iter()
        .enumerate()
        .map(|(i, want)| {
            let lacking = want.aliases.iter().filter(|a| lacks(i, a));
            lacking
                .filter_map(|alias| {
                    let other = listed.as_ref()?.named(alias)?;
                    Some(AliasElsewhere { alias: alias.clone(), bucket_id: other.id.clone() })
                })
                .collect()
        })
        .collect();
    let mut seen: Vec<BucketSeen> = found
        .into_iter()
        .zip(elsewhere)
        .map(|(found, elsewhere)| BucketSeen { found, elsewhere, orphan: None })
        .collect();
    if !missing.is_empty() {
        let listing = listed.as_ref().expect("listed above");
        let mut orphans = orphans(client, &listing.all).await.map_err(admin)?;
        for create in missing {
            let newest_unknown = orphans.iter().rposition(|id| !create.existed_before.contains(id));
            seen[create.bucket].orphan = newest_unknown.map(|at| orphans.remove(at));
        }
    }
    let ids = listed.map(|l| l.all.iter().map(|b| b.id.clone()).collect());
    Ok((seen, ids))
}

/// How a bucket's own record is looked up.
enum Lookup {
    Id(String),
    /// By its wanted name, through Garage's alias table.
    Name,
}

/// What the wanted keys' own views say of the buckets they have permissions
/// on, by bucket id: its global aliases, and each of those keys' permissions.
fn key_views(keys: &[Option<KeyInfo>]) -> HashMap<String, BucketInfo> {
    let mut views: HashMap<String, BucketInfo> = HashMap::new();
    for key in keys.iter().flatten() {
        for b in &key.buckets {
            let view = views.entry(b.id.clone()).or_insert_with(|| BucketInfo {
                id: b.id.clone(),
                created: None,
                global_aliases: b.global_aliases.clone(),
                ..BucketInfo::default()
            });
            view.keys.push(BucketKey { access_key_id: key.access_key_id.clone(), permissions: b.permissions });
        }
    }
    views
}

/// Every bucket Garage lists, and the index of their global aliases.
struct Listing {
    all: Vec<ListedBucket>,
    by_alias: HashMap<String, usize>,
}

impl Listing {
    fn new(all: Vec<ListedBucket>) -> Self {
        let by_alias =
            all.iter().enumerate().flat_map(|(i, b)| b.global_aliases.iter().map(move |a| (a.clone(), i))).collect();
        Self { all, by_alias }
    }

    fn named(&self, alias: &str) -> Option<&ListedBucket> {
        self.by_alias.get(alias).map(|&i| &self.all[i])
    }
}

/// Empty buckets without any alias and without any key, newest last:
/// what an interrupted create leaves.
async fn orphans(client: &AdminClient, listed: &[ListedBucket]) -> Result<Vec<String>, AdminError> {
    let mut nameless: Vec<_> =
        listed.iter().filter(|b| b.global_aliases.is_empty() && b.local_aliases.is_empty()).collect();
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
pub async fn readiness(members: &[Member], observed: &Observed) -> Result<Readiness, ReadFailure> {
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
                Err(e) => return Err(ReadFailure::admin(e, m)),
            },
            Ok(Some(why)) => Some(why),
            Err(e) => return Err(ReadFailure::admin(e, m)),
        };
        Ok(why.map(|w| if several { format!("{} ({w})", m.url()) } else { w }))
    });
    let mut waiting = Vec::new();
    for answer in join_all(checks).await {
        waiting.extend(answer?);
    }
    Ok(if waiting.is_empty() { Readiness::Ready } else { Readiness::NotReady(waiting) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::types::{KeyBucket, Permissions};

    fn key(id: &str, buckets: &[(&str, &[&str], Permissions)]) -> KeyInfo {
        KeyInfo {
            access_key_id: id.into(),
            name: id.into(),
            created: None,
            expired: false,
            secret_access_key: None,
            buckets: buckets
                .iter()
                .map(|(bucket, aliases, permissions)| KeyBucket {
                    id: bucket.to_string(),
                    global_aliases: aliases.iter().map(|a| a.to_string()).collect(),
                    permissions: *permissions,
                })
                .collect(),
        }
    }

    #[test]
    fn the_keys_views_of_one_bucket_make_one_bucket_with_each_keys_grant() {
        let read = Permissions { read: true, write: false, owner: false };
        let keys = [
            Some(key("GKa", &[("b1", &["cache", "extra"], Permissions::ALL), ("b2", &["logs"], read)])),
            None,
            Some(key("GKb", &[("b1", &["cache", "extra"], read)])),
        ];
        let views = key_views(&keys);
        assert_eq!(views.len(), 2);
        let b1 = &views["b1"];
        assert_eq!(b1.global_aliases, ["cache", "extra"]);
        assert_eq!((b1.permissions_of("GKa"), b1.permissions_of("GKb")), (Permissions::ALL, read));
        assert_eq!(views["b2"].permissions_of("GKb"), Permissions::default());
    }

    #[test]
    fn a_listing_finds_a_bucket_by_any_of_its_global_aliases() {
        let listed = |id: &str, aliases: &[&str]| ListedBucket {
            id: id.into(),
            created: None,
            global_aliases: aliases.iter().map(|a| a.to_string()).collect(),
            local_aliases: vec![],
        };
        let listing = Listing::new(vec![listed("b1", &["cache", "extra"]), listed("b2", &[])]);
        assert_eq!(listing.named("extra").map(|b| b.id.as_str()), Some("b1"));
        assert!(listing.named("b2").is_none() && listing.named("logs").is_none());
    }
}
