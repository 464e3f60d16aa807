//! bincode helpers: everything Atoll stores or sends between nodes that is
//! not a protobuf message is bincode (1.3) of a serde type.

use serde::de::DeserializeOwned;
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
#[error("cannot decode {what}: {source}")]
pub struct DecodeError {
    pub what: &'static str,
    #[source]
    pub source: bincode::Error,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot encode {what}: {source}")]
pub struct EncodeError {
    pub what: &'static str,
    #[source]
    pub source: bincode::Error,
}

pub fn encode<T: Serialize + ?Sized>(
    what: &'static str,
    value: &T,
) -> Result<Vec<u8>, EncodeError> {
    bincode::serialize(value).map_err(|source| EncodeError { what, source })
}

pub fn decode<T: DeserializeOwned>(what: &'static str, bytes: &[u8]) -> Result<T, DecodeError> {
    bincode::deserialize(bytes).map_err(|source| DecodeError { what, source })
}

/// serde for `Vec<(key, Option<value>)>` with both sides as byte strings
/// (`#[serde(with = "crate::codec::byte_pairs")]`). Same bincode bytes as the
/// plain type, written in bulk.
pub mod byte_pairs {
    use serde::de::Deserializer;
    use serde::ser::{SerializeSeq, Serializer};
    use serde::Deserialize;
    use serde_bytes::{ByteBuf, Bytes};

    type Pairs = Vec<(Vec<u8>, Option<Vec<u8>>)>;

    pub fn serialize<S: Serializer>(pairs: &Pairs, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(pairs.len()))?;
        for (k, v) in pairs {
            seq.serialize_element(&(Bytes::new(k), v.as_deref().map(Bytes::new)))?;
        }
        seq.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Pairs, D::Error> {
        let raw: Vec<(ByteBuf, Option<ByteBuf>)> = Vec::deserialize(d)?;
        Ok(raw
            .into_iter()
            .map(|(k, v)| (k.into_vec(), v.map(ByteBuf::into_vec)))
            .collect())
    }
}

#[cfg(test)]
mod byte_tests {
    use crate::command::{Request, Response, WriteId, WriteOp};

    /// The serde_bytes encoding is the plain `Vec<u8>` encoding: data dirs
    /// written before it read the same.
    #[test]
    fn byte_strings_encode_as_plain_vectors_did() {
        #[derive(serde::Serialize)]
        enum PlainOp {
            _Put {
                key: Vec<u8>,
                value: Vec<u8>,
            },
            _Delete {
                key: Vec<u8>,
            },
            _Cas {
                key: Vec<u8>,
                expected: Option<Vec<u8>>,
                new: Option<Vec<u8>>,
            },
            Batch(Vec<(Vec<u8>, Option<Vec<u8>>)>),
        }
        let pairs = vec![(b"a".to_vec(), Some(b"1".to_vec())), (b"b".to_vec(), None)];
        let ours = bincode::serialize(&WriteOp::Batch(pairs.clone())).unwrap();
        let plain = bincode::serialize(&PlainOp::Batch(pairs)).unwrap();
        assert_eq!(ours, plain);
        let req = Request::Write {
            write_id: WriteId {
                client_id: 1,
                seq: 2,
                first_incomplete: 1,
            },
            op: WriteOp::Cas {
                key: b"k".to_vec(),
                expected: None,
                new: Some(vec![7; 300]),
            },
        };
        let back: Request = super::decode("req", &super::encode("req", &req).unwrap()).unwrap();
        assert_eq!(back, req);
        let resp = Response::Cas {
            succeeded: false,
            previous: Some(b"p".to_vec()),
        };
        let back: Response = super::decode("resp", &super::encode("resp", &resp).unwrap()).unwrap();
        assert_eq!(back, resp);
    }
}
