//! Convergence, level-triggered as a controller does it: observe what Garage
//! holds ([`observe`]), decide with a pure function ([`plan`]), act on one
//! phase of the plan ([`execute`]), and decide again, until an observation
//! plans nothing and the key proves it can write through S3.
//!
//! Nothing is assumed about why a run started or what an earlier run did.
//! After any failed or ambiguous action (no answer, a 5xx, a 409 on create,
//! a layout that moved), and whenever Garage stays unready or the proof
//! fails for longer than a moment, the whole state is read again: a Garage
//! that restarted without its layout, or with a new node id, is seen as it
//! is and converged in the same run. `garage-init plan` prints the same plan
//! value that `apply` executes.
//!
//! - [`observe`]: every read, and the [`observe::Observed`] snapshot;
//! - [`plan`]: the pure decision, its [`plan::Action`]s and their report lines;
//! - [`execute`]: every write, folding Garage's answers into the snapshot;
//! - [`layout`], [`key`], [`bucket`], [`lifecycle`]: the per-resource
//!   decisions `plan` uses.

pub mod bucket;
pub mod execute;
pub mod key;
pub mod layout;
pub mod lifecycle;
pub mod observe;
pub mod plan;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::Duration;

use tokio::time::Instant;

use crate::admin::{AdminClient, AdminError};
use crate::config::ApplyConfig;
use crate::desired::NodesWant;
use crate::error::{Error, display_url};
use crate::report::{Line, Outcome, Reporter};
use crate::s3check;
use crate::wait::{InFlight, Progress, Waiter};

use execute::ActionError;
use observe::{Leftovers, Member, Observed, Readiness, Reads, UnansweredCreate};
use plan::{Action, Resource};

/// An observation older than this is read again rather than trusted while
/// Garage stays unready or the proof keeps failing: long enough not to
/// spend token checks while a new layout spreads (Garage's own transition
/// takes 1–2 s on a cluster), short enough to see a Garage that came back
/// without its layout within a second.
const TRUST_UNEXPLAINED_WAIT: Duration = Duration::from_secs(1);
/// How often Garage may give the same definite error answer (a 5xx, 404 or
/// 409) to the same resource, with a fresh observation in between, before
/// the answer is taken as final.
const DEFINITE_FAILURES: u32 = 2;
/// How long Garage may keep saying that its storage fails (a full disk, an
/// I/O error) before the answer is taken as final: a moment, in case space
/// is being freed, but far less than a deadline.
const STORAGE_GRACE: Duration = Duration::from_secs(5);

/// The admin APIs a run talks to: one per listed node, or the one `--admin-url`;
/// one client each, with its own connections and its own bound on requests in flight.
pub fn members(cfg: &ApplyConfig) -> Result<Vec<Member>, Error> {
    let client =
        |url: &url::Url| AdminClient::new(url.clone(), &cfg.admin_token, cfg.requests_per_node).map_err(Error::Admin);
    match &cfg.desired.cluster.nodes {
        NodesWant::Listed(nodes) => {
            nodes.iter().map(|n| Ok(Member { want: Some(n.clone()), client: client(&n.admin_url)? })).collect()
        }
        _ => Ok(vec![Member { want: None, client: client(&cfg.admin_url)? }]),
    }
}

/// Admin requests sent over every member.
fn requests(members: &[Member]) -> u32 {
    members.iter().map(|m| m.client.requests()).sum()
}

/// Turns the deadline into the error that says what was awaited, and why,
/// and which of the requests recorded in `in_flight` it cut off.
pub async fn within_deadline<T>(
    cfg: &ApplyConfig,
    progress: &Progress,
    in_flight: &[&InFlight],
    work: impl Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    // Pinned here, so that its requests are still recorded when the deadline is reported.
    let mut work = std::pin::pin!(work);
    tokio::select! {
        result = &mut work => result,
        () = tokio::time::sleep(cfg.deadline) => {
            let in_flight = in_flight.iter().flat_map(|requests| requests.waiting()).collect();
            Err(Error::Deadline { deadline: cfg.deadline, pending: progress.unfinished(), in_flight })
        }
    }
}

