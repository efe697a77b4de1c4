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
//! One turn of the loop makes one decision (`Next`: wait, observe again,
//! check readiness, execute a wave, prove), and [`apply`] is a `match` on it.
//! Whatever fails on the way (a read, a change, the proof) goes to the one
//! error policy, [`policy::decide`], which says: look again (and how fast),
//! try again on the same observation, or stop.
//!
//! - [`observe`]: every read, and the [`observe::Observed`] snapshot;
//! - [`plan`]: the pure decision, its [`plan::Action`]s and their report lines;
//! - [`execute`]: every write, folding Garage's answers into the snapshot;
//! - [`policy`]: what a failure means, and the run's [`policy::Memory`];
//! - [`layout`], [`key`], [`bucket`], [`lifecycle`]: the per-resource
//!   decisions `plan` uses.
//!
//! Adding a resource kind (or an attribute of one):
//! 1. the wanted state: a field in [`crate::desired`], set from the spec or flags;
//! 2. its rules: a module beside [`bucket`] with a pure `plan_*` that compares
//!    wanted and observed, and says what it needs observed;
//! 3. the read: [`observe`] fills the snapshot (and `Reads` says when);
//! 4. the write: an [`plan::Action`] variant, its report line and phase in
//!    [`plan`], its request in [`execute`];
//! 5. a test against real Garage in `tests/apply.rs`, and `plan == apply` holds.
//!
//! Failures need no new rule unless Garage answers the new request in a new
//! way: then [`policy::decide`] gets a row, and its table test one more case.

pub mod bucket;
pub mod execute;
pub mod key;
pub mod layout;
pub mod lifecycle;
pub mod observe;
pub mod plan;
pub mod policy;
pub mod wording;

use std::collections::HashSet;
use std::time::Duration;

use tokio::time::Instant;

use crate::admin::AdminClient;
use crate::config::ApplyConfig;
use crate::desired::{Desired, NodesWant};
use crate::error::{Error, display_url};
use crate::report::{Line, Outcome, Reporter};
use crate::s3;
use crate::wait::{InFlight, Progress, Waiter};

use observe::{Leftovers, Member, Observed, Readiness, Reads};
use plan::{Action, Resource};
use policy::{Decision, Memory, Pace};

/// An observation older than this is read again rather than trusted while
/// Garage stays unready or the proof keeps failing: long enough not to
/// spend token checks while a new layout spreads (Garage's own transition
/// takes 1–2 s on a cluster), short enough to see a Garage that came back
/// without its layout within a second.
const TRUST_UNEXPLAINED_WAIT: Duration = Duration::from_secs(1);
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
fn in_flight<'a>(members: &'a [Member], s3: &'a s3::S3Client) -> Vec<&'a InFlight> {
    members.iter().map(|m| m.client.in_flight()).chain([s3.in_flight()]).collect()
}

/// What a turn of the loop does next, decided from one observation and its plan.
enum Next {
    /// The cluster's membership is not settled yet (peers connecting, nodes
    /// missing): pause, then observe again.
    Wait(String),
    /// What this run wrote reads back otherwise: pause, then observe again
    /// before anything is rewritten.
    ObserveAgain(String),
    /// The next changes need a ready cluster, and readiness is unknown.
    CheckReadiness,
    /// Send one wave of changes.
    Execute(plan::Wave),
    /// Nothing left to change: prove that the keys can write.
    Prove,
}

/// The one decision of a turn. Pure but for the run's memory, which it
/// checks against the observation.
fn next(desired: &Desired, obs: &Observed, plan: &plan::Plan, memory: &mut Memory) -> Result<Next, Error> {
    if let Some(c) = plan.conflicts.first() {
        return Err(c.clone().into());
    }
    if !plan.waiting.is_empty() {
        return Ok(Next::Wait(plan.waiting.join("; ")));
    }
    if let Some(why) = memory.check(desired, obs, plan)? {
        return Ok(Next::ObserveAgain(why));
    }
    let wave = plan.next_phase();
    let needs_ready = wave.as_ref().is_none_or(|wave| wave.phase.needs_ready_cluster());
    Ok(match wave {
        _ if needs_ready && obs.readiness != Readiness::Ready => Next::CheckReadiness,
        Some(wave) => Next::Execute(wave),
        None => Next::Prove,
    })
}

