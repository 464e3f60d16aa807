//! Where snapshots live: files under `<data-dir>/snapshots/` on a real
//! node, byte buffers kept in the engine in the simulation (which has no
//! file system). Either way openraft sees a [`SnapshotBuf`], read and
//! written in chunks, never loaded whole.
//!
//! A file is written to `*.tmp`, synced, renamed to its final name and the
//! directory synced, so a snapshot file either exists complete or not at all.

use std::io::{Cursor, Read, Write};
use std::pin::Pin;
use std::task::{Context, Poll};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncSeek, AsyncWrite, ReadBuf};

use super::snapshot::SnapshotError;

/// openraft's snapshot data: a file, or bytes in memory.
pub enum SnapshotBuf {
    Memory(Cursor<Vec<u8>>),
    #[cfg(not(madsim))]
    File {
        file: tokio::fs::File,
        path: std::path::PathBuf,
    },
}

impl AsyncRead for SnapshotBuf {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            SnapshotBuf::Memory(c) => Pin::new(c).poll_read(cx, buf),
            #[cfg(not(madsim))]
            SnapshotBuf::File { file, .. } => Pin::new(file).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for SnapshotBuf {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            SnapshotBuf::Memory(c) => Pin::new(c).poll_write(cx, buf),
            #[cfg(not(madsim))]
            SnapshotBuf::File { file, .. } => Pin::new(file).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            SnapshotBuf::Memory(c) => Pin::new(c).poll_flush(cx),
            #[cfg(not(madsim))]
            SnapshotBuf::File { file, .. } => Pin::new(file).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            SnapshotBuf::Memory(c) => Pin::new(c).poll_shutdown(cx),
            #[cfg(not(madsim))]
            SnapshotBuf::File { file, .. } => Pin::new(file).poll_shutdown(cx),
        }
    }
}

impl AsyncSeek for SnapshotBuf {
    fn start_seek(self: Pin<&mut Self>, position: std::io::SeekFrom) -> std::io::Result<()> {
        match self.get_mut() {
            SnapshotBuf::Memory(c) => Pin::new(c).start_seek(position),
            #[cfg(not(madsim))]
            SnapshotBuf::File { file, .. } => Pin::new(file).start_seek(position),
        }
    }

