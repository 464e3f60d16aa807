//! WAL records and their on-disk frame.
//!
//! ```text
//! frame:   len u32 | crc32 u32 | type u8 | payload (len bytes)      (little-endian)
//!          crc32 (IEEE, crc32fast) covers type and payload
//! payload: Entries    shard u64, first index u64, count u32, count × (len u32, bytes)
//!          Vote       shard u64, bytes
//!          Committed  shard u64, option
//!          Truncate   shard u64, from index u64
//!          Purge      shard u64, up-to index u64, bytes (the purged log id)
//!          Checkpoint count u32, count × (shard u64, vote option, committed option,
//!                     purged option of (index u64, bytes))
//! option:  0u8 | 1u8 len u32 bytes
//! ```
//! Payload bytes (entries, votes, log ids) are opaque here: the log store
//! encodes openraft's types; the WAL only needs shard ids and indexes.

use crate::storage::keys::ShardId;

/// Bytes of a frame before its payload.
pub const FRAME_HEADER: usize = 9;
/// A frame claiming a longer payload is corrupt, not large.
pub const MAX_PAYLOAD: usize = 1 << 30;

/// What the WAL must know of one shard to rebuild it without older segments.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ShardCheckpoint {
    pub shard: ShardId,
    pub vote: Option<Vec<u8>>,
    pub committed: Option<Vec<u8>>,
    pub purged: Option<(u64, Vec<u8>)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// Entries `first, first+1, ...` of a shard; replaces any entries of the
    /// shard from `first` on.
    Entries {
        shard: ShardId,
        first: u64,
        entries: Vec<Vec<u8>>,
    },
    Vote {
        shard: ShardId,
        vote: Vec<u8>,
    },
    Committed {
        shard: ShardId,
        committed: Option<Vec<u8>>,
    },
    /// Deletes the shard's entries from `from` on.
    Truncate {
        shard: ShardId,
        from: u64,
    },
    /// Drops everything of the shard: entries, vote, committed, purged.
    /// Written when its replica is removed from this node.
    Forget {
        shard: ShardId,
    },
    /// Deletes the shard's entries up to and including `upto`.
    Purge {
        shard: ShardId,
        upto: u64,
        log_id: Vec<u8>,
    },
    /// Every shard's vote, committed and purged as of the start of a segment.
    Checkpoint {
        shards: Vec<ShardCheckpoint>,
    },
}

const ENTRIES: u8 = 1;
const VOTE: u8 = 2;
const COMMITTED: u8 = 3;
const TRUNCATE: u8 = 4;
const PURGE: u8 = 5;
const CHECKPOINT: u8 = 6;
const FORGET: u8 = 7;