/// The request lists of a run's admin and S3 clients.
fn in_flight<'a>(members: &'a [Member], s3: &'a s3check::Prover) -> Vec<&'a InFlight> {
    members.iter().map(|m| m.client.in_flight()).chain([s3.in_flight()]).collect()
}

/// What the loop has learnt that outlives one observation: facts about
/// Garage's answers, not about its state.
#[derive(Default)]
struct Memory {
    /// Resources whose action Garage refused with a definite answer, and how
    /// often, while each observation since still planned that action (one
    /// that finds the resource in place forgets them).
    definite: HashMap<Resource, u32>,
    /// Resources whose change failed without a definite refusal: a later
    /// observation that finds one in place most likely sees that change.
    unanswered: Vec<Resource>,
    /// Bucket creates that got no answer (or a 5xx), each with the buckets
    /// that existed before the first of them: a bucket still missing may have
    /// been stored without its name, and only a nameless bucket made since is
    /// taken for it. A create is sent again only once an observation finds
    /// no such bucket.
    creates: Vec<UnansweredCreate>,
    /// Per wanted key, other keys seen with its name: listed only before the
    /// import, yet still worth the run's warning after a fresh observation.
    namesakes: HashMap<usize, Vec<String>>,
    /// Per bucket, the lifecycle rules this run wrote and the id of the bucket
    /// it wrote them to, until a read shows them in place. Rules of ours that
    /// read back otherwise were written by someone else in between.
    written_lifecycles: HashMap<usize, (String, Vec<lifecycle::Rule>)>,
    /// Per bucket, how often the rules read back were not the ones written.
    overwritten: HashMap<usize, u32>,
    /// Since when Garage has answered that its storage fails, with no change going through since.
    storage_failing_since: Option<Instant>,
}

impl Memory {
    /// Keeps the namesakes an observation found, and gives the ones found
    /// earlier in the run to an observation that did not list the keys.
    fn carry_namesakes(&mut self, obs: &mut Observed) {
        for (i, seen) in obs.namesakes.iter_mut().enumerate() {
            match (seen.is_empty(), self.namesakes.get(&i)) {
                (true, Some(earlier)) => seen.clone_from(earlier),
                (false, _) => {
                    self.namesakes.insert(i, seen.clone());
                }
                (true, None) => {}
            }
        }
    }

    /// Checks what this run wrote against what `plan` found: a write read
    /// back in place is forgotten; one that reads back otherwise (the plan
    /// would write again) was overwritten by another writer, possibly a run
    /// with another declaration. The first time, the answer may be a moment
    /// old: `Ok(Some(why))` asks for a fresh observation; the second time it
    /// is final. A bucket with a new id (Garage lost and re-created it) voids
    /// what was written to the old one.
    fn check_written_lifecycles(
        &mut self,
        desired: &crate::desired::Desired,
        obs: &Observed,
        plan: &plan::Plan,
    ) -> Result<Option<String>, Error> {
        let rewrites: HashSet<usize> = plan
            .actions
            .iter()
            .filter_map(|a| if let Action::SetLifecycle { bucket, .. } = a { Some(*bucket) } else { None })
            .collect();
        let mut again = None;
        let buckets: Vec<usize> = self.written_lifecycles.keys().copied().collect();
        for b in buckets {
            let same_bucket = obs.buckets[b].found.as_ref().is_some_and(|f| f.id == self.written_lifecycles[&b].0);
            let observe::LifecycleSeen::Read(current) = &obs.lifecycles[b] else {
                if !same_bucket {
                    self.written_lifecycles.remove(&b);
                }
                continue;
            };
            if !same_bucket || !rewrites.contains(&b) {
                self.written_lifecycles.remove(&b);
                self.overwritten.remove(&b);
                continue;
            }
            let strikes = self.overwritten.entry(b).or_default();
            *strikes += 1;
            let name = &desired.buckets[b].name;
            if *strikes >= DEFINITE_FAILURES {
                return Err(lifecycle::overwritten(name, &self.written_lifecycles[&b].1, current).into());
            }
            again = Some(format!("lifecycle rules of bucket {name} read back otherwise than written"));
        }
        Ok(again)
    }

