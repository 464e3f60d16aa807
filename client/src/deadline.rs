//! How long one attempt waits for its reply, and how the server learns it.
//!
//! An attempt's [`Budget`] is the per-RPC timeout
//! ([`ClientConfig::request_timeout`](crate::ClientConfig::request_timeout)),
//! cut to what is left before the operation's deadline. Every KV request
//! carries it as its gRPC deadline (the `grpc-timeout` header), and the
//! server bounds its wait for Raft by it, less a margin for the reply
//! (`atoll_node::service::deadline`): so the client gets a typed answer
//! ("not committed within …; it may still apply") rather than abandoning an
//! attempt the server is still working on. See docs/operations.md,
//! "Timeouts".

use std::sync::Arc;
use std::time::Duration;

use tonic::metadata::MetadataValue;

use crate::multiplex::AttemptMeta;

/// How long one attempt waits for its reply, and what the server is told
/// with it: the deadline, and the replica the previous attempt could not
/// reach ([`atoll_proto::UNREACHABLE_METADATA`]), if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Budget(Duration, Option<Arc<str>>);

impl Budget {
    /// The budget of an attempt started with `left` before the operation's
    /// deadline. Pure.
    pub(crate) fn new(request_timeout: Duration, left: Duration) -> Budget {
        Budget(request_timeout.min(left), None)
    }

    /// The same budget, telling the server that `addr` did not answer.
    pub(crate) fn unreachable(self, addr: Option<Arc<str>>) -> Budget {
        Budget(self.0, addr)
    }

    pub(crate) fn duration(&self) -> Duration {
        self.0
    }

    /// `message` as a request whose gRPC deadline is this budget. The same
    /// facts ride along as [`AttemptMeta`], for an operation sent on the
    /// node's stream instead ([`crate::multiplex`]).
    pub(crate) fn request<T>(self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.set_timeout(self.0);
        if let Some(value) = self
            .1
            .as_deref()
            .and_then(|a| MetadataValue::try_from(a).ok())
        {
            request
                .metadata_mut()
                .insert(atoll_proto::UNREACHABLE_METADATA, value);
        }
        request.extensions_mut().insert(AttemptMeta {
            deadline: Some(tokio::time::Instant::now() + self.0),
            unreachable: self.1,
        });
        request
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn an_attempt_gets_the_request_timeout_or_what_is_left_if_less() {
        assert_eq!(Budget::new(MS(2000), MS(10_000)).duration(), MS(2000));
        assert_eq!(Budget::new(MS(2000), MS(700)).duration(), MS(700));
        assert_eq!(
            Budget::new(MS(2000), Duration::ZERO).duration(),
            Duration::ZERO
        );
    }

    #[test]
    fn every_request_carries_its_budget_as_the_grpc_deadline() {
        let cases = [
            (MS(1000), "1000000u"),
            (MS(2000), "2000000u"),
            (MS(30), "30000000n"),
            (Duration::ZERO, "0n"),
        ];
        for (budget, header) in cases {
            let request = Budget(budget, None).request(());
            let value = request.metadata().get("grpc-timeout");
            assert_eq!(
                value.and_then(|v| v.to_str().ok()),
                Some(header),
                "{budget:?}"
            );
            assert!(request
                .metadata()
                .get(atoll_proto::UNREACHABLE_METADATA)
                .is_none());
        }
    }

    #[test]
    fn a_replica_that_did_not_answer_is_named_to_the_next_one() {
        let request = Budget::new(MS(2000), MS(5000))
            .unreachable(Some("127.0.0.1:7101".into()))
            .request(());
        let value = request.metadata().get(atoll_proto::UNREACHABLE_METADATA);
        assert_eq!(value.and_then(|v| v.to_str().ok()), Some("127.0.0.1:7101"));
    }
}
