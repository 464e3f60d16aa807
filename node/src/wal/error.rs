//! Errors of the write-ahead log. All are fail-stop for the node: the log
//! cannot be trusted (corruption, another format) or cannot be written.

use std::io;

#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("WAL I/O on {file}: {source}")]
    Io {
        file: String,
        #[source]
        source: io::Error,
    },
    /// A damaged record that is not a torn tail. The node refuses to start.
    #[error(
        "WAL file {file} is corrupt at offset {offset}: {reason}; refusing to start \
         (see docs/operations.md, \"A corrupt WAL\")"
    )]
    Corrupt {
        file: String,
        offset: u64,
        reason: String,
    },
    #[error(
        "WAL file {file} holds format version {found}; this binary reads format version \
         {supported}"
    )]
    Version {
        file: String,
        found: u32,
        supported: u32,
    },
    /// An earlier write or sync failed; after a failed fsync nothing
    /// written since the last good one can be trusted, so the log stops.
    #[error("the WAL stopped after an earlier failure: {0}")]
    Failed(String),
    #[error("the WAL is shutting down; {0} not performed")]
    Stopped(&'static str),
}

impl From<WalError> for io::Error {
    fn from(e: WalError) -> Self {
        let kind = match &e {
            WalError::Io { source, .. } => source.kind(),
            _ => io::ErrorKind::Other,
        };
        io::Error::new(kind, e.to_string())
    }
}
