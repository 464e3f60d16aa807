//! A power-loss filesystem in the manner of LazyFS: a FUSE layer over a backing directory that
//! keeps every write to a regular file in memory until that file is fsync'ed, and drops all of
//! it on command ("the power goes"). Run a node's data dir on it, kill the node, cut the power,
//! restart the node on the same layer: it sees exactly what it had synced. Decision record:
//! docs/decisions/0013-power-loss-layer.md.
//!
//! - [`pending`]: the un-synced state of one file (byte ranges and length), pure bookkeeping.
//! - `fs`: the filesystem's state (paths by inode, pending files, open handles) and its
//!   operations on the backing directory; `fuse`: the FUSE requests mapped onto them
//!   ([`fuser`], mounted with mount(2) as root, no libfuse).
//! - [`LazyMount`]: mounts the layer in this process, cuts the power, unmounts (also on drop).
//!   The `lazyfs` binary wraps it for the shell: SIGUSR1 cuts the power, SIGTERM unmounts.
//!
//! ```no_run
//! # fn main() -> std::io::Result<()> {
//! use std::io::Write;
//! use atoll_jepsen::lazyfs::LazyMount;
//!
//! let layer = LazyMount::mount("/tmp/backing".as_ref(), "/tmp/mnt".as_ref())?;
//! let mut f = std::fs::File::create("/tmp/mnt/log")?;
//! f.write_all(b"synced")?;
//! f.sync_all()?;
//! f.write_all(b" lost")?;
//! drop(f);
//! assert_eq!(layer.cut_power().bytes, 5);
//! assert_eq!(std::fs::read("/tmp/mnt/log")?, b"synced");
//! layer.unmount()
//! # }
//! ```

mod fs;
mod fuse;
pub mod pending;

use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, PoisonError};

use fuser::{BackgroundSession, Config, MountOption};

/// How much un-synced state a layer holds (or a power cut dropped).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Unsynced {
    /// Files with un-synced writes or size changes.
    pub files: usize,
    /// Un-synced bytes written.
    pub bytes: u64,
}

/// A mounted layer. Dropping it unmounts; if the mount is busy it is detached lazily.
pub struct LazyMount {
    session: Option<BackgroundSession>,
    state: Arc<Mutex<fs::State>>,
    mountpoint: PathBuf,
}

impl LazyMount {
    /// Mounts a layer over `backing` at `mountpoint` (both existing directories), served by a
    /// thread of this process. Fails if FUSE cannot be mounted here (no /dev/fuse, no
    /// CAP_SYS_ADMIN and no fusermount3).
    pub fn mount(backing: &Path, mountpoint: &Path) -> io::Result<LazyMount> {
        let fs = fs::LazyFs::new(backing)?;
        let state = fs.state();
        let mut config = Config::default();
        config.mount_options = vec![
            MountOption::FSName("lazyfs".into()),
            MountOption::Subtype("lazyfs".into()),
            MountOption::NoAtime,
        ];
        let session = fuser::spawn_mount(fs, mountpoint, &config)?;
        Ok(LazyMount {
            session: Some(session),
            state,
            mountpoint: mountpoint.to_path_buf(),
        })
    }

    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// What a power cut would drop now.
    pub fn unsynced(&self) -> Unsynced {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .unsynced()
    }

    /// fsync/fdatasync calls on files so far, and how many of them found un-synced state.
    pub fn fsyncs(&self) -> (u64, u64) {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .syncs()
    }

    /// The power goes: every un-synced write and size change is dropped; the layer keeps
    /// serving the files as they were last synced. Returns what was dropped.
    pub fn cut_power(&self) -> Unsynced {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .cut_power()
    }

    /// Unmounts and waits for the serving thread. Un-synced state is dropped, as at power loss.
    pub fn unmount(mut self) -> io::Result<()> {
        self.unmount_now()
    }

    fn unmount_now(&mut self) -> io::Result<()> {
        match self.session.take() {
            Some(session) => session.umount_and_join(),
            None => Ok(()),
        }
    }
}

impl Drop for LazyMount {
    fn drop(&mut self) {
        if self.unmount_now().is_err() {
            // Busy (a process still has a file open): detach it so no mount is left behind.
            let _ = Command::new("umount")
                .arg("-l")
                .arg(&self.mountpoint)
                .status();
        }
    }
}
