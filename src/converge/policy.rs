//! What a failure means for the run: the one place that decides between
//! pausing and looking again, trying again on the same observation, and
//! stopping. [`decide`] takes any [`Fault`] (a read, a change, the proof) and
//! the run's [`Memory`]; it sends nothing, so its rules are tested as a table.
//!
//! The rules, in short:
//! - no answer, or an answer Garage gives while it starts, restarts or lacks
//!   quorum: look again (slowly when each look is a DNS lookup);
//! - a rejected token, another service at the URL, an answer waiting cannot
//!   change: stop;
//! - a definite refusal (a 5xx, 404 or 409) of a change: look again once, stop
//!   the second time if the observation in between still plans that change;
//! - Garage saying its storage fails: look again for `STORAGE_GRACE`, then stop;
//! - the proof refused in a way a new key or bucket shows while it spreads:
//!   try again for [`s3::PROPAGATION_GRACE`], then stop.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::Duration;

use tokio::time::Instant;
use url::Url;

use crate::admin::AdminError;
use crate::desired::Desired;
use crate::error::{Error, display_url};
use crate::s3;

use super::execute::ActionError;
use super::key;
use super::lifecycle;
use super::observe::{self, Leftovers, Observed, ReadFailure, UnansweredCreate};
use super::plan::{Action, Plan, Resource};

/// How often Garage may give the same definite error answer (a 5xx, 404 or
/// 409) to the same resource, with a fresh observation in between, before
/// the answer is taken as final.
const DEFINITE_FAILURES: u32 = 2;
/// How long Garage may keep saying that its storage fails (a full disk, an
/// I/O error) before the answer is taken as final: a moment, in case space
/// is being freed, but far less than a deadline.
const STORAGE_GRACE: Duration = Duration::from_secs(5);

/// Something that did not go through. Made only when something failed, and
/// consumed at once by [`decide`]: its size does not matter.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Fault {
    /// A read: an observation, readiness.
    Read(ReadFailure),
    /// A change, sent to the admin API at `at` (or through S3). `before`: the
    /// buckets Garage held before the wave's creates, when known.
    Action { action: Action, error: ActionError, at: Url, before: Option<BTreeSet<String>> },
    /// The S3 proof that the keys can write.
    Proof(s3::S3Error),
}

impl From<ReadFailure> for Fault {
    fn from(failure: ReadFailure) -> Self {
        Self::Read(failure)
    }
}

/// How fast to look again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// The waiter's schedule: quick at first.
    Fast,
    /// At most about once a second: each look costs a DNS lookup.
    Slow,
}

/// What the run does about a [`Fault`].
#[derive(Debug)]
pub enum Decision {
    /// Pause, then observe again: nothing seen before the failure is trusted.
    ObserveAgain { why: String, pace: Pace },
    /// Pause, then decide again; the observation is kept while it is trusted.
    TryAgain { why: String },
    /// Waiting cannot help.
    Stop(Error),
}

/// The one error policy: see the module's docs.
pub fn decide(fault: Fault, memory: &mut Memory, desired: &Desired, s3_url: &Url) -> Decision {
    use Decision::{ObserveAgain, Stop, TryAgain};
    let again = |why: String| ObserveAgain { why, pace: Pace::Fast };
    match fault {
        Fault::Read(ReadFailure::Admin { error, .. }) if error.is_unresolved() => {
            ObserveAgain { why: error.to_string(), pace: Pace::Slow }
        }
        Fault::Read(ReadFailure::Admin { error, .. }) if error.is_transient() => again(error.to_string()),
        Fault::Read(ReadFailure::Admin { error, at }) => Stop(Error::from_admin(error, &at)),
        Fault::Read(ReadFailure::Silent(why)) => again(why),
        Fault::Read(ReadFailure::Lifecycle { failure, .. }) if failure.may_be_propagation() => {
            again(format!("S3 API at {}: {failure}", display_url(s3_url)))
        }
        Fault::Read(ReadFailure::Lifecycle { bucket, failure }) => {
            Stop(s3::lifecycle_error(s3_url, &desired.buckets[bucket].name, failure))
        }
        Fault::Proof(failure) => {
            let since = *memory.proof_failing_since.get_or_insert_with(Instant::now);
            let final_answer = match &failure {
                // Waiting out a dead endpoint is the deadline's job.
                s3::S3Error::Transport(_) => false,
                f if f.storage_failure() => {
                    let proof = format!("S3 check at {}", display_url(s3_url));
                    if let Err(e) = memory.storage_failed(|| format!("{proof}: {failure}")) {
                        return Stop(e);
                    }
                    false
                }
                // A moment of propagation gets a grace period.
                f if f.may_be_propagation() => since.elapsed() > s3::PROPAGATION_GRACE,
                _ => true,
            };
            match final_answer {
                true => Stop(s3::verify_error(s3_url, failure)),
                false => TryAgain { why: failure.to_string() },
            }
        }
        Fault::Action { action, error, at, before } => {
            match action_failed(&action, error, &at, before, memory, desired, s3_url) {
                Ok(why) => again(why),
                Err(e) => Stop(e),
            }
        }
    }
}

