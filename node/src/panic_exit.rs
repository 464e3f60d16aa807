//! A panic anywhere in the node ends the process. Without this, a panic in a tokio task
//! ends only that task: a panicked Raft core leaves a node that still answers RPCs and
//! still heartbeats to the placement driver, so the PD counts it Up and never replaces its
//! replicas, while the node itself can serve nothing (a clock soak that moved monotonic
//! clocks back showed exactly that: openraft's assertion stopped every Raft core and the
//! nodes ran on, serving nothing, for ten minutes). A node that exits is restarted by its
//! supervisor from its durable state, and until then the PD sees it silent and moves its
//! replicas. TiKV does the same.

/// The exit code of a node that panicked.
pub const PANIC_EXIT_CODE: i32 = 70;

/// After the default hook has printed the panic and its location, logs it and exits.
pub fn install() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default(info);
        tracing::error!(
            "panic: {info}; exiting (code {PANIC_EXIT_CODE}) so that a supervisor restarts \
             this node from its durable state"
        );
        eprintln!(
            "atoll-node: a panic is a bug (please report it with this log); exiting with code \
             {PANIC_EXIT_CODE} so that the node restarts from its durable state"
        );
        std::process::exit(PANIC_EXIT_CODE);
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The child half of the test below: installs the hook and panics in a tokio task.
    #[test]
    fn child_panics_in_a_task() {
        if std::env::var_os("ATOLL_PANIC_EXIT_CHILD").is_none() {
            return;
        }
        install();
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        rt.block_on(async {
            let _ = tokio::spawn(async { panic!("deliberate") }).await;
            // Without the hook the task's panic is only a JoinError and this returns.
            tokio::time::sleep(std::time::Duration::from_secs(5)).await;
        });
        std::process::exit(0);
    }

    #[test]
    fn a_panic_in_a_task_ends_the_process() {
        let exe = std::env::current_exe().expect("test binary");
        let out = std::process::Command::new(exe)
            .args([
                "--exact",
                "panic_exit::tests::child_panics_in_a_task",
                "--nocapture",
            ])
            .env("ATOLL_PANIC_EXIT_CHILD", "1")
            .output()
            .expect("run the child");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(PANIC_EXIT_CODE), "{stderr}");
        assert!(stderr.contains("deliberate"), "{stderr}");
        assert!(stderr.contains("a panic is a bug"), "{stderr}");
    }
}
