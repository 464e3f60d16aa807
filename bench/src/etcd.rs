//! [`Kv`] over etcd's v3 gRPC API, with the client generated from
//! `proto/etcd.proto` (docs/decisions/0012-benchmark-driver.md), and the
//! etcd leader for the failover case.

use std::future::Future;
use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

use crate::kv::{Kv, Read, Target};

#[allow(clippy::all, clippy::pedantic)]
pub mod pb {
    tonic::include_proto!("etcdserverpb");
}

use pb::kv_client::KvClient;
use pb::maintenance_client::MaintenanceClient;
use pb::{PutRequest, RangeRequest, StatusRequest};

/// One HTTP/2 connection (or, for [`Target::All`], one per member with
/// round-robin between them), shared by the workers given this handle.
#[derive(Clone)]
pub struct EtcdKv {
    kv: KvClient<Channel>,
}

impl EtcdKv {
    pub async fn connect(endpoints: &[String], target: Target) -> anyhow::Result<EtcdKv> {
        let channel = match target {
            Target::Leader => {
                let i = leader(endpoints)
                    .await
                    .ok_or_else(|| anyhow::anyhow!("no etcd member says it leads"))?;
                endpoint(&endpoints[i])?.connect().await?
            }
            Target::All => {
                let list = endpoints
                    .iter()
                    .map(|e| endpoint(e))
                    .collect::<anyhow::Result<Vec<_>>>()?;
                Channel::balance_list(list.into_iter())
            }
        };
        Ok(EtcdKv {
            kv: KvClient::new(channel),
        })
    }
}

fn endpoint(addr: &str) -> anyhow::Result<Endpoint> {
    Ok(Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(Duration::from_secs(1))
        .timeout(Duration::from_secs(10))
        .tcp_nodelay(true))
}

impl Kv for EtcdKv {
    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> impl Future<Output = Result<(), String>> + Send {
        let mut kv = self.kv.clone();
        async move {
            let req = PutRequest {
                key,
                value,
                lease: 0,
            };
            kv.put(req).await.map(|_| ()).map_err(|s| kind(&s))
        }
    }

    fn get(&self, key: Vec<u8>, read: Read) -> impl Future<Output = Result<bool, String>> + Send {
        let mut kv = self.kv.clone();
        async move {
            let req = RangeRequest {
                key,
                range_end: Vec::new(),
                limit: 0,
                revision: 0,
                serializable: read == Read::Stale,
            };
            match kv.range(req).await {
                Ok(reply) => Ok(!reply.into_inner().kvs.is_empty()),
                Err(s) => Err(kind(&s)),
            }
        }
    }
}

fn kind(status: &tonic::Status) -> String {
    format!("etcd {:?}", status.code())
}

/// Index in `endpoints` of the member that says it is the leader.
pub async fn leader(endpoints: &[String]) -> Option<usize> {
    for (i, addr) in endpoints.iter().enumerate() {
        let Ok(ep) = endpoint(addr) else { continue };
        let Ok(channel) = ep.connect().await else {
            continue;
        };
        let mut m = MaintenanceClient::new(channel);
        let Ok(Ok(reply)) =
            tokio::time::timeout(Duration::from_secs(1), m.status(StatusRequest {})).await
        else {
            continue;
        };
        let s = reply.into_inner();
        if s.header.is_some_and(|h| h.member_id == s.leader) {
            return Some(i);
        }
    }
    None
}
