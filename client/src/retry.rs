//! What to do after a failed attempt: one pure function, [`decide`], that
//! turns each way an attempt can fail into an [`Action`], and [`Backoff`], a
//! plain value that computes retry delays.
//!
//! The function names every wire error variant and every gRPC code; there is
//! no wildcard, so a new variant in the protocol does not compile until
//! someone decides how the client reacts to it.

use std::time::Duration;

use atoll_proto::{ErrorKind, ShardDescriptor};
use rand::Rng;

use crate::error::{is_transient, Error};

/// How one attempt failed.
#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    /// The node answered with a typed error.
    Server(atoll_proto::Error),
    /// The RPC itself failed (connection refused or reset, server panic, ...).
    Status {
        /// The gRPC status code.
        code: tonic::Code,
        /// The status message.
        message: String,
    },
    /// No answer within the per-RPC timeout.
    RpcTimeout,
}

/// The reaction to a [`Failure`].
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Retry at once on the leader the node pointed to. Either field may be
    /// missing; the address is then looked up in the route cache.
    RetryOnLeader {
        /// The leader's node id.
        leader_id: Option<u64>,
        /// The leader's address.
        leader_addr: Option<String>,
    },
    /// Retry at once on the next replica of the shard.
    NextReplica,
    /// Put these descriptors into the route cache and retry at once.
    PatchRoutes(Vec<ShardDescriptor>),
    /// Reload the route map from the cluster, then retry.
    RefreshRoutes,
    /// The node does not host the shard (its replica moved away, or is not
    /// created yet): reload the route map, then retry on the next replica,
    /// not on this node again.
    RefreshRoutesNextReplica,
    /// Wait for the next backoff delay, then retry on the next replica.
    BackoffNextReplica,
    /// Give up; the failure itself is the error (see [`Failure::to_error`]).
    Fail,
}

/// Decides how to react to `failure`. Pure: no I/O, no clock.
pub fn decide(failure: &Failure) -> Action {
    match failure {
        Failure::Server(error) => match &error.kind {
            Some(ErrorKind::NotLeader(nl)) => {
                let leader_addr = (!nl.leader_addr.is_empty()).then(|| nl.leader_addr.clone());
                if nl.leader_id.is_none() && leader_addr.is_none() {
                    Action::NextReplica
                } else {
                    Action::RetryOnLeader {
                        leader_id: nl.leader_id,
                        leader_addr,
                    }
                }
            }
            Some(ErrorKind::EpochMismatch(em)) if em.current.is_empty() => Action::RefreshRoutes,
            Some(ErrorKind::EpochMismatch(em)) => Action::PatchRoutes(em.current.clone()),
            Some(ErrorKind::KeyOutOfRange(_)) => Action::RefreshRoutes,
            Some(ErrorKind::ShardNotFound(_)) => Action::RefreshRoutesNextReplica,
            // The node cannot serve now (no leader yet, no quorum). It may be a
            // deposed leader stuck in a minority, so wait and move on rather
            // than hammer the same node.
            Some(ErrorKind::Unavailable(_)) => Action::BackoffNextReplica,
            Some(ErrorKind::InvalidArgument(_)) => Action::Fail,
            // Nothing changed; the caller decides whether to ask again.
            Some(ErrorKind::NotApplied(_)) => Action::Fail,
            // The shard evicted the write's session. Re-sending under a new
            // session could apply the write twice, so the caller gets an
            // unknown outcome (and the client opens a new session for later
            // writes).
            Some(ErrorKind::SessionExpired(_)) => Action::Fail,
            // An error kind newer than this client: do not guess.
            None => Action::Fail,
        },
        Failure::Status { code, .. } if is_transient(*code) => Action::BackoffNextReplica,
        Failure::Status { .. } => Action::Fail,
        Failure::RpcTimeout => Action::BackoffNextReplica,
    }
}

/// Whether the attempt that failed this way may have been applied: false
/// only for refusals a node gives before proposing anything (or for a write
/// the state machine refused). Pure; names every variant.
pub fn may_have_applied(failure: &Failure) -> bool {
    match failure {
        Failure::Server(error) => match &error.kind {
            Some(ErrorKind::NotLeader(_))
            | Some(ErrorKind::EpochMismatch(_))
            | Some(ErrorKind::KeyOutOfRange(_))
            | Some(ErrorKind::ShardNotFound(_))
            | Some(ErrorKind::InvalidArgument(_))
            | Some(ErrorKind::NotApplied(_))
            | Some(ErrorKind::SessionExpired(_)) => false,
            // "Not committed within the write timeout": it may still apply.
            Some(ErrorKind::Unavailable(_)) => true,
            None => true,
        },
        // The request may have reached the node before the RPC failed.
        Failure::Status { .. } | Failure::RpcTimeout => true,
    }
}

