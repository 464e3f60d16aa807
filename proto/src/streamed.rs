//! One operation of a `Kv.Multiplex` stream, run through the unary handler
//! of its kind on any [`Kv`] server (the node's, or a test fake's): the
//! operation's timeout becomes the request's gRPC deadline and its
//! unreachable replica the `atoll-unreachable` metadata, exactly what a
//! unary call would carry; a failed call becomes a `StreamedStatus` reply.

use std::time::Duration;

use tonic::metadata::MetadataValue;
use tonic::{Request, Status};

use crate::kv_server::Kv;
use crate::streamed_reply::Reply as R;
use crate::streamed_request::Op;
use crate::{StreamedReply, StreamedRequest, StreamedStatus, UNREACHABLE_METADATA};

/// Runs `op` on `kv` and answers it under its id.
pub async fn run<K: Kv>(kv: &K, op: StreamedRequest) -> StreamedReply {
    let (t, u) = (op.timeout_us, op.unreachable.as_str());
    let reply = match op.op {
        Some(Op::Get(r)) => kv
            .get(unary_request(r, t, u))
            .await
            .map(|r| R::Get(r.into_inner())),
        Some(Op::Put(r)) => kv
            .put(unary_request(r, t, u))
            .await
            .map(|r| R::Put(r.into_inner())),
        Some(Op::Delete(r)) => kv
            .delete(unary_request(r, t, u))
            .await
            .map(|r| R::Delete(r.into_inner())),
        Some(Op::Cas(r)) => kv
            .cas(unary_request(r, t, u))
            .await
            .map(|r| R::Cas(r.into_inner())),
        None => Err(Status::invalid_argument(
            "a streamed KV request names no operation (get, put, delete or cas)",
        )),
    };
    StreamedReply {
        id: op.id,
        reply: Some(reply.unwrap_or_else(|s| {
            R::Status(StreamedStatus {
                code: s.code() as i32,
                message: s.message().to_string(),
            })
        })),
    }
}

/// `message` as the unary request it stands for: `timeout_us` (0: none) as
/// its gRPC deadline, `unreachable` (empty: none) as metadata.
pub fn unary_request<T>(message: T, timeout_us: u64, unreachable: &str) -> Request<T> {
    let mut request = Request::new(message);
    if timeout_us > 0 {
        request.set_timeout(Duration::from_micros(timeout_us));
    }
    if !unreachable.is_empty() {
        if let Ok(value) = MetadataValue::try_from(unreachable) {
            request.metadata_mut().insert(UNREACHABLE_METADATA, value);
        }
    }
    request
}
