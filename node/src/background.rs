//! Background threads at a lower CPU priority.
//!
//! Work that no request waits for (fjall's flushes and compactions, snapshot
//! builds) runs at nice [`BACKGROUND_NICE`], so that on a busy machine it
//! gives way to the request path. Measured on three nodes sharing two cores:
//! fjall's memtable flushes took the CPU from writes in bursts of 300 ms,
//! and the three replicas of a shard building their snapshots at once held
//! writes at one client for 12 ms (docs/benchmarks.md). Best effort: a
//! thread that cannot be changed keeps the normal priority.

/// The nice value of background threads (0 is the default, 19 the lowest).
pub const BACKGROUND_NICE: i32 = 10;

/// Gives thread `tid` (a Linux thread id) the background priority, unless
/// it already runs at a lower one (a node started under `nice 15` keeps 15).
#[cfg(all(target_os = "linux", not(madsim)))]
pub fn lower_thread(tid: libc::id_t) {
    // SAFETY: getpriority and setpriority take plain integers and touch no
    // memory of ours; on failure they return -1 and we go on.
    unsafe {
        if libc::getpriority(libc::PRIO_PROCESS, tid) < BACKGROUND_NICE {
            libc::setpriority(libc::PRIO_PROCESS, tid, BACKGROUND_NICE);
        }
    }
}

/// Gives the calling thread the background priority (on Linux a priority
/// is per thread; threads it starts inherit it).
pub fn lower_this_thread() {
    #[cfg(all(target_os = "linux", not(madsim)))]
    {
        // SAFETY: gettid has no arguments and cannot fail.
        let tid = unsafe { libc::gettid() };
        lower_thread(tid as libc::id_t);
    }
}

/// Runs `work` on a thread of its own named `name`, at the background
/// priority, and waits for its result without blocking the async workers.
/// `None` if the thread could not be started or panicked.
#[cfg(not(madsim))]
pub async fn run<T: Send + 'static>(
    name: &str,
    work: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            lower_this_thread();
            let _ = tx.send(work());
        })
        .ok()?;
    rx.await.ok()
}

#[cfg(all(test, target_os = "linux", not(madsim)))]
mod tests {
    fn own_nice() -> i32 {
        // SAFETY: as in lower_thread (the test never runs at nice -1).
        unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) }
    }

    #[tokio::test]
    async fn a_background_thread_runs_at_the_background_nice_value() {
        let before = own_nice();
        let nice = super::run("atoll-test-bg", own_nice).await;
        // Lowered to 10, or kept if the tests already run lower than that.
        assert_eq!(nice, Some(before.max(super::BACKGROUND_NICE)));
        // The caller's own thread is not changed.
        assert_eq!(own_nice(), before);
    }
}