impl Failure {
    /// The error this failure amounts to, for an attempt sent to `addr`.
    pub fn to_error(&self, addr: &str, rpc_timeout: Duration) -> Error {
        match self {
            Failure::Server(error) => Error::from_wire(error),
            Failure::Status { code, message } => {
                Error::from_status(addr, &tonic::Status::new(*code, message.clone()))
            }
            Failure::RpcTimeout => {
                Error::Transport(format!("{addr}: no reply within {rpc_timeout:?}"))
            }
        }
    }
}

/// How the random part of a backoff delay is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Jitter {
    /// Uniform in `[0, d]`: spreads retries best, may retry at once.
    Full,
    /// Uniform in `[d/2, d]`: always waits at least half the delay.
    Equal,
    /// Exactly `d`.
    None,
}

/// Exponential backoff: the cap for attempt `n` is `initial * 2^n`, bounded
/// by `max`, then jittered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Delay cap of the first retry.
    pub initial: Duration,
    /// Upper bound of any delay.
    pub max: Duration,
    /// How the delay is drawn under its cap.
    pub jitter: Jitter,
}

impl Default for Backoff {
    /// 20 ms doubling to 1 s, equal jitter.
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(20),
            max: Duration::from_secs(1),
            jitter: Jitter::Equal,
        }
    }
}

impl Backoff {
    /// The delay before retry number `attempt` (0-based).
    pub fn next_delay<R: Rng + ?Sized>(&self, attempt: u32, rng: &mut R) -> Duration {
        let cap = self.cap(attempt);
        let nanos = u64::try_from(cap.as_nanos()).unwrap_or(u64::MAX);
        match self.jitter {
            Jitter::Full => Duration::from_nanos(rng.gen_range(0..=nanos)),
            Jitter::Equal => Duration::from_nanos(nanos / 2 + rng.gen_range(0..=nanos - nanos / 2)),
            Jitter::None => cap,
        }
    }

