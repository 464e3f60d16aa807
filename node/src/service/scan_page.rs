//! Reading one scan page from the engine: bounded by a row count and a byte
//! budget, read in chunks.
//!
//! The caller holds the replica's consistent view
//! ([`crate::state_machine::view`]) for the whole page, so chunking never
//! shows half of an applied batch. In the simulation the chunks are a single
//! row with a pause between them, so the engine there is as weak as an
//! iterator that locks per step (sled's was), and a page read without the view is caught by the
//! batch-atomicity check.

use crate::storage::engine::{EngineError, Kv, SharedEngine};

/// Rows read from the engine per call.
#[cfg(not(madsim))]
const CHUNK_ROWS: usize = 256;
#[cfg(madsim)]
const CHUNK_ROWS: usize = 1;

/// How much one page may hold.
#[derive(Debug, Clone, Copy)]
pub struct PageBudget {
    pub rows: usize,
    /// Key + value bytes. A page always holds at least one row, so a single
    /// row larger than this is still returned.
    pub bytes: usize,
}

/// One page of `[lo, hi)` (engine keys). `truncated` is true when the budget
/// stopped the page before the end of the range.
pub async fn read_page(
    engine: &SharedEngine,
    lo: &[u8],
    hi: &[u8],
    budget: PageBudget,
) -> Result<(Vec<Kv>, bool), EngineError> {
    let mut rows: Vec<Kv> = Vec::new();
    let mut bytes = 0usize;
    let mut cursor = lo.to_vec();
    loop {
        let chunk = engine.scan(&cursor, hi, CHUNK_ROWS)?;
        let exhausted = chunk.len() < CHUNK_ROWS;
        for (k, v) in chunk {
            let size = k.len() + v.len();
            if rows.len() >= budget.rows || (!rows.is_empty() && bytes + size > budget.bytes) {
                return Ok((rows, true));
            }
            bytes += size;
            cursor.clone_from(&k);
            rows.push((k, v));
        }
        if exhausted {
            return Ok((rows, false));
        }
        // The next chunk starts just after the last key read.
        cursor.push(0);
        #[cfg(madsim)]
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::storage::engine::WriteBatch;
    use crate::storage::MemoryEngine;

    fn engine_with(rows: &[(&str, usize)]) -> SharedEngine {
        let e = MemoryEngine::new();
        let mut b = WriteBatch::new();
        for (k, len) in rows {
            b.put(k.as_bytes().to_vec(), vec![b'x'; *len]);
        }
        crate::storage::engine::Engine::write(&e, b).unwrap();
        Arc::new(e)
    }

    fn keys(rows: &[Kv]) -> Vec<String> {
        rows.iter()
            .map(|(k, _)| String::from_utf8_lossy(k).into_owned())
            .collect()
    }

    #[tokio::test]
    async fn a_page_stops_at_the_byte_budget_and_says_so() {
        let e = engine_with(&[("a", 10), ("b", 10), ("c", 10), ("d", 10)]);
        let budget = PageBudget {
            rows: 100,
            bytes: 25,
        };
        let (rows, truncated) = read_page(&e, b"a", b"z", budget).await.unwrap();
        assert_eq!(keys(&rows), ["a", "b"]);
        assert!(truncated);
        let (rows, truncated) = read_page(&e, b"b\0", b"z", budget).await.unwrap();
        assert_eq!(keys(&rows), ["c", "d"]);
        assert!(!truncated);
    }

    #[tokio::test]
    async fn one_row_over_the_budget_is_still_returned_alone() {
        let e = engine_with(&[("a", 100), ("b", 1)]);
        let budget = PageBudget {
            rows: 100,
            bytes: 10,
        };
        let (rows, truncated) = read_page(&e, b"a", b"z", budget).await.unwrap();
        assert_eq!(keys(&rows), ["a"]);
        assert!(truncated);
    }

    #[tokio::test]
    async fn the_row_limit_truncates_and_an_exact_fit_does_not() {
        let rows: Vec<(String, usize)> = (0..600).map(|i| (format!("k{i:04}"), 1)).collect();
        let refs: Vec<(&str, usize)> = rows.iter().map(|(k, l)| (k.as_str(), *l)).collect();
        let e = engine_with(&refs);
        let (got, truncated) = read_page(
            &e,
            b"k",
            b"l",
            PageBudget {
                rows: 300,
                bytes: usize::MAX,
            },
        )
        .await
        .unwrap();
        assert_eq!(got.len(), 300);
        assert!(truncated);
        let (got, truncated) = read_page(
            &e,
            b"k",
            b"l",
            PageBudget {
                rows: 600,
                bytes: usize::MAX,
            },
        )
        .await
        .unwrap();
        assert_eq!(got.len(), 600);
        assert!(!truncated);
    }
}
