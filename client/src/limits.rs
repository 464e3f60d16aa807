//! Client-side checks that mirror the server's limits, so an oversized or
//! empty key fails at once instead of after a round trip.

use crate::error::Error;

/// Longest key the server accepts, in bytes.
pub const MAX_KEY_LEN: usize = 4096;
/// Longest value the server accepts, in bytes.
pub const MAX_VALUE_LEN: usize = 1 << 20;
/// Most compares plus ops (of both branches) in one txn, the server's
/// default `limits.max_txn_ops`.
pub const MAX_TXN_OPS: usize = 128;

/// A key must be non-empty and at most [`MAX_KEY_LEN`] bytes.
pub fn check_key(key: &[u8]) -> Result<(), Error> {
    if key.is_empty() {
        return Err(Error::InvalidArgument("the key is empty".into()));
    }
    check_bound(key)
}

/// A scan bound may be empty (start or end of the key space) but no longer
/// than [`MAX_KEY_LEN`] bytes.
pub fn check_bound(key: &[u8]) -> Result<(), Error> {
    if key.len() > MAX_KEY_LEN {
        return Err(Error::InvalidArgument(format!(
            "the key is {} bytes long; the limit is {MAX_KEY_LEN}",
            key.len()
        )));
    }
    Ok(())
}

/// A value may be empty and at most [`MAX_VALUE_LEN`] bytes.
pub fn check_value(value: &[u8]) -> Result<(), Error> {
    if value.len() > MAX_VALUE_LEN {
        return Err(Error::InvalidArgument(format!(
            "the value is {} bytes long; the limit is {MAX_VALUE_LEN} (1 MiB)",
            value.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_must_be_non_empty_and_short() {
        assert!(check_key(b"").is_err());
        assert!(check_key(&[b'k'; MAX_KEY_LEN]).is_ok());
        assert!(check_key(&[b'k'; MAX_KEY_LEN + 1]).is_err());
        assert!(check_bound(b"").is_ok());
    }

    #[test]
    fn values_may_be_empty_but_not_huge() {
        assert!(check_value(b"").is_ok());
        assert!(check_value(&vec![0; MAX_VALUE_LEN]).is_ok());
        let err = check_value(&vec![0; MAX_VALUE_LEN + 1]);
        assert!(matches!(err, Err(Error::InvalidArgument(_))));
    }
}
