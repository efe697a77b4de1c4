//! Convergence: for each resource, observe what Garage holds, plan the
//! difference from what is wanted (a pure function), and act only on that
//! difference. Every step starts again from a fresh observation after a
//! transient failure or a lost race, so a restart of Garage or a concurrent
//! run in the middle of a step is harmless. `plan` runs the same
//! observations and decisions, and acts on nothing.

pub mod bucket;
pub mod cluster;
pub mod key;
pub mod layout;
pub mod plan;
pub mod ready;

use std::future::Future;

use futures_util::future::try_join_all;
use tokio::time::Instant;

use crate::admin::types::BucketInfo;
use crate::admin::{AdminClient, AdminError};
use crate::config::ApplyConfig;
use crate::desired::NodesWant;
use crate::error::{Error, display_url};
use crate::report::{Line, Outcome, Reporter};
use crate::s3check;
use crate::wait::{Progress, Waiter};

use cluster::Member;

/// What every step needs: the client of the coordinating node (every change
/// goes through it: Garage serialises bucket changes per node) and the
/// shared progress record.
pub struct Ctx<'a> {
    pub client: &'a AdminClient,
    pub progress: &'a Progress,
}

impl Ctx<'_> {
    /// "Garage's admin API at http://garage:3903" and the like, for messages.
    pub fn describe(&self, what: &str) -> String {
        format!("{what} at {}", display_url(self.client.base_url()))
    }

    /// Runs `op` (a read, or an idempotent write) until it succeeds or fails
    /// for a reason waiting cannot fix.
    pub async fn call<T, F, Fut>(&self, what: &str, mut op: F) -> Result<T, AdminError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, AdminError>>,
    {
        let mut waiter = Waiter::new(&self.describe(what), self.progress);
        loop {
            match op().await {
                Ok(v) => return Ok(v),
                Err(e) if e.is_transient() => waiter.pause(&e).await,
                Err(e) => return Err(e),
            }
        }
    }

    pub fn fail(&self, e: AdminError) -> Error {
        Error::from_admin(e, self.client.base_url())
    }
}

/// How a step starts: by reading Garage, or from what the run already knows
/// (`Known(None)`: known to be absent).
#[derive(Debug)]
pub enum Start<T> {
    Read,
    Known(Option<T>),
}

/// The admin clients of a run: one per listed node (the first coordinates),
/// or the one `--admin-url` client.
pub struct Clients {
    pub members: Vec<Member>,
    single: Option<AdminClient>,
}

impl Clients {
    pub fn new(cfg: &ApplyConfig) -> Result<Self, Error> {
        let client = |url: &url::Url| AdminClient::new(url.clone(), &cfg.admin_token).map_err(Error::Admin);
        match &cfg.desired.cluster.nodes {
            NodesWant::Listed(nodes) => {
                let members = nodes
                    .iter()
                    .map(|n| Ok(Member { want: n.clone(), client: client(&n.admin_url)? }))
                    .collect::<Result<Vec<_>, Error>>()?;
                Ok(Self { members, single: None })
            }
            _ => Ok(Self { members: Vec::new(), single: Some(client(&cfg.admin_url)?) }),
        }
    }

    pub fn coordinator(&self) -> &AdminClient {
        self.single.as_ref().unwrap_or_else(|| &self.members[0].client)
    }

    /// `(requests, mutating requests)` over every client.
    pub fn counts(&self) -> (u32, u32) {
        self.members
            .iter()
            .map(|m| &m.client)
            .chain(&self.single)
            .map(AdminClient::counts)
            .fold((0, 0), |a, c| (a.0 + c.0, a.1 + c.1))
    }
}

/// Turns the deadline into the error that says what was awaited, and why.
pub async fn within_deadline<T>(
    cfg: &ApplyConfig,
    progress: &Progress,
    work: impl Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    match tokio::time::timeout(cfg.deadline, work).await {
        Ok(result) => result,
        Err(_) => {
            let (waiting_for, last) = progress.snapshot();
            Err(Error::Deadline {
                deadline: cfg.deadline,
                waiting_for,
                last: last.unwrap_or_else(|| "none; a request was still in flight".into()),
            })
        }
    }
}

