//! Input checks done before anything is proposed: every violation is an
//! `InvalidArgument` naming what is wrong.

use atoll_proto as pb;

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
}
