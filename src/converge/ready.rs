//! Waiting for Garage: first for its admin API to answer authenticated
//! requests, then, once a layout is applied, for the cluster to have quorum.
//!
//! `/health` is not used for the first wait: it answers 503 until a layout
//! exists, which would deadlock a fresh node. It is used for the second: it
//! computes the same status as `GetClusterHealth` without checking a token,
//! and a token check costs Garage an argon2 hash (tens of milliseconds).
//! `GetCurrentAdminTokenInfo` is never used: it can crash Garage 2.1.0.

use crate::admin::types::{ClusterLayout, ClusterStatus};
use crate::error::Error;
use crate::wait::Waiter;

use super::Ctx;

/// Waits for authenticated answers to `GetClusterStatus` and
/// `GetClusterLayout` (sent together). Refused connections and 503 are
/// waited out; a rejected token fails at once.
pub async fn wait_for_admin(ctx: &Ctx<'_>) -> Result<(ClusterStatus, ClusterLayout), Error> {
    let observed = ctx
        .read("Garage's admin API", || async {
            tokio::try_join!(ctx.client.cluster_status(), ctx.client.cluster_layout())
        })
        .await
        .map_err(|e| ctx.fail(e))?;
    tracing::debug!(layout_version = observed.0.layout_version, nodes = observed.0.nodes.len(), "admin API answered");
    Ok(observed)
}

/// Waits until the cluster is not `unavailable`, as this node sees it.
///
/// The layout version needs no separate wait here: the node that applied a
/// layout persists it before answering, and it is the node garage-init talks to.
pub async fn wait_for_health(ctx: &Ctx<'_>) -> Result<(), Error> {
    let mut waiter = Waiter::new(&ctx.describe("cluster health"), ctx.progress);
    loop {
        match ctx.client.health().await {
            Ok(None) => return Ok(()),
            Ok(Some(why)) => waiter.pause(&why).await,
            Err(e) if e.is_transient() => waiter.pause(&e).await,
            Err(e) => return Err(ctx.fail(e)),
        }
    }
}
