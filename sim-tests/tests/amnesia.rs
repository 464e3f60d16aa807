//! A node whose disk is lost and that restarts with its initial-cluster
//! config must refuse to bootstrap again; the cluster keeps every
//! acknowledged write (docs/decisions/0008-cluster-id-and-bootstrap-check.md).

#![cfg(madsim)]

use std::time::Duration;

use atoll_node::storage::{keys, Engine};
use atoll_sim_tests::cluster::SimCluster;
use atoll_sim_tests::runner::seeds;

fn run(seed: u64) -> Result<(), String> {
    let rt = madsim::runtime::Runtime::with_seed_and_config(seed, madsim::Config::default());
    rt.block_on(async {
        let cluster = SimCluster::start(3);
        let client = cluster.client(Duration::from_secs(20)).await;
        let c = client.clone();
        cluster
            .on_client(async move {
                for i in 0..20 {
                    c.put(format!("k{i:02}"), format!("v{i}")).await?;
                }
                Ok::<_, atoll_client::Error>(())
            })
            .await
            .map_err(|e| format!("writes before the wipe: {e}"))?;

        cluster.wipe(3);
        tokio::time::sleep(Duration::from_millis(200)).await;
        cluster.restart(3);
        let start = tokio::time::Instant::now();
        while !cluster
            .observer
            .errors()
            .iter()
            .any(|e| e.contains("node 3 failed to start") && e.contains("refusing to bootstrap"))
        {
            if start.elapsed() > Duration::from_secs(10) {
                return Err(format!(
                    "node 3 did not refuse within 10 s; errors: {:?}",
                    cluster.observer.errors()
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Nothing was claimed: the data dir is fit for a --join start.
        let node_id = cluster
            .node(3)
            .engine
            .get(&keys::node_meta("node_id"))
            .map_err(|e| e.to_string())?;
        if node_id.is_some() {
            return Err("the refused start claimed the engine".into());
        }

        let c = client.clone();
        cluster
            .on_client(async move {
                for i in 0..20 {
                    let got = c.get(format!("k{i:02}")).await?;
                    if got != Some(format!("v{i}").into_bytes()) {
                        return Ok(Err(format!("k{i:02} lost: {got:?}")));
                    }
                }
                c.put("after", "ok").await?;
                Ok::<_, atoll_client::Error>(Ok(()))
            })
            .await
            .map_err(|e| format!("reads after the refusal: {e}"))?
    })
}

#[test]
fn a_node_restarted_with_an_empty_disk_refuses_to_bootstrap_again() {
    let seeds = if std::env::var("SIM_SEED").is_ok() {
        seeds(1)
    } else {
        (1..=10).collect()
    };
    let failed: Vec<(u64, String)> = seeds
        .iter()
        .filter_map(|s| run(*s).err().map(|e| (*s, e)))
        .collect();
    for (seed, e) in &failed {
        println!("FAILED amnesia seed {seed}: {e}\n  replay: SIM_SEED={seed} RUSTFLAGS=\"--cfg madsim\" CARGO_TARGET_DIR=target/sim cargo test -p atoll-sim-tests --test amnesia -- --nocapture");
    }
    assert!(
        failed.is_empty(),
        "{} of {} seeds failed",
        failed.len(),
        seeds.len()
    );
}