/// Offset of entry `i`'s bytes from the start of an Entries frame, given the
/// lengths of the entries before it.
pub fn entry_offsets(lens: impl IntoIterator<Item = usize>) -> Vec<u64> {
    let mut at = (FRAME_HEADER + 8 + 8 + 4) as u64;
    let mut out = Vec::new();
    for len in lens {
        out.push(at + 4);
        at += 4 + len as u64;
    }
    out
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

fn put_opt(out: &mut Vec<u8>, b: Option<&[u8]>) {
    match b {
        None => out.push(0),
        Some(b) => {
            out.push(1);
            put_bytes(out, b);
        }
    }
}

/// Encodes one record as a complete frame.
pub fn encode(r: &Record) -> Vec<u8> {
    let mut p = Vec::new();
    let kind = match r {
        Record::Entries {
            shard,
            first,
            entries,
        } => {
            p.extend_from_slice(&shard.to_le_bytes());
            p.extend_from_slice(&first.to_le_bytes());
            p.extend_from_slice(&(entries.len() as u32).to_le_bytes());
            for e in entries {
                put_bytes(&mut p, e);
            }
            ENTRIES
        }
        Record::Vote { shard, vote } => {
            p.extend_from_slice(&shard.to_le_bytes());
            put_bytes(&mut p, vote);
            VOTE
        }
        Record::Committed { shard, committed } => {
            p.extend_from_slice(&shard.to_le_bytes());
            put_opt(&mut p, committed.as_deref());
            COMMITTED
        }
        Record::Truncate { shard, from } => {
            p.extend_from_slice(&shard.to_le_bytes());
            p.extend_from_slice(&from.to_le_bytes());
            TRUNCATE
        }
        Record::Purge {
            shard,
            upto,
            log_id,
        } => {
            p.extend_from_slice(&shard.to_le_bytes());
            p.extend_from_slice(&upto.to_le_bytes());
            put_bytes(&mut p, log_id);
            PURGE
        }
        Record::Forget { shard } => {
            p.extend_from_slice(&shard.to_le_bytes());
            FORGET
        }
        Record::Checkpoint { shards } => {
            p.extend_from_slice(&(shards.len() as u32).to_le_bytes());
            for s in shards {
                p.extend_from_slice(&s.shard.to_le_bytes());
                put_opt(&mut p, s.vote.as_deref());
                put_opt(&mut p, s.committed.as_deref());
                match &s.purged {
                    None => p.push(0),
                    Some((i, b)) => {
                        p.push(1);
                        p.extend_from_slice(&i.to_le_bytes());
                        put_bytes(&mut p, b);
                    }
                }
            }
            CHECKPOINT
        }
    };
    let mut crc = crc32fast::Hasher::new();
    crc.update(&[kind]);
    crc.update(&p);
    let mut out = Vec::with_capacity(FRAME_HEADER + p.len());
    out.extend_from_slice(&(p.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    out.push(kind);
    out.extend_from_slice(&p);
    out
}

/// The outcome of reading one frame from a buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// A whole, valid record and the frame's length.
    Record(Record, usize),
    /// The buffer ends inside the frame.
    Incomplete,
    /// The frame is whole but wrong (checksum, type, payload).
    Bad(String),
}

/// Reads the frame at the start of `buf`.
pub fn decode(buf: &[u8]) -> Frame {
    let Some(header) = buf.get(..FRAME_HEADER) else {
        return Frame::Incomplete;
    };
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if len > MAX_PAYLOAD {
        return Frame::Bad(format!("record length {len} is implausible"));
    }
    let Some(body) = buf.get(FRAME_HEADER - 1..FRAME_HEADER + len) else {
        return Frame::Incomplete;
    };
    if crc32fast::hash(body) != crc {
        return Frame::Bad("checksum mismatch".into());
    }
    match parse(body[0], &body[1..]) {
        Some(r) => Frame::Record(r, FRAME_HEADER + len),
        None => Frame::Bad(format!("malformed record of type {}", body[0])),
    }
}

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = rest;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn bytes(&mut self) -> Option<Vec<u8>> {
        let n = self.u32()? as usize;
        Some(self.take(n)?.to_vec())
    }
    fn opt(&mut self) -> Option<Option<Vec<u8>>> {
        match self.u8()? {
            0 => Some(None),
            1 => Some(Some(self.bytes()?)),
            _ => None,
        }
    }
}

fn parse(kind: u8, payload: &[u8]) -> Option<Record> {
    let mut c = Cursor(payload);
    let r = match kind {
        ENTRIES => {
            let (shard, first, n) = (c.u64()?, c.u64()?, c.u32()?);
            // Indexes past u64::MAX are damage, not a log.
            first.checked_add(u64::from(n))?;
            let mut entries = Vec::new();
            for _ in 0..n {
                entries.push(c.bytes()?);
            }
            Record::Entries {
                shard,
                first,
                entries,
            }
        }
        VOTE => Record::Vote {
            shard: c.u64()?,
            vote: c.bytes()?,
        },
        COMMITTED => Record::Committed {
            shard: c.u64()?,
            committed: c.opt()?,
        },
        TRUNCATE => Record::Truncate {
            shard: c.u64()?,
            from: c.u64()?,
        },
        PURGE => Record::Purge {
            shard: c.u64()?,
            upto: c.u64()?,
            log_id: c.bytes()?,
        },
        FORGET => Record::Forget { shard: c.u64()? },
        CHECKPOINT => {
            let n = c.u32()?;
            let mut shards = Vec::new();
            for _ in 0..n {
                let shard = c.u64()?;
                let vote = c.opt()?;
                let committed = c.opt()?;
                let purged = match c.u8()? {
                    0 => None,
                    1 => Some((c.u64()?, c.bytes()?)),
                    _ => return None,
                };
                shards.push(ShardCheckpoint {
                    shard,
                    vote,
                    committed,
                    purged,
                });
            }
            Record::Checkpoint { shards }
        }
        _ => return None,
    };
    c.0.is_empty().then_some(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<Record> {
        vec![
            Record::Entries {
                shard: 3,
                first: 10,
                entries: vec![b"a".to_vec(), vec![], b"ccc".to_vec()],
            },
            Record::Vote {
                shard: 1,
                vote: b"v".to_vec(),
            },
            Record::Committed {
                shard: 1,
                committed: None,
            },
            Record::Committed {
                shard: 1,
                committed: Some(b"c".to_vec()),
            },
            Record::Truncate { shard: 2, from: 7 },
            Record::Purge {
                shard: 2,
                upto: 5,
                log_id: b"id".to_vec(),
            },
            Record::Forget { shard: 9 },
            Record::Checkpoint {
                shards: vec![
                    ShardCheckpoint {
                        shard: 1,
                        vote: Some(b"v".to_vec()),
                        committed: None,
                        purged: Some((4, b"p".to_vec())),
                    },
                    ShardCheckpoint::default(),
                ],
            },
        ]
    }

    #[test]
    fn every_record_round_trips() {
        for r in samples() {
            let frame = encode(&r);
            assert_eq!(decode(&frame), Frame::Record(r, frame.len()));
        }
    }

    #[test]
    fn entry_offsets_point_at_the_entry_bytes() {
        let entries = vec![b"first".to_vec(), b"".to_vec(), b"third!".to_vec()];
        let frame = encode(&Record::Entries {
            shard: 1,
            first: 1,
            entries: entries.clone(),
        });
        let offsets = entry_offsets(entries.iter().map(Vec::len));
        for (e, at) in entries.iter().zip(offsets) {
            assert_eq!(&frame[at as usize..at as usize + e.len()], &e[..]);
        }
    }

    #[test]
    fn a_cut_frame_is_incomplete_and_a_flipped_bit_is_bad() {
        for r in samples() {
            let frame = encode(&r);
            for cut in 0..frame.len() {
                assert_eq!(decode(&frame[..cut]), Frame::Incomplete, "cut at {cut}");
            }
            for at in 4..frame.len() {
                let mut bad = frame.clone();
                bad[at] ^= 0x10;
                assert!(
                    matches!(decode(&bad), Frame::Bad(_)),
                    "flip at {at} of {r:?}"
                );
            }
        }
    }

    #[test]
    fn entries_whose_indexes_would_pass_u64_max_are_bad() {
        let entries = |first: u64| Record::Entries {
            shard: 1,
            first,
            entries: vec![b"a".to_vec(), b"b".to_vec()],
        };
        let fits = encode(&entries(u64::MAX - 2));
        assert!(matches!(decode(&fits), Frame::Record(..)));
        let overflows = encode(&entries(u64::MAX - 1));
        assert!(matches!(decode(&overflows), Frame::Bad(_)));
    }
}