    fn poll_complete(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<u64>> {
        match self.get_mut() {
            SnapshotBuf::Memory(c) => Pin::new(c).poll_complete(cx),
            #[cfg(not(madsim))]
            SnapshotBuf::File { file, .. } => Pin::new(file).poll_complete(cx),
        }
    }
}

/// A kept snapshot, as the engine records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum StoredSnapshot {
    /// The whole snapshot (simulation).
    Bytes(#[serde(with = "serde_bytes")] Vec<u8>),
    /// A file name in the snapshot directory.
    File(String),
}

/// The snapshot directory of a node (or memory, in the simulation).
#[derive(Clone, Debug)]
pub enum SnapshotStore {
    Memory,
    #[cfg(not(madsim))]
    Dir(std::sync::Arc<std::path::PathBuf>),
}

type Fill = Box<dyn FnOnce(&mut dyn Write) -> Result<(), SnapshotError> + Send>;

impl SnapshotStore {
    /// The store in `dir`, created if needed; leftovers of interrupted
    /// writes (`*.tmp`) are removed.
    #[cfg(not(madsim))]
    pub fn open_dir(dir: std::path::PathBuf) -> std::io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "tmp") {
                std::fs::remove_file(&path)?;
            }
        }
        Ok(SnapshotStore::Dir(std::sync::Arc::new(dir)))
    }

    /// Writes a snapshot named `name` with `fill` (which may block: on a
    /// real node it runs off the async workers) and keeps it.
    pub async fn build(&self, name: &str, fill: Fill) -> Result<StoredSnapshot, SnapshotError> {
        #[cfg(madsim)]
        let _ = name;
        match self {
            SnapshotStore::Memory => {
                #[cfg(madsim)]
                tokio::time::sleep(crate::sim_hooks::snapshot_build_delay()).await;
                let mut bytes = Vec::new();
                fill(&mut bytes)?;
                Ok(StoredSnapshot::Bytes(bytes))
            }
            #[cfg(not(madsim))]
            SnapshotStore::Dir(dir) => {
                let dir = dir.clone();
                let name = format!("{name}.snap");
                // A thread of its own at the background priority: no request
                // waits for a snapshot, and the replicas of a shard building
                // theirs took the CPU from writes (docs/benchmarks.md).
                crate::background::run("atoll-snapshot", move || {
                    let tmp = dir.join(format!("{name}.tmp"));
                    let file = std::fs::File::create(&tmp)?;
                    let mut out =
                        std::io::BufWriter::with_capacity(1 << 20, WrittenBack::new(file));
                    fill(&mut out)?;
                    let file = out.into_inner().map_err(|e| e.into_error())?.file;
                    file.sync_all()?;
                    publish(&dir, &tmp, &name)?;
                    Ok(StoredSnapshot::File(name))
                })
                .await
                .unwrap_or_else(|| {
                    Err(SnapshotError::Io(std::io::Error::other(
                        "the snapshot thread could not start or panicked",
                    )))
                })
            }
        }
    }

    /// An empty buffer to receive a snapshot into.
    pub async fn begin_receive(&self) -> std::io::Result<SnapshotBuf> {
        match self {
            SnapshotStore::Memory => Ok(SnapshotBuf::Memory(Cursor::new(Vec::new()))),
            #[cfg(not(madsim))]
            SnapshotStore::Dir(dir) => {
                let n = RECEIVED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let path = dir.join(format!("received-{}-{n}.tmp", std::process::id()));
                let file = tokio::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .open(&path)
                    .await?;
                Ok(SnapshotBuf::File { file, path })
            }
        }
    }

    /// Keeps a received snapshot under `name`, durably.
    pub async fn keep_received(
        &self,
        buf: SnapshotBuf,
        name: &str,
    ) -> std::io::Result<StoredSnapshot> {
        #[cfg(madsim)]
        let _ = name;
        match buf {
            SnapshotBuf::Memory(c) => Ok(StoredSnapshot::Bytes(c.into_inner())),
            #[cfg(not(madsim))]
            SnapshotBuf::File { file, path } => {
                let SnapshotStore::Dir(dir) = self else {
                    return Err(std::io::Error::other("a snapshot file in a memory store"));
                };
                file.sync_all().await?;
                drop(file);
                let (dir, name) = (dir.clone(), format!("{name}.snap"));
                tokio::task::spawn_blocking(move || {
                    publish(&dir, &path, &name)?;
                    Ok(StoredSnapshot::File(name))
                })
                .await
                .map_err(std::io::Error::other)?
            }
        }
    }

    /// A kept snapshot, for openraft to send.
    pub async fn open(&self, stored: &StoredSnapshot) -> std::io::Result<SnapshotBuf> {
        match (self, stored) {
            (_, StoredSnapshot::Bytes(b)) => Ok(SnapshotBuf::Memory(Cursor::new(b.clone()))),
            #[cfg(not(madsim))]
            (SnapshotStore::Dir(dir), StoredSnapshot::File(name)) => {
                let path = dir.join(name);
                let file = tokio::fs::File::open(&path).await?;
                Ok(SnapshotBuf::File { file, path })
            }
            (_, StoredSnapshot::File(name)) => Err(missing(name)),
        }
    }

    /// A blocking reader of a kept snapshot (for installing it).
    pub fn reader(&self, stored: &StoredSnapshot) -> std::io::Result<Box<dyn Read + Send>> {
        match (self, stored) {
            (_, StoredSnapshot::Bytes(b)) => Ok(Box::new(Cursor::new(b.clone()))),
            #[cfg(not(madsim))]
            (SnapshotStore::Dir(dir), StoredSnapshot::File(name)) => {
                let file = std::fs::File::open(dir.join(name))?;
                Ok(Box::new(std::io::BufReader::with_capacity(1 << 20, file)))
            }
            (_, StoredSnapshot::File(name)) => Err(missing(name)),
        }
    }

    /// Forgets a kept snapshot that nothing refers to any more.
    pub fn remove(&self, stored: &StoredSnapshot) {
        match (self, stored) {
            #[cfg(not(madsim))]
            (SnapshotStore::Dir(dir), StoredSnapshot::File(name)) => {
                if let Err(e) = std::fs::remove_file(dir.join(name)) {
                    if e.kind() != std::io::ErrorKind::NotFound {
                        tracing::warn!(file = %name, "cannot remove an old snapshot: {e}");
                    }
                }
            }
            _ => {}
        }
    }
}

