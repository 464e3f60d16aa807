//! The snapshot format: a shard's range, its dedup sessions and every
//! key-value pair in its range, written and read as a stream so neither side
//! ever holds the shard's data in memory.
//!
//! ```text
//! magic "ATOLLSNP" | u32 format version | u32 header length | header (bincode)
//! { u32 key length | key | u32 value length | value }*
//! u32 0xFFFF_FFFF (end) | u32 crc32 of everything before it
//! ```
//!
//! The header is the shard descriptor and its sessions table. Keys are user
//! keys, ascending. The writer reads the engine in chunks; the reader hands
//! out chunks of a bounded size, and checks the checksum at the end.

use std::io::{Read, Write};

use serde::{Deserialize, Serialize};

use super::dedup::SessionsSnapshot;
use crate::codec;
use crate::config::MAX_KEY_BYTES_LIMIT;
use crate::shard::meta::ShardMeta;
use crate::storage::engine::{EngineError, Kv, ReadView};
use crate::storage::keys;

const MAGIC: &[u8; 8] = b"ATOLLSNP";
/// The snapshot format this binary writes. It also reads format 2 (no PD
/// state in the header).
pub const FORMAT_VERSION: u32 = 3;
const FORMAT_VERSION_NO_PD: u32 = 2;
const END: u32 = u32::MAX;
/// Engine rows read per call while writing.
const READ_CHUNK: usize = 1024;
/// Largest key or value a snapshot may carry (a corrupt length must not
/// make the reader allocate gigabytes).
const MAX_ITEM: u32 = 64 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub shard: ShardMeta,
    /// The dedup table, including the next session id.
    pub sessions: SessionsSnapshot,
    /// The placement driver's state, in a snapshot of the PD group.
    pub pd: Option<atoll_pd::state::PdState>,
}

