//! Direct reads: a linearizable get sent straight to one chosen node, bypassing the client's
//! routing (which always reads through the shard leader), as a Jepsen client bound to one
//! node would. A correct node answers it only if it can prove the read linearizable (it
//! leads and passes the ReadIndex barrier), else refuses it (`NotLeader`, `Unavailable`):
//! recorded as a failed read. A node that serves such reads from its local state (the
//! `stale-reads` broken mode) answers from a follower or a deposed leader, and the
//! linearizability checker sees the stale value.

use std::time::Duration;

use atoll_proto::kv_client::KvClient;
use atoll_proto::{GetRequest, ReadConsistency, RequestHeader};
use tonic::transport::{Channel, Endpoint};

use super::Ctx;
use crate::{OpKind, OpResult, Outcome};

/// The shard every key of a harness run lives in (the harness does not split).
const SHARD: u64 = 1;
const TIMEOUT: Duration = Duration::from_millis(1000);

/// One lazily connected channel per node.
pub struct DirectReader {
    nodes: Vec<Option<KvClient<Channel>>>,
}

impl DirectReader {
    pub fn new(ctx: &Ctx) -> DirectReader {
        let nodes = ctx
            .endpoints
            .iter()
            .map(|addr| {
                Endpoint::from_shared(format!("http://{addr}"))
                    .ok()
                    .map(|e| KvClient::new(e.timeout(TIMEOUT).connect_lazy()))
            })
            .collect();
        DirectReader { nodes }
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// A recorded linearizable get of `key` at node `node` (an index into the endpoints).
    pub async fn get(&self, me: u64, ctx: &Ctx, node: usize, key: &[u8]) -> Outcome {
        let h = ctx.rec.invoke(me, OpKind::get(key), ctx.clock.now());
        let outcome = match self.nodes.get(node).cloned().flatten() {
            None => Outcome::Failed,
            Some(mut kv) => {
                let req = GetRequest {
                    header: Some(RequestHeader {
                        shard_id: SHARD,
                        epoch: None,
                    }),
                    key: key.to_vec(),
                    consistency: ReadConsistency::Linearizable as i32,
                };
                match tokio::time::timeout(TIMEOUT, kv.get(req)).await {
                    Ok(Ok(r)) => {
                        let r = r.into_inner();
                        match r.error {
                            None => Outcome::Ok(OpResult::Get(r.value)),
                            Some(_) => Outcome::Failed,
                        }
                    }
                    // A read that did not answer changed nothing.
                    Ok(Err(_)) | Err(_) => Outcome::Failed,
                }
            }
        };
        let _ = ctx.rec.complete(h, outcome.clone(), ctx.clock.now());
        outcome
    }
}