    /// Notes a change that got no answer (once per resource).
    fn unanswered(&mut self, resource: Resource) {
        if !self.unanswered.contains(&resource) {
            self.unanswered.push(resource);
        }
    }

    /// Notes an answer of Garage's saying its storage fails: a reason to look
    /// again for [`STORAGE_GRACE`], then the end of the run.
    fn storage_failed(&mut self, answer: impl FnOnce() -> String) -> Result<(), Error> {
        let since = *self.storage_failing_since.get_or_insert_with(Instant::now);
        if since.elapsed() < STORAGE_GRACE { Ok(()) } else { Err(Error::Storage { answer: answer() }) }
    }

    /// Where this run's failed changes may have left something half done.
    fn leftovers(&self) -> Leftovers {
        let bucket = |r: &Resource| if let Resource::Bucket(i) = r { Some(*i) } else { None };
        let unanswered = self.unanswered.iter().filter_map(bucket);
        let mut failed_buckets: Vec<usize> = unanswered.chain(self.definite.keys().filter_map(bucket)).collect();
        failed_buckets.sort_unstable();
        failed_buckets.dedup();
        Leftovers { unanswered_creates: self.creates.clone(), failed_buckets }
    }

    /// Remembers a create of bucket `bucket` that got no answer, sent when
    /// Garage held the buckets `before`; the earliest such list is kept.
    fn create_unanswered(&mut self, bucket: usize, before: Option<&BTreeSet<String>>) {
        let Some(before) = before else { return };
        if !self.creates.iter().any(|c| c.bucket == bucket) {
            self.creates.push(UnansweredCreate { bucket, existed_before: before.clone() });
        }
    }
}

