//! CPU time and peak resident memory of the server processes, read from
//! `/proc` around the measured window of a case.
//!
//! CPU: `utime + stime` from `/proc/<pid>/stat`, in clock ticks
//! (`USER_HZ`, 100 on Linux). Peak RSS: `VmHWM` from `/proc/<pid>/status`,
//! reset at the start of a case by writing `5` to `/proc/<pid>/clear_refs`
//! (Linux ≥ 4.0; needs the right to write there, i.e. the same user or
//! root). If the reset fails, the peak is the process's lifetime peak.
//!
//! Steal: the `steal` column of `/proc/stat`'s `cpu` line, the time the
//! hypervisor ran something else while this VM wanted a CPU, as a share of
//! all CPU time over the window. On a shared virtual machine it varies from
//! run to run and slows a latency-bound case (write-1) by as much as it
//! takes: a run with high steal says more about the host than about the
//! systems under test.

use std::time::Instant;

/// Linux's `USER_HZ`, the unit of `utime`/`stime` on every mainstream arch.
const TICKS_PER_SEC: f64 = 100.0;

/// What one process used during a case.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ProcUsage {
    pub pid: u32,
    /// CPU time over wall time, in % of one core.
    pub cpu_pct: f64,
    /// Peak resident set over the case (or over the process's life when
    /// the reset was refused), MiB.
    pub peak_rss_mib: f64,
    /// Whether `VmHWM` was reset at the start of the case.
    pub peak_reset: bool,
}

/// A window opened by [`ProcWindow::open`] and read by [`ProcWindow::close`].
pub struct ProcWindow {
    start: Instant,
    procs: Vec<(u32, Option<u64>, bool)>,
    host: Option<HostTicks>,
}

impl ProcWindow {
    pub fn open(pids: &[u32]) -> ProcWindow {
        let procs = pids
            .iter()
            .map(|&pid| {
                let reset = std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok();
                (pid, cpu_ticks(pid), reset)
            })
            .collect();
        ProcWindow {
            start: Instant::now(),
            procs,
            host: host_ticks(),
        }
    }

    /// The share of all CPU time (every CPU) stolen by the hypervisor since
    /// the window opened, in %; `None` where `/proc/stat` has no steal.
    pub fn steal_pct(&self) -> Option<f64> {
        let (before, now) = (self.host?, host_ticks()?);
        let total = now.total.saturating_sub(before.total);
        (total > 0).then(|| now.steal.saturating_sub(before.steal) as f64 / total as f64 * 100.0)
    }

    /// Usage of every process still alive.
    pub fn close(self) -> Vec<ProcUsage> {
        let secs = self.start.elapsed().as_secs_f64().max(1e-9);
        self.procs
            .into_iter()
            .filter_map(|(pid, before, peak_reset)| {
                let used = cpu_ticks(pid)?.saturating_sub(before?);
                Some(ProcUsage {
                    pid,
                    cpu_pct: used as f64 / TICKS_PER_SEC / secs * 100.0,
                    peak_rss_mib: peak_rss_kib(pid)? as f64 / 1024.0,
                    peak_reset,
                })
            })
            .collect()
    }
}

/// The machine's CPU time so far, in ticks: stolen, and in all.
#[derive(Debug, Clone, Copy, PartialEq)]
struct HostTicks {
    steal: u64,
    total: u64,
}

fn host_ticks() -> Option<HostTicks> {
    parse_host_ticks(&std::fs::read_to_string("/proc/stat").ok()?)
}

/// The `cpu` line of `/proc/stat`: user nice system idle iowait irq softirq
/// steal (guest time is inside user already).
fn parse_host_ticks(stat: &str) -> Option<HostTicks> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    Some(HostTicks {
        steal: *fields.get(7)?,
        total: fields.iter().sum(),
    })
}

/// `utime + stime` of `pid`, in ticks.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_cpu_ticks(&stat)
}

/// Fields 14 and 15 of `/proc/<pid>/stat`, counted after the `)` that ends
/// the command name (which may itself hold spaces and parentheses).
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): utime is field 14, stime field 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_are_read_after_a_command_name_with_spaces() {
        let stat = "42 (atoll (node) x) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 9 0";
        assert_eq!(parse_cpu_ticks(stat), Some(300));
    }

    #[test]
    fn steal_is_read_from_the_cpu_line() {
        let stat = "cpu  100 0 50 800 10 5 5 30 0 0\ncpu0 50 0 25 400 5 2 3 15 0 0\n";
        assert_eq!(
            parse_host_ticks(stat),
            Some(HostTicks {
                steal: 30,
                total: 1000
            })
        );
        // A kernel too old to report steal has seven fields.
        assert_eq!(parse_host_ticks("cpu  1 2 3 4 5 6 7\n"), None);
    }

    #[test]
    fn our_own_process_has_a_peak_rss() {
        let me = std::process::id();
        assert!(peak_rss_kib(me).is_some_and(|k| k > 0));
        assert!(cpu_ticks(me).is_some());
    }
}
