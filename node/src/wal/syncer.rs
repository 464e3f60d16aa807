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

/// Starts the sync task; it ends when every sender is dropped.
pub fn spawn(fs: SharedFs, dir: String, state: Arc<Mutex<Inner>>) -> mpsc::UnboundedSender<Done> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(run(fs, dir, state, rx));
    tx
}

async fn run(
    fs: SharedFs,
    dir: String,
    state: Arc<Mutex<Inner>>,
    mut rx: mpsc::UnboundedReceiver<Done>,
) {
    let mut waiters = Vec::new();
    while let Some(first) = rx.recv().await {
        waiters.push(first);
        while let Ok(more) = rx.try_recv() {
            waiters.push(more);
        }
        let result = sync_active(&fs, &dir, &state).await;
        for w in waiters.drain(..) {
            w(result.clone().map_err(WalError::Failed));
        }
    }
}

/// Syncs the active segment; any failure stops the log for good.
async fn sync_active(fs: &SharedFs, dir: &str, state: &Mutex<Inner>) -> Result<(), String> {
    let active = {
        let inner = super::handle::lock(state);
        if let Some(why) = &inner.failed {
            return Err(why.clone());
        }
        inner.active
    };
    let name = segment::name(active);
    let result = sync_file(fs.clone(), name.clone()).await;
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

#[cfg(not(madsim))]
async fn sync_file(fs: SharedFs, name: String) -> std::io::Result<()> {
    // fdatasync blocks; keep it off the async workers.
    match tokio::task::spawn_blocking(move || fs.sync(&name)).await {
        Ok(r) => r,
        Err(e) => Err(std::io::Error::other(format!("sync task failed: {e}"))),
    }
}

#[cfg(madsim)]
async fn sync_file(fs: SharedFs, name: String) -> std::io::Result<()> {
    // The simulated disk takes time to sync, with slow outliers; what is
    // appended meanwhile is synced too, as on a real disk. No thread.
    tokio::time::sleep(crate::sim_hooks::flush_latency()).await;
    fs.sync(&name)
}
