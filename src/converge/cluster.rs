//! Cluster membership, before any layout: learn each listed node's id from
//! its own admin API, connect the nodes the coordinating node does not see,
//! and wait until every expected node is up. Messages name the nodes still
//! missing.

use futures_util::future::join_all;

use crate::admin::AdminClient;
use crate::admin::types::{ClusterLayout, ClusterStatus};
use crate::desired::{ClusterWant, NodeWant, NodesWant};
use crate::error::{Error, display_url};
use crate::report::short_id;
use crate::wait::Waiter;

use super::Ctx;
use super::layout::KnownNode;

/// A listed node and the client for its own admin API.
pub struct Member {
    pub want: NodeWant,
    pub client: AdminClient,
}

/// What is known once every expected node answers.
pub struct Gathered {
    pub known: Vec<KnownNode>,
    /// Listed nodes the coordinating node does not see up (only `plan` leaves any).
    pub unconnected: Vec<KnownNode>,
    pub observed: (ClusterStatus, ClusterLayout),
}

/// Waits for the cluster described by `nodes`; with `connect`, connects the
/// listed nodes the coordinating node does not see.
pub async fn gather(ctx: &Ctx<'_>, want: &ClusterWant, members: &[Member], connect: bool) -> Result<Gathered, Error> {
    match &want.nodes {
        NodesWant::Auto => Ok(Gathered {
            known: Vec::new(),
            unconnected: Vec::new(),
            observed: super::ready::observe(ctx, want, &[]).await?,
        }),
        NodesWant::Count(n) => wait_for_count(ctx, want, *n).await,
        NodesWant::Listed(_) => {
            let known = node_ids(ctx, members).await?;
            wait_for_listed(ctx, want, known, connect).await
        }
    }
}

/// Each listed node's id, from `GetNodeInfo?node=self` on its own admin API.
async fn node_ids(ctx: &Ctx<'_>, members: &[Member]) -> Result<Vec<KnownNode>, Error> {
    let mut ids: Vec<Option<String>> = vec![None; members.len()];
    let mut waiter = Waiter::new("Garage nodes' admin APIs", ctx.progress);
    loop {
        let pending = ids.iter().enumerate().filter(|(_, id)| id.is_none()).map(|(i, _)| i).collect::<Vec<_>>();
        let answers = join_all(pending.iter().map(|&i| members[i].client.own_node_id())).await;
        let mut missing = Vec::new();
        for (&i, answer) in pending.iter().zip(answers) {
            match answer {
                Ok(id) => ids[i] = Some(id),
                Err(e) if e.is_transient() => {
                    missing.push(format!("{} ({e})", display_url(members[i].client.base_url())));
                }
                Err(e) => return Err(Error::from_admin(e, members[i].client.base_url())),
            }
        }
        if missing.is_empty() {
            break;
        }
        waiter.pause(&format!("nodes not answering: {}", missing.join(", "))).await;
    }
    Ok(members.iter().zip(ids).map(|(m, id)| KnownNode { id: id.unwrap_or_default(), want: m.want.clone() }).collect())
}

fn up_ids(status: &ClusterStatus) -> Vec<&str> {
    status.nodes.iter().filter(|n| n.is_up).map(|n| n.id.as_str()).collect()
}

async fn wait_for_listed(
    ctx: &Ctx<'_>,
    want: &ClusterWant,
    known: Vec<KnownNode>,
    connect: bool,
) -> Result<Gathered, Error> {
    let mut waiter = Waiter::new(&ctx.describe("cluster membership"), ctx.progress);
    loop {
        let status = super::ready::cluster_status(ctx).await?;
        let up = up_ids(&status);
        let unconnected: Vec<KnownNode> = known.iter().filter(|k| !up.contains(&k.id.as_str())).cloned().collect();
        if unconnected.is_empty() || !connect {
            let layout = super::ready::layout_for(ctx, &status, want, &known).await?;
            return Ok(Gathered { known, unconnected, observed: (status, layout) });
        }
        let peers: Vec<String> = unconnected.iter().map(|k| format!("{}@{}", k.id, k.want.rpc_address)).collect();
        let mut failures = Vec::new();
        match ctx.client.connect_nodes(&peers).await {
            Ok(results) => {
                for (k, r) in unconnected.iter().zip(results) {
                    if !r.success {
                        failures.push(format!(
                            "{} at {}: {}",
                            short_id(&k.id),
                            k.want.rpc_address,
                            r.error.unwrap_or_else(|| "not connected".into())
                        ));
                    }
                }
            }
            Err(e) if e.is_transient() => failures.push(e.to_string()),
            Err(e) => return Err(ctx.fail(e)),
        }
        let names: Vec<String> =
            unconnected.iter().map(|k| k.want.admin_url.as_str().trim_end_matches('/').to_string()).collect();
        let detail = if failures.is_empty() { String::new() } else { format!("; {}", failures.join("; ")) };
        waiter.pause(&format!("nodes not connected yet: {}{detail}", names.join(", "))).await;
    }
}

async fn wait_for_count(ctx: &Ctx<'_>, want: &ClusterWant, n: usize) -> Result<Gathered, Error> {
    let mut waiter = Waiter::new(&ctx.describe("cluster membership"), ctx.progress);
    loop {
        let status = super::ready::cluster_status(ctx).await?;
        let up = up_ids(&status).len();
        if up >= n {
            let layout = super::ready::layout_for(ctx, &status, want, &[]).await?;
            return Ok(Gathered { known: Vec::new(), unconnected: Vec::new(), observed: (status, layout) });
        }
        waiter.pause(&format!("{up} of {n} expected nodes up")).await;
    }
}
