//! Opening the WAL: replay every segment in order into the index. A torn
//! tail of the last segment (writes a crash interrupted, never
//! acknowledged) is cut off with a warning that says how many bytes; any
//! other damage, or a segment of another format version, is an error that
//! names the file (and the offset), and the node refuses to start.

use std::collections::BTreeSet;

use super::error::WalError;
use super::fs::SharedFs;
use super::handle::{create_segment, Inner, Wal, WalOptions};
use super::index::Index;
use super::record;
use super::segment::{self, ScanError, FORMAT_VERSION, HEADER_LEN};

/// Recovers the WAL in `fs` (`dir` names it in messages and logs) and
/// starts its sync task. Must run inside the runtime.
pub fn open(fs: SharedFs, dir: &str, options: WalOptions) -> Result<Wal, WalError> {
    let path = |name: &str| format!("{dir}/{name}");
    let listed = fs.list().map_err(|source| WalError::Io {
        file: dir.to_string(),
        source,
    })?;
    let mut ids = Vec::new();
    for name in listed {
        match segment::parse_name(&name) {
            Some(id) => ids.push(id),
            None => {
                tracing::warn!(file = %path(&name), "WAL: ignoring a file that is not a segment")
            }
        }
    }
    ids.sort_unstable();

    let mut index = Index::default();
    let mut segments = BTreeSet::new();
    let mut active_len = 0;
    for (i, &id) in ids.iter().enumerate() {
        let name = segment::name(id);
        let io = |source| WalError::Io {
            file: path(&name),
            source,
        };
        let len = fs.len(&name).map_err(io)?;
        let len = usize::try_from(len).map_err(|_| WalError::Corrupt {
            file: path(&name),
            offset: 0,
            reason: format!("{len} bytes is too large to read"),
        })?;
        let buf = fs.read_at(&name, 0, len).map_err(io)?;
        let last = i + 1 == ids.len();
        let scanned = segment::scan(&buf, last).map_err(|e| match e {
            ScanError::Corrupt { offset, reason } => WalError::Corrupt {
                file: path(&name),
                offset,
                reason,
            },
            ScanError::Version { found } => WalError::Version {
                file: path(&name),
                found,
                supported: FORMAT_VERSION,
            },
        })?;
        for (offset, r) in &scanned.records {
            index.apply(id, *offset, r);
        }
        if scanned.torn > 0 {
            tracing::warn!(
                file = %path(&name),
                offset = scanned.valid_len,
                bytes = scanned.torn,
                "WAL: cut off a torn tail of {} bytes at offset {} of {} (a write interrupted \
                 by a crash; it was never acknowledged)",
                scanned.torn,
                scanned.valid_len,
                path(&name),
            );
        }
        if scanned.valid_len < HEADER_LEN as u64 {
            // The newest segment was created, but its header never reached
            // the disk (possibly not a byte of it): it holds nothing.
            fs.remove(&name).map_err(io)?;
            continue;
        }
        if scanned.torn > 0 || scanned.spare > 0 {
            // Also the unused preallocated space: appends go on from the
            // last record, and the writer preallocates again.
            fs.truncate(&name, scanned.valid_len).map_err(io)?;
        }
        segments.insert(id);
        active_len = scanned.valid_len;
    }

    let (active, active_base) = match segments.last() {
        Some(&last) => (last, HEADER_LEN as u64),
        None => {
            let id = ids.last().copied().unwrap_or(1);
            let mut start = segment::header();
            start.extend(record::encode(&index.checkpoint()));
            create_segment(&fs, id, &start).map_err(|source| WalError::Io {
                file: path(&segment::name(id)),
                source,
            })?;
            segments.insert(id);
            active_len = start.len() as u64;
            (id, active_len)
        }
    };
    tracing::info!(
        dir,
        segments = segments.len(),
        shards = index.shards.len(),
        "WAL opened"
    );
    let inner = Inner {
        index,
        segments,
        active,
        active_len,
        active_alloc: active_len,
        active_base,
        failed: None,
    };
    Ok(Wal::start(fs, dir.to_string(), options, inner))
}
