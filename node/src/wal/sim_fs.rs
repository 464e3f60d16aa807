//! The simulated file seam: segment files in memory that keep what was
//! synced apart from what was not. [`SimFs::crash`] is a power loss: each
//! file keeps its synced content plus a random prefix of the writes made
//! since, in order, the last of them possibly cut short (a torn write); a
//! write in place over preallocated zeros that is lost leaves the zeros.
//! It counts syncs, so tests can see group commit.
//!
//! It outlives the simulated node that uses it, as a disk does.

use std::collections::BTreeMap;
use std::io;
use std::sync::Mutex;

use rand::{Rng, RngCore};

use super::fs::WalFs;

#[derive(Default, Clone)]
struct SimFile {
    /// What reads see.
    data: Vec<u8>,
    /// What a power loss keeps for sure: the content at the last sync.
    durable: Vec<u8>,
    /// Writes since the last sync, in order: (offset, bytes).
    pending: Vec<(usize, Vec<u8>)>,
}

fn write_into(buf: &mut Vec<u8>, offset: usize, bytes: &[u8]) {
    let end = offset + bytes.len();
    if buf.len() < end {
        buf.resize(end, 0);
    }
    buf[offset..end].copy_from_slice(bytes);
}

impl SimFile {
    fn sync(&mut self) {
        for (offset, bytes) in std::mem::take(&mut self.pending) {
            write_into(&mut self.durable, offset, &bytes);
        }
    }
}

#[derive(Default)]
struct State {
    files: BTreeMap<String, SimFile>,
    syncs: u64,
    failing_syncs: bool,
    /// Outside the simulation: how long each `sync` blocks its caller (the
    /// WAL's sync thread), as a real disk does.
    #[cfg(not(madsim))]
    sync_delay: std::time::Duration,
}

/// In-memory segment files with simulated power loss.
#[derive(Default)]
pub struct SimFs {
    state: Mutex<State>,
}

fn not_found(name: &str) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("no file {name}"))
}

impl SimFs {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Every mutation is a single step on the map; a poisoned lock
        // cannot expose a half-done one.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Power loss, drawing the torn tails from the simulation's RNG (from
    /// the thread RNG outside the simulation).
    pub fn crash(&self) {
        #[cfg(madsim)]
        let mut rng = madsim::rand::thread_rng();
        #[cfg(not(madsim))]
        let mut rng = rand::thread_rng();
        self.crash_with(&mut rng);
    }

    /// Power loss: every file keeps its synced content and a random prefix
    /// (possibly empty, possibly all) of the bytes written since, in the
    /// order they were written.
    pub fn crash_with(&self, rng: &mut dyn RngCore) {
        let mut s = self.lock();
        for f in s.files.values_mut() {
            let unsynced: usize = f.pending.iter().map(|(_, b)| b.len()).sum();
            let mut keep = if unsynced == 0 {
                0
            } else {
                rng.gen_range(0..=unsynced)
            };
            for (offset, bytes) in std::mem::take(&mut f.pending) {
                let n = keep.min(bytes.len());
                write_into(&mut f.durable, offset, &bytes[..n]);
                keep -= n;
            }
            f.data = f.durable.clone();
        }
    }

    /// A lost disk: every file is gone.
    pub fn wipe(&self) {
        *self.lock() = State::default();
    }

    /// Number of `sync` calls so far.
    pub fn syncs(&self) -> u64 {
        self.lock().syncs
    }

    /// Makes every later `sync` fail with an I/O error (a dying disk), or
    /// work again.
    pub fn fail_syncs(&self, fail: bool) {
        self.lock().failing_syncs = fail;
    }

    /// Makes every later `sync` take `delay` of wall-clock time (tests of
    /// group commit outside the simulation; the simulation delays syncs in
    /// the WAL's sync task instead).
    #[cfg(not(madsim))]
    pub fn set_sync_delay(&self, delay: std::time::Duration) {
        self.lock().sync_delay = delay;
    }

    /// Overwrites bytes of a file in place, synced (for corruption tests).
    pub fn corrupt(&self, name: &str, offset: usize, bytes: &[u8]) -> io::Result<()> {
        let mut s = self.lock();
        let f = s.files.get_mut(name).ok_or_else(|| not_found(name))?;
        let end = offset + bytes.len();
        if end > f.data.len() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "past the end"));
        }
        f.data[offset..end].copy_from_slice(bytes);
        f.sync();
        write_into(&mut f.durable, offset, bytes);
        Ok(())
    }
}

impl WalFs for SimFs {
    fn list(&self) -> io::Result<Vec<String>> {
        Ok(self.lock().files.keys().cloned().collect())
    }

    fn create(&self, name: &str) -> io::Result<()> {
        let mut s = self.lock();
        if s.files.contains_key(name) {
            return Err(io::Error::new(io::ErrorKind::AlreadyExists, name));
        }
        s.files.insert(name.to_string(), SimFile::default());
        Ok(())
    }

    fn write_at(&self, name: &str, offset: u64, data: &[u8]) -> io::Result<()> {
        let mut s = self.lock();
        let f = s.files.get_mut(name).ok_or_else(|| not_found(name))?;
        let offset = usize::try_from(offset).map_err(|_| io::ErrorKind::InvalidInput)?;
        write_into(&mut f.data, offset, data);
        f.pending.push((offset, data.to_vec()));
        Ok(())
    }

    fn sync(&self, name: &str) -> io::Result<()> {
        #[cfg(not(madsim))]
        {
            let delay = self.lock().sync_delay;
            if !delay.is_zero() {
                std::thread::sleep(delay);
            }
        }
        let mut s = self.lock();
        s.syncs += 1;
        if s.failing_syncs {
            return Err(io::Error::other("simulated EIO on fdatasync"));
        }
        let f = s.files.get_mut(name).ok_or_else(|| not_found(name))?;
        f.sync();
        Ok(())
    }

    fn len(&self, name: &str) -> io::Result<u64> {
        let s = self.lock();
        let f = s.files.get(name).ok_or_else(|| not_found(name))?;
        Ok(f.data.len() as u64)
    }

    fn read_at(&self, name: &str, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let s = self.lock();
        let f = s.files.get(name).ok_or_else(|| not_found(name))?;
        let start = usize::try_from(offset).map_err(|_| io::ErrorKind::UnexpectedEof)?;
        f.data
            .get(start..start.saturating_add(len))
            .map(<[u8]>::to_vec)
            .ok_or_else(|| io::ErrorKind::UnexpectedEof.into())
    }

    fn truncate(&self, name: &str, len: u64) -> io::Result<()> {
        let mut s = self.lock();
        let f = s.files.get_mut(name).ok_or_else(|| not_found(name))?;
        let len = usize::try_from(len).map_err(|_| io::ErrorKind::InvalidInput)?;
        f.data.truncate(len);
        // The real truncate fsyncs the file: all that is left is durable.
        f.pending.clear();
        f.durable = f.data.clone();
        Ok(())
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        self.lock()
            .files
            .remove(name)
            .map(|_| ())
            .ok_or_else(|| not_found(name))
    }
}
