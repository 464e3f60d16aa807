//! The layer's state and its operations on the backing directory, one method per request
//! (`fuse.rs` maps FUSE requests onto them). It mirrors the backing directory, but the data and
//! sizes of regular files change only in memory ([`PendingFile`]) until that file is fsync'ed;
//! close and flush do not persist. Metadata (create, mknod, mkdir, rename, unlink, rmdir, chmod,
//! chown) goes to the backing directory at once, as LazyFS does by default (docs/decisions/0013).
//!
//! Inode numbers are the backing files' own (the backing root's swapped with 1, FUSE's root), so
//! pending state keyed by inode follows a file through renames. Every open is `direct_io` and
//! the kernel caches no attribute or entry: after a power cut nothing stale is served.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::fs::{DirBuilderExt, DirEntryExt, FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, UNIX_EPOCH};

use fuser::{Errno, FileAttr, FileHandle, FileType, INodeNo, RenameFlags, ReplyDirectory};

use super::pending::{read_backing, PendingFile};
use super::Unsynced;

const S_IFMT: u32 = 0o170_000;
const S_IFREG: u32 = 0o100_000;

/// What the filesystem holds in memory, shared with the [`super::LazyMount`] handle.
#[derive(Default)]
pub(crate) struct State {
    /// FUSE inode → path relative to the backing directory (empty for the root).
    paths: HashMap<u64, PathBuf>,
    /// Un-synced changes, by FUSE inode.
    pending: HashMap<u64, PendingFile>,
    /// Open file handles: the inode and the backing file.
    handles: HashMap<u64, (u64, Arc<File>)>,
    next_fh: u64,
    /// fsync/fdatasync calls on files, and how many of them had un-synced state to write.
    syncs: (u64, u64),
}

impl State {
    pub(crate) fn unsynced(&self) -> Unsynced {
        Unsynced {
            files: self.pending.len(),
            bytes: self.pending.values().map(PendingFile::unsynced_bytes).sum(),
        }
    }

    pub(crate) fn syncs(&self) -> (u64, u64) {
        self.syncs
    }

    /// The power goes: every un-synced change is gone.
    pub(crate) fn cut_power(&mut self) -> Unsynced {
        let lost = self.unsynced();
        self.pending.clear();
        lost
    }

    fn rel(&self, ino: INodeNo) -> Result<PathBuf, Errno> {
        self.paths.get(&ino.0).cloned().ok_or(Errno::ENOENT)
    }

    fn file(&self, fh: FileHandle) -> Result<Arc<File>, Errno> {
        self.handles
            .get(&fh.0)
            .map(|(_, f)| f.clone())
            .ok_or(Errno::EBADF)
    }

    fn open_handle(&mut self, ino: u64, file: File) -> FileHandle {
        self.next_fh += 1;
        self.handles.insert(self.next_fh, (ino, Arc::new(file)));
        FileHandle(self.next_fh)
    }

    /// Forgets the un-synced state of a file whose last link went, unless it is still open.
    fn unlinked(&mut self, ino: u64) {
        self.paths.remove(&ino);
        if !self.handles.values().any(|(i, _)| *i == ino) {
            self.pending.remove(&ino);
        }
    }

    fn pending_for(&mut self, ino: u64, file: &File) -> io::Result<&mut PendingFile> {
        Ok(match self.pending.entry(ino) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => e.insert(PendingFile::new(file.metadata()?.len())),
        })
    }
}

pub(crate) struct LazyFs {
    backing: PathBuf,
    root_ino: u64,
    state: Arc<Mutex<State>>,
}

impl LazyFs {
    pub(crate) fn new(backing: &Path) -> io::Result<Self> {
        let backing = backing.canonicalize()?;
        let root_ino = fs::metadata(&backing)?.ino();
        let mut state = State::default();
        state.paths.insert(INodeNo::ROOT.0, PathBuf::new());
        Ok(Self {
            backing,
            root_ino,
            state: Arc::new(Mutex::new(state)),
        })
    }

    pub(crate) fn state(&self) -> Arc<Mutex<State>> {
        self.state.clone()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Backing inode ↔ FUSE inode (an involution: the backing root and 1 swap places).
    fn fuse_ino(&self, ino: u64) -> u64 {
        if ino == self.root_ino {
            INodeNo::ROOT.0
        } else if ino == INodeNo::ROOT.0 {
            self.root_ino
        } else {
            ino
        }
    }

    fn attr(&self, st: &State, md: &fs::Metadata) -> FileAttr {
        let ino = self.fuse_ino(md.ino());
        let size = st.pending.get(&ino).map_or(md.len(), PendingFile::len);
        let time = |secs: i64, nsecs: i64| {
            UNIX_EPOCH + Duration::new(secs.max(0) as u64, nsecs.clamp(0, 999_999_999) as u32)
        };
        FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: time(md.atime(), md.atime_nsec()),
            mtime: time(md.mtime(), md.mtime_nsec()),
            ctime: time(md.ctime(), md.ctime_nsec()),
            crtime: UNIX_EPOCH,
            kind: kind(md.file_type()),
            perm: (md.mode() & 0o7777) as u16,
            nlink: md.nlink() as u32,
            uid: md.uid(),
            gid: md.gid(),
            rdev: md.rdev() as u32,
            blksize: 4096,
            flags: 0,
        }
    }

