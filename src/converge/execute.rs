//! Execution: the actions of one phase of a plan, sent to the coordinating
//! node (Garage serialises bucket changes per node), all at once: the node's
//! client lets a few through at a time (`--requests-per-node`), so a phase of
//! a thousand bucket creates reaches Garage in waves of that many. Garage's
//! answer to each change describes the resource after it; that answer is
//! folded into the observation, so the next plan starts from what Garage
//! said rather than from what was asked. A failed or ambiguous action is
//! never resumed: it is handed back, and the run observes afresh.

use std::collections::BTreeSet;

use futures_util::future::join_all;

use crate::admin::AdminError;
use crate::admin::types::{
    BucketInfo, ClusterLayout, ClusterStatus, KeyInfo, SkipDeadNodesRequest, StagedRoleChange, UpdateLayoutRequest,
};
use crate::desired::Desired;
use crate::report::short_id;
use crate::s3::{self, S3Client};
use crate::wait::{Progress, Waiter};

use super::layout::SkipDead;
use super::lifecycle::Rule;
use super::observe::{LifecycleSeen, Member, Observed, Readiness};
use super::plan::{Action, Identity, LayoutChange, Peer};

/// Why an action did not complete.
#[derive(Debug)]
pub enum ActionError {
    /// Garage's error answer, or no answer.
    Admin(AdminError),
    /// The S3 API's error answer, or no answer (lifecycle rules).
    S3(s3::S3Error),
    /// Garage answered, but not with the effect asked for (another writer got
    /// there first, a peer did not connect): the next observation decides.
    Ambiguous(String),
    /// A read the action needs first failed: nothing was sent that changes Garage.
    NotSent(AdminError),
}

impl std::fmt::Display for ActionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Admin(e) => e.fmt(f),
            Self::S3(failure) => failure.fmt(f),
            Self::Ambiguous(why) => f.write_str(why),
            Self::NotSent(e) => e.fmt(f),
        }
    }
}

impl From<AdminError> for ActionError {
    fn from(e: AdminError) -> Self {
        Self::Admin(e)
    }
}

/// What one phase did.
#[derive(Debug, Default)]
pub struct Executed {
    /// The actions that took effect, in plan order.
    pub done: Vec<Action>,
    pub failed: Vec<(Action, ActionError)>,
    /// Every bucket id Garage listed just before the phase's creates were
    /// sent (none sent: `None`).
    pub buckets_before: Option<BTreeSet<String>>,
}

/// Garage's answer to one action: the resource as it is now.
enum Effect {
    Status(ClusterStatus),
    Layout(ClusterLayout),
    /// Garage no longer waits for these nodes.
    Skipped(Vec<String>),
    Key(usize, KeyInfo),
    Bucket(usize, BucketInfo),
    /// A bucket's lifecycle rules, as written or read.
    Lifecycle(usize, Vec<Rule>),
    /// Rules written: what Garage holds now is read back before it is trusted.
    LifecycleWritten(usize),
}

/// Runs `actions` (one phase) at once, as many in flight as the clients let
/// through, and folds Garage's answers into `observed`.
pub async fn execute(
    members: &[Member],
    s3: &S3Client,
    desired: &Desired,
    actions: Vec<Action>,
    observed: &mut Observed,
    progress: &Progress,
) -> Executed {
    let coordinator = &members[observed.coordinator];
    let mut executed = Executed::default();
    // A create that gets no answer may still store a bucket, without its
    // name: the buckets that exist before it are never taken for that one.
    // The observation that planned the create has listed them (a wanted
    // bucket was missing), or saw no layout and so no bucket; only where it
    // did neither are they listed now.
    let mut before_failed = None;
    if actions.iter().any(|a| matches!(a, Action::CreateBucket { .. })) {
        match &observed.bucket_ids {
            Some(ids) => executed.buckets_before = Some(ids.clone()),
            None => match coordinator.client.list_buckets().await {
                Ok(listed) => executed.buckets_before = Some(listed.into_iter().map(|b| b.id).collect()),
                Err(e) => before_failed = Some(e),
            },
        }
    }
    let (actions, not_sent): (Vec<Action>, Vec<Action>) =
        actions.into_iter().partition(|a| before_failed.is_none() || !matches!(a, Action::CreateBucket { .. }));
    if let Some(e) = before_failed {
        for action in not_sent {
            executed.failed.push((action, ActionError::NotSent(e.clone())));
        }
    }
    let results = join_all(actions.iter().map(|a| run(members, coordinator, s3, desired, a, observed, progress))).await;
    for (action, result) in actions.into_iter().zip(results) {
        match result {
            Ok(effect) => {
                fold(observed, desired, &action, effect);
                executed.done.push(action);
            }
            Err(e) => executed.failed.push((action, e)),
        }
    }
    executed
}

