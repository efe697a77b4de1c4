//! Convergence: for each resource, observe what Garage holds, plan the
//! difference from what is wanted (a pure function), and act only on that
//! difference. Every step starts again from a fresh observation after a
//! transient failure or a lost race, so a restart of Garage or a concurrent
//! run in the middle of a step is harmless.

pub mod bucket;
pub mod key;
pub mod layout;
pub mod ready;

use std::future::Future;

use tokio::time::Instant;

use crate::admin::{AdminClient, AdminError};
use crate::config::ApplyConfig;
use crate::error::{Error, display_url};
use crate::report::{Line, Outcome, Reporter};
use crate::s3check;
use crate::wait::{Progress, Waiter};

/// What every step needs: the client and the shared progress record.
pub struct Ctx<'a> {
    pub client: &'a AdminClient,
    pub progress: &'a Progress,
}

impl Ctx<'_> {
    /// "Garage's admin API at http://garage:3903" and the like, for messages.
    pub fn describe(&self, what: &str) -> String {
        format!("{what} at {}", display_url(self.client.base_url()))
    }

    /// Runs `op` until it succeeds or fails for a reason waiting cannot fix.
    pub async fn read<T, F, Fut>(&self, what: &str, mut op: F) -> Result<T, AdminError>
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

/// `garage-init apply`: converge layout, key, bucket and grant, then prove
/// the key can write. The whole run, waits included, fits in the deadline.
pub async fn apply(cfg: &ApplyConfig, reporter: &mut Reporter) -> Result<(), Error> {
    let started = Instant::now();
    let progress = Progress::default();
    let client = AdminClient::new(cfg.admin_url.clone(), &cfg.admin_token).map_err(Error::Admin)?;
    let ctx = Ctx { client: &client, progress: &progress };

    let work = async {
        let observed = ready::wait_for_admin(&ctx).await?;
        let (_version, layout_line) = layout::converge(&ctx, &cfg.role, observed).await?;
        reporter.record(layout_line);
        ready::wait_for_health(&ctx).await?;
        // Independent of each other: read (and create) both at once.
        let (key_line, (bucket, bucket_line)) =
            tokio::try_join!(key::converge(&ctx, &cfg.key), bucket::converge(&ctx, &cfg.bucket))?;
        reporter.record(key_line);
        reporter.record(bucket_line);
        reporter.record(bucket::grant(&ctx, &bucket, &cfg.key.id).await?);
        let detail = s3check::verify(&cfg.s3_url, &cfg.region, &cfg.bucket, &cfg.key, &progress).await?;
        reporter.record(Line::new("s3 check", Outcome::Passed, detail));
        Ok::<(), Error>(())
    };
    match tokio::time::timeout(cfg.deadline, work).await {
        Ok(result) => result?,
        Err(_) => {
            let (waiting_for, last) = progress.snapshot();
            return Err(Error::Deadline {
                deadline: cfg.deadline,
                waiting_for,
                last: last.unwrap_or_else(|| "none; a request was still in flight".into()),
            });
        }
    }
    let (requests, mutations) = client.counts();
    reporter.finish(started.elapsed(), requests, mutations);
    Ok(())
}