/// `garage-init apply`: converge, then prove each read-write key can write.
/// The whole run, waits included, fits in the deadline.
pub async fn apply(cfg: &ApplyConfig, reporter: &mut Reporter) -> Result<(), Error> {
    let started = Instant::now();
    let run = Run::new(cfg)?;
    let mut turn = Turn::new(&run);
    let work = async {
        loop {
            let Some(obs) = turn.observation(&run).await? else { continue };
            let plan = plan::plan(&cfg.desired, &obs, cfg.allow_layout_changes);
            match next(&cfg.desired, &obs, &plan, &mut turn.memory)? {
                Next::Wait(why) => {
                    run.progress.failed(&run.steps.membership, &why);
                    turn.waiter.pause(&why).await;
                }
                Next::ObserveAgain(why) => {
                    run.progress.finished(&run.steps.membership);
                    turn.waiter.pause(&why).await;
                }
                Next::CheckReadiness => {
                    turn.track(&run, &plan);
                    turn.check_readiness(&run, obs).await?;
                }
                Next::Execute(wave) => {
                    turn.track(&run, &plan);
                    turn.execute(&run, wave, obs, reporter).await?;
                }
                Next::Prove => {
                    turn.track(&run, &plan);
                    if turn.prove(&run, obs, plan, reporter).await? {
                        return Ok(());
                    }
                }
            }
        }
    };
    within_deadline(cfg, &run.progress, &in_flight(&run.members, &run.s3), work).await?;
    reporter.finish(started.elapsed(), requests(&run.members));
    Ok(())
}

/// What a run talks to and how it names its steps; fixed for the run.
struct Run<'a> {
    cfg: &'a ApplyConfig,
    members: Vec<Member>,
    s3: s3::S3Client,
    progress: Progress,
    steps: Steps,
}

/// The steps a deadline error names, each with its last error.
struct Steps {
    observing: String,
    membership: String,
    readiness: String,
    proof: String,
}

impl<'a> Run<'a> {
    fn new(cfg: &'a ApplyConfig) -> Result<Self, Error> {
        let members = members(cfg)?;
        let coordinator = display_url(members[0].client.base_url());
        let steps = Steps {
            observing: format!("Garage's admin API at {coordinator}"),
            membership: format!("cluster membership at {coordinator}"),
            readiness: format!("cluster readiness at {coordinator}"),
            proof: format!("S3 check at {}", display_url(&cfg.s3_url)),
        };
        Ok(Self { cfg, s3: s3_client(cfg)?, members, progress: Progress::default(), steps })
    }

    /// Follows the error policy's decision on `fault` in the step `step`;
    /// `Ok(true)` when the observation may be kept while it is trusted.
    async fn follow(&self, turn: &mut Turn, step: &str, fault: policy::Fault) -> Result<bool, Error> {
        match policy::decide(fault, &mut turn.memory, &self.cfg.desired, &self.cfg.s3_url) {
            Decision::Stop(e) => Err(e),
            Decision::ObserveAgain { why, pace } => {
                self.progress.failed(step, &why);
                turn.waiter.pause_paced(&why, pace == Pace::Slow).await;
                Ok(false)
            }
            Decision::TryAgain { why } => {
                self.progress.failed(step, &why);
                turn.waiter.pause(&format!("{step}: {why}")).await;
                Ok(true)
            }
        }
    }
}