/// `garage-init apply`: converge, then prove each read-write key can write.
/// The whole run, waits included, fits in the deadline.
pub async fn apply(cfg: &ApplyConfig, reporter: &mut Reporter) -> Result<(), Error> {
    let started = Instant::now();
    let progress = Progress::default();
    let members = members(cfg)?;
    let desired = &cfg.desired;
    let coordinator_url = display_url(members[0].client.base_url());

    // The steps a deadline error names, each with its last error.
    let observing = format!("Garage's admin API at {coordinator_url}");
    let membership = format!("cluster membership at {coordinator_url}");
    let readiness = format!("cluster readiness at {coordinator_url}");
    let proof = format!("S3 check at {}", display_url(&cfg.s3_url));

    let s3 = prover(cfg)?;
    let work = async {
        let mut waiter = Waiter::new(&observing);
        let mut action_steps: Vec<String> = Vec::new();
        let mut observed: Option<Observed> = None;
        let mut memory = Memory::default();
        let mut touched: Vec<Resource> = Vec::new();
        let mut proof_failing_since: Option<Instant> = None;
        loop {
            let mut obs = match observed.take() {
                Some(obs) => obs,
                None => match observe::observe(&members, &s3, desired, &memory.leftovers(), Reads::Decide).await {
                    Ok(mut obs) => {
                        memory.carry_namesakes(&mut obs);
                        progress.finished(&observing);
                        obs
                    }
                    Err(failure) => {
                        let (why, slow) = failure.retry()?;
                        progress.failed(&observing, &why);
                        waiter.pause_paced(&why, slow).await;
                        continue;
                    }
                },
            };
            let plan = plan::plan(desired, &obs, cfg.allow_layout_changes);
            if let Some(c) = plan.conflicts.first() {
                return Err(c.clone().into());
            }
            if !plan.waiting.is_empty() {
                let why = plan.waiting.join("; ");
                progress.failed(&membership, &why);
                waiter.pause(&why).await;
                continue;
            }
            progress.finished(&membership);
            // A refusal counts only while Garage still lacks what was refused.
            memory.definite.retain(|r, _| plan.actions.iter().any(|a| a.resource() == *r));
            if let Some(why) = memory.check_written_lifecycles(desired, &obs, &plan)? {
                // Read again, from scratch, before anything is rewritten.
                waiter.pause(&why).await;
                continue;
            }
            // What is left to do, as the deadline error would name it.
            let steps: Vec<String> = plan.actions.iter().map(|a| step_name(&a.line(desired, true))).collect();
            let left: HashSet<&String> = steps.iter().collect();
            action_steps.iter().filter(|s| !left.contains(s)).for_each(|s| progress.finished(s));
            steps.iter().for_each(|s| progress.started(s));
            action_steps = steps;

            let next = plan.next_phase();
            let needs_ready = next.as_ref().is_none_or(|wave| wave.phase.needs_ready_cluster());
            if needs_ready && obs.readiness != Readiness::Ready {
                match observe::readiness(&members, &obs).await {
                    Ok(Readiness::NotReady(why)) => {
                        let why = why.join(", ");
                        progress.failed(&readiness, &why);
                        waiter.pause(&format!("cluster not ready: {why}")).await;
                        if obs.at.elapsed() < trust_while_unexplained(&obs) {
                            observed = Some(obs);
                        }
                        continue;
                    }
                    Ok(ready) => {
                        progress.finished(&readiness);
                        obs.readiness = ready;
                    }
                    Err(failure) => {
                        let (why, slow) = failure.retry()?;
                        progress.failed(&readiness, &why);
                        waiter.pause_paced(&why, slow).await;
                        continue;
                    }
                }
            }

            let Some(wave) = next else {
                // Nothing to do: prove it.
                match prove(&s3, desired).await {
                    Ok(proofs) => {
                        plan::unchanged_lines(desired, &obs, &touched, &memory.unanswered)
                            .into_iter()
                            .chain(plan.drift)
                            .chain(plan.warnings)
                            .chain(proofs)
                            .for_each(|line| reporter.record(line));
                        return Ok(());
                    }
                    Err(failure) => {
                        // Waiting out a dead endpoint is the deadline's job; an answer that can be a
                        // moment of propagation gets a grace period; any other answer is final.
                        let since = *proof_failing_since.get_or_insert_with(Instant::now);
                        let final_answer = match &failure {
                            s3check::Failure::Transport(_) => false,
                            f if f.storage_failure() => {
                                memory.storage_failed(|| format!("{proof}: {failure}"))?;
                                false
                            }
                            f if f.may_be_propagation() => since.elapsed() > s3check::PROPAGATION_GRACE,
                            _ => true,
                        };
                        if final_answer {
                            return Err(s3check::verify_error(&cfg.s3_url, failure));
                        }
                        progress.failed(&proof, &failure);
                        waiter.pause(&format!("{proof}: {failure}")).await;
                        if obs.at.elapsed() < trust_while_unexplained(&obs) {
                            observed = Some(obs);
                        }
                        continue;
                    }
                }
            };

            let executed = execute::execute(&members, &s3, desired, wave.actions, &mut obs, &progress).await;
            // A read is no change: it is neither reported nor counted.
            for action in executed.done.iter().filter(|a| !matches!(a, Action::ReadLifecycle { .. })) {
                reporter.record(action.line(desired, false));
                touched.push(action.resource());
                memory.definite.remove(&action.resource());
                if let Action::SetLifecycle { bucket, rules, .. } = action
                    && let Some(found) = &obs.buckets[*bucket].found
                {
                    memory.written_lifecycles.insert(*bucket, (found.id.clone(), rules.clone()));
                }
            }
            if !executed.done.is_empty() {
                // Progress: the next wait starts from the fast phase again.
                proof_failing_since = None;
                memory.storage_failing_since = None;
                waiter = Waiter::new(&observing);
            }
            if executed.failed.is_empty() {
                observed = Some(obs);
                continue;
            }
            let mut reasons = Vec::new();
            let before = executed.buckets_before.as_ref();
            for (action, error) in executed.failed {
                let member = &members[obs.coordinator];
                let why = judge(member, &cfg.s3_url, desired, &action, error, before, &mut memory)?;
                progress.failed(&step_name(&action.line(desired, true)), &why);
                reasons.push(why);
            }
            // Nothing seen before the failure is trusted after it.
            waiter.pause(&reasons.join("; ")).await;
        }
    };
    within_deadline(cfg, &progress, &in_flight(&members, &s3), work).await?;
    reporter.finish(started.elapsed(), requests(&members));
    Ok(())
}

