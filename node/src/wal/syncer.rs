//! Group commit: one task owns `fdatasync` of the active segment. Callers
//! that need durability queue a waiter; the task takes every waiter queued
//! so far, syncs once, and completes them all, so appends from every shard
//! that arrive during one sync share the next one.
//!
//! Only the active segment can hold unsynced bytes: a segment is synced in
//! full before the next one is created ([`super::Wal`]'s rotation).

use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use super::error::WalError;
use super::fs::SharedFs;
use super::handle::Inner;
use super::segment;

pub type Done = Box<dyn FnOnce(Result<(), WalError>) + Send>;

/// Starts the sync worker; it ends when every sender is dropped. In
/// production it is a thread of its own that calls `fdatasync` in place: a
/// durable append then costs one hand-off to it and one back, not the four
/// of a task that hands each sync to the blocking pool. In the simulation
/// it is a task, whose sync takes simulated time.
pub fn spawn(fs: SharedFs, dir: String, state: Arc<Mutex<Inner>>) -> mpsc::UnboundedSender<Done> {
    let (tx, rx) = mpsc::unbounded_channel();
    #[cfg(not(madsim))]
    {
        let spawned = std::thread::Builder::new()
            .name("atoll-wal-sync".into())
            .spawn(move || run_thread(fs, dir, state, rx));
        if let Err(e) = spawned {
            // The receiver went down with the closure: every later
            // `after_sync` reports `Stopped`, so nothing is acknowledged.
            tracing::error!("cannot start the WAL sync thread: {e}; the WAL accepts no writes");
        }
    }
    #[cfg(madsim)]
    tokio::spawn(run_task(fs, dir, state, rx));
    tx
}

#[cfg(not(madsim))]
fn run_thread(
    fs: SharedFs,
    dir: String,
    state: Arc<Mutex<Inner>>,
    mut rx: mpsc::UnboundedReceiver<Done>,
) {
    let mut waiters = Vec::new();
    while let Some(first) = rx.blocking_recv() {
        take_queued(first, &mut rx, &mut waiters);
        let result = match active_segment(&state) {
            Err(why) => Err(why),
            Ok(active) => {
                let r = fs.sync(&segment::name(active));
                sync_outcome(&dir, &state, active, r)
            }
        };
        complete(&mut waiters, result);
    }
}

#[cfg(madsim)]
async fn run_task(
    fs: SharedFs,
    dir: String,
    state: Arc<Mutex<Inner>>,
    mut rx: mpsc::UnboundedReceiver<Done>,
) {
    let mut waiters = Vec::new();
    while let Some(first) = rx.recv().await {
        take_queued(first, &mut rx, &mut waiters);
        let result = match active_segment(&state) {
            Err(why) => Err(why),
            Ok(active) => {
                // The simulated disk takes time to sync, with slow outliers;
                // what is appended meanwhile is synced too, as on a real disk.
                tokio::time::sleep(crate::sim_hooks::flush_latency()).await;
                let r = fs.sync(&segment::name(active));
                sync_outcome(&dir, &state, active, r)
            }
        };
        complete(&mut waiters, result);
    }
}

/// `first` and every waiter queued behind it share the next sync.
fn take_queued(first: Done, rx: &mut mpsc::UnboundedReceiver<Done>, waiters: &mut Vec<Done>) {
    waiters.push(first);
    while let Ok(more) = rx.try_recv() {
        waiters.push(more);
    }
}

fn complete(waiters: &mut Vec<Done>, result: Result<(), String>) {
    for w in waiters.drain(..) {
        w(result.clone().map_err(WalError::Failed));
    }
}

/// The segment to sync, or why the log is stopped.
fn active_segment(state: &Mutex<Inner>) -> Result<u64, String> {
    let inner = super::handle::lock(state);
    match &inner.failed {
        Some(why) => Err(why.clone()),
        None => Ok(inner.active),
    }
}

/// Any failure of the sync stops the log for good.
fn sync_outcome(
    dir: &str,
    state: &Mutex<Inner>,
    active: u64,
    result: std::io::Result<()>,
) -> Result<(), String> {
    let name = segment::name(active);
    let mut inner = super::handle::lock(state);
    match result {
        Ok(()) => Ok(()),
        // Rotated and then purged while we synced: it was synced in full
        // before the rotation.
        Err(_) if !inner.segments.contains(&active) => Ok(()),
        Err(e) => {
            let why = format!("fdatasync of {dir}/{name} failed: {e}");
            tracing::error!("{why}; the WAL accepts no more writes");
            inner.failed = Some(why.clone());
            Err(why)
        }
    }
}