/// What changes from one turn of the loop to the next.
struct Turn {
    waiter: Waiter,
    /// An observation still trusted, to decide on again without reading.
    observed: Option<Observed>,
    memory: Memory,
    /// Resources this run changed.
    touched: Vec<Resource>,
    /// The changes left to do, as the deadline error names them.
    action_steps: Vec<String>,
}

impl Turn {
    fn new(run: &Run) -> Self {
        Self {
            waiter: Waiter::new(&run.steps.observing),
            observed: None,
            memory: Memory::default(),
            touched: Vec::new(),
            action_steps: Vec::new(),
        }
    }

    /// The trusted observation, or a fresh one; `None` after a failed read
    /// (and the pause the policy asked for).
    async fn observation(&mut self, run: &Run<'_>) -> Result<Option<Observed>, Error> {
        if let Some(obs) = self.observed.take() {
            return Ok(Some(obs));
        }
        let leftovers = self.memory.leftovers();
        match observe::observe(&run.members, &run.s3, &run.cfg.desired, &leftovers, Reads::Decide).await {
            Ok(mut obs) => {
                self.memory.carry_namesakes(&mut obs);
                run.progress.finished(&run.steps.observing);
                Ok(Some(obs))
            }
            Err(failure) => run.follow(self, &run.steps.observing, failure.into()).await.map(|_| None),
        }
    }

    /// Keeps the observation for the next turn while it is trusted.
    fn keep(&mut self, obs: Observed) {
        if obs.at.elapsed() < trust_while_unexplained(&obs) {
            self.observed = Some(obs);
        }
    }

    /// Membership is settled; the plan's changes are the steps still to do.
    fn track(&mut self, run: &Run, plan: &plan::Plan) {
        run.progress.finished(&run.steps.membership);
        let mut steps: Vec<String> = Vec::new();
        for action in &plan.actions {
            let step = wording::step(&run.cfg.desired, action.resource());
            if !steps.contains(&step) {
                steps.push(step);
            }
        }
        let left: HashSet<&String> = steps.iter().collect();
        self.action_steps.iter().filter(|s| !left.contains(s)).for_each(|s| run.progress.finished(s));
        steps.iter().for_each(|s| run.progress.started(s));
        self.action_steps = steps;
    }

    /// Reads readiness; a ready cluster is decided on again at once.
    async fn check_readiness(&mut self, run: &Run<'_>, mut obs: Observed) -> Result<(), Error> {
        match observe::readiness(&run.members, &obs).await {
            Ok(Readiness::NotReady(why)) => {
                let why = why.join(", ");
                run.progress.failed(&run.steps.readiness, &why);
                self.waiter.pause(&format!("cluster not ready: {why}")).await;
                self.keep(obs);
            }
            Ok(ready) => {
                run.progress.finished(&run.steps.readiness);
                obs.readiness = ready;
                self.observed = Some(obs);
            }
            Err(failure) => {
                run.follow(self, &run.steps.readiness, failure.into()).await?;
            }
        }
        Ok(())
    }

    /// Sends one wave; what went through is reported, what failed goes to the policy.
    async fn execute(
        &mut self,
        run: &Run<'_>,
        wave: plan::Wave,
        mut obs: Observed,
        reporter: &mut Reporter,
    ) -> Result<(), Error> {
        let desired = &run.cfg.desired;
        let executed = execute::execute(&run.members, &run.s3, desired, wave.actions, &mut obs, &run.progress).await;
        // A read is no change: it is neither reported nor counted.
        for action in executed.done.iter().filter(|a| !matches!(a, Action::ReadLifecycle { .. })) {
            reporter.record(action.line(desired, false));
            self.touched.push(action.resource());
            self.memory.done(action, &obs);
        }
        if !executed.done.is_empty() {
            // Progress: the next wait starts from the fast phase again.
            self.memory.progressed();
            self.waiter = Waiter::new(&run.steps.observing);
        }
        if executed.failed.is_empty() {
            self.observed = Some(obs);
            return Ok(());
        }
        let at = run.members[obs.coordinator].client.base_url();
        let mut reasons = Vec::new();
        for (action, error) in executed.failed {
            let step = wording::step(desired, action.resource());
            let before = executed.buckets_before.clone();
            let fault = policy::Fault::Action { action, error, at: at.clone(), before };
            match policy::decide(fault, &mut self.memory, desired, &run.cfg.s3_url) {
                Decision::Stop(e) => return Err(e),
                Decision::ObserveAgain { why, .. } | Decision::TryAgain { why } => {
                    run.progress.failed(&step, &why);
                    reasons.push(why);
                }
            }
        }
        // Nothing seen before the failure is trusted after it.
        self.waiter.pause(&reasons.join("; ")).await;
        Ok(())
    }

