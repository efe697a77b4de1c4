//! Execution: the actions of one phase of a plan, sent to the coordinating
//! node (Garage serialises bucket changes per node), all at once: the node's
//! client lets a few through at a time (`--requests-per-node`), so a phase of
//! a thousand bucket creates reaches Garage in waves of that many. Garage's
//! answer to each change describes the resource after it; that answer is
//! folded into the observation, so the next plan starts from what Garage
//! said rather than from what was asked. A failed or ambiguous action is
//! never resumed: it is handed back, and the run observes afresh.

use futures_util::future::join_all;

use crate::admin::AdminError;
use crate::admin::types::{BucketInfo, ClusterLayout, ClusterStatus, KeyInfo, UpdateLayoutRequest};
use crate::desired::Desired;
use crate::report::short_id;
use crate::s3check::{self, Prover};
use crate::wait::{Progress, Waiter};

use super::lifecycle::Rule;
use super::observe::{LifecycleSeen, Member, Observed, Readiness};
use super::plan::{Action, LayoutChange, Peer};

/// Why an action did not complete.
#[derive(Debug)]
pub enum ActionError {
    /// Garage's error answer, or no answer.
    Admin(AdminError),
    /// The S3 API's error answer, or no answer (lifecycle rules).
    S3(s3check::Failure),
    /// Garage answered, but not with the effect asked for (another writer got
    /// there first, a peer did not connect): the next observation decides.
    Ambiguous(String),
}

impl std::fmt::Display for ActionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Admin(e) => e.fmt(f),
            Self::S3(failure) => failure.fmt(f),
            Self::Ambiguous(why) => f.write_str(why),
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
}

/// Garage's answer to one action: the resource as it is now.
enum Effect {
    Status(ClusterStatus),
    Layout(ClusterLayout),
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
    s3: &Prover,
    desired: &Desired,
    actions: Vec<Action>,
    observed: &mut Observed,
    progress: &Progress,
) -> Executed {
    let coordinator = &members[observed.coordinator];
    let results = join_all(actions.iter().map(|a| run(coordinator, s3, desired, a, observed, progress))).await;
    let mut executed = Executed::default();
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
    member: &Member,
    s3: &Prover,
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
        Action::Connect { peers } => Effect::Status(connect(member, peers, progress).await?),
        Action::Layout(change) => Effect::Layout(apply_layout(member, change, &observed.layout).await?),
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
        Action::SetQuotas { bucket, quotas } => {
            Effect::Bucket(*bucket, client.set_bucket_quotas(&bucket_id(*bucket)?, *quotas).await?)
        }
        Action::Grant { grant, add, .. } => {
            let g = &desired.grants[*grant];
            let b = desired.bucket_index(&g.bucket).expect("grants name declared buckets");
            Effect::Bucket(b, client.allow_bucket_key(&bucket_id(b)?, &g.key_id, *add).await?)
        }
        Action::SetLifecycle { bucket, rules, .. } => {
            let key = desired.lifecycle_key(*bucket).expect("a declared lifecycle has an owner key");
            s3.set_lifecycle(&desired.buckets[*bucket].name, key, rules).await.map_err(ActionError::S3)?;
            Effect::LifecycleWritten(*bucket)
        }
        Action::ReadLifecycle { bucket } => {
            let key = desired.lifecycle_key(*bucket).expect("a declared lifecycle has an owner key");
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
async fn apply_layout(
    member: &Member,
    change: &LayoutChange,
    seen: &ClusterLayout,
) -> Result<ClusterLayout, ActionError> {
    let client = &member.client;
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
    Ok(client.apply_layout(change.version).await?)
}

/// Connects the coordinating node to `peers`, then waits until it sees them up.
async fn connect(member: &Member, peers: &[Peer], progress: &Progress) -> Result<ClusterStatus, ActionError> {
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
    loop {
        let status = member.client.cluster_status().await?;
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
        Effect::Layout(layout) => {
            observed.status.layout_version = layout.version;
            for node in &mut observed.status.nodes {
                node.role = layout.role_of(&node.id).map(|r| r.role.clone());
            }
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
            let seen = &mut observed.buckets[i];
            match (action, seen.found.as_mut()) {
                // Concurrent grants on one bucket each answer with the whole
                // bucket: take from each only the key it changed.
                (Action::Grant { grant, .. }, Some(found)) => {
                    let key = &desired.grants[*grant].key_id;
                    let now = info.permissions_of(key);
                    match found.keys.iter_mut().find(|k| &k.access_key_id == key) {
                        Some(k) => k.permissions = now,
                        None => found
                            .keys
                            .push(crate::admin::types::BucketKey { access_key_id: key.clone(), permissions: now }),
                    }
                }
                (Action::AddAlias { .. }, Some(found)) => found.global_aliases = info.global_aliases,
                (Action::SetQuotas { .. }, Some(found)) => found.quotas = info.quotas,
                _ => seen.found = Some(info),
            }
        }
    }
}