    /// Looks `rel` up on the backing directory and remembers its inode's path.
    fn entry(&self, st: &mut State, rel: PathBuf) -> Result<FileAttr, Errno> {
        let md = fs::symlink_metadata(self.backing.join(&rel))?;
        st.paths.insert(self.fuse_ino(md.ino()), rel);
        Ok(self.attr(st, &md))
    }

    pub(super) fn do_lookup(&self, parent: INodeNo, name: &OsStr) -> Result<FileAttr, Errno> {
        let mut st = self.lock();
        let rel = st.rel(parent)?.join(name);
        self.entry(&mut st, rel)
    }

    pub(super) fn do_mkdir(
        &self,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
    ) -> Result<FileAttr, Errno> {
        let mut st = self.lock();
        let rel = st.rel(parent)?.join(name);
        fs::DirBuilder::new()
            .mode(mode & 0o7777)
            .create(self.backing.join(&rel))?;
        self.entry(&mut st, rel)
    }

    /// Regular files only (what `mknod` is used for by `open(O_CREAT)` without `create`).
    pub(super) fn do_mknod(
        &self,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
    ) -> Result<FileAttr, Errno> {
        if mode & S_IFMT != S_IFREG {
            return Err(Errno::EPERM);
        }
        let (attr, fh) = self.do_create(parent, name, mode)?;
        self.do_release(fh);
        Ok(attr)
    }

    pub(super) fn do_release(&self, fh: FileHandle) {
        self.lock().handles.remove(&fh.0);
    }

    pub(super) fn do_getattr(
        &self,
        ino: INodeNo,
        fh: Option<FileHandle>,
    ) -> Result<FileAttr, Errno> {
        let st = self.lock();
        let md = match fh.and_then(|fh| st.file(fh).ok()) {
            Some(file) => file.metadata()?,
            None => fs::symlink_metadata(self.backing.join(st.rel(ino)?))?,
        };
        Ok(self.attr(&st, &md))
    }

    pub(super) fn do_setattr(
        &self,
        ino: INodeNo,
        mode: Option<u32>,
        owner: (Option<u32>, Option<u32>),
        size: Option<u64>,
        fh: Option<FileHandle>,
    ) -> Result<FileAttr, Errno> {
        let mut st = self.lock();
        let path = self.backing.join(st.rel(ino)?);
        if let Some(mode) = mode {
            fs::set_permissions(&path, fs::Permissions::from_mode(mode & 0o7777))?;
        }
        if owner.0.is_some() || owner.1.is_some() {
            std::os::unix::fs::chown(&path, owner.0, owner.1)?;
        }
        if let Some(size) = size {
            let file = match fh.and_then(|fh| st.file(fh).ok()) {
                Some(file) => file,
                None => Arc::new(File::open(&path)?),
            };
            if !file.metadata()?.is_file() {
                return Err(Errno::EISDIR);
            }
            st.pending_for(ino.0, &file)?.set_len(size);
        }
        drop(st);
        // Times are not kept: nothing here depends on them.
        self.do_getattr(ino, fh)
    }

    pub(super) fn do_create(
        &self,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
    ) -> Result<(FileAttr, FileHandle), Errno> {
        let mut st = self.lock();
        let rel = st.rel(parent)?.join(name);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(mode & 0o7777)
            .open(self.backing.join(&rel))?;
        let md = file.metadata()?;
        let ino = self.fuse_ino(md.ino());
        // A recycled inode number must not inherit a deleted file's state.
        st.pending.remove(&ino);
        st.paths.insert(ino, rel);
        let attr = self.attr(&st, &md);
        Ok((attr, st.open_handle(ino, file)))
    }

    pub(super) fn do_unlink(&self, parent: INodeNo, name: &OsStr, dir: bool) -> Result<(), Errno> {
        let mut st = self.lock();
        let path = self.backing.join(st.rel(parent)?.join(name));
        let md = fs::symlink_metadata(&path)?;
        if dir {
            fs::remove_dir(&path)?;
        } else {
            fs::remove_file(&path)?;
        }
        if dir || md.nlink() <= 1 {
            st.unlinked(self.fuse_ino(md.ino()));
        }
        Ok(())
    }

