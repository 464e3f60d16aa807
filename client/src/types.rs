//! Plain values taken and returned by [`Client`](crate::Client).

/// The result of [`Client::cas`](crate::Client::cas).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CasOutcome {
    /// Whether the comparison held and the new value was written.
    pub succeeded: bool,
    /// The value before the operation (`None`: the key was absent).
    pub previous: Option<Vec<u8>>,
}

/// One change in a [`Client::batch`](crate::Client::batch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mutation {
    /// The key to change.
    pub key: Vec<u8>,
    /// The new value; `None` deletes the key.
    pub value: Option<Vec<u8>>,
}

impl Mutation {
    /// Sets `key` to `value`.
    pub fn put(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Self {
        Mutation {
            key: key.into(),
            value: Some(value.into()),
        }
    }

    /// Deletes `key`.
    pub fn delete(key: impl Into<Vec<u8>>) -> Self {
        Mutation {
            key: key.into(),
            value: None,
        }
    }
}
