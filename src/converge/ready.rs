//! Waiting for Garage: first for its admin API to answer authenticated
//! requests, then, once a layout is applied, for the cluster to have quorum.
//!
//! `/health` is not used for the first wait: it answers 503 until a layout
//! exists, which would deadlock a fresh node. It is used for the second: it
//! computes the same status as `GetClusterHealth` without checking a token,
//! and a token check costs Garage an argon2 hash (tens of milliseconds).
//! `GetCurrentAdminTokenInfo` is never used: it can crash Garage 2.1.0.

use futures_util::future::join_all;

use crate::admin::types::{ClusterLayout, ClusterStatus};
use crate::error::{Error, display_url};
use crate::wait::Waiter;

use super::Ctx;
use super::cluster::Member;
use super::layout::{KnownNode, layout_from_status, needs_layout};
use crate::desired::ClusterWant;

/// Reads `GetClusterStatus` from the coordinating node, and
/// `GetClusterLayout` only where staged changes could matter (see
/// [`needs_layout`]), waiting out refused connections and 503; a rejected
/// token fails at once.
pub async fn observe(
    ctx: &Ctx<'_>,
    want: &ClusterWant,
    known: &[KnownNode],
) -> Result<(ClusterStatus, ClusterLayout), Error> {
    let status = cluster_status(ctx).await?;
    let layout = layout_for(ctx, &status, want, known).await?;
    Ok((status, layout))
}

pub async fn cluster_status(ctx: &Ctx<'_>) -> Result<ClusterStatus, Error> {
    let status = ctx.call("Garage's admin API", || ctx.client.cluster_status()).await.map_err(|e| ctx.fail(e))?;
    tracing::debug!(layout_version = status.layout_version, nodes = status.nodes.len(), "admin API answered");
    Ok(status)
}

/// The layout to plan from: read where it matters, else as `status` shows it.
pub async fn layout_for(
    ctx: &Ctx<'_>,
    status: &ClusterStatus,
    want: &ClusterWant,
    known: &[KnownNode],
) -> Result<ClusterLayout, Error> {
    if needs_layout(status, want, known) {
        ctx.call("cluster layout", || ctx.client.cluster_layout()).await.map_err(|e| ctx.fail(e))
    } else {
        Ok(layout_from_status(status))
    }
}

/// Waits until the cluster is not `unavailable` as every node garage-init
/// knows sees it, and each of them holds layout `version`.
///
/// The coordinating node needs no version check: the node that applies a
/// layout persists it before answering. Other listed nodes receive it within
/// milliseconds (at most ~10 s through the status exchange).
pub async fn wait_for_health(ctx: &Ctx<'_>, members: &[Member], version: u64) -> Result<(), Error> {
    let mut waiter = Waiter::new(&ctx.describe("cluster health"), ctx.progress);
    if members.len() <= 1 {
        loop {
            match ctx.client.health().await {
                Ok(None) => return Ok(()),
                Ok(Some(why)) => waiter.pause(&why).await,
                Err(e) if e.is_transient() => waiter.pause(&e).await,
                Err(e) => return Err(ctx.fail(e)),
            }
        }
    }
    let mut ready = vec![false; members.len()];
    loop {
        // `/health` first: it needs no token check. The layout version is
        // asked (with a token) only of nodes that already have quorum.
        let checks = members.iter().zip(&ready).enumerate().filter(|(_, (_, r))| !**r).map(|(i, (m, _))| async move {
            let health = m.client.health().await;
            let status = match &health {
                Ok(None) if i > 0 => Some(m.client.cluster_status().await),
                _ => None,
            };
            (i, health, status)
        });
        let mut waiting = Vec::new();
        for (i, health, status) in join_all(checks).await {
            let url = display_url(members[i].client.base_url());
            let why = match (health, status) {
                (Err(e), _) | (_, Some(Err(e))) if !e.is_transient() => {
                    return Err(Error::from_admin(e, members[i].client.base_url()));
                }
                (Err(e), _) | (_, Some(Err(e))) => e.to_string(),
                (Ok(Some(why)), _) => why,
                (Ok(None), Some(Ok(s))) if s.layout_version < version => {
                    format!("layout version {} of {version}", s.layout_version)
                }
                (Ok(None), _) => {
                    ready[i] = true;
                    continue;
                }
            };
            waiting.push(format!("{url} ({why})"));
        }
        if waiting.is_empty() {
            return Ok(());
        }
        waiter.pause(&format!("nodes not ready: {}", waiting.join(", "))).await;
    }
}