    /// The jitter-free delay of retry number `attempt`.
    fn cap(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
        self.initial
            .checked_mul(factor)
            .unwrap_or(self.max)
            .min(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use atoll_proto::{
        EpochMismatch, InvalidArgument, KeyOutOfRange, NotLeader, SessionExpired, ShardNotFound,
        Unavailable,
    };
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn server(kind: ErrorKind) -> Failure {
        Failure::Server(atoll_proto::Error {
            message: "test".into(),
            kind: Some(kind),
        })
    }

    #[test]
    fn not_leader_with_hint_goes_to_the_leader() {
        let failure = server(ErrorKind::NotLeader(NotLeader {
            shard_id: 1,
            leader_id: Some(2),
            leader_addr: "n2:7102".into(),
        }));
        assert_eq!(
            decide(&failure),
            Action::RetryOnLeader {
                leader_id: Some(2),
                leader_addr: Some("n2:7102".into())
            }
        );
    }

    #[test]
    fn not_leader_with_id_only_still_names_the_leader() {
        let failure = server(ErrorKind::NotLeader(NotLeader {
            shard_id: 1,
            leader_id: Some(3),
            leader_addr: String::new(),
        }));
        assert_eq!(
            decide(&failure),
            Action::RetryOnLeader {
                leader_id: Some(3),
                leader_addr: None
            }
        );
    }

    #[test]
    fn not_leader_without_hint_tries_the_next_replica() {
        let failure = server(ErrorKind::NotLeader(NotLeader::default()));
        assert_eq!(decide(&failure), Action::NextReplica);
    }

    #[test]
    fn epoch_mismatch_patches_the_cache_or_refreshes_when_empty() {
        let current = vec![ShardDescriptor {
            id: 4,
            ..Default::default()
        }];
        let failure = server(ErrorKind::EpochMismatch(EpochMismatch {
            current: current.clone(),
        }));
        assert_eq!(decide(&failure), Action::PatchRoutes(current));
        let empty = server(ErrorKind::EpochMismatch(EpochMismatch::default()));
        assert_eq!(decide(&empty), Action::RefreshRoutes);
    }

    #[test]
    fn routing_errors_refresh_the_map() {
        let out = server(ErrorKind::KeyOutOfRange(KeyOutOfRange::default()));
        assert_eq!(decide(&out), Action::RefreshRoutes);
        let missing = server(ErrorKind::ShardNotFound(ShardNotFound { shard_id: 9 }));
        assert_eq!(decide(&missing), Action::RefreshRoutesNextReplica);
    }

    #[test]
    fn unavailable_transport_and_timeouts_back_off() {
        let unavailable = server(ErrorKind::Unavailable(Unavailable {}));
        assert_eq!(decide(&unavailable), Action::BackoffNextReplica);
        let refused = Failure::Status {
            code: tonic::Code::Unavailable,
            message: "connection refused".into(),
        };
        assert_eq!(decide(&refused), Action::BackoffNextReplica);
        assert_eq!(decide(&Failure::RpcTimeout), Action::BackoffNextReplica);
    }

    #[test]
    fn invalid_arguments_and_unknown_errors_fail() {
        let invalid = server(ErrorKind::InvalidArgument(InvalidArgument {}));
        assert_eq!(decide(&invalid), Action::Fail);
        let unknown = Failure::Server(atoll_proto::Error {
            message: "from the future".into(),
            kind: None,
        });
        assert_eq!(decide(&unknown), Action::Fail);
        let unimplemented = Failure::Status {
            code: tonic::Code::Unimplemented,
            message: "no such method".into(),
        };
        assert_eq!(decide(&unimplemented), Action::Fail);
        let err = unimplemented.to_error("n1:7101", Duration::from_secs(2));
        assert!(err.to_string().contains("n1:7101"), "{err}");
    }

    #[test]
    fn an_expired_session_is_never_retried_and_reports_an_unknown_outcome() {
        let expired = server(ErrorKind::SessionExpired(SessionExpired {
            shard_id: 1,
            client_id: 4,
        }));
        assert_eq!(decide(&expired), Action::Fail);
        let err = expired.to_error("n1:7101", Duration::from_secs(2));
        assert_eq!(
            err,
            Error::SessionExpired {
                shard_id: 1,
                client_id: 4
            }
        );
        assert!(err.is_indeterminate());
    }

    #[test]
    fn only_refusals_before_proposal_are_known_not_applied() {
        let refused = [
            ErrorKind::NotLeader(NotLeader::default()),
            ErrorKind::EpochMismatch(EpochMismatch::default()),
            ErrorKind::KeyOutOfRange(KeyOutOfRange::default()),
            ErrorKind::ShardNotFound(ShardNotFound { shard_id: 2 }),
            ErrorKind::InvalidArgument(InvalidArgument {}),
        ];
        for kind in refused {
            assert!(!may_have_applied(&server(kind.clone())), "{kind:?}");
        }
        assert!(may_have_applied(&server(ErrorKind::Unavailable(
            Unavailable {}
        ))));
        assert!(may_have_applied(&Failure::RpcTimeout));
        assert!(may_have_applied(&Failure::Status {
            code: tonic::Code::Unavailable,
            message: "reset".into(),
        }));
    }

    #[test]
    fn backoff_caps_grow_exponentially_to_the_bound() {
        let b = Backoff {
            jitter: Jitter::None,
            ..Backoff::default()
        };
        let mut rng = StdRng::seed_from_u64(1);
        let delays: Vec<u64> = (0..8)
            .map(|n| b.next_delay(n, &mut rng).as_millis() as u64)
            .collect();
        assert_eq!(delays, [20, 40, 80, 160, 320, 640, 1000, 1000]);
        assert_eq!(b.next_delay(u32::MAX, &mut rng), Duration::from_secs(1));
    }

    #[test]
    fn jittered_delays_stay_within_their_bounds() {
        let mut rng = StdRng::seed_from_u64(2);
        for jitter in [Jitter::Full, Jitter::Equal] {
            let b = Backoff {
                jitter,
                ..Backoff::default()
            };
            for attempt in 0..40 {
                let cap = b.cap(attempt);
                let floor = if jitter == Jitter::Equal {
                    cap / 2
                } else {
                    Duration::ZERO
                };
                let d = b.next_delay(attempt, &mut rng);
                assert!(d >= floor && d <= cap, "{jitter:?} {attempt}: {d:?}");
            }
        }
    }
}
