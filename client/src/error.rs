//! The client's error type, and its translation from what the wire carries
//! (`atoll_proto::Error` inside replies, `tonic::Status` for failed RPCs).
//!
//! Expected outcomes are not errors: a missing key is `Ok(None)`, a failed
//! compare is `Ok(CasOutcome { succeeded: false, .. })`.

use std::fmt;
use std::time::Duration;

use atoll_proto::ErrorKind;

/// Everything that can go wrong in a client call.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// The request is malformed (empty key, key or value too large, bad
    /// endpoint, ...). Retrying the same request cannot help.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// The operation's deadline passed before any node gave a definite answer.
    ///
    /// For a write (`put`, `delete`, `cas`, `batch`, `txn`) the outcome is
    /// **indeterminate**: the write may or may not have been applied. Reading
    /// the key back tells which.
    #[error("{op} did not complete within {after:?}, last error: {last} (a write may or may not have been applied)")]
    Timeout {
        /// The operation, e.g. `"put"`.
        op: &'static str,
        /// The deadline the operation ran against.
        after: Duration,
        /// The error of the last attempt.
        last: Box<Error>,
    },

    /// The shard no longer knows the write session this write was sent
    /// under: the shard keeps a bounded number of sessions and evicted ours
    /// to make room for newer ones (or never had it).
    ///
    /// Like [`Error::Timeout`], the outcome is **indeterminate**: the attempt
    /// that got this answer applied nothing, but an earlier attempt of the
    /// same write may have been applied before the session was evicted. The
    /// client does not retry it (re-sending it under a new session could
    /// apply it twice); read the key back to learn which. The client has
    /// dropped the session; later writes open a new one.
    #[error("write session {client_id} expired on shard {shard_id} (evicted to make room for newer sessions); the write may or may not have been applied")]
    SessionExpired {
        /// The shard that refused the write.
        shard_id: u64,
        /// The expired session's id on that shard.
        client_id: u64,
    },

    /// The request was refused without effect (e.g. a split whose shard
    /// changed while it was asked for): nothing changed, so sending it
    /// again is safe.
    #[error("not applied: {0}")]
    NotApplied(String),

    /// The cluster could not serve the request right now (no leader, no
    /// quorum, or no shard known for the key). Usually transient.
    #[error("cluster unavailable: {0}")]
    Unavailable(String),

    /// The keys of a batch or txn belong to more than one shard; both are
    /// atomic only within one shard, so it is refused (nothing was sent).
    #[error(
        "the keys of this batch or txn belong to more than one shard; it must stay within one shard"
    )]
    CrossShardBatch,

    /// A node could not be reached, or the RPC failed on the way.
    #[error("transport error: {0}")]
    Transport(String),

    /// The contacted node is not the leader of the shard.
    #[error("node is not the leader of shard {shard_id}{}", LeaderHint(*leader_id, leader_addr.as_deref()))]
    NotLeader {
        /// The shard the request was for.
        shard_id: u64,
        /// The leader as known by that node.
        leader_id: Option<u64>,
        /// The leader's address as known by that node.
        leader_addr: Option<String>,
    },

    /// Any other error reported by a server.
    #[error("server error ({kind}): {message}")]
    Server {
        /// What kind of error the server reported.
        kind: ServerErrorKind,
        /// The server's explanation.
        message: String,
    },

    /// The client was given no endpoint to talk to.
    #[error("no endpoints given; pass at least one \"host:port\"")]
    NoEndpoints,

    /// A reply did not follow the protocol (missing field, impossible value).
    #[error("protocol violation by the server: {0}")]
    Protocol(String),

    /// No endpoint answered a request that any node can serve (such as
    /// [`crate::admin::cluster_state`]): each was unreachable, or answered
    /// that the cluster could not serve it right now.
    #[error("{}", NoAnswer(tried))]
    NoNodeAnswered {
        /// Every endpoint tried, in order, and why it gave no answer.
        tried: Vec<EndpointFailure>,
    },
}