async fn run(
    members: &[Member],
    member: &Member,
    s3: &S3Client,
    desired: &Desired,
    action: &Action,
    observed: &Observed,
    progress: &Progress,
) -> Result<Effect, ActionError> {
    let client = &member.client;
    // Ids of what earlier phases made or found.
    let bucket_id =
        |b: usize| observed.buckets[b].found.as_ref().map(|f| f.id.clone()).ok_or_else(|| missing(desired, b));
    Ok(match action {
        Action::Connect { peers } => Effect::Status(connect(members, member, peers, progress).await?),
        Action::Layout(change) => Effect::Layout(apply_layout(members, member, change, &observed.layout).await?),
        Action::SkipDeadNodes(skip) => Effect::Skipped(skip_dead_nodes(member, skip).await?),
        Action::ImportKey { key } => {
            let k = &desired.keys[*key];
            Effect::Key(*key, client.import_key(&k.id, &k.secret, &k.name).await?)
        }
        Action::RenameKey { key, .. } => {
            let k = &desired.keys[*key];
            Effect::Key(*key, client.rename_key(&k.id, &k.name).await?)
        }
        Action::CreateBucket { bucket } => {
            Effect::Bucket(*bucket, client.create_bucket(&desired.buckets[*bucket].name).await?)
        }
        Action::AdoptBucket { bucket, id } => {
            Effect::Bucket(*bucket, client.add_bucket_alias(id, &desired.buckets[*bucket].name).await?)
        }
        Action::AddAlias { bucket, alias } => {
            Effect::Bucket(*bucket, client.add_bucket_alias(&bucket_id(*bucket)?, alias).await?)
        }
        Action::UpdateBucket { bucket, update } => {
            Effect::Bucket(*bucket, client.update_bucket(&bucket_id(*bucket)?, update).await?)
        }
        Action::Grant { grant, add, .. } => {
            let g = &desired.grants[*grant];
            let b = g.bucket.0;
            Effect::Bucket(b, client.allow_bucket_key(&bucket_id(b)?, &desired.grant_key(g).id, *add).await?)
        }
        Action::SetLifecycle { bucket, owner, rules, .. } => {
            let key = &desired.keys[owner.0];
            s3.set_lifecycle(&desired.buckets[*bucket].name, key, rules).await.map_err(ActionError::S3)?;
            Effect::LifecycleWritten(*bucket)
        }
        Action::ReadLifecycle { bucket, owner, .. } => {
            let key = &desired.keys[owner.0];
            let rules = s3.lifecycle(&desired.buckets[*bucket].name, key).await.map_err(ActionError::S3)?;
            Effect::Lifecycle(*bucket, rules)
        }
    })
}

fn missing(desired: &Desired, bucket: usize) -> ActionError {
    ActionError::Ambiguous(format!("bucket {} is not known yet", desired.buckets[bucket].name))
}

