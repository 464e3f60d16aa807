//! Node clocks moved with libfaketime (Debian `libfaketime`): a node started with the
//! library in `LD_PRELOAD` reads its time offset from a file of its own
//! ([`FakeClock::set`] rewrites it; the library reads it again at most a second later).
//! `FAKETIME_DONT_FAKE_MONOTONIC=0` makes the offset apply to `CLOCK_MONOTONIC` too, the
//! clock behind tokio's timers and so behind every Raft timeout of the node: moving a clock
//! forward fires the node's timers at once, moving it back freezes them until real time
//! catches up. The nemesis checks that the move happened through the node's `Status`
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

/// A node's fake clock: the library and the node's offset file.
#[derive(Debug, Clone)]
pub struct FakeClock {
    library: PathBuf,
    file: PathBuf,
}

impl FakeClock {
    /// The clock of a node whose offset lives in `file` (created at offset 0).
    pub fn new(library: &Path, file: PathBuf) -> Result<FakeClock, ControlError> {
        let clock = FakeClock {
            library: library.to_path_buf(),
            file,
        };
        clock.set(0)?;
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

    /// Moves the clock to `offset_s` seconds from real time (0: back to real time).
    pub fn set(&self, offset_s: i64) -> Result<(), ControlError> {
        std::fs::write(&self.file, offset_spec(offset_s)).map_err(|source| ControlError::Io {
            what: format!("writing the clock offset file {}", self.file.display()),
            source,
        })
    }
}

/// libfaketime's relative offset syntax: `+30`, `-12`, `+0`.
pub fn offset_spec(offset_s: i64) -> String {
    format!("{offset_s:+}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_are_written_as_libfaketime_reads_them() {
        assert_eq!(offset_spec(30), "+30\n");
        assert_eq!(offset_spec(-12), "-12\n");
        assert_eq!(offset_spec(0), "+0\n");
    }

    #[test]
    fn a_new_clock_starts_at_real_time_and_moves() {
        let dir = tempfile::tempdir().unwrap();
        let c = FakeClock::new(Path::new("/lib/x.so"), dir.path().join("clock1")).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("clock1")).unwrap(),
            "+0\n"
        );
        c.set(-7).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("clock1")).unwrap(),
            "-7\n"
        );
        assert!(c
            .env()
            .contains(&("FAKETIME_DONT_FAKE_MONOTONIC".into(), "0".into())));
    }
}