/// `garage-init apply`: converge the cluster, keys, buckets and grants, then
/// prove each read-write key can write. The whole run, waits included, fits
/// in the deadline.
pub async fn apply(cfg: &ApplyConfig, reporter: &mut Reporter) -> Result<(), Error> {
    let started = Instant::now();
    let progress = Progress::default();
    let clients = Clients::new(cfg)?;
    let ctx = Ctx { client: clients.coordinator(), progress: &progress };
    let desired = &cfg.desired;

    let work = async {
        // The first key is read alongside the first wait: on a converged
        // cluster that read answers for the key, its bucket and its grant.
        let prefetch = async {
            match desired.keys.first() {
                Some(k) => ctx.client.key_info_with_secret(&k.id).await.ok(),
                None => None,
            }
        };
        let (gathered, prefetched) =
            tokio::join!(cluster::gather(&ctx, &desired.cluster, &clients.members, true), prefetch);
        let gathered = gathered?;
        let (version, lines, fresh) =
            layout::converge(&ctx, &desired.cluster, &gathered.known, cfg.allow_layout_changes, gathered.observed)
                .await?;
        lines.into_iter().for_each(|l| reporter.record(l));
        ready::wait_for_health(&ctx, &clients.members, version).await?;

        // Keys and buckets are independent of each other: all at once.
        let key_start = |i: usize| match (&prefetched, fresh) {
            // The first layout was just made: nothing can exist yet but a concurrent run's.
            (_, true) => Start::Known(None),
            (Some(found), false) if i == 0 => Start::Known(found.clone()),
            _ => Start::Read,
        };
        let bucket_start = |b: &crate::desired::BucketWant| {
            let view = prefetched.as_ref().and_then(|k| k.as_ref()).and_then(|k| k.bucket_view(&b.name));
            match view {
                _ if fresh => Start::Known(None),
                // The key's view knows the bucket's id, aliases and this key's permissions:
                // enough unless quotas or other keys' grants are to be checked.
                Some(v)
                    if !desired.exhaustive
                        && b.quotas.is_none()
                        && b.aliases.iter().all(|a| v.global_aliases.contains(a)) =>
                {
                    Start::Known(Some(v))
                }
                _ => Start::Read,
            }
        };
        let keys = try_join_all(desired.keys.iter().enumerate().map(|(i, k)| key::converge(&ctx, k, key_start(i))));
        let buckets = try_join_all(
            desired.buckets.iter().map(|b| bucket::converge(&ctx, b, desired.exhaustive, bucket_start(b))),
        );
        let (keys, buckets) = tokio::try_join!(keys, buckets)?;
        keys.into_iter().for_each(|(line, _)| reporter.record(line));
        let mut infos: Vec<BucketInfo> = Vec::new();
        for (info, lines) in buckets {
            lines.into_iter().for_each(|l| reporter.record(l));
            infos.push(info);
        }

        for grant in &desired.grants {
            let info = bucket_info(&desired.buckets, &infos, &grant.bucket);
            for line in bucket::grant(&ctx, info, grant, desired.exhaustive).await? {
                reporter.record(line);
            }
        }
        if desired.exhaustive {
            for (want, info) in desired.buckets.iter().zip(&infos) {
                bucket::undeclared_grants(info, &want.name, &desired.grants)
                    .into_iter()
                    .for_each(|l| reporter.record(l));
            }
        }

        for grant in desired.grants.iter().filter(|g| g.permissions.read && g.permissions.write) {
            let key = desired.key(&grant.key_id).expect("grants name declared keys");
            let detail = s3check::verify(&cfg.s3_url, &cfg.region, &grant.bucket, key, &progress).await?;
            reporter.record(Line::new("s3 check", Outcome::Passed, detail));
        }
        Ok(())
    };
    within_deadline(cfg, &progress, work).await?;
    let (requests, mutations) = clients.counts();
    reporter.finish(started.elapsed(), requests, mutations);
    Ok(())
}

/// The observed bucket a grant names (by its name or one of its aliases).
fn bucket_info<'a>(wants: &[crate::desired::BucketWant], infos: &'a [BucketInfo], name: &str) -> &'a BucketInfo {
    let i = wants.iter().position(|b| b.name == name).expect("grants name declared buckets");
    &infos[i]
}
