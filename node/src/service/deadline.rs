//! How long a KV request may wait for Raft (a write's commit and apply, a
//! read's ReadIndex): the node's own limit (`raft.write_timeout_ms`), cut to
//! the caller's gRPC deadline (the `grpc-timeout` header) less a margin for
//! the reply's way back. The caller then gets a typed `Unavailable` ("not
//! committed within …; it may still apply") before it gives up, instead of
//! a transport timeout after which it cannot tell what happened.
//!
//! [`Wait::decide`] is the pure decision and [`parse_grpc_timeout`] the
//! header's parser; [`Deadline`] applies them to one request. The client
//! side is `atoll_client`'s `deadline.rs`; the relationship between the
//! defaults is in docs/operations.md, "Timeouts".

use std::fmt;
use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;
use tonic::metadata::MetadataMap;

/// The gRPC deadline header (gRPC over HTTP/2: `TimeoutValue TimeoutUnit`).
const GRPC_TIMEOUT: &str = "grpc-timeout";

/// The most a caller's deadline is shortened by, so the answer reaches the
/// caller before its own timer fires. Smaller deadlines lose a tenth.
pub const MAX_REPLY_MARGIN: Duration = Duration::from_millis(100);

/// What bounds a request's wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    /// The node's own limit: the caller sent no deadline, or a longer one.
    Node,
    /// The caller's deadline, less the reply margin.
    Caller,
}

/// How long one request may wait for Raft, and why that long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wait {
    pub limit: Duration,
    pub bound: Bound,
}

impl Wait {
    /// The wait of a request, from the node's limit `own` and the caller's
    /// deadline (`None`: none sent, or unreadable). Pure.
    pub fn decide(own: Duration, caller: Option<Duration>) -> Wait {
        match caller.map(|c| c.saturating_sub(reply_margin(c))) {
            Some(limit) if limit < own => Wait {
                limit,
                bound: Bound::Caller,
            },
            Some(_) | None => Wait {
                limit: own,
                bound: Bound::Node,
            },
        }
    }
}

impl fmt::Display for Wait {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.bound {
            Bound::Node => write!(f, "{:?} (raft.write_timeout_ms)", self.limit),
            Bound::Caller => write!(f, "{:?} (the request's deadline)", self.limit),
        }
    }
}

fn reply_margin(caller: Duration) -> Duration {
    (caller / 10).min(MAX_REPLY_MARGIN)
}

/// Parses a `grpc-timeout` value: 1 to 8 ASCII digits, then the unit `H`,
/// `M`, `S`, `m`, `u` or `n` (hours down to nanoseconds). `None` for
/// anything else; a bad header is ignored, never trusted or fatal.
pub fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    let digits = value.get(..value.len().checked_sub(1)?)?;
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // At most 8 digits: no overflow below, even in hours.
    let n: u64 = digits.parse().ok()?;
    match &value[digits.len()..] {
        "H" => Some(Duration::from_secs(n * 3600)),
        "M" => Some(Duration::from_secs(n * 60)),
        "S" => Some(Duration::from_secs(n)),
        "m" => Some(Duration::from_millis(n)),
        "u" => Some(Duration::from_micros(n)),
        "n" => Some(Duration::from_nanos(n)),
        _ => None,
    }
}

/// The wait of one request, counted from its arrival, and what its caller
/// said about its previous attempt.
#[derive(Debug, Clone)]
pub struct Deadline {
    wait: Wait,
    start: Instant,
    /// The replica the caller's previous attempt could not reach
    /// ([`atoll_proto::UNREACHABLE_METADATA`]).
    unreachable: Option<String>,
}