/// The header of format 2.
#[derive(Deserialize)]
struct HeaderNoPd {
    shard: ShardMeta,
    sessions: SessionsSnapshot,
}

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("snapshot i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("reading the shard for a snapshot: {0}")]
    Engine(#[from] EngineError),
    #[error("not an Atoll snapshot (bad magic)")]
    BadMagic,
    #[error("snapshot format {found}, but this binary reads format {FORMAT_VERSION}")]
    Version { found: u32 },
    #[error("corrupt snapshot: {0}")]
    Corrupt(String),
}

/// A writer that keeps a running checksum.
struct Summed<W> {
    inner: W,
    crc: crc32fast::Hasher,
}

impl<W: Write> Summed<W> {
    fn put(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.crc.update(bytes);
        self.inner.write_all(bytes)
    }

    fn put_u32(&mut self, v: u32) -> std::io::Result<()> {
        self.put(&v.to_be_bytes())
    }
}

fn len32(what: &str, n: usize) -> Result<u32, SnapshotError> {
    u32::try_from(n)
        .ok()
        .filter(|n| *n <= MAX_ITEM)
        .ok_or_else(|| SnapshotError::Corrupt(format!("{what} of {n} bytes is too large")))
}

/// Writes the snapshot of `header.shard` from `view` (taken at the
/// snapshot's index, so applies may go on meanwhile) to `out`.
pub fn write<W: Write>(out: W, view: &dyn ReadView, header: &Header) -> Result<W, SnapshotError> {
    let mut w = Summed {
        inner: out,
        crc: crc32fast::Hasher::new(),
    };
    w.put(MAGIC)?;
    w.put_u32(FORMAT_VERSION)?;
    let head = codec::encode("snapshot header", header)
        .map_err(|e| SnapshotError::Corrupt(e.to_string()))?;
    w.put_u32(len32("snapshot header", head.len())?)?;
    w.put(&head)?;
    let (mut cursor, hi) = keys::data_range(&header.shard.start, header.shard.end.as_deref());
    loop {
        let rows = view.scan(&cursor, &hi, READ_CHUNK)?;
        let done = rows.len() < READ_CHUNK;
        for (k, v) in &rows {
            let key = keys::user_key(k);
            w.put_u32(len32("key", key.len())?)?;
            w.put(key)?;
            w.put_u32(len32("value", v.len())?)?;
            w.put(v)?;
        }
        match rows.last() {
            Some((last, _)) if !done => {
                cursor.clone_from(last);
                cursor.push(0);
            }
            _ => break,
        }
    }
    w.put_u32(END)?;
    let crc = w.crc.clone().finalize();
    w.inner.write_all(&crc.to_be_bytes())?;
    w.inner.flush()?;
    Ok(w.inner)
}

/// The shard descriptor in a snapshot's first bytes (its first chunk on the
/// wire), if they hold the whole header. The receiving node checks it
/// before the transfer goes on (`service::raft`).
pub fn peek_shard(first: &[u8]) -> Option<ShardMeta> {
    Reader::open(first).ok().map(|(header, _)| header.shard)
}

/// Reads a snapshot written by [`write`], and checks what it reads: every
/// key fits the storage engine and lies in the header's shard range.
pub struct Reader<R> {
    inner: R,
    crc: crc32fast::Hasher,
    finished: bool,
    /// The header's shard range, that every key must lie in.
    range: ShardMeta,
}

/// Reads the whole snapshot in `source` (in bounded memory) and checks it:
/// format, header, the checksum at its end, and every key's length and
/// range. A replica runs this on a received snapshot before it deletes
/// anything of its own, so a corrupt or truncated file is refused whole.
pub fn verify(source: impl Read) -> Result<Header, SnapshotError> {
    let (header, mut reader) = Reader::open(source)?;
    while !reader.next_chunk(VERIFY_CHUNK_BYTES)?.is_empty() {}
    Ok(header)
}

/// Key + value bytes held at a time by [`verify`].
const VERIFY_CHUNK_BYTES: usize = 4 * 1024 * 1024;

/// `Err(Corrupt)` for a key longer than any key Atoll stores.
fn check_key_len(what: &str, len: usize) -> Result<(), SnapshotError> {
    if len > MAX_KEY_BYTES_LIMIT {
        return Err(SnapshotError::Corrupt(format!(
            "{what} of {len} bytes; keys are at most {MAX_KEY_BYTES_LIMIT} bytes"
        )));
    }
    Ok(())
}

impl<R: Read> Reader<R> {
    /// Checks the magic and version and reads the header.
    pub fn open(inner: R) -> Result<(Header, Self), SnapshotError> {
        let mut r = Reader {
            inner,
            crc: crc32fast::Hasher::new(),
            finished: false,
            range: ShardMeta::whole_keyspace(0),
        };
        let mut magic = [0u8; 8];
        r.take(&mut magic)?;
        if &magic != MAGIC {
            return Err(SnapshotError::BadMagic);
        }
        let version = r.take_u32()?;
        if version != FORMAT_VERSION && version != FORMAT_VERSION_NO_PD {
            return Err(SnapshotError::Version { found: version });
        }
        let len = r.take_u32()?;
        let head = r.take_vec(len)?;
        let corrupt = |e: crate::codec::DecodeError| SnapshotError::Corrupt(e.to_string());
        let header = if version == FORMAT_VERSION_NO_PD {
            let old: HeaderNoPd = codec::decode("snapshot header", &head).map_err(corrupt)?;
            Header {
                shard: old.shard,
                sessions: old.sessions,
                pd: None,
            }
        } else {
            codec::decode("snapshot header", &head).map_err(corrupt)?
        };
        check_key_len("a shard start", header.shard.start.len())?;
        check_key_len("a shard end", header.shard.end.as_ref().map_or(0, Vec::len))?;
        r.range = header.shard.clone();
        Ok((header, r))
    }

    fn take(&mut self, buf: &mut [u8]) -> Result<(), SnapshotError> {
        self.inner.read_exact(buf).map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => {
                SnapshotError::Corrupt("snapshot ends early (truncated)".into())
            }
            _ => SnapshotError::Io(e),
        })?;
        self.crc.update(buf);
        Ok(())
    }

    fn take_u32(&mut self) -> Result<u32, SnapshotError> {
        let mut b = [0u8; 4];
        self.take(&mut b)?;
        Ok(u32::from_be_bytes(b))
    }

    fn take_vec(&mut self, len: u32) -> Result<Vec<u8>, SnapshotError> {
        if len > MAX_ITEM {
            return Err(SnapshotError::Corrupt(format!("item of {len} bytes")));
        }
        let mut v = vec![0u8; len as usize];
        self.take(&mut v)?;
        Ok(v)
    }

    /// The next pairs, about `max_bytes` of them (at least one); empty at
    /// the end, once the checksum has been verified.
    pub fn next_chunk(&mut self, max_bytes: usize) -> Result<Vec<Kv>, SnapshotError> {
        let mut out = Vec::new();
        let mut bytes = 0usize;
        while !self.finished && (out.is_empty() || bytes < max_bytes) {
            let klen = self.take_u32()?;
            if klen == END {
                let expected = self.crc.clone().finalize();
                let mut b = [0u8; 4];
                self.inner.read_exact(&mut b)?;
                if u32::from_be_bytes(b) != expected {
                    return Err(SnapshotError::Corrupt("checksum mismatch".into()));
                }
                self.finished = true;
                break;
            }
            check_key_len("a key", klen as usize)?;
            let key = self.take_vec(klen)?;
            if !self.range.contains(&key) {
                return Err(SnapshotError::Corrupt(format!(
                    "key {} outside the snapshot's shard {} [{}, {})",
                    crate::error::show(&key),
                    self.range.id,
                    crate::error::show(&self.range.start),
                    self.range
                        .end
                        .as_deref()
                        .map_or("+inf".into(), crate::error::show),
                )));
            }
            let vlen = self.take_u32()?;
            let value = self.take_vec(vlen)?;
            bytes += key.len() + value.len();
            out.push((key, value));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::state_machine::dedup::SessionsSnapshot;
    use crate::storage::engine::{SharedEngine, WriteBatch};
    use crate::storage::MemoryEngine;

    /// A view of every key of `engine`.
    fn whole(engine: &SharedEngine) -> crate::storage::engine::SharedView {
        engine.read_view(&[], &[0xff; 16]).unwrap()
    }

    fn engine_with(n: usize) -> SharedEngine {
        let e = MemoryEngine::new();
        let mut b = WriteBatch::new();
        for i in 0..n {
            b.put(
                keys::data(format!("k{i:05}").as_bytes()),
                vec![i as u8; 100],
            );
        }
        // Outside the shard below: must not be in the snapshot.
        b.put(keys::data(b"zzz"), b"x".to_vec());
        crate::storage::engine::Engine::write(&e, b).unwrap();
        Arc::new(e)
    }

    fn header() -> Header {
        let mut shard = ShardMeta::whole_keyspace(3);
        shard.end = Some(b"z".to_vec());
        Header {
            shard,
            sessions: SessionsSnapshot {
                next_id: 7,
                sessions: Vec::new(),
            },
            pd: None,
        }
    }

    #[test]
    fn a_format_2_snapshot_without_pd_state_is_still_read() {
        #[derive(Serialize)]
        struct Old {
            shard: ShardMeta,
            sessions: SessionsSnapshot,
        }
        let h = header();
        let head = codec::encode(
            "old header",
            &Old {
                shard: h.shard.clone(),
                sessions: h.sessions.clone(),
            },
        )
        .expect("encode");
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&FORMAT_VERSION_NO_PD.to_be_bytes());
        bytes.extend_from_slice(&(head.len() as u32).to_be_bytes());
        bytes.extend_from_slice(&head);
        bytes.extend_from_slice(&END.to_be_bytes());
        let crc = crc32fast::hash(&bytes);
        bytes.extend_from_slice(&crc.to_be_bytes());
        let (read, rows) = read_all(&bytes).expect("a format-2 snapshot reads");
        assert_eq!(read, h);
        assert!(rows.is_empty());
    }

    fn read_all(bytes: &[u8]) -> Result<(Header, Vec<Kv>), SnapshotError> {
        let (h, mut r) = Reader::open(bytes)?;
        let mut all = Vec::new();
        loop {
            let chunk = r.next_chunk(10_000)?;
            if chunk.is_empty() {
                return Ok((h, all));
            }
            assert!(chunk.len() <= 100, "a chunk is bounded by bytes");
            all.extend(chunk);
        }
    }

    #[test]
    fn a_snapshot_round_trips_in_bounded_chunks() {
        let engine = engine_with(2500);
        let bytes = write(Vec::new(), &*whole(&engine), &header()).unwrap();
        let (h, all) = read_all(&bytes).unwrap();
        assert_eq!(h, header());
        assert_eq!(all.len(), 2500);
        assert_eq!(all[0].0, b"k00000");
        assert_eq!(all[2499].1, vec![(2499 % 256) as u8; 100]);
    }

    #[test]
    fn truncation_corruption_and_other_versions_are_refused() {
        let engine = engine_with(10);
        let bytes = write(Vec::new(), &*whole(&engine), &header()).unwrap();
        let cut = &bytes[..bytes.len() - 7];
        assert!(matches!(read_all(cut), Err(SnapshotError::Corrupt(_))));
        let mut flipped = bytes.clone();
        let at = flipped.len() - 20;
        flipped[at] ^= 0xFF;
        assert!(matches!(read_all(&flipped), Err(SnapshotError::Corrupt(_))));
        let mut other = bytes.clone();
        other[11] = 9;
        assert!(matches!(
            read_all(&other),
            Err(SnapshotError::Version { found: 9 })
        ));
        assert!(matches!(
            read_all(b"garbage!garbage!"),
            Err(SnapshotError::BadMagic)
        ));
    }

    /// The header's length field is at bytes 12..16; the first record
    /// follows the header.
    fn first_record_at(bytes: &[u8]) -> usize {
        16 + u32::from_be_bytes(bytes[12..16].try_into().unwrap()) as usize
    }

    #[test]
    fn verify_reads_it_all_and_refuses_bad_keys_before_the_checksum() {
        let engine = engine_with(10);
        let bytes = write(Vec::new(), &*whole(&engine), &header()).unwrap();
        assert_eq!(verify(bytes.as_slice()).unwrap(), header());
        // A flipped bit near the end: only the checksum can tell.
        let mut flipped = bytes.clone();
        let at = flipped.len() - 20;
        flipped[at] ^= 0x01;
        let e = verify(flipped.as_slice()).unwrap_err().to_string();
        assert!(e.contains("checksum mismatch"), "{e}");
        // A key length no key has (but under the item limit).
        let mut long = bytes.clone();
        let at = first_record_at(&long);
        long[at..at + 4].copy_from_slice(&0x00FF_FFFFu32.to_be_bytes());
        let e = verify(long.as_slice()).unwrap_err().to_string();
        assert!(e.contains("a key of 16777215 bytes"), "{e}");
        // The same records under a narrower shard: its keys are outside.
        let mut narrow = header();
        narrow.shard.end = Some(b"k00005".to_vec());
        let other = write(Vec::new(), &*whole(&engine_with(0)), &narrow).unwrap();
        let spliced = [
            &other[..first_record_at(&other)],
            &bytes[first_record_at(&bytes)..],
        ]
        .concat();
        let e = verify(spliced.as_slice()).unwrap_err().to_string();
        assert!(
            e.contains("key \"k00005\" outside the snapshot's shard 3"),
            "{e}"
        );
    }
}
