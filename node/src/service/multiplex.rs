//! `Kv.Multiplex`: one client's gets, puts, deletes and CASes on one HTTP/2
//! stream, many in flight, answered by id.
//!
//! Each operation runs exactly as its unary call would ([`KvService`]'s own
//! handler, given a request whose metadata carries the operation's timeout
//! and unreachable replica), in a task of its own, so a slow write does not
//! hold back a read behind it. Replies go out in the order they finish; all
//! the replies ready when the stream is written leave in one message.
//!
//! At most [`IN_FLIGHT`] operations of one stream run at a time: the reader
//! waits for one to finish before it takes more, so a client that sends
//! faster than the node answers is held back by HTTP/2 flow control, as a
//! unary caller is by the connection's stream limit. A reply message holds
//! at most [`REPLIES_PER_MESSAGE`] replies and about [`MESSAGE_BYTES`]
//! (a get's value may be 1 MiB; one message over the encoding limit would
//! end the stream, and every operation on it with an error).
//!
//! When the node stops (`server::bind`'s shutdown), each stream stops
//! taking operations, answers those in flight, and ends, so that the
//! server's graceful shutdown, which waits for every stream, can finish.
//!
//! Why a stream at all: a unary call costs the node a new HTTP/2 stream, two
//! header blocks and a trailer; at 64 writing clients the client-facing
//! HTTP/2 server was a third of the leader's CPU (docs/benchmarks.md), and
//! the same again on the client side. docs/decisions/0028-multiplexed-kv-stream.md.

use std::pin::Pin;
use std::sync::Arc;

use atoll_proto as pb;
use futures::channel::mpsc;
use futures::{Stream, StreamExt};
use prost::Message;
use tokio::sync::{watch, Semaphore};
use tonic::Status;

use super::kv::KvService;

/// Operations of one stream that may run at once.
pub const IN_FLIGHT: usize = 1024;

/// Replies gathered into one message at most.
const REPLIES_PER_MESSAGE: usize = 256;

/// A reply message is closed once it holds this many bytes (one reply may
/// take it past this, never past the encoding limit: a reply is at most a
/// value of `limits.max_value_bytes` and a key).
const MESSAGE_BYTES: usize = 4 << 20;

/// The reply stream of one `Multiplex` call.
pub type Replies = Pin<Box<dyn Stream<Item = Result<pb::StreamedReplies, Status>> + Send>>;

/// Starts serving `inbound`; the returned stream ends once the client has
/// closed its side, or the node is stopping (`stopping` turns true), and
/// every operation taken has been answered.
pub fn serve(
    kv: KvService,
    mut inbound: tonic::Streaming<pb::StreamedRequests>,
    mut stopping: watch::Receiver<bool>,
) -> Replies {
    let (tx, rx) = mpsc::unbounded::<pb::StreamedReply>();
    tokio::spawn(async move {
        let slots = Arc::new(Semaphore::new(IN_FLIGHT));
        loop {
            let next = tokio::select! {
                next = inbound.message() => next,
                _ = stopping.wait_for(|stop| *stop) => return,
            };
            let batch = match next {
                Ok(Some(batch)) => batch,
                Ok(None) => return,
                Err(status) => {
                    tracing::debug!("a multiplexed KV stream ended: {status}");
                    return;
                }
            };
            for op in batch.ops {
                let Ok(slot) = slots.clone().acquire_owned().await else {
                    return;
                };
                let (kv, tx) = (kv.clone(), tx.clone());
                tokio::spawn(async move {
                    let reply = atoll_proto::streamed::run(&kv, op).await;
                    drop(slot);
                    // The client may be gone; its replies go nowhere.
                    let _ = tx.unbounded_send(reply);
                });
            }
        }
    });
    Box::pin(messages(rx).map(Ok))
}

/// The replies as messages: each takes the replies ready when it is
/// written, up to [`REPLIES_PER_MESSAGE`] and [`MESSAGE_BYTES`].
fn messages(
    rx: mpsc::UnboundedReceiver<pb::StreamedReply>,
) -> impl Stream<Item = pb::StreamedReplies> {
    futures::stream::unfold(
        (rx, None::<pb::StreamedReply>),
        |(mut rx, carried)| async move {
            let first = match carried {
                Some(reply) => reply,
                None => rx.next().await?,
            };
            let mut bytes = first.encoded_len();
            let mut replies = vec![first];
            let mut carried = None;
            while replies.len() < REPLIES_PER_MESSAGE && bytes < MESSAGE_BYTES {
                match rx.try_recv() {
                    Ok(reply) => {
                        let len = reply.encoded_len();
                        if bytes + len > MESSAGE_BYTES {
                            carried = Some(reply);
                            break;
                        }
                        bytes += len;
                        replies.push(reply);
                    }
                    // Nothing ready, or every sender is gone (the next
                    // `next` says which).
                    _ => break,
                }
            }
            Some((pb::StreamedReplies { replies }, (rx, carried)))
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::deadline::Deadline;
    use atoll_proto::streamed_reply::Reply as R;
    use std::time::Duration;

    fn get_reply(id: u64, value_bytes: usize) -> pb::StreamedReply {
        pb::StreamedReply {
            id,
            reply: Some(R::Get(pb::GetResponse {
                value: Some(vec![0; value_bytes]),
                ..Default::default()
            })),
        }
    }

    #[tokio::test]
    async fn reply_messages_are_cut_by_count_and_by_bytes() {
        let (tx, rx) = mpsc::unbounded();
        // Five 1.5 MiB values, then 300 small replies, all ready at once.
        for id in 0..5 {
            tx.unbounded_send(get_reply(id, 3 << 19)).expect("send");
        }
        for id in 5..305 {
            tx.unbounded_send(get_reply(id, 10)).expect("send");
        }
        drop(tx);
        let sizes: Vec<(usize, usize)> = messages(rx)
            .map(|m| (m.replies.len(), m.encoded_len()))
            .collect()
            .await;
        let counts: Vec<usize> = sizes.iter().map(|(n, _)| *n).collect();
        assert_eq!(counts.iter().sum::<usize>(), 305);
        assert!(sizes
            .iter()
            .all(|(n, b)| *n <= REPLIES_PER_MESSAGE && (*b <= MESSAGE_BYTES + 64 || *n == 1)));
        // Two big values per message, the fifth with the first small ones.
        assert_eq!(counts[0], 2);
        assert_eq!(counts[1], 2);
    }

    #[test]
    fn a_streamed_operation_carries_its_timeout_and_unreachable_replica_as_metadata() {
        let own = Duration::from_secs(5);
        let r = atoll_proto::streamed::unary_request((), 700_000, "10.0.0.1:7101");
        let d = Deadline::of(r.metadata(), own);
        assert!(d.left() <= Duration::from_millis(700), "{:?}", d.left());
        assert!(d.left() > Duration::from_millis(600), "{:?}", d.left());
        assert!(d.found_unreachable("10.0.0.1:7101"));
        let r = atoll_proto::streamed::unary_request((), 0, "");
        let d = Deadline::of(r.metadata(), own);
        assert!(d.left() > Duration::from_millis(4900), "{:?}", d.left());
        assert!(!d.found_unreachable("10.0.0.1:7101"));
    }
}