/// Why one endpoint gave no answer; see [`Error::NoNodeAnswered`].
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointFailure {
    pub endpoint: String,
    pub error: Error,
}

impl fmt::Display for EndpointFailure {
    /// `endpoint: error`, without the endpoint a transport error repeats.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let error = self.error.to_string();
        let error = error.replacen(&format!("{}: ", self.endpoint), "", 1);
        write!(f, "{}: {error}", self.endpoint)
    }
}

/// Renders [`Error::NoNodeAnswered`]: each endpoint's failure, then what
/// to check.
struct NoAnswer<'a>(&'a [EndpointFailure]);

impl fmt::Display for NoAnswer<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        let plural = if n == 1 { "" } else { "s" };
        write!(f, "no node answered (tried {n} endpoint{plural})")?;
        for failure in self.0 {
            write!(f, "; {failure}")?;
        }
        match no_answer_hint(self.0) {
            Some(hint) => write!(f, "; {hint}"),
            None => Ok(()),
        }
    }
}

/// What to do when no endpoint answered: wait if some node was reached but
/// the cluster could not serve yet, look at the cluster and the endpoints
/// if none was reached.
fn no_answer_hint(tried: &[EndpointFailure]) -> Option<&'static str> {
    if tried
        .iter()
        .any(|t| matches!(t.error, Error::Unavailable(_)))
    {
        Some(
            "the cluster could not serve it right now (no leader or no quorum yet?): retry shortly",
        )
    } else if tried.iter().all(|t| matches!(t.error, Error::Transport(_))) {
        Some("is the cluster running? check the endpoints")
    } else {
        None
    }
}

/// Kinds of server errors carried by [`Error::Server`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerErrorKind {
    /// The shard's epoch changed (split, merge or membership change).
    EpochMismatch,
    /// The key lies outside the shard the request named.
    KeyOutOfRange,
    /// The node does not host the shard.
    ShardNotFound,
    /// The RPC failed with a gRPC status that retrying cannot fix.
    Rpc(tonic::Code),
    /// An error kind this client does not know (a newer server?).
    Unrecognized,
}

impl fmt::Display for ServerErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerErrorKind::EpochMismatch => f.write_str("shard epoch changed"),
            ServerErrorKind::KeyOutOfRange => f.write_str("key outside shard"),
            ServerErrorKind::ShardNotFound => f.write_str("shard not hosted by node"),
            ServerErrorKind::Rpc(code) => write!(f, "gRPC status {code:?}"),
            ServerErrorKind::Unrecognized => f.write_str("unrecognized error kind"),
        }
    }
}

/// Renders the leader hint of [`Error::NotLeader`].
struct LeaderHint<'a>(Option<u64>, Option<&'a str>);

impl fmt::Display for LeaderHint<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.0, self.1) {
            (Some(id), Some(addr)) => write!(f, "; the leader is node {id} at {addr}"),
            (Some(id), None) => write!(f, "; the leader is node {id}"),
            (None, Some(addr)) => write!(f, "; the leader is at {addr}"),
            (None, None) => f.write_str("; the leader is unknown"),
        }
    }
}

/// `message` without a leading `prefix`.
fn without_prefix(message: String, prefix: &str) -> String {
    match message.strip_prefix(prefix) {
        Some(rest) => rest.to_string(),
        None => message,
    }
}