/// Stages the change (if anything is ours to stage) and applies it as
/// `change.version`. A layout that moved in between is another writer's:
/// the next observation decides, and adopts what is left staged.
///
/// Before staging, and again before applying, every listed node that gets
/// a role is asked its id: one that answers with another id (it came back
/// without its metadata) would get a role it can never take. Nothing is
/// staged for it; a role staged in between is taken back, nothing is
/// applied, and the next observation decides. Once
/// applied, Garage is told to stop waiting for the old ids the change
/// removed (`change.skip`); if that fails, the next observation finds them
/// and asks again.
async fn apply_layout(
    members: &[Member],
    member: &Member,
    change: &LayoutChange,
    seen: &ClusterLayout,
) -> Result<ClusterLayout, ActionError> {
    let client = &member.client;
    let moved = moved_nodes(members, &change.identities).await;
    if !moved.is_empty() {
        let each: Vec<String> = moved.into_iter().map(|(_, why)| why).collect();
        return Err(ActionError::Ambiguous(format!("layout not staged: {}", each.join("; "))));
    }
    let staged = if change.stage.is_empty() && change.parameters.is_none() {
        seen.clone()
    } else {
        let request = UpdateLayoutRequest { roles: change.stage.clone(), parameters: change.parameters };
        client.update_layout(&request).await?
    };
    if !staged.has_staged_changes() || staged.version + 1 != change.version {
        return Err(ActionError::Ambiguous(format!(
            "the layout moved while garage-init staged version {} (now version {}, {} change(s) staged)",
            change.version,
            staged.version,
            staged.staged_role_changes.len()
        )));
    }
    let moved = moved_nodes(members, &change.identities).await;
    if !moved.is_empty() {
        // A role staged for an id that holds none now is withdrawn by staging its removal.
        let withdraw: Vec<StagedRoleChange> = moved
            .iter()
            .filter(|(old, _)| staged.role_of(old).is_none())
            .map(|(old, _)| StagedRoleChange::Remove { id: old.clone(), remove: true })
            .collect();
        if !withdraw.is_empty() {
            client.update_layout(&UpdateLayoutRequest { roles: withdraw, parameters: None }).await?;
        }
        let each: Vec<String> = moved.into_iter().map(|(_, why)| why).collect();
        return Err(ActionError::Ambiguous(format!("layout not applied: {}", each.join("; "))));
    }
    let applied = client.apply_layout(change.version).await?;
    if let Some(skip) = &change.skip
        && let Err(e) = skip_dead_nodes(member, skip).await
    {
        tracing::warn!(
            version = skip.version,
            "layout applied, but Garage did not stop waiting for the nodes gone: {e}"
        );
    }
    Ok(applied)
}

/// The identified nodes that no longer answer as the id given: (that id,
/// what they answer now). A node that does not answer at all is taken as
/// moved: it may be starting again with a new id.
async fn moved_nodes(members: &[Member], identities: &[Identity]) -> Vec<(String, String)> {
    let answers = join_all(identities.iter().map(|i| members[i.node].client.own_node_id())).await;
    identities
        .iter()
        .zip(answers)
        .filter_map(|(i, answer)| {
            let url = members[i.node].url();
            match answer {
                Ok(now) if now == i.id => None,
                Ok(now) => Some(format!(
                    "{url} now answers as node {} (it was node {}): it restarted without its metadata",
                    short_id(&now),
                    short_id(&i.id)
                )),
                Err(e) => Some(format!("{url} (node {}) stopped answering: {e}", short_id(&i.id))),
            }
            .map(|why| (i.id.clone(), why))
        })
        .collect()
}

/// Tells Garage to stop waiting for nodes gone for good. Garage refuses once
/// only one layout version is left active: then it waits for nothing.
async fn skip_dead_nodes(member: &Member, skip: &SkipDead) -> Result<Vec<String>, ActionError> {
    let request = SkipDeadNodesRequest { version: skip.version, allow_missing_data: skip.allow_missing_data };
    match member.client.skip_dead_nodes(&request).await {
        Ok(_) => Ok(skip.nodes.clone()),
        Err(e) if e.is_single_layout_version() => Ok(skip.nodes.clone()),
        Err(e) => Err(e.into()),
    }
}

