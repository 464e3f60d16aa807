//! The WAL's file seam: the few file operations the log needs, on the
//! segment files of one directory, and the production implementation over
//! `std::fs`.
//!
//! Durability contract (what [`super::SimFs`] simulates): bytes written to
//! a file are durable only after a later [`WalFs::sync`] of that file
//! returns; [`WalFs::create`], [`WalFs::truncate`] and [`WalFs::remove`]
//! are durable when they return (the real implementation fsyncs the file
//! and the directory).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The segment files of one directory. Names are plain file names.
pub trait WalFs: Send + Sync + 'static {
    /// Names of the files in the directory, in no particular order.
    fn list(&self) -> io::Result<Vec<String>>;
    /// Creates an empty file (an error if it exists); durable on return.
    fn create(&self, name: &str) -> io::Result<()>;
    /// Writes `data` at `offset`, in place or past the end (not durable
    /// until `sync`).
    fn write_at(&self, name: &str, offset: u64, data: &[u8]) -> io::Result<()>;
    /// Makes every byte written to `name` before this call durable.
    fn sync(&self, name: &str) -> io::Result<()>;
    /// Current length of the file, synced or not.
    fn len(&self, name: &str) -> io::Result<u64>;
    /// Reads exactly `len` bytes at `offset`.
    fn read_at(&self, name: &str, offset: u64, len: usize) -> io::Result<Vec<u8>>;
    /// Shortens the file to `len` bytes; durable on return.
    fn truncate(&self, name: &str, len: u64) -> io::Result<()>;
    /// Deletes the file; durable on return.
    fn remove(&self, name: &str) -> io::Result<()>;
}

pub type SharedFs = Arc<dyn WalFs>;

/// Segment files in a real directory. `sync` is `fdatasync`; creating,
/// truncating and removing a file also fsync the directory.
pub struct RealFs {
    dir: PathBuf,
    open: Mutex<HashMap<String, Arc<File>>>,
}

impl RealFs {
    /// Uses `dir`, creating it (and its parents) if needed.
    pub fn open(dir: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        File::open(dir)?.sync_all()?;
        Ok(Self {
            dir: dir.to_path_buf(),
            open: Mutex::new(HashMap::new()),
        })
    }

    fn handles(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<File>>> {
        // The map only caches handles; a panic elsewhere cannot corrupt it.
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn file(&self, name: &str) -> io::Result<Arc<File>> {
        if let Some(f) = self.handles().get(name) {
            return Ok(f.clone());
        }
        let f = Arc::new(
            OpenOptions::new()
                .read(true)
                .write(true)
                .open(self.dir.join(name))?,
        );
        self.handles().insert(name.to_string(), f.clone());
        Ok(f)
    }

    fn sync_dir(&self) -> io::Result<()> {
        File::open(&self.dir)?.sync_all()
    }
}

impl WalFs for RealFs {
    fn list(&self) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                names.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        Ok(names)
    }

    fn create(&self, name: &str) -> io::Result<()> {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(self.dir.join(name))?;
        f.sync_all()?;
        self.sync_dir()?;
        self.handles().insert(name.to_string(), Arc::new(f));
        Ok(())
    }

    fn write_at(&self, name: &str, offset: u64, data: &[u8]) -> io::Result<()> {
        self.file(name)?.write_all_at(data, offset)
    }

    fn sync(&self, name: &str) -> io::Result<()> {
        self.file(name)?.sync_data()
    }

    fn len(&self, name: &str) -> io::Result<u64> {
        Ok(self.file(name)?.metadata()?.len())
    }

    fn read_at(&self, name: &str, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let mut buf = vec![0; len];
        self.file(name)?.read_exact_at(&mut buf, offset)?;
        Ok(buf)
    }

    fn truncate(&self, name: &str, len: u64) -> io::Result<()> {
        let f = self.file(name)?;
        f.set_len(len)?;
        f.sync_all()
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        self.handles().remove(name);
        std::fs::remove_file(self.dir.join(name))?;
        self.sync_dir()
    }
}