/// A failed change: a reason to observe again, or the end of the run.
fn action_failed(
    action: &Action,
    error: ActionError,
    at: &Url,
    before: Option<BTreeSet<String>>,
    memory: &mut Memory,
    desired: &Desired,
    s3_url: &Url,
) -> Result<String, Error> {
    let e = match error {
        ActionError::Ambiguous(why) => return Ok(why),
        ActionError::S3(failure) => return lifecycle_write_failed(action, failure, memory, desired, s3_url),
        ActionError::NotSent(e) if e.is_transient() => return Ok(e.to_string()),
        ActionError::NotSent(e) => return Err(Error::from_admin(e, at)),
        ActionError::Admin(e) => e,
    };
    let why = e.to_string();
    if e.is_auth() {
        return Err(Error::from_admin(e, at));
    }
    if let AdminError::Api { status: 500.., message, .. } = &e
        && crate::error::storage_failure(message)
    {
        memory.unanswered(action.resource());
        memory.storage_failed(|| why.clone())?;
        return Ok(why);
    }
    let server_error = matches!(&e, AdminError::Api { status, .. } if *status >= 500);
    if e.is_transient() || server_error {
        memory.unanswered(action.resource());
        if let Action::CreateBucket { bucket } = action {
            memory.create_unanswered(*bucket, before.as_ref());
        }
    }
    if e.is_transient() || e.is_layout_version_race() {
        return Ok(why);
    }
    if !(server_error || e.is_not_found() || e.is_conflict()) {
        return Err(Error::from_admin(e, at));
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
        (_, e) => Error::from_admin(e, at),
    })
}