    /// Proves the keys can write; `Ok(true)` when they can and the run is done.
    async fn prove(
        &mut self,
        run: &Run<'_>,
        obs: Observed,
        plan: plan::Plan,
        reporter: &mut Reporter,
    ) -> Result<bool, Error> {
        let desired = &run.cfg.desired;
        match prove(&run.s3, desired).await {
            Ok(proofs) => {
                wording::unchanged_lines(desired, &obs, &self.touched, &self.memory.unanswered)
                    .into_iter()
                    .chain(plan.drift)
                    .chain(plan.warnings)
                    .chain(proofs)
                    .for_each(|line| reporter.record(line));
                Ok(true)
            }
            Err(failure) => {
                if run.follow(self, &run.steps.proof, policy::Fault::Proof(failure)).await? {
                    self.keep(obs);
                }
                Ok(false)
            }
        }
    }
}
/// How long an observation is trusted while the cluster stays unready or the
/// proof keeps failing. A lone node is ready the moment it applies its
/// layout, and has no peer to propagate from: unready, or refusing the
/// proof, it has lost state, so it is looked at again at once.
fn trust_while_unexplained(obs: &Observed) -> Duration {
    if obs.status.nodes.len() <= 1 { Duration::ZERO } else { TRUST_UNEXPLAINED_WAIT }
}

/// The run's S3 client.
fn s3_client(cfg: &ApplyConfig) -> Result<s3::S3Client, Error> {
    s3::S3Client::new(&cfg.s3_url, &cfg.region, cfg.requests_per_node).map_err(|f| s3::verify_error(&cfg.s3_url, f))
}

/// The S3 round trip for every grant with read and write: one report line
/// each, in the spec's order; as many at once as the S3 client lets through.
async fn prove(s3: &s3::S3Client, desired: &crate::desired::Desired) -> Result<Vec<Line>, s3::S3Error> {
    let proofs = desired
        .grants
        .iter()
        .filter(|g| g.permissions.read && g.permissions.write)
        .map(|grant| s3.prove(&desired.grant_bucket(grant).name, desired.grant_key(grant)));
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
    let s3 = s3_client(cfg)?;
    let work = async {
        let observing = format!("Garage's admin API at {}", display_url(members[0].client.base_url()));
        let mut waiter = Waiter::new(&observing);
        // A plan changes nothing, so it has nothing of its own to remember.
        let mut memory = Memory::default();
        loop {
            let (why, pace) = match observe::observe(&members, &s3, desired, &Leftovers::default(), Reads::Audit).await
            {
                Ok(obs) => {
                    let plan = plan::plan(desired, &obs, cfg.allow_layout_changes);
                    if plan.waiting.is_empty() {
                        return Ok(plan);
                    }
                    (plan.waiting.join("; "), Pace::Fast)
                }
                Err(failure) => match policy::decide(failure.into(), &mut memory, desired, &cfg.s3_url) {
                    Decision::ObserveAgain { why, pace } => (why, pace),
                    Decision::TryAgain { why } => (why, Pace::Fast),
                    Decision::Stop(e) => return Err(e),
                },
            };
            progress.failed(&observing, &why);
            waiter.pause_paced(&why, pace == Pace::Slow).await;
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