impl Error {
    /// Translates a typed error from a reply.
    pub(crate) fn from_wire(error: &atoll_proto::Error) -> Error {
        let message = error.message.clone();
        let server = |kind| Error::Server {
            kind,
            message: message.clone(),
        };
        match &error.kind {
            Some(ErrorKind::NotLeader(nl)) => Error::NotLeader {
                shard_id: nl.shard_id,
                leader_id: nl.leader_id,
                leader_addr: non_empty(&nl.leader_addr),
            },
            Some(ErrorKind::EpochMismatch(_)) => server(ServerErrorKind::EpochMismatch),
            Some(ErrorKind::KeyOutOfRange(_)) => server(ServerErrorKind::KeyOutOfRange),
            Some(ErrorKind::ShardNotFound(_)) => server(ServerErrorKind::ShardNotFound),
            // The node's message starts with the kind's own name ("invalid argument:
            // ..."), which this error's Display says again: keep one.
            Some(ErrorKind::Unavailable(_)) => {
                Error::Unavailable(without_prefix(message, "unavailable: "))
            }
            Some(ErrorKind::InvalidArgument(_)) => {
                Error::InvalidArgument(without_prefix(message, "invalid argument: "))
            }
            Some(ErrorKind::NotApplied(_)) => {
                Error::NotApplied(without_prefix(message, "not applied: "))
            }
            Some(ErrorKind::SessionExpired(se)) => Error::SessionExpired {
                shard_id: se.shard_id,
                client_id: se.client_id,
            },
            None => server(ServerErrorKind::Unrecognized),
        }
    }

    /// Translates a failed RPC to `addr`.
    pub(crate) fn from_status(addr: &str, status: &tonic::Status) -> Error {
        let text = format!("{addr}: {} ({:?})", status.message(), status.code());
        match status.code() {
            tonic::Code::InvalidArgument => Error::InvalidArgument(text),
            code if is_transient(code) => Error::Transport(text),
            code => Error::Server {
                kind: ServerErrorKind::Rpc(code),
                message: text,
            },
        }
    }

    /// True when a write that failed with this error may nevertheless have
    /// been applied: [`Error::Timeout`] and [`Error::SessionExpired`].
    /// Names every variant, so a new one needs a decision here.
    pub fn is_indeterminate(&self) -> bool {
        match self {
            Error::Timeout { .. } | Error::SessionExpired { .. } => true,
            Error::InvalidArgument(_)
            | Error::NotApplied(_)
            | Error::Unavailable(_)
            | Error::CrossShardBatch
            | Error::Transport(_)
            | Error::NotLeader { .. }
            | Error::Server { .. }
            | Error::NoEndpoints
            | Error::Protocol(_)
            | Error::NoNodeAnswered { .. } => false,
        }
    }

    /// True for [`Error::InvalidArgument`] and [`Error::NoEndpoints`]: errors
    /// of the caller rather than of the cluster.
    pub fn is_invalid_argument(&self) -> bool {
        matches!(self, Error::InvalidArgument(_) | Error::NoEndpoints)
    }
}