/// Connects the coordinating node to `peers`, then waits until it sees them
/// up. Each wait asks every peer its id again, through its own admin API: a
/// peer that came back with another id is not waited for (its old id would
/// never come up); the next observation connects what answers there now.
async fn connect(
    members: &[Member],
    member: &Member,
    peers: &[Peer],
    progress: &Progress,
) -> Result<ClusterStatus, ActionError> {
    let addresses: Vec<String> = peers.iter().map(|p| format!("{}@{}", p.id, p.rpc_address)).collect();
    let results = member.client.connect_nodes(&addresses).await?;
    let failures: Vec<String> = peers
        .iter()
        .zip(results)
        .filter(|(_, r)| !r.success)
        .map(|(p, r)| {
            format!("{} at {}: {}", short_id(&p.id), p.rpc_address, r.error.unwrap_or_else(|| "not connected".into()))
        })
        .collect();
    if !failures.is_empty() {
        return Err(ActionError::Ambiguous(format!("nodes not connected: {}", failures.join("; "))));
    }
    // A peer that dialled in shows as up once the full mesh dials back: milliseconds.
    let step = format!("cluster membership at {}", member.url());
    let mut waiter = Waiter::new(&step);
    let identities: Vec<Identity> = peers.iter().map(|p| Identity { node: p.node, id: p.id.clone() }).collect();
    loop {
        // The ids are asked after the status is read: a node the status shows up is then still the node
        // that answers at its address (Garage may list an id as up for seconds after it is gone).
        let status = member.client.cluster_status().await?;
        let moved = moved_nodes(members, &identities).await;
        if !moved.is_empty() {
            let each: Vec<String> = moved.into_iter().map(|(_, why)| why).collect();
            return Err(ActionError::Ambiguous(format!("not connected: {}", each.join("; "))));
        }
        let down: Vec<&str> = peers
            .iter()
            .filter(|p| !status.nodes.iter().any(|n| n.is_up && n.id == p.id))
            .map(|p| p.admin_url.as_str())
            .collect();
        if down.is_empty() {
            progress.finished(&step);
            return Ok(status);
        }
        let why = format!("nodes not connected yet: {}", down.join(", "));
        progress.failed(&step, &why);
        waiter.pause(&why).await;
    }
}

/// Puts Garage's answer where the next plan will read it.
fn fold(observed: &mut Observed, desired: &Desired, action: &Action, effect: Effect) {
    match effect {
        Effect::Status(status) => observed.status = status,
        Effect::Lifecycle(i, rules) => observed.lifecycles[i] = LifecycleSeen::Read(rules),
        // Another writer may have written between our write and the proof:
        // the next plan reads the rules back instead of assuming ours.
        Effect::LifecycleWritten(i) => observed.lifecycles[i] = LifecycleSeen::Unread,
        Effect::Skipped(nodes) => {
            // Garage drops the older version once the nodes left have synced it.
            observed.history = None;
            for node in observed.status.nodes.iter_mut().filter(|n| nodes.contains(&n.id)) {
                node.draining = false;
            }
            observed.readiness = Readiness::Unknown;
        }
        Effect::Layout(layout) => {
            observed.status.layout_version = layout.version;
            for node in &mut observed.status.nodes {
                let stored = node.role.as_ref().is_some_and(|r| r.capacity.is_some());
                node.role = layout.role_of(&node.id).map(|r| r.role.clone());
                // Its data stays in the older version until the new one is synced.
                node.draining |= stored && node.role.is_none();
            }
            observed.history = None;
            observed.layout = layout;
            // The new layout must reach every node before keys and buckets can be written.
            observed.readiness = Readiness::Unknown;
        }
        Effect::Key(i, mut info) => {
            // Garage does not echo the secret: it is the one just imported, or unchanged.
            let known = observed.keys[i].as_ref().and_then(|k| k.secret_access_key.clone());
            info.secret_access_key = known.or_else(|| Some(desired.keys[i].secret.clone()));
            observed.keys[i] = Some(info);
        }
        Effect::Bucket(i, info) => {
            if let Some(ids) = &mut observed.bucket_ids {
                ids.insert(info.id.clone());
            }
            let seen = &mut observed.buckets[i];
            match (action, seen.found.as_mut()) {
                // Concurrent grants on one bucket each answer with the whole
                // bucket: take from each only the key it changed.
                (Action::Grant { grant, .. }, Some(found)) => {
                    let key = &desired.grant_key(&desired.grants[*grant]).id;
                    let now = info.permissions_of(key);
                    match found.keys.iter_mut().find(|k| &k.access_key_id == key) {
                        Some(k) => k.permissions = now,
                        None => found
                            .keys
                            .push(crate::admin::types::BucketKey { access_key_id: key.clone(), permissions: now }),
                    }
                }
                (Action::AddAlias { .. }, Some(found)) => found.global_aliases = info.global_aliases,
                (Action::UpdateBucket { .. }, Some(found)) => found.take_settings(&info),
                _ => seen.found = Some(info),
            }
        }
    }
}
