//! The same seed gives the same run, byte for byte: faults injected, every
//! recorded operation and its result.

#![cfg(madsim)]

use atoll_sim_tests::nemesis::Schedule;
use atoll_sim_tests::runner::{run_seed, run_test_in_child, seeds, Scenario};

/// Where a child run writes its report (faults, then the history).
const REPORT_OUT: &str = "SIM_REPORT_OUT";

/// Two runs of one seed, each in a process of its own (as a sweep runs
/// every seed, and as a replay runs it), give the same faults and the same
/// history byte for byte. (Two runs in one process need not: a simulation
/// leaves process-wide state behind; see docs/testing.md.)
#[test]
fn one_seed_twice_gives_identical_histories() {
    let seed = seeds(1)[0] + 41;
    let scenario = Scenario::new(Schedule::Mixed);
    if let Ok(out) = std::env::var(REPORT_OUT) {
        let r = run_seed(seed, &scenario).expect("the run");
        assert!(r.ops > 100, "too few ops to compare: {}", r.ops);
        let text = format!("{:?}\n{}", r.faults, r.history_jsonl);
        std::fs::write(&out, text).expect("writing the report");
        return;
    }
    let dir = tempfile::tempdir().expect("a temporary dir");
    let run = |name: &str| {
        let path = dir.path().join(name);
        let out = run_test_in_child(
            "one_seed_twice_gives_identical_histories",
            &[(REPORT_OUT, path.display().to_string())],
        )
        .expect("the child run");
        assert!(
            out.status.success(),
            "the child run failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::read_to_string(&path).expect("the child's report")
    };
    let (a, b) = (run("a"), run("b"));
    let (a_faults, a_history) = a.split_once('\n').unwrap_or((&a, ""));
    let (b_faults, b_history) = b.split_once('\n').unwrap_or((&b, ""));
    assert_eq!(a_faults, b_faults, "seed {seed}: the faults differ");
    assert!(
        a_history == b_history,
        "seed {seed} is not deterministic: the histories differ"
    );
}

#[test]
fn different_seeds_give_different_runs() {
    let scenario = Scenario::new(Schedule::Mixed);
    let a = run_seed(3, &scenario).expect("seed 3");
    let b = run_seed(4, &scenario).expect("seed 4");
    assert_ne!(a.history_jsonl, b.history_jsonl);
}
