//! The un-synced state of one regular file: the bytes written since its last fsync and its
//! length as the application sees it. Pure bookkeeping, no I/O of its own: reads take the
//! backing bytes through a callback, and [`PendingFile::persist`] is the only place that writes
//! the backing file. A power cut simply drops the value.
//!
//! Invariants: extents never overlap; every extent ends at or before `len`; backing bytes at or
//! past `base_visible` are hidden (a truncate cut them off, so they read as zeros until written).

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// Writes and size changes of one file that are not on the backing file yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingFile {
    /// Written bytes by offset.
    extents: BTreeMap<u64, Vec<u8>>,
    /// How many bytes of the backing file still show through (the smallest truncate since the
    /// last sync, or the backing length).
    base_visible: u64,
    /// The file's length as the application sees it.
    len: u64,
}

impl PendingFile {
    /// No pending change yet over a backing file of `backing_len` bytes.
    pub fn new(backing_len: u64) -> Self {
        Self {
            extents: BTreeMap::new(),
            base_visible: backing_len,
            len: backing_len,
        }
    }

    /// The length the application sees.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes held in memory (what a power cut would lose, size changes aside).
    pub fn unsynced_bytes(&self) -> u64 {
        self.extents.values().map(|d| d.len() as u64).sum()
    }

    /// Records a write of `data` at `offset`; later writes win over earlier ones.
    pub fn write(&mut self, offset: u64, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        let end = offset + data.len() as u64;
        // An extent that starts before `offset` and reaches into it keeps its head, and its
        // tail past `end` if it has one.
        let before = self
            .extents
            .range(..offset)
            .next_back()
            .map(|(&s, d)| (s, s + d.len() as u64));
        if let Some((s, e)) = before.filter(|&(_, e)| e > offset) {
            let mut head = self.extents.remove(&s).unwrap_or_default();
            if e > end {
                self.extents
                    .insert(end, head[(end - s) as usize..].to_vec());
            }
            head.truncate((offset - s) as usize);
            self.extents.insert(s, head);
        }
        // Extents that start inside [offset, end) go, but for a tail past `end`.
        let inside: Vec<u64> = self.extents.range(offset..end).map(|(&s, _)| s).collect();
        for s in inside {
            let old = self.extents.remove(&s).unwrap_or_default();
            let e = s + old.len() as u64;
            if e > end {
                self.extents.insert(end, old[(end - s) as usize..].to_vec());
            }
        }
        // Appends (the common case for logs) extend the previous extent instead of adding one.
        match self.extents.range_mut(..offset).next_back() {
            Some((&s, prev)) if s + prev.len() as u64 == offset => prev.extend_from_slice(data),
            _ => {
                self.extents.insert(offset, data.to_vec());
            }
        }
        self.len = self.len.max(end);
    }

    /// Records a truncate or extension to `new_len` (an extension reads as zeros).
    pub fn set_len(&mut self, new_len: u64) {
        let beyond: Vec<u64> = self.extents.range(new_len..).map(|(&s, _)| s).collect();
        for s in beyond {
            self.extents.remove(&s);
        }
        if let Some((&s, last)) = self.extents.range_mut(..new_len).next_back() {
            if s + last.len() as u64 > new_len {
                last.truncate((new_len - s) as usize);
            }
        }
        self.base_visible = self.base_visible.min(new_len);
        self.len = new_len;
    }

    /// Up to `size` bytes at `offset` as the application sees them. `base(offset, buf)` fills
    /// `buf` from the backing file.
    pub fn read(
        &self,
        offset: u64,
        size: u32,
        base: impl FnOnce(u64, &mut [u8]) -> io::Result<()>,
    ) -> io::Result<Vec<u8>> {
        if offset >= self.len || size == 0 {
            return Ok(Vec::new());
        }
        let end = self.len.min(offset + u64::from(size));
        let mut out = vec![0u8; (end - offset) as usize];
        let base_end = end.min(self.base_visible);
        if base_end > offset {
            base(offset, &mut out[..(base_end - offset) as usize])?;
        }
        let first = self.extents.range(..=offset).next_back();
        let rest = self.extents.range(offset + 1..end);
        for (&s, d) in first.into_iter().chain(rest) {
            let from = s.max(offset);
            let to = end.min(s + d.len() as u64);
            if from < to {
                out[(from - offset) as usize..(to - offset) as usize]
                    .copy_from_slice(&d[(from - s) as usize..(to - s) as usize]);
            }
        }
        Ok(out)
    }

    /// Writes the pending state to the backing file and fsyncs it.
    pub fn persist(&self, file: &File) -> io::Result<()> {
        if file.metadata()?.len() > self.base_visible {
            file.set_len(self.base_visible)?;
        }
        for (&s, d) in &self.extents {
            file.write_all_at(d, s)?;
        }
        file.set_len(self.len)?;
        file.sync_all()
    }
}

/// Fills `buf` from `file` at `offset`; bytes past the end of the file read as zeros.
pub fn read_backing(file: &File, offset: u64, buf: &mut [u8]) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf[done..].fill(0);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn read_all(p: &PendingFile, base: &[u8]) -> Vec<u8> {
        p.read(0, u32::MAX, |off, buf| {
            for (i, b) in buf.iter_mut().enumerate() {
                *b = base.get(off as usize + i).copied().unwrap_or(0);
            }
            Ok(())
        })
        .unwrap()
    }

    #[test]
    fn reads_see_writes_over_the_backing_bytes() {
        let base = b"0123456789".to_vec();
        let mut p = PendingFile::new(base.len() as u64);
        p.write(2, b"ab");
        p.write(12, b"xy");
        assert_eq!(read_all(&p, &base), b"01ab456789\0\0xy");
        assert_eq!(p.read(11, 2, |_, _| unreachable!()).unwrap(), b"\0x");
        assert_eq!(p.read(3, 0, |_, _| unreachable!()).unwrap(), b"");
    }

    #[test]
    fn a_truncate_hides_the_backing_bytes_past_it_even_after_regrowth() {
        let base = b"0123456789".to_vec();
        let mut p = PendingFile::new(10);
        p.set_len(3);
        p.write(6, b"z");
        assert_eq!(read_all(&p, &base), b"012\0\0\0z");
    }

    #[test]
    fn overlapping_writes_match_a_flat_buffer_model() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(8);
        for _ in 0..300 {
            let base: Vec<u8> = (0..rng.gen_range(0..40)).map(|_| rng.gen()).collect();
            let mut model = base.clone();
            let mut p = PendingFile::new(base.len() as u64);
            for _ in 0..rng.gen_range(1..20) {
                if rng.gen_bool(0.85) {
                    let off = rng.gen_range(0..50usize);
                    let data: Vec<u8> = (0..rng.gen_range(0..12)).map(|_| rng.gen()).collect();
                    if !data.is_empty() {
                        if model.len() < off + data.len() {
                            model.resize(off + data.len(), 0);
                        }
                        model[off..off + data.len()].copy_from_slice(&data);
                    }
                    p.write(off as u64, &data);
                } else {
                    let len = rng.gen_range(0..50usize);
                    model.resize(len, 0);
                    p.set_len(len as u64);
                }
                assert_eq!(read_all(&p, &base), model);
                assert_eq!(p.len(), model.len() as u64);
            }
        }
    }

    #[test]
    fn persist_makes_the_backing_file_what_reads_showed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"0123456789").unwrap();
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        let mut p = PendingFile::new(10);
        p.set_len(4);
        p.write(6, b"ab");
        p.persist(&file).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"0123\0\0ab");
    }
}
