//! [`Kv`] over `atoll-client`, and the shard leader for the failover case.

use std::future::Future;
use std::time::Duration;

use atoll_client::{cluster_status, Client, ClientConfig};

use crate::kv::{Kv, Read};

/// One `atoll_client::Client`: its own channels (one per node) and its own
/// write session.
#[derive(Clone)]
pub struct AtollKv {
    client: Client,
}

impl AtollKv {
    pub async fn connect(endpoints: &[String]) -> anyhow::Result<AtollKv> {
        let client = Client::with_config(endpoints.to_vec(), ClientConfig::default()).await?;
        Ok(AtollKv { client })
    }
}

impl Kv for AtollKv {
    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> impl Future<Output = Result<(), String>> + Send {
        let client = self.client.clone();
        async move { client.put(key, value).await.map_err(|e| kind(&e)) }
    }

    fn get(&self, key: Vec<u8>, read: Read) -> impl Future<Output = Result<bool, String>> + Send {
        let client = self.client.clone();
        async move {
            let value = match read {
                Read::Linearizable => client.get(key).await,
                Read::Stale => client.get_stale(key).await.map(|(v, _)| v),
            };
            value.map(|v| v.is_some()).map_err(|e| kind(&e))
        }
    }
}

/// The error's `Debug` up to its first field: the variant name, which is
/// what the results count by.
fn kind(e: &atoll_client::Error) -> String {
    let debug = format!("{e:?}");
    let end = debug.find([' ', '(', '{']).unwrap_or(debug.len());
    format!("atoll {}", &debug[..end])
}

/// Index in `endpoints` of the node that leads the most shards (with one
/// shard: its leader), or `None` when no node says it leads.
pub async fn leader(endpoints: &[String]) -> Option<usize> {
    let statuses = cluster_status(endpoints.to_vec(), Duration::from_secs(1)).await;
    statuses
        .iter()
        .enumerate()
        .filter_map(|(i, s)| {
            let status = s.result.as_ref().ok()?;
            let led = status.shards.iter().filter(|r| r.role == "leader").count();
            (led > 0).then_some((led, i))
        })
        .max()
        .map(|(_, i)| i)
}