/// A lifecycle write through S3 that failed.
fn lifecycle_write_failed(
    action: &Action,
    failure: s3::S3Error,
    memory: &mut Memory,
    desired: &Desired,
    s3_url: &Url,
) -> Result<String, Error> {
    let Resource::Lifecycle(bucket) = action.resource() else { unreachable!("only lifecycle actions use S3") };
    let name = &desired.buckets[bucket].name;
    let why = format!("S3 API at {}: {failure}", display_url(s3_url));
    if failure.storage_failure() {
        memory.storage_failed(|| format!("lifecycle rules of bucket {name}, through the {why}"))?;
    }
    let unanswered = match &failure {
        s3::S3Error::Transport(_) => true,
        s3::S3Error::Status { status, .. } => *status >= 500,
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
    Err(s3::lifecycle_error(s3_url, name, failure))
}

/// What the loop has learnt that outlives one observation: facts about
/// Garage's answers, not about its state. Each is checked against every new
/// observation, and forgotten once that observation explains it.
#[derive(Default)]
pub struct Memory {
    /// Resources whose action Garage refused with a definite answer, and how
    /// often, while each observation since still planned that action (one
    /// that finds the resource in place forgets them).
    definite: HashMap<Resource, u32>,
    /// Resources whose change failed without a definite refusal: a later
    /// observation that finds one in place most likely sees that change.
    pub unanswered: Vec<Resource>,
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
    /// Since when the proof has failed, with no change going through since.
    proof_failing_since: Option<Instant>,
}

impl Memory {
    /// Keeps the namesakes an observation found, and gives the ones found
    /// earlier in the run to an observation that did not list the keys.
    pub fn carry_namesakes(&mut self, obs: &mut Observed) {
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

    /// Checks the memory against a new plan: a refusal counts only while
    /// Garage still lacks what was refused; a lifecycle write read back in
    /// place is forgotten. One that reads back otherwise (the plan would
    /// write again) was overwritten by another writer, possibly a run with
    /// another declaration. The first time, the answer may be a moment old:
    /// `Ok(Some(why))` asks for a fresh observation; the second time it is
    /// final. A bucket with a new id (Garage lost and re-created it) voids
    /// what was written to the old one.
    pub fn check(&mut self, desired: &Desired, obs: &Observed, plan: &Plan) -> Result<Option<String>, Error> {
        self.definite.retain(|r, _| plan.actions.iter().any(|a| a.resource() == *r));
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

    /// Notes a change that went through: its refusals are forgotten, and the
    /// lifecycle rules written are remembered until read back.
    pub fn done(&mut self, action: &Action, obs: &Observed) {
        self.definite.remove(&action.resource());
        if let Action::SetLifecycle { bucket, rules, .. } = action
            && let Some(found) = &obs.buckets[*bucket].found
        {
            self.written_lifecycles.insert(*bucket, (found.id.clone(), rules.clone()));
        }
    }

    /// Changes went through: the graces of a failing storage and proof start over.
    pub fn progressed(&mut self) {
        self.proof_failing_since = None;
        self.storage_failing_since = None;
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
    pub fn leftovers(&self) -> Leftovers {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::{KeyWant, RoleTemplate};
    use crate::exit::Code;
    use crate::secret::Secret;

    fn desired() -> Desired {
        let role = RoleTemplate { zone: "dc1".into(), capacity: None, tags: Vec::new() };
        let key = KeyWant {
            id: "GK6275696c646b69742d6b6579".into(),
            secret: Secret::new("0".repeat(64)),
            name: "buildkit-key".into(),
        };
        Desired::single(role, "buildkit-cache".into(), key, None)
    }

    fn url() -> Url {
        Url::parse("http://garage:3903").unwrap()
    }

    fn api(status: u16, message: &str) -> AdminError {
        AdminError::Api { endpoint: "X", at: "garage:3903".into(), status, code: "C".into(), message: message.into() }
    }

    fn silent(unresolved: bool) -> AdminError {
        AdminError::Transport { endpoint: "X", at: "garage:3903".into(), reason: "refused".into(), unresolved }
    }

    fn s3(status: u16, code: &str) -> s3::S3Error {
        s3::S3Error::Status {
            op: "PUT",
            status,
            code: Some(s3::S3Code::parse(code)),
            message: "m".into(),
            redirected: None,
        }
    }

    /// What a decision comes to, for the table: look again (fast or slow),
    /// try again, or stop with an exit code.
    #[derive(Debug, PartialEq)]
    enum Is {
        Again(Pace),
        TryAgain,
        Stops(Code),
    }

    fn is(d: Decision) -> Is {
        match d {
            Decision::ObserveAgain { pace, .. } => Is::Again(pace),
            Decision::TryAgain { .. } => Is::TryAgain,
            Decision::Stop(e) => Is::Stops(e.code()),
        }
    }

    fn read(error: AdminError) -> Fault {
        Fault::Read(ReadFailure::Admin { error, at: Box::new(url()) })
    }

    fn action(action: Action, error: ActionError) -> Fault {
        Fault::Action { action, error, at: url(), before: Some(BTreeSet::new()) }
    }

    #[test]
    fn each_fault_is_decided_once_by_its_rule() {
        let create = || Action::CreateBucket { bucket: 0 };
        let import = || Action::ImportKey { key: 0 };
        let cases: Vec<(&str, Fault, Is)> = vec![
            ("no answer", read(silent(false)), Is::Again(Pace::Fast)),
            ("a name that does not resolve", read(silent(true)), Is::Again(Pace::Slow)),
            ("quorum lost", read(api(503, "Quorum")), Is::Again(Pace::Fast)),
            ("layout not ready", read(api(500, "Layout not ready")), Is::Again(Pace::Fast)),
            ("token rejected", read(api(403, "Forbidden")), Is::Stops(Code::Auth)),
            ("an odd answer", read(api(400, "Bad request")), Is::Stops(Code::Failure)),
            ("no node answers", Fault::Read(ReadFailure::Silent("nodes not answering".into())), Is::Again(Pace::Fast)),
            (
                "lifecycle read while a key spreads",
                Fault::Read(ReadFailure::Lifecycle { bucket: 0, failure: s3(403, "InvalidAccessKeyId") }),
                Is::Again(Pace::Fast),
            ),
            (
                "lifecycle read refused for good",
                Fault::Read(ReadFailure::Lifecycle { bucket: 0, failure: s3(400, "MalformedXML") }),
                Is::Stops(Code::Verify),
            ),
            ("proof with no answer", Fault::Proof(s3::S3Error::Transport("reset".into())), Is::TryAgain),
            ("proof while a key spreads", Fault::Proof(s3(403, "InvalidAccessKeyId")), Is::TryAgain),
            (
                "proof that reads back other bytes",
                Fault::Proof(s3::S3Error::Mismatch { got: 3 }),
                Is::Stops(Code::Verify),
            ),
            ("a change with no answer", action(create(), ActionError::Admin(silent(false))), Is::Again(Pace::Fast)),
            (
                "a change another writer made",
                action(create(), ActionError::Ambiguous("raced".into())),
                Is::Again(Pace::Fast),
            ),
            (
                "a read a change needs, no answer",
                action(import(), ActionError::NotSent(silent(false))),
                Is::Again(Pace::Fast),
            ),
            (
                "a read a change needs, refused",
                action(import(), ActionError::NotSent(api(400, "no"))),
                Is::Stops(Code::Failure),
            ),
            ("a change, token rejected", action(import(), ActionError::Admin(api(403, "no"))), Is::Stops(Code::Auth)),
            ("a change, bad request", action(import(), ActionError::Admin(api(400, "no"))), Is::Stops(Code::Failure)),
            (
                "a layout applied by another run first",
                action(Action::CreateBucket { bucket: 0 }, ActionError::Admin(api(500, "Invalid new layout version"))),
                Is::Again(Pace::Fast),
            ),
        ];
        for (what, fault, expected) in cases {
            let decision = decide(fault, &mut Memory::default(), &desired(), &url());
            assert_eq!(is(decision), expected, "{what}");
        }
    }

    #[test]
    fn a_definite_refusal_stops_the_second_time_only() {
        let d = desired();
        let mut memory = Memory::default();
        let conflict = || action(Action::ImportKey { key: 0 }, ActionError::Admin(api(409, "exists")));
        assert_eq!(is(decide(conflict(), &mut memory, &d, &url())), Is::Again(Pace::Fast));
        // The second 409 to the same import: the id belongs to a deleted key.
        assert_eq!(is(decide(conflict(), &mut memory, &d, &url())), Is::Stops(Code::Conflict));
        // Another resource keeps its own count.
        let create = action(Action::CreateBucket { bucket: 0 }, ActionError::Admin(api(404, "gone")));
        assert_eq!(is(decide(create, &mut memory, &d, &url())), Is::Again(Pace::Fast));
    }

    #[test]
    fn an_unanswered_create_is_remembered_once_with_the_buckets_before_it() {
        let d = desired();
        let mut memory = Memory::default();
        for _ in 0..3 {
            let fault = action(Action::CreateBucket { bucket: 0 }, ActionError::Admin(silent(false)));
            assert_eq!(is(decide(fault, &mut memory, &d, &url())), Is::Again(Pace::Fast));
        }
        let left = memory.leftovers();
        assert_eq!(left.unanswered_creates.len(), 1);
        assert_eq!(left.failed_buckets, [0]);
        assert_eq!(memory.unanswered, [Resource::Bucket(0)]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_storage_is_waited_on_for_a_grace_period_then_final() {
        let d = desired();
        let mut memory = Memory::default();
        let full =
            || action(Action::CreateBucket { bucket: 0 }, ActionError::Admin(api(500, "No space left on device")));
        assert_eq!(is(decide(full(), &mut memory, &d, &url())), Is::Again(Pace::Fast));
        tokio::time::advance(STORAGE_GRACE + Duration::from_millis(1)).await;
        assert_eq!(is(decide(full(), &mut memory, &d, &url())), Is::Stops(Code::Failure));
        // A change that went through starts the grace over.
        memory.progressed();
        assert_eq!(is(decide(full(), &mut memory, &d, &url())), Is::Again(Pace::Fast));
    }

    #[tokio::test(start_paused = true)]
    async fn a_proof_refused_while_a_key_spreads_gets_the_propagation_grace() {
        let d = desired();
        let mut memory = Memory::default();
        let refused = || Fault::Proof(s3(403, "InvalidAccessKeyId"));
        assert_eq!(is(decide(refused(), &mut memory, &d, &url())), Is::TryAgain);
        tokio::time::advance(s3::PROPAGATION_GRACE + Duration::from_millis(1)).await;
        assert_eq!(is(decide(refused(), &mut memory, &d, &url())), Is::Stops(Code::Verify));
    }
}
