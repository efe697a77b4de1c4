//! Waiting for Garage: first for its admin API to answer an authenticated
//! request, then for the cluster to have quorum on the applied layout.
//!
//! `/health` is not used for the first wait: it answers 503 until a layout
//! exists, which would deadlock a fresh node. `GetCurrentAdminTokenInfo` is
//! never used: it can crash Garage 2.1.0.

use crate::admin::types::{ClusterHealth, ClusterStatus};
use crate::error::Error;
use crate::wait::Waiter;

use super::Ctx;

/// Waits for an authenticated `GetClusterStatus`. Refused connections and
/// 503 are waited out; a rejected token fails at once.
pub async fn wait_for_admin(ctx: &Ctx<'_>) -> Result<ClusterStatus, Error> {
    let status = ctx
        .read("Garage's admin API", || ctx.client.cluster_status())
        .await
        .map_err(|e| ctx.fail(e))?;
    tracing::debug!(
        layout_version = status.layout_version,
        nodes = status.nodes.len(),
        "admin API answered"
    );
    Ok(status)
}

/// Waits until the cluster is not `unavailable` and this node holds at
/// least layout version `min_version`.
pub async fn wait_for_health(ctx: &Ctx<'_>, min_version: u64) -> Result<ClusterHealth, Error> {
    let mut waiter = Waiter::new(&ctx.describe("cluster health"), ctx.progress);
    loop {
        let health = match ctx.client.cluster_health().await {
            Ok(h) => h,
            Err(e) if e.is_transient() => {
                waiter.pause(&e).await;
                continue;
            }
            Err(e) => return Err(ctx.fail(e)),
        };
        if !health.is_available() {
            let why = format!(
                "cluster is unavailable: {}/{} storage nodes up, {}/{} partitions with a write quorum",
                health.storage_nodes_up, health.storage_nodes, health.partitions_quorum, health.partitions
            );
            waiter.pause(&why).await;
            continue;
        }
        let status = match ctx.client.cluster_status().await {
            Ok(s) => s,
            Err(e) if e.is_transient() => {
                waiter.pause(&e).await;
                continue;
            }
            Err(e) => return Err(ctx.fail(e)),
        };
        if status.layout_version < min_version {
            let why = format!(
                "node has layout version {}, waiting for {min_version}",
                status.layout_version
            );
            waiter.pause(&why).await;
            continue;
        }
        tracing::debug!(status = %health.status, "cluster ready");
        return Ok(health);
    }
}
