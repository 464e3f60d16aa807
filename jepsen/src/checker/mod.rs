//! Checkers: each reads a history (and what the workload read at the end) and gives a
//! [`Verdict`]: valid or not, a one-line summary, and on failure the smallest offending part
//! of the history, one line per op, in a form a person can read.
//!
//! - [`register`]: per-key linearizability (the shared [`crate::linearizability`] checker).
//! - [`set`]: every acknowledged insert is in the final read; nothing appears that was never
//!   inserted.
//! - [`append`]: lists built by read + compare-and-swap: no acknowledged element lost, none
//!   duplicated, every two reads of a key agree on order (one is a prefix of the other).
//! - [`bank`]: every snapshot of the accounts sums to the starting total with no negative
//!   balance (so no read sees part of a transfer).

pub mod append;
pub mod bank;
pub mod register;
pub mod set;

use serde::{Deserialize, Serialize};

/// One checker's verdict. `valid` is `None` when the checker could not decide (a search over
/// budget, a final read that failed).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    pub checker: String,
    pub valid: Option<bool>,
    pub summary: String,
    /// The offending ops (or why the answer is unknown), one per line.
    pub details: Vec<String>,
}

impl Verdict {
    pub fn valid(checker: &str, summary: impl Into<String>) -> Verdict {
        Verdict {
            checker: checker.into(),
            valid: Some(true),
            summary: summary.into(),
            details: Vec::new(),
        }
    }

    pub fn invalid(checker: &str, summary: impl Into<String>, details: Vec<String>) -> Verdict {
        Verdict {
            checker: checker.into(),
            valid: Some(false),
            summary: summary.into(),
            details,
        }
    }

    pub fn unknown(checker: &str, summary: impl Into<String>, details: Vec<String>) -> Verdict {
        Verdict {
            checker: checker.into(),
            valid: None,
            summary: summary.into(),
            details,
        }
    }

    pub fn is_valid(&self) -> bool {
        self.valid == Some(true)
    }

    /// `true`, `false` or `unknown`.
    pub fn word(&self) -> &'static str {
        match self.valid {
            Some(true) => "true",
            Some(false) => "false",
            None => "unknown",
        }
    }

    /// The verdict, its summary and its details, for a terminal.
    pub fn render(&self) -> String {
        let mut s = format!("{}: valid={} ({})", self.checker, self.word(), self.summary);
        for d in &self.details {
            s.push_str("\n    ");
            s.push_str(d);
        }
        s
    }
}