/// How long an observation is trusted while the cluster stays unready or the
/// proof keeps failing. A lone node is ready the moment it applies its
/// layout, and has no peer to propagate from: unready, or refusing the
/// proof, it has lost state, so it is looked at again at once.
fn trust_while_unexplained(obs: &Observed) -> Duration {
    if obs.status.nodes.len() <= 1 { Duration::ZERO } else { TRUST_UNEXPLAINED_WAIT }
}

/// "key GK6275696c646b69742d6b6579 (buildkit-key)": an action as a step of the run.
fn step_name(line: &Line) -> String {
    format!("{} {}", line.resource, line.detail)
}

/// Decides what a failed action means: a reason to observe again, or the end
/// of the run. `before`: the buckets listed before the phase's creates.
fn judge(
    member: &Member,
    s3_url: &url::Url,
    desired: &crate::desired::Desired,
    action: &Action,
    error: ActionError,
    before: Option<&BTreeSet<String>>,
    memory: &mut Memory,
) -> Result<String, Error> {
    let e = match error {
        ActionError::Ambiguous(why) => return Ok(why),
        ActionError::S3(failure) => return judge_s3(s3_url, desired, action, failure, memory),
        ActionError::NotSent(e) if e.is_transient() => return Ok(e.to_string()),
        ActionError::NotSent(e) => return Err(Error::from_admin(e, member.client.base_url())),
        ActionError::Admin(e) => e,
    };
    let why = e.to_string();
    if e.is_auth() {
        return Err(Error::from_admin(e, member.client.base_url()));
    }
    if let AdminError::Api { status: 500.., message, .. } = &e
        && crate::error::storage_failure(message)
    {
        memory.unanswered(action.resource());
        memory.storage_failed(|| why.clone())?;
        return Ok(why);
    }
    if e.is_transient() || matches!(&e, AdminError::Api { status, .. } if *status >= 500) {
        memory.unanswered(action.resource());
        if let Action::CreateBucket { bucket } = action {
            memory.create_unanswered(*bucket, before);
        }
    }
    if e.is_transient() || e.is_layout_version_race() {
        return Ok(why);
    }
    let definite = matches!(&e, AdminError::Api { status, .. } if *status >= 500 || *status == 404 || *status == 409);
    if !definite {
        return Err(Error::from_admin(e, member.client.base_url()));
    }
    let strikes = memory.definite.entry(action.resource()).or_default();
    *strikes += 1;
    if *strikes < DEFINITE_FAILURES {
        return Ok(why);
    }
    Err(match (action, e) {
        (Action::Layout(_), AdminError::Api { status: 500, message, .. }) => Error::Layout { message },
        // Refused twice, with an observation in between that still did not
        // list it: the id is taken by a deleted key, which Garage never frees.
        (Action::ImportKey { key }, e) if e.is_conflict() => key::deleted_id_conflict(&desired.keys[*key].id).into(),
        (_, e) => Error::from_admin(e, member.client.base_url()),
    })
}

