//! Segment files: their names, their header (magic and format version),
//! and reading one back at recovery, where a damaged record is either a
//! torn tail (the last segment's unsynced end; cut off) or corruption
//! (anywhere else; the node refuses to start).
//!
//! ```text
//! segment: "ATOLLWAL" | format version u32 LE | 0u32 | frames...
//! name:    {id:016x}.wal, ids increasing; every segment after the first
//!          begins with a Checkpoint record
//! ```

use super::record::{self, Frame, Record};

pub const MAGIC: &[u8; 8] = b"ATOLLWAL";
/// The WAL format this binary reads and writes.
pub const FORMAT_VERSION: u32 = 1;
pub const HEADER_LEN: usize = 16;
const SUFFIX: &str = ".wal";

pub fn name(id: u64) -> String {
    format!("{id:016x}{SUFFIX}")
}

/// The id of a segment file name, `None` for other files.
pub fn parse_name(name: &str) -> Option<u64> {
    let hex = name.strip_suffix(SUFFIX)?;
    if hex.len() != 16 {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

pub fn header() -> Vec<u8> {
    let mut h = Vec::with_capacity(HEADER_LEN);
    h.extend_from_slice(MAGIC);
    h.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    h.extend_from_slice(&0u32.to_le_bytes());
    h
}

/// A segment as read back.
#[derive(Debug, Default)]
pub struct Scanned {
    /// Each valid record with the offset of its frame.
    pub records: Vec<(u64, Record)>,
    /// Bytes that hold the header and valid records.
    pub valid_len: u64,
    /// Bytes after `valid_len` that are a torn tail (only in the last segment).
    pub torn: u64,
    /// Zero bytes after `valid_len`: space the WAL preallocated and never
    /// wrote (only in the last segment; not damage).
    pub spare: u64,
}

/// Why a segment cannot be used.
#[derive(Debug, PartialEq, Eq)]
pub enum ScanError {
    Corrupt { offset: u64, reason: String },
    Version { found: u32 },
}

/// Reads a whole segment. In the `last` segment, damage that reaches the
/// end of the file is a torn tail: the records before it are kept and the
/// rest is reported in `torn`. Anything else damaged is corruption.
pub fn scan(buf: &[u8], last: bool) -> Result<Scanned, ScanError> {
    if buf.len() < HEADER_LEN {
        if last && MAGIC.starts_with(&buf[..buf.len().min(MAGIC.len())]) {
            // Created but its header never made it to disk.
            return Ok(Scanned {
                torn: buf.len() as u64,
                ..Scanned::default()
            });
        }
        return Err(ScanError::Corrupt {
            offset: 0,
            reason: format!("{} bytes, shorter than a segment header", buf.len()),
        });
    }
    if &buf[..8] != MAGIC {
        return Err(ScanError::Corrupt {
            offset: 0,
            reason: "not an Atoll WAL segment (bad magic)".into(),
        });
    }
    let found = u32::from_le_bytes([buf[8], buf[9], buf[10], buf[11]]);
    if found != FORMAT_VERSION {
        return Err(ScanError::Version { found });
    }
    let mut out = Scanned::default();
    let mut at = HEADER_LEN;
    while at < buf.len() {
        let damage = match record::decode(&buf[at..]) {
            Frame::Record(r, len) => {
                out.records.push((at as u64, r));
                at += len;
                continue;
            }
            Frame::Incomplete => "the file ends inside a record".to_string(),
            Frame::Bad(reason) => reason,
        };
        if last && buf[at..].iter().all(|&b| b == 0) {
            out.valid_len = at as u64;
            out.spare = (buf.len() - at) as u64;
            return Ok(out);
        }
        if last && is_torn_tail(&buf[at..]) && !length_field_damaged(&buf[at..]) {
            out.valid_len = at as u64;
            out.torn = (buf.len() - at) as u64;
            return Ok(out);
        }
        return Err(ScanError::Corrupt {
            offset: at as u64,
            reason: damage,
        });
    }
    out.valid_len = at as u64;
    Ok(out)
}

/// Whether damage starting at `rest[0]` looks like an interrupted last
/// write rather than corruption: the frame runs past the end of the file,
/// or everything from it on is zero (space allocated, data never written),
/// or the damaged frame reaches the end of the file and holds a zeroed
/// 512-byte block (a sector that never made it, as etcd's WAL checks), or
/// its own last byte is still zero and only zeros (or nothing) follow it
/// (a write into preallocated space of which only a prefix made it).
fn is_torn_tail(rest: &[u8]) -> bool {
    if rest.iter().all(|&b| b == 0) {
        return true;
    }
    let Some(len) = rest.get(..4) else {
        return true;
    };
    let claimed = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
    let frame_end = record::FRAME_HEADER.saturating_add(claimed);
    if frame_end > rest.len() {
        return true;
    }
    if rest[frame_end - 1] == 0 && rest[frame_end..].iter().all(|&b| b == 0) {
        return true;
    }
    frame_end == rest.len()
        && rest
            .chunks(512)
            .any(|c| c.len() == 512 && c.iter().all(|&b| b == 0))
}

/// Whether the damaged frame at `rest[0]` is a whole, checksummed record
/// under a damaged length field: for some other length its checksum
/// matches and what follows is the next valid record or unwritten zeros.
/// A torn write cannot leave that: its length field is either written
/// (then the frame is whole at that length) or still zero, and its
/// payload is cut short. A bit flip in the length can: without this
/// check one that pointed past the end of the file passed for a torn tail
/// and every record after it, synced and acknowledged, was cut off. The
/// checksum covers type and payload, not the length, so each length is
/// tried (linear in the rest of the segment; it runs only on damage, at
/// recovery).
fn length_field_damaged(rest: &[u8]) -> bool {
    let Some(header) = rest.get(..record::FRAME_HEADER) else {
        return false;
    };
    let stored_crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    let claimed = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let mut crc = crc32fast::Hasher::new();
    crc.update(&rest[8..record::FRAME_HEADER]); // the type byte
    let payload = &rest[record::FRAME_HEADER..];
    for len in 0..=payload.len().min(record::MAX_PAYLOAD) {
        if len > 0 {
            crc.update(&payload[len - 1..len]);
        }
        if len == claimed || crc.clone().finalize() != stored_crc {
            continue;
        }
        // The checksum matches at `len`: a whole record if it decodes, and
        // not a chance match if the next frame is valid or all is zero.
        let mut frame = (len as u32).to_le_bytes().to_vec();
        frame.extend_from_slice(&rest[4..record::FRAME_HEADER + len]);
        let after = &rest[record::FRAME_HEADER + len..];
        if matches!(record::decode(&frame), record::Frame::Record(..))
            && (after.iter().all(|&b| b == 0)
                || matches!(record::decode(after), record::Frame::Record(..)))
        {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(records: &[Record]) -> Vec<u8> {
        let mut buf = header();
        for r in records {
            buf.extend(record::encode(r));
        }
        buf
    }

    fn vote(shard: u64) -> Record {
        Record::Vote {
            shard,
            vote: vec![7; 20],
        }
    }

    #[test]
    fn names_round_trip_and_sort_by_id() {
        assert_eq!(parse_name(&name(0x1f)), Some(0x1f));
        assert!(name(9) < name(10));
        assert_eq!(parse_name("LOCK"), None);
    }

    #[test]
    fn a_cut_last_record_is_a_torn_tail_of_the_last_segment_only() {
        let whole = segment(&[vote(1), vote(2)]);
        let cut = &whole[..whole.len() - 3];
        let s = scan(cut, true).expect("torn tail is not an error");
        assert_eq!(s.records.len(), 1);
        assert_eq!(s.valid_len + s.torn, cut.len() as u64);
        match scan(cut, false) {
            Err(ScanError::Corrupt { offset, .. }) => assert_eq!(offset, s.valid_len),
            other => panic!("expected corruption, got {other:?}"),
        }
    }

    #[test]
    fn a_bad_record_followed_by_others_is_corruption_even_at_the_end() {
        let mut buf = segment(&[vote(1), vote(2), vote(3)]);
        let second = HEADER_LEN + record::encode(&vote(1)).len();
        buf[second + 12] ^= 0xff;
        assert_eq!(
            scan(&buf, true).err(),
            Some(ScanError::Corrupt {
                offset: second as u64,
                reason: "checksum mismatch".into()
            })
        );
    }

    #[test]
    fn a_damaged_length_is_corruption_even_when_it_points_past_the_end() {
        let records = [vote(1), vote(2), vote(3)];
        let second = HEADER_LEN + record::encode(&vote(1)).len();
        for zeros_after in [0, 100] {
            for bit in [12, 20, 31] {
                let mut buf = segment(&records);
                buf.extend(vec![0u8; zeros_after]);
                buf[second + bit / 8] ^= 1 << (bit % 8);
                assert!(
                    matches!(
                        scan(&buf, true),
                        Err(ScanError::Corrupt { offset, .. }) if offset == second as u64
                    ),
                    "bit {bit}, {zeros_after} zeros after: {:?}",
                    scan(&buf, true)
                );
            }
        }
        // The last record's length damaged, nothing after it: still whole
        // at its true length, so corruption, not a torn tail.
        let mut buf = segment(&records);
        let third = second + record::encode(&vote(2)).len();
        buf[third + 2] ^= 0x10;
        buf.extend([0u8; 64]);
        assert!(scan(&buf, true).is_err());
    }

    #[test]
    fn another_format_version_is_refused() {
        let mut buf = segment(&[]);
        buf[8] = 9;
        assert_eq!(
            scan(&buf, true).err(),
            Some(ScanError::Version { found: 9 })
        );
    }

    #[test]
    fn zeroes_after_the_last_record_are_spare_space() {
        let mut buf = segment(&[vote(1)]);
        let valid = buf.len();
        buf.extend([0u8; 100]);
        let s = scan(&buf, true).expect("zero tail is spare space");
        assert_eq!((s.valid_len, s.torn, s.spare), (valid as u64, 0, 100));
        assert!(matches!(
            scan(&buf, false),
            Err(ScanError::Corrupt { offset, .. }) if offset == valid as u64
        ));
    }

    #[test]
    fn a_record_cut_short_in_preallocated_space_is_a_torn_tail() {
        let mut buf = segment(&[vote(1)]);
        let valid = buf.len();
        let next = record::encode(&vote(2));
        buf.extend(&next[..next.len() - 3]);
        buf.extend([0u8; 100]);
        let s = scan(&buf, true).expect("torn");
        assert_eq!(
            (s.valid_len, s.torn),
            (valid as u64, (buf.len() - valid) as u64)
        );
        // The same damage with data after it is corruption.
        let mut damaged = buf.clone();
        let last = damaged.len() - 1;
        damaged[last] = 7;
        assert!(matches!(
            scan(&damaged, true),
            Err(ScanError::Corrupt { offset, .. }) if offset == valid as u64
        ));
        // And so is a whole record with a flipped bit whose last byte is
        // not zero, zeros after it or not.
        let mut flipped = segment(&[vote(1), vote(2)]);
        flipped[valid + 10] ^= 1;
        flipped.extend([0u8; 100]);
        assert!(scan(&flipped, true).is_err());
    }
}
