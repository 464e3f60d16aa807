//! Paging rules of a multi-shard scan, as pure functions.
//!
//! A page covers `[cursor, min(end, shard_end))` of one shard, capped by the
//! limit the client sends and by the server (1000 entries). After a page:
//! - `truncated`: continue in the same shard right after the last key;
//! - else, if the shard ends before `end`: continue at `shard_end`;
//! - else: done.

use atoll_proto::ScanResponse;

use crate::error::Error;

/// The `limit` to send for the next page: what is still wanted, or 0 (no
/// limit, the server caps the page) when the caller set no limit.
pub(crate) fn page_limit(limit: usize, collected: usize) -> u32 {
    if limit == 0 {
        return 0;
    }
    let wanted = limit.saturating_sub(collected).max(1);
    u32::try_from(wanted).unwrap_or(u32::MAX)
}

/// Where the next page starts, `None` when the scan is complete. Refuses
/// replies that would not make progress, so a misbehaving server cannot
/// loop the client.
pub(crate) fn next_cursor(
    cursor: &[u8],
    end: &[u8],
    page: &ScanResponse,
) -> Result<Option<Vec<u8>>, Error> {
    if page.truncated {
        let Some(last) = page.kvs.last() else {
            return Err(Error::Protocol(
                "scan page truncated without entries".into(),
            ));
        };
        if last.key.as_slice() < cursor {
            return Err(Error::Protocol("scan page went backwards".into()));
        }
        let mut next = last.key.clone();
        next.push(0);
        return Ok(Some(next));
    }
    let shard_end = page.shard_end.as_slice();
    if shard_end.is_empty() || (!end.is_empty() && shard_end >= end) {
        return Ok(None);
    }
    if shard_end <= cursor {
        return Err(Error::Protocol(format!(
            "scan page reports a shard end at or before its start ({} <= {} bytes)",
            shard_end.len(),
            cursor.len()
        )));
    }
    Ok(Some(shard_end.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use atoll_proto::KeyValue;

    fn page(keys: &[&str], shard_end: &str, truncated: bool) -> ScanResponse {
        ScanResponse {
            kvs: keys
                .iter()
                .map(|k| KeyValue {
                    key: k.as_bytes().to_vec(),
                    value: b"v".to_vec(),
                })
                .collect(),
            shard_end: shard_end.as_bytes().to_vec(),
            truncated,
            ..Default::default()
        }
    }

    #[test]
    fn truncated_page_continues_right_after_the_last_key() {
        let next = next_cursor(b"a", b"", &page(&["a", "b"], "m", true));
        assert_eq!(next, Ok(Some(b"b\0".to_vec())));
    }

    #[test]
    fn complete_page_continues_at_the_shard_end() {
        let next = next_cursor(b"a", b"z", &page(&["a"], "m", false));
        assert_eq!(next, Ok(Some(b"m".to_vec())));
    }

    #[test]
    fn scan_stops_at_the_requested_end_or_the_key_space_end() {
        assert_eq!(next_cursor(b"a", b"k", &page(&[], "m", false)), Ok(None));
        assert_eq!(next_cursor(b"a", b"m", &page(&[], "m", false)), Ok(None));
        assert_eq!(next_cursor(b"a", b"", &page(&[], "", false)), Ok(None));
    }

    #[test]
    fn replies_without_progress_are_refused() {
        assert!(next_cursor(b"a", b"", &page(&[], "m", true)).is_err());
        assert!(next_cursor(b"m", b"", &page(&[], "c", false)).is_err());
        assert!(next_cursor(b"m", b"", &page(&[], "m", false)).is_err());
    }

    #[test]
    fn page_limits_ask_for_what_is_left() {
        assert_eq!(page_limit(0, 5000), 0);
        assert_eq!(page_limit(10, 3), 7);
        assert_eq!(page_limit(10, 10), 1);
        assert_eq!(page_limit(usize::MAX, 0), u32::MAX);
    }
}
