//! Node clocks moved with libfaketime (Debian `libfaketime`): a node started with the
//! library in `LD_PRELOAD` reads its time offset from a file of its own
//! ([`FakeClock::jump`] rewrites it; the library reads it again at most a second later).
//! `FAKETIME_DONT_FAKE_MONOTONIC=0` makes the offset apply to `CLOCK_MONOTONIC` too, the
//! clock behind tokio's timers and so behind every Raft timeout of the node: a jump fires
//! the node's timers at once, as after a stall of the machine (a paused VM). Clocks only
//! jump forward: `CLOCK_MONOTONIC` never goes back on Linux, and openraft asserts it (the
//! first clock soak also moved clocks back, at the end of each window, and openraft's
//! `UTime::touch` debug assertion "expect now >= utime" stopped the Raft core of every node
//! within 30 s). So the offsets grow over a run, and the nodes' wall clocks drift apart
//! (skew) as well as jump. The nemesis checks each jump through the node's `Status`
//! answer (its `now_ms`).

use std::path::{Path, PathBuf};

use super::ControlError;

/// Where Debian installs the library (multiarch directories).
const LIBRARY_DIRS: [&str; 3] = [
    "/usr/lib/x86_64-linux-gnu/faketime",
    "/usr/lib/aarch64-linux-gnu/faketime",
    "/usr/lib/faketime",
];
const LIBRARY: &str = "libfaketime.so.1";

/// The installed libfaketime, if any.
pub fn find_library() -> Option<PathBuf> {
    LIBRARY_DIRS
        .iter()
        .map(|d| Path::new(d).join(LIBRARY))
        .find(|p| p.is_file())
}

/// A node's fake clock: the library, the node's offset file, and the offset.
#[derive(Debug, Clone)]
pub struct FakeClock {
    library: PathBuf,
    file: PathBuf,
    /// Seconds ahead of real time.
    offset_s: u64,
}

impl FakeClock {
    /// The clock of a node whose offset lives in `file` (created at offset 0).
    pub fn new(library: &Path, file: PathBuf) -> Result<FakeClock, ControlError> {
        let clock = FakeClock {
            library: library.to_path_buf(),
            file,
            offset_s: 0,
        };
        clock.write()?;
        Ok(clock)
    }

    /// The environment that puts a process on this clock.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("LD_PRELOAD".into(), self.library.display().to_string()),
            (
                "FAKETIME_TIMESTAMP_FILE".into(),
                self.file.display().to_string(),
            ),
            // Read the file again at most once a second (each read is a file open).
            ("FAKETIME_CACHE_DURATION".into(), "1".into()),
            ("FAKETIME_DONT_FAKE_MONOTONIC".into(), "0".into()),
        ]
    }

    /// Moves the clock `by_s` seconds forward; returns how far ahead of real time it is.
    pub fn jump(&mut self, by_s: u64) -> Result<u64, ControlError> {
        self.offset_s = self.offset_s.saturating_add(by_s);
        self.write()?;
        Ok(self.offset_s)
    }

    fn write(&self) -> Result<(), ControlError> {
        std::fs::write(&self.file, offset_spec(self.offset_s)).map_err(|source| ControlError::Io {
            what: format!("writing the clock offset file {}", self.file.display()),
            source,
        })
    }
}

/// libfaketime's relative offset syntax: `+30`, `+0`.
pub fn offset_spec(offset_s: u64) -> String {
    format!("+{offset_s}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_are_written_as_libfaketime_reads_them() {
        assert_eq!(offset_spec(30), "+30\n");
        assert_eq!(offset_spec(0), "+0\n");
    }

    #[test]
    fn a_new_clock_starts_at_real_time_and_only_moves_forward() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("clock1");
        let mut c = FakeClock::new(Path::new("/lib/x.so"), file.clone()).unwrap();
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "+0\n");
        assert_eq!(c.jump(7).unwrap(), 7);
        assert_eq!(c.jump(3).unwrap(), 10);
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "+10\n");
        assert!(c
            .env()
            .contains(&("FAKETIME_DONT_FAKE_MONOTONIC".into(), "0".into())));
    }
}