/// gRPC codes that describe a failed attempt rather than a refused request.
/// Names every code: adding one to tonic must be a conscious decision here.
pub(crate) fn is_transient(code: tonic::Code) -> bool {
    use tonic::Code;
    match code {
        Code::Cancelled
        | Code::Unknown
        | Code::DeadlineExceeded
        | Code::ResourceExhausted
        | Code::Aborted
        | Code::Internal
        | Code::Unavailable => true,
        Code::Ok
        | Code::InvalidArgument
        | Code::NotFound
        | Code::AlreadyExists
        | Code::PermissionDenied
        | Code::FailedPrecondition
        | Code::OutOfRange
        | Code::Unimplemented
        | Code::DataLoss
        | Code::Unauthenticated => false,
    }
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use atoll_proto::NotLeader;

    #[test]
    fn a_wire_error_says_its_kind_once() {
        let wire = |message: &str, kind| atoll_proto::Error {
            message: message.into(),
            kind: Some(kind),
        };
        let e = Error::from_wire(&wire(
            "invalid argument: node 42 is unknown; join it first",
            ErrorKind::InvalidArgument(Default::default()),
        ));
        assert_eq!(
            e.to_string(),
            "invalid argument: node 42 is unknown; join it first"
        );
        let e = Error::from_wire(&wire(
            "unavailable: no quorum",
            ErrorKind::Unavailable(Default::default()),
        ));
        assert_eq!(e, Error::Unavailable("no quorum".into()));
        // A message without the prefix (another server) is kept whole.
        let e = Error::from_wire(&wire(
            "disk full",
            ErrorKind::InvalidArgument(Default::default()),
        ));
        assert_eq!(e, Error::InvalidArgument("disk full".into()));
    }

    #[test]
    fn not_leader_message_names_the_leader() {
        let wire = atoll_proto::Error {
            message: "not leader".into(),
            kind: Some(ErrorKind::NotLeader(NotLeader {
                shard_id: 3,
                leader_id: Some(2),
                leader_addr: "10.0.0.2:7102".into(),
            })),
        };
        let err = Error::from_wire(&wire);
        assert_eq!(
            err.to_string(),
            "node is not the leader of shard 3; the leader is node 2 at 10.0.0.2:7102"
        );
    }

    #[test]
    fn timeout_message_warns_about_indeterminate_writes() {
        let err = Error::Timeout {
            op: "put",
            after: Duration::from_secs(10),
            last: Box::new(Error::Transport(
                "127.0.0.1:7101: connection refused".into(),
            )),
        };
        let text = err.to_string();
        assert!(
            text.starts_with("put did not complete within 10s"),
            "{text}"
        );
        assert!(text.contains("may or may not have been applied"), "{text}");
    }

    #[test]
    fn session_expired_is_an_unknown_outcome() {
        let wire = atoll_proto::Error {
            message: "session 9 is not known to shard 1".into(),
            kind: Some(ErrorKind::SessionExpired(atoll_proto::SessionExpired {
                shard_id: 1,
                client_id: 9,
            })),
        };
        let err = Error::from_wire(&wire);
        assert_eq!(
            err,
            Error::SessionExpired {
                shard_id: 1,
                client_id: 9
            }
        );
        assert!(err.is_indeterminate());
        assert!(err.to_string().contains("may or may not have been applied"));
        assert!(!Error::Unavailable("no leader".into()).is_indeterminate());
    }

    fn failure(endpoint: &str, error: Error) -> EndpointFailure {
        EndpointFailure {
            endpoint: endpoint.into(),
            error,
        }
    }

    #[test]
    fn no_answer_names_each_endpoint_once_and_what_to_check() {
        let refused = tonic::Status::unavailable("tcp connect error");
        let err = Error::NoNodeAnswered {
            tried: vec![
                failure("a:1", Error::from_status("a:1", &refused)),
                failure("b:2", Error::from_status("b:2", &refused)),
            ],
        };
        assert_eq!(
            err.to_string(),
            "no node answered (tried 2 endpoints); \
             a:1: transport error: tcp connect error (Unavailable); \
             b:2: transport error: tcp connect error (Unavailable); \
             is the cluster running? check the endpoints"
        );
        assert!(!err.is_indeterminate());
        assert!(!err.is_invalid_argument());
    }

    #[test]
    fn no_answer_from_a_reached_cluster_says_retry() {
        let err = Error::NoNodeAnswered {
            tried: vec![
                failure("a:1", Error::Transport("a:1: refused".into())),
                failure("b:2", Error::Unavailable("no PD leader".into())),
            ],
        };
        let text = err.to_string();
        assert!(
            text.contains("b:2: cluster unavailable: no PD leader"),
            "{text}"
        );
        assert!(text.ends_with("retry shortly"), "{text}");
    }

    #[test]
    fn status_codes_split_into_transport_and_refusals() {
        let unavailable = tonic::Status::unavailable("tcp connect error");
        assert!(matches!(
            Error::from_status("a:1", &unavailable),
            Error::Transport(_)
        ));
        let bad = tonic::Status::invalid_argument("key too long");
        assert!(Error::from_status("a:1", &bad).is_invalid_argument());
        let unimpl = tonic::Status::unimplemented("no Kv service");
        assert!(matches!(
            Error::from_status("a:1", &unimpl),
            Error::Server {
                kind: ServerErrorKind::Rpc(tonic::Code::Unimplemented),
                ..
            }
        ));
    }
}
