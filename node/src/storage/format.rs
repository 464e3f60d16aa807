//! The data dir's format version: a `FORMAT` file at the top of the data
//! dir, written once when the dir is created and checked at every start, so
//! that a binary never reads a data dir laid out by another version.
//!
//! Versions: 1 — the first layout (no `FORMAT` file; Raft log in sled,
//! implicit client sessions); 2 — explicit client sessions (per-result
//! session keys, a session id counter), serde_bytes commands; 3 — the Raft
//! log in `wal/`, snapshots as files in `snapshots/`; 4 — `db/` is a fjall
//! database instead of sled (decision 0025); 5 — a dedup session's small
//! results live in its session row, not in rows of their own.

use std::io::Write;
use std::path::Path;

/// The format this binary reads and writes.
pub const CURRENT: u32 = 5;
/// The file's name inside the data dir.
pub const FILE: &str = "FORMAT";
const PREFIX: &str = "atoll-data-dir-format ";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FormatError {
    #[error(
        "holds data dir format {found}, but this binary reads format {CURRENT}; \
         run a binary of that format, or move the data dir away and let this node \
         rejoin its cluster as a new member"
    )]
    Other { found: u32 },
    #[error("its {FILE} file is not an Atoll format marker ({0:?})")]
    Unreadable(String),
    #[error("cannot write its {FILE} file: {0}")]
    Io(String),
}

/// Parses the content of a `FORMAT` file.
pub fn parse(text: &str) -> Result<u32, FormatError> {
    text.trim()
        .strip_prefix(PREFIX)
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| FormatError::Unreadable(text.chars().take(60).collect()))
}

/// Checks the format of data dir `dir`. `has_data` says whether it already
/// holds a database: one without a `FORMAT` file is format 1. A new dir
/// gets the current version, written and synced before anything else.
pub fn check_or_create(dir: &Path, has_data: bool) -> Result<(), FormatError> {
    let path = dir.join(FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => match parse(&text)? {
            CURRENT => Ok(()),
            found => Err(FormatError::Other { found }),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if has_data {
                return Err(FormatError::Other { found: 1 });
            }
            write(dir, &path)
        }
        Err(e) => Err(FormatError::Io(e.to_string())),
    }
}

fn write(dir: &Path, path: &Path) -> Result<(), FormatError> {
    let io = |e: std::io::Error| FormatError::Io(e.to_string());
    let mut f = std::fs::File::create(path).map_err(io)?;
    f.write_all(format!("{PREFIX}{CURRENT}\n").as_bytes())
        .map_err(io)?;
    f.sync_all().map_err(io)?;
    // The new directory entry is durable only once the directory is synced.
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_dir_gets_the_current_format_and_passes_next_time() {
        let dir = tempfile::tempdir().unwrap();
        check_or_create(dir.path(), false).unwrap();
        assert_eq!(
            parse(&std::fs::read_to_string(dir.path().join(FILE)).unwrap()),
            Ok(CURRENT)
        );
        check_or_create(dir.path(), true).unwrap();
    }

    #[test]
    fn another_version_or_an_old_unmarked_dir_is_refused_with_both_versions() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            check_or_create(dir.path(), true),
            Err(FormatError::Other { found: 1 })
        );
        std::fs::write(dir.path().join(FILE), "atoll-data-dir-format 7\n").unwrap();
        let e = check_or_create(dir.path(), true).unwrap_err();
        assert_eq!(e, FormatError::Other { found: 7 });
        let msg = e.to_string();
        assert!(
            msg.contains("format 7") && msg.contains(&format!("format {CURRENT}")),
            "{msg}"
        );
        std::fs::write(dir.path().join(FILE), "hello").unwrap();
        assert!(matches!(
            check_or_create(dir.path(), true),
            Err(FormatError::Unreadable(_))
        ));
    }
}