/// Like [`judge`], for an action sent through S3 (a bucket's lifecycle).
fn judge_s3(
    s3_url: &url::Url,
    desired: &crate::desired::Desired,
    action: &Action,
    failure: s3check::Failure,
    memory: &mut Memory,
) -> Result<String, Error> {
    let why = format!("S3 API at {}: {failure}", display_url(s3_url));
    if failure.storage_failure() {
        let Resource::Lifecycle(bucket) = action.resource() else { unreachable!("only lifecycle actions use S3") };
        let bucket = &desired.buckets[bucket].name;
        memory.storage_failed(|| format!("lifecycle rules of bucket {bucket}, through the {why}"))?;
    }
    let unanswered = match &failure {
        s3check::Failure::Transport(_) => true,
        s3check::Failure::Status { status, .. } => *status >= 500,
        _ => false,
    };
    if unanswered {
        if matches!(action, Action::SetLifecycle { .. }) {
            memory.unanswered(action.resource());
        }
        return Ok(why);
    }
    let strikes = memory.definite.entry(action.resource()).or_default();
    *strikes += 1;
    if *strikes < DEFINITE_FAILURES && failure.may_be_propagation() {
        return Ok(why);
    }
    let Resource::Lifecycle(bucket) = action.resource() else { unreachable!("only lifecycle actions use S3") };
    Err(s3check::lifecycle_error(s3_url, &desired.buckets[bucket].name, failure))
}

/// The run's S3 client.
fn prover(cfg: &ApplyConfig) -> Result<s3check::Prover, Error> {
    s3check::Prover::new(&cfg.s3_url, &cfg.region, cfg.requests_per_node)
        .map_err(|f| s3check::verify_error(&cfg.s3_url, f))
}

/// The S3 round trip for every grant with read and write: one report line
/// each, in the spec's order; as many at once as the S3 client lets through.
async fn prove(s3: &s3check::Prover, desired: &crate::desired::Desired) -> Result<Vec<Line>, s3check::Failure> {
    let proofs = desired.grants.iter().filter(|g| g.permissions.read && g.permissions.write).map(|grant| {
        let key = desired.key(&grant.key_id).expect("grants name declared keys");
        s3.prove(&grant.bucket, key)
    });
    let mut lines = Vec::new();
    for proof in futures_util::future::join_all(proofs).await {
        lines.push(Line::new("s3 check", Outcome::Passed, proof?));
    }
    Ok(lines)
}

/// What `plan` found; the exit code follows from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    NothingToDo,
    /// Apply would change something.
    Changes,
    /// Nothing for apply to do, but Garage differs from the spec where apply leaves it alone.
    DriftOnly,
}

/// `garage-init plan`: one observation, its plan printed, nothing changed.
pub async fn preview(cfg: &ApplyConfig, reporter: &mut Reporter) -> Result<Verdict, Error> {
    let progress = Progress::default();
    let members = members(cfg)?;
    let desired = &cfg.desired;
    let s3 = prover(cfg)?;
    let work = async {
        let observing = format!("Garage's admin API at {}", display_url(members[0].client.base_url()));
        let mut waiter = Waiter::new(&observing);
        loop {
            let (why, slow) = match observe::observe(&members, &s3, desired, &Leftovers::default(), Reads::Audit).await
            {
                Ok(obs) => {
                    let plan = plan::plan(desired, &obs, cfg.allow_layout_changes);
                    if plan.waiting.is_empty() {
                        return Ok(plan);
                    }
                    (plan.waiting.join("; "), false)
                }
                Err(failure) => failure.retry()?,
            };
            progress.failed(&observing, &why);
            waiter.pause_paced(&why, slow).await;
        }
    };
    let plan = within_deadline(cfg, &progress, &in_flight(&members, &s3), work).await?;
    if let Some(c) = plan.conflicts.first() {
        return Err(c.clone().into());
    }
    plan.actions
        .iter()
        .map(|a| a.line(desired, true))
        .chain(plan.drift)
        .chain(plan.warnings)
        .for_each(|line| reporter.record(line));
    let counts = reporter.finish_plan();
    Ok(match (counts.changes, counts.drift) {
        (0, 0) => Verdict::NothingToDo,
        (0, _) => Verdict::DriftOnly,
        _ => Verdict::Changes,
    })
}