    pub(super) fn do_rename(
        &self,
        from: (INodeNo, &OsStr),
        to: (INodeNo, &OsStr),
        flags: RenameFlags,
    ) -> Result<(), Errno> {
        if !flags.is_empty() {
            return Err(Errno::EINVAL);
        }
        let mut st = self.lock();
        let from_rel = st.rel(from.0)?.join(from.1);
        let to_rel = st.rel(to.0)?.join(to.1);
        let replaced = fs::symlink_metadata(self.backing.join(&to_rel)).ok();
        fs::rename(self.backing.join(&from_rel), self.backing.join(&to_rel))?;
        if let Some(md) = replaced.filter(|md| md.is_dir() || md.nlink() <= 1) {
            st.unlinked(self.fuse_ino(md.ino()));
        }
        for path in st.paths.values_mut() {
            if let Ok(rest) = path.strip_prefix(&from_rel) {
                *path = if rest.as_os_str().is_empty() {
                    to_rel.clone()
                } else {
                    to_rel.join(rest)
                };
            }
        }
        Ok(())
    }

    pub(super) fn do_open(&self, ino: INodeNo) -> Result<FileHandle, Errno> {
        let mut st = self.lock();
        let path = self.backing.join(st.rel(ino)?);
        // The caller's flags are not passed on: O_TRUNC comes as a setattr (kept pending), and
        // O_APPEND would make the backing pwrite ignore its offset.
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .or_else(|_| File::open(&path))?;
        Ok(st.open_handle(ino.0, file))
    }

    pub(super) fn do_read(
        &self,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
    ) -> Result<Vec<u8>, Errno> {
        let st = self.lock();
        let file = st.file(fh)?;
        let base = |off, buf: &mut [u8]| read_backing(&file, off, buf);
        let data = match st.pending.get(&ino.0) {
            Some(p) => p.read(offset, size, base)?,
            None => PendingFile::new(file.metadata()?.len()).read(offset, size, base)?,
        };
        Ok(data)
    }

    pub(super) fn do_write(
        &self,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
    ) -> Result<(), Errno> {
        let mut st = self.lock();
        let file = st.file(fh)?;
        st.pending_for(ino.0, &file)?.write(offset, data);
        Ok(())
    }

    pub(super) fn do_fsync(&self, ino: INodeNo, fh: FileHandle) -> Result<(), Errno> {
        let mut st = self.lock();
        let file = st.file(fh)?;
        st.syncs.0 += 1;
        match st.pending.remove(&ino.0) {
            Some(p) => {
                st.syncs.1 += 1;
                p.persist(&file)?
            }
            None => file.sync_all()?,
        }
        Ok(())
    }

    pub(super) fn do_readdir(
        &self,
        ino: INodeNo,
        offset: u64,
        reply: &mut ReplyDirectory,
    ) -> Result<(), Errno> {
        let st = self.lock();
        let path = self.backing.join(st.rel(ino)?);
        let mut entries = vec![
            (ino.0, FileType::Directory, OsStr::new(".").to_owned()),
            (ino.0, FileType::Directory, OsStr::new("..").to_owned()),
        ];
        for e in fs::read_dir(&path)? {
            let e = e?;
            entries.push((self.fuse_ino(e.ino()), kind(e.file_type()?), e.file_name()));
        }
        for (i, (ino, kind, name)) in entries.into_iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(ino), i as u64 + 1, kind, name) {
                break;
            }
        }
        Ok(())
    }

    pub(super) fn do_fsyncdir(&self, ino: INodeNo) -> Result<(), Errno> {
        let rel = self.lock().rel(ino)?;
        File::open(self.backing.join(rel))?.sync_all()?;
        Ok(())
    }

    pub(super) fn do_fallocate(
        &self,
        ino: INodeNo,
        fh: FileHandle,
        end: u64,
        mode: i32,
    ) -> Result<(), Errno> {
        if mode != 0 {
            return Err(Errno::EOPNOTSUPP);
        }
        let mut st = self.lock();
        let file = st.file(fh)?;
        let pending = st.pending_for(ino.0, &file)?;
        if pending.len() < end {
            pending.set_len(end);
        }
        Ok(())
    }
}

fn kind(t: fs::FileType) -> FileType {
    if t.is_dir() {
        FileType::Directory
    } else if t.is_symlink() {
        FileType::Symlink
    } else if t.is_fifo() {
        FileType::NamedPipe
    } else if t.is_socket() {
        FileType::Socket
    } else if t.is_char_device() {
        FileType::CharDevice
    } else if t.is_block_device() {
        FileType::BlockDevice
    } else {
        FileType::RegularFile
    }
}