impl Deadline {
    /// The deadline of a request with this metadata, under the node's limit
    /// `own`. Call it when the request arrives.
    pub fn of(metadata: &MetadataMap, own: Duration) -> Deadline {
        let caller = metadata
            .get(GRPC_TIMEOUT)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_grpc_timeout);
        let unreachable = metadata
            .get(atoll_proto::UNREACHABLE_METADATA)
            .and_then(|v| v.to_str().ok())
            .filter(|a| !a.is_empty())
            .map(str::to_string);
        Deadline {
            wait: Wait::decide(own, caller),
            start: Instant::now(),
            unreachable,
        }
    }

    /// Whether the caller's previous attempt could not reach `addr`.
    pub fn found_unreachable(&self, addr: &str) -> bool {
        self.unreachable.as_deref() == Some(addr)
    }

    /// The instant the wait ends.
    pub fn at(&self) -> Instant {
        self.start + self.wait.limit
    }

    /// What is left of the wait.
    pub fn left(&self) -> Duration {
        self.wait.limit.saturating_sub(self.start.elapsed())
    }

    /// Runs `f` until the deadline; `Err` with the wait that passed if the
    /// deadline comes first.
    pub async fn run<F: Future>(&self, f: F) -> Result<F::Output, Wait> {
        tokio::time::timeout(self.left(), f)
            .await
            .map_err(|_| self.wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn grpc_timeout_parses_every_unit_of_the_spec() {
        assert_eq!(parse_grpc_timeout("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_grpc_timeout("3M"), Some(Duration::from_secs(180)));
        assert_eq!(parse_grpc_timeout("5S"), Some(Duration::from_secs(5)));
        assert_eq!(parse_grpc_timeout("1500m"), Some(MS(1500)));
        assert_eq!(parse_grpc_timeout("250u"), Some(Duration::from_micros(250)));
        assert_eq!(parse_grpc_timeout("7n"), Some(Duration::from_nanos(7)));
        assert_eq!(parse_grpc_timeout("0n"), Some(Duration::ZERO));
        assert_eq!(
            parse_grpc_timeout("99999999H"),
            Some(Duration::from_secs(99_999_999 * 3600))
        );
    }

    #[test]
    fn malformed_grpc_timeouts_are_ignored() {
        for bad in [
            "",
            "S",
            "m",
            "10",
            "10s",
            "10 S",
            " 10S",
            "-1S",
            "+1S",
            "1.5S",
            "999999999S",
            "1e3m",
            "10SS",
            "١٠S",
            "10µ",
            "abc",
        ] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_header_tonic_writes_is_the_header_we_read() {
        for d in [
            MS(0),
            MS(1),
            MS(999),
            MS(1000),
            MS(2000),
            Duration::from_secs(400),
        ] {
            let mut request = tonic::Request::new(());
            request.set_timeout(d);
            let value = request
                .metadata()
                .get(GRPC_TIMEOUT)
                .unwrap()
                .to_str()
                .unwrap();
            assert_eq!(parse_grpc_timeout(value), Some(d), "{value}");
        }
    }

    #[test]
    fn a_shorter_caller_deadline_bounds_the_wait_less_a_reply_margin() {
        let own = MS(5000);
        assert_eq!(
            Wait::decide(own, Some(MS(1000))),
            Wait {
                limit: MS(900),
                bound: Bound::Caller
            }
        );
        assert_eq!(Wait::decide(own, Some(MS(2000))).limit, MS(1900));
        // Short deadlines lose a tenth, long ones at most MAX_REPLY_MARGIN.
        assert_eq!(Wait::decide(own, Some(MS(200))).limit, MS(180));
        assert_eq!(Wait::decide(own, Some(MS(4000))).limit, MS(3900));
        assert_eq!(
            Wait::decide(own, Some(Duration::ZERO)).limit,
            Duration::ZERO
        );
    }

    #[test]
    fn without_a_shorter_caller_deadline_the_node_limit_holds() {
        let own = MS(5000);
        let node = Wait {
            limit: own,
            bound: Bound::Node,
        };
        assert_eq!(Wait::decide(own, None), node);
        assert_eq!(Wait::decide(own, Some(MS(5100))), node);
        assert_eq!(Wait::decide(own, Some(Duration::from_secs(3600))), node);
    }

    #[test]
    fn a_default_client_attempt_gets_its_answer_before_it_gives_up() {
        let client = atoll_client::ClientConfig::default();
        let own = crate::config::RaftTuning::default().write_timeout();
        let wait = Wait::decide(own, Some(client.request_timeout));
        assert!(wait.limit < client.request_timeout, "{wait}");
        assert!(client.request_timeout < client.deadline);
    }

    #[test]
    fn the_deadline_comes_from_the_request_metadata() {
        let own = MS(5000);
        let mut request = tonic::Request::new(());
        assert_eq!(Deadline::of(request.metadata(), own).wait.limit, own);
        request.set_timeout(MS(1000));
        assert_eq!(Deadline::of(request.metadata(), own).wait.limit, MS(900));
        request
            .metadata_mut()
            .insert(GRPC_TIMEOUT, "soon".parse().unwrap());
        assert_eq!(Deadline::of(request.metadata(), own).wait.limit, own);
    }

    #[test]
    fn the_wait_names_what_bounded_it() {
        let caller = Wait::decide(MS(5000), Some(MS(1000)));
        assert_eq!(caller.to_string(), "900ms (the request's deadline)");
        let node = Wait::decide(MS(5000), None);
        assert_eq!(node.to_string(), "5s (raft.write_timeout_ms)");
    }
}
