//! Input checks done before anything is proposed: every violation is an
//! `InvalidArgument` naming what is wrong.

use atoll_proto as pb;

use crate::command::{Compare, TxnOp};
use crate::config::Limits;
use crate::error::KvError;

fn invalid(msg: String) -> KvError {
    KvError::InvalidArgument(msg)
}

pub fn key(limits: &Limits, key: &[u8]) -> Result<(), KvError> {
    if key.is_empty() {
        return Err(invalid("key is empty; keys must be 1 or more bytes".into()));
    }
    if key.len() > limits.max_key_bytes {
        return Err(invalid(format!(
            "key is {} bytes; the limit is {} bytes",
            key.len(),
            limits.max_key_bytes
        )));
    }
    Ok(())
}

pub fn value(limits: &Limits, value: &[u8]) -> Result<(), KvError> {
    if value.len() > limits.max_value_bytes {
        return Err(invalid(format!(
            "value is {} bytes; the limit is {} bytes",
            value.len(),
            limits.max_value_bytes
        )));
    }
    Ok(())
}

pub fn mutations(limits: &Limits, m: &[pb::Mutation]) -> Result<(), KvError> {
    if m.is_empty() {
        return Err(invalid("batch has no mutations".into()));
    }
    if m.len() > limits.max_batch_mutations {
        return Err(invalid(format!(
            "batch has {} mutations; the limit is {}",
            m.len(),
            limits.max_batch_mutations
        )));
    }
    let mut total = 0usize;
    for mutation in m {
        key(limits, &mutation.key)?;
        if let Some(v) = &mutation.value {
            value(limits, v)?;
        }
        total += mutation.key.len() + mutation.value.as_ref().map_or(0, Vec::len);
    }
    if total > limits.max_batch_bytes {
        return Err(invalid(format!(
            "batch carries {total} bytes of keys and values; the limit is {} bytes",
            limits.max_batch_bytes
        )));
    }
    Ok(())
}

/// Checks a txn: at most `max_txn_ops` compares and ops in all, every key
/// and value within its limit, at most `max_batch_bytes` of them in all.
/// (That every key is in the shard is checked when routing, and again when
/// the txn is applied.)
pub fn txn(
    limits: &Limits,
    compares: &[Compare],
    success: &[TxnOp],
    failure: &[TxnOp],
) -> Result<(), KvError> {
    let count = compares.len() + success.len() + failure.len();
    if count > limits.max_txn_ops {
        return Err(invalid(format!(
            "txn has {count} compares and ops ({} + {} + {}); the limit is {}",
            compares.len(),
            success.len(),
            failure.len(),
            limits.max_txn_ops
        )));
    }
    let mut total = 0usize;
    for c in compares {
        key(limits, &c.key)?;
        if let Some(v) = &c.value {
            value(limits, v)?;
        }
        total += c.key.len() + c.value.as_ref().map_or(0, Vec::len);
    }
    for op in success.iter().chain(failure) {
        key(limits, op.key())?;
        if let TxnOp::Put { value: v, .. } = op {
            value(limits, v)?;
        }
        total += op.payload_bytes();
    }
    if total > limits.max_batch_bytes {
        return Err(invalid(format!(
            "txn carries {total} bytes of keys and values; the limit is {} bytes",
            limits.max_batch_bytes
        )));
    }
    Ok(())
}

/// Checks a scan range; an empty `end` means +infinity.
pub fn scan_range(limits: &Limits, start: &[u8], end: &[u8]) -> Result<(), KvError> {
    for k in [start, end] {
        if k.len() > limits.max_key_bytes {
            return Err(invalid(format!(
                "scan bound is {} bytes; the limit is {}",
                k.len(),
                limits.max_key_bytes
            )));
        }
    }
    if !end.is_empty() && start > end {
        return Err(invalid("scan start is after scan end".into()));
    }
    Ok(())
}

pub fn write_id(id: Option<pb::WriteId>) -> Result<crate::command::WriteId, KvError> {
    let id = id.ok_or_else(|| invalid("write has no write_id (client_id + seq)".into()))?;
    if id.seq == 0 {
        return Err(invalid("write_id.seq must be > 0".into()));
    }
    Ok(crate::command::WriteId {
        client_id: id.client_id,
        seq: id.seq,
        first_incomplete: id.first_incomplete,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_enforced_with_readable_messages() {
        let l = Limits::default();
        assert!(key(&l, b"k").is_ok());
        assert!(matches!(key(&l, b""), Err(KvError::InvalidArgument(m)) if m.contains("empty")));
        let big = vec![0u8; 4097];
        assert!(matches!(key(&l, &big), Err(KvError::InvalidArgument(m)) if m.contains("4097")));
        assert!(value(&l, &vec![0u8; 1024 * 1024]).is_ok());
        assert!(value(&l, &vec![0u8; 1024 * 1024 + 1]).is_err());
        assert!(scan_range(&l, b"b", b"a").is_err());
        assert!(scan_range(&l, b"b", b"").is_ok());
        assert!(mutations(&l, &[]).is_err());
        assert!(write_id(None).is_err());
    }

    #[test]
    fn txns_are_bounded_in_ops_keys_values_and_bytes() {
        use crate::command::CompareOp;
        let l = Limits {
            max_txn_ops: 3,
            max_batch_bytes: 100,
            ..Limits::default()
        };
        let cmp = |k: &[u8], v: Option<Vec<u8>>| Compare {
            key: k.to_vec(),
            op: CompareOp::Equal,
            value: v,
        };
        let get = |k: &[u8]| TxnOp::Get { key: k.to_vec() };
        let put = |k: &[u8], v: Vec<u8>| TxnOp::Put {
            key: k.to_vec(),
            value: v,
        };
        assert!(txn(&l, &[], &[], &[]).is_ok());
        assert!(txn(&l, &[cmp(b"a", None)], &[get(b"a")], &[get(b"b")]).is_ok());
        // Compares and both branches count together.
        let err = txn(
            &l,
            &[cmp(b"a", None)],
            &[get(b"a"), get(b"b")],
            &[get(b"c")],
        );
        assert!(
            matches!(err, Err(KvError::InvalidArgument(m)) if m.contains("4 compares and ops"))
        );
        // Keys and values anywhere in the txn, the branch that may not run included.
        assert!(txn(&l, &[cmp(b"", None)], &[], &[]).is_err());
        assert!(txn(&l, &[], &[], &[get(b"")]).is_err());
        let huge = vec![0u8; l.max_value_bytes + 1];
        assert!(txn(
            &Limits::default(),
            &[cmp(b"a", Some(huge.clone()))],
            &[],
            &[]
        )
        .is_err());
        assert!(txn(&Limits::default(), &[], &[], &[put(b"a", huge)]).is_err());
        // Bytes of compares and ops add up.
        let err = txn(
            &l,
            &[cmp(b"a", Some(vec![0; 60]))],
            &[put(b"b", vec![0; 60])],
            &[],
        );
        assert!(matches!(err, Err(KvError::InvalidArgument(m)) if m.contains("122 bytes")));
    }
}
