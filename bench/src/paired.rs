//! A lone write paired with the disk: write-1 in a short slice between two
//! append-`fdatasync` probes, so that issue 8's target (write-1 p50 within
//! 3× of one such sync) compares the two under the same disk, within the
//! same second. The disk probes taken before and after a whole run drift by
//! up to half on a shared VM; the per-round multiple does not carry that.
//! `scripts/bench.sh` runs the rounds with the systems alternated.

use std::path::Path;
use std::time::Duration;

use crate::disk::{self, SyncLatency};
use crate::driver::{self, Spec};
use crate::kv::Kv;
use crate::workload::Case;

/// One round: probe, write-1 slice, probe.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct PairedRound {
    pub system: String,
    pub round: u32,
    pub probe_before: SyncLatency,
    pub probe_after: SyncLatency,
    pub write_1: driver::CaseResult,
}

impl PairedRound {
    /// The append sync this round's write-1 is compared with: the mean of
    /// the p50s before and after, µs.
    pub fn probe_p50_us(&self) -> f64 {
        (self.probe_before.p50_us + self.probe_after.p50_us) as f64 / 2.0
    }

    /// write-1's p50 as a multiple of [`PairedRound::probe_p50_us`].
    pub fn multiple(&self) -> Option<f64> {
        let probe = self.probe_p50_us();
        (probe > 0.0 && self.write_1.ops > 0).then(|| self.write_1.p50_us as f64 / probe)
    }
}

/// What one round does, besides the cluster.
pub struct RoundSpec<'a> {
    pub round: u32,
    /// Where the probes write (the directory the data dirs live in).
    pub dir: &'a Path,
    /// Syncs per probe.
    pub probe_count: u64,
    pub keys: u64,
    pub value_size: usize,
    pub warmup: Duration,
    pub slice: Duration,
}

/// Runs one round against `conns` (one connection: write-1 has one client).
pub async fn round<K: Kv>(
    system: &str,
    conns: &[K],
    spec: &RoundSpec<'_>,
    pids: &[u32],
) -> anyhow::Result<PairedRound> {
    let budget = Duration::from_secs(5);
    let probe_before = disk::append_probe(spec.dir, spec.probe_count, budget)?;
    let case = Spec {
        case: Case::Write(1),
        keys: spec.keys,
        value_size: spec.value_size,
        warmup: spec.warmup,
        duration: spec.slice,
    };
    let write_1 = driver::run_case(system, conns, &case, pids).await;
    let probe_after = disk::append_probe(spec.dir, spec.probe_count, budget)?;
    Ok(PairedRound {
        system: system.into(),
        round: spec.round,
        probe_before,
        probe_after,
        write_1,
    })
}

/// The median of `values` (the mean of the middle two for an even count);
/// `None` when empty.
pub fn median(values: &mut [f64]) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(values[n / 2]),
        _ => Some((values[n / 2 - 1] + values[n / 2]) / 2.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_of_odd_and_even_counts() {
        assert_eq!(median(&mut []), None);
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), Some(2.5));
    }
}