fn missing(name: &str) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::NotFound,
        format!("snapshot file {name} is kept in a directory this node does not have"),
    )
}

#[cfg(not(madsim))]
static RECEIVED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A snapshot file whose pages are handed to the disk every
/// [`WRITE_BACK_EVERY`] bytes (`sync_file_range`, which starts the
/// writeback and does not wait), so that the `fsync` at the end has little
/// left, instead of a ~30 MB burst that queued ahead of the WAL's
/// `fdatasync` (as RocksDB's `bytes_per_sync`). Durability still comes from
/// that `fsync`.
#[cfg(not(madsim))]
struct WrittenBack {
    file: std::fs::File,
    written: u64,
    handed: u64,
}

#[cfg(not(madsim))]
const WRITE_BACK_EVERY: u64 = 1 << 20;

#[cfg(not(madsim))]
impl WrittenBack {
    fn new(file: std::fs::File) -> Self {
        Self {
            file,
            written: 0,
            handed: 0,
        }
    }
}

#[cfg(not(madsim))]
impl Write for WrittenBack {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.written += n as u64;
        if self.written - self.handed >= WRITE_BACK_EVERY {
            #[cfg(target_os = "linux")]
            {
                use std::os::fd::AsRawFd;
                // SAFETY: a valid descriptor and a range of the file; the
                // call only starts writeback. A failure is not an error:
                // the final fsync writes whatever is left.
                unsafe {
                    libc::sync_file_range(
                        self.file.as_raw_fd(),
                        self.handed as libc::off64_t,
                        (self.written - self.handed) as libc::off64_t,
                        libc::SYNC_FILE_RANGE_WRITE,
                    );
                }
            }
            self.handed = self.written;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// Renames a synced temporary file to its final name and syncs the
/// directory, so the name is durable.
#[cfg(not(madsim))]
fn publish(dir: &std::path::Path, tmp: &std::path::Path, name: &str) -> std::io::Result<()> {
    std::fs::rename(tmp, dir.join(name))?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(all(test, not(madsim)))]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn files_are_built_received_opened_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("left-over.tmp"), b"x").unwrap();
        let store = SnapshotStore::open_dir(dir.path().to_path_buf()).unwrap();
        assert!(!dir.path().join("left-over.tmp").exists());

        let built = store
            .build("a", Box::new(|w| Ok(w.write_all(b"hello")?)))
            .await
            .unwrap();
        assert_eq!(built, StoredSnapshot::File("a.snap".into()));
        let mut buf = store.open(&built).await.unwrap();
        buf.seek(std::io::SeekFrom::Start(1)).await.unwrap();
        let mut s = String::new();
        buf.read_to_string(&mut s).await.unwrap();
        assert_eq!(s, "ello");

        let mut rx = store.begin_receive().await.unwrap();
        rx.write_all(b"chunk1").await.unwrap();
        rx.write_all(b"chunk2").await.unwrap();
        let kept = store.keep_received(rx, "b").await.unwrap();
        let mut text = String::new();
        store
            .reader(&kept)
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "chunk1chunk2");
        store.remove(&built);
        assert!(store.open(&built).await.is_err());
    }
}
