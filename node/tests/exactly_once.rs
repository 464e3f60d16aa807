//! A retried write (same client id + seq) is applied once and answered with
//! the original result; a retry of an already-acknowledged seq is refused;
//! a retry whose session was evicted gets `SessionExpired`, not a second
//! application.

mod support;

use std::time::Duration;

use atoll_proto::error::Kind;
use atoll_proto::kv_client::KvClient;
use atoll_proto::{CasRequest, GetRequest, OpenSessionRequest, PutRequest, RequestHeader, WriteId};
use support::Cluster;
use tonic::transport::Channel;

fn header() -> Option<RequestHeader> {
    Some(RequestHeader {
        shard_id: 1,
        epoch: None,
    })
}

/// Opens a session on shard 1; returns its client id.
async fn open_session(kv: &mut KvClient<Channel>) -> u64 {
    let r = kv
        .open_session(OpenSessionRequest { header: header() })
        .await
        .unwrap()
        .into_inner();
    assert!(r.error.is_none() && r.client_id != 0, "{r:?}");
    r.client_id
}

async fn read(kv: &mut KvClient<Channel>, key: &[u8]) -> Option<Vec<u8>> {
    let r = kv
        .get(GetRequest {
            header: header(),
            key: key.to_vec(),
            consistency: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r.error.is_none(), "{r:?}");
    r.value
}

fn put(client: u64, seq: u64, value: &[u8]) -> PutRequest {
    PutRequest {
        header: header(),
        write_id: Some(WriteId {
            client_id: client,
            seq,
            first_incomplete: seq,
        }),
        key: b"evicted".to_vec(),
        value: value.to_vec(),
    }
}

fn cas(
    client: u64,
    seq: u64,
    first_incomplete: u64,
    expected: Option<&[u8]>,
    new: &[u8],
) -> CasRequest {
    CasRequest {
        header: Some(RequestHeader {
            shard_id: 1,
            epoch: None,
        }),
        write_id: Some(WriteId {
            client_id: client,
            seq,
            first_incomplete,
        }),
        key: b"counter".to_vec(),
        expected: expected.map(<[u8]>::to_vec),
        new_value: Some(new.to_vec()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_write_applies_once_and_gets_its_original_answer() {
    let cluster = Cluster::start(3, "");
    let leader = cluster.wait_leader(1, Duration::from_secs(20)).await;
    let mut kv = KvClient::connect(format!("http://{}", cluster.addr(leader)))
        .await
        .unwrap();

    let (me, other) = (open_session(&mut kv).await, open_session(&mut kv).await);
    assert_ne!(me, other, "session ids are never reused");
    let first = kv
        .cas(cas(me, 1, 1, None, b"1"))
        .await
        .unwrap()
        .into_inner();
    assert!(first.error.is_none() && first.succeeded, "{first:?}");
    // Another client moves the value on.
    let other = kv
        .cas(cas(other, 1, 1, Some(b"1"), b"2"))
        .await
        .unwrap()
        .into_inner();
    assert!(other.succeeded, "{other:?}");
    // The retry of the first client's write is not applied again (it would fail the
    // comparison now) but answered as the first attempt was.
    let retry = kv
        .cas(cas(me, 1, 1, None, b"1"))
        .await
        .unwrap()
        .into_inner();
    assert!(retry.error.is_none() && retry.succeeded, "{retry:?}");
    let now = kv
        .get(GetRequest {
            header: Some(RequestHeader {
                shard_id: 1,
                epoch: None,
            }),
            key: b"counter".to_vec(),
            consistency: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        now.value.as_deref(),
        Some(&b"2"[..]),
        "the retry must not re-apply"
    );

    // The client moves on (seq 2, everything below acknowledged); a late copy
    // of seq 1 is refused rather than applied.
    let next = kv
        .cas(cas(me, 2, 2, Some(b"2"), b"3"))
        .await
        .unwrap()
        .into_inner();
    assert!(next.succeeded, "{next:?}");
    let late = kv
        .cas(cas(me, 1, 2, None, b"1"))
        .await
        .unwrap()
        .into_inner();
    let e = late.error.expect("late retry must be refused");
    assert!(matches!(e.kind, Some(Kind::InvalidArgument(_))), "{e:?}");
    assert!(e.message.contains("already acknowledged"), "{}", e.message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_its_session_was_evicted_gets_session_expired_and_applies_once() {
    let cluster = Cluster::start(3, "[sessions]\nmax_per_shard = 3\n");
    let leader = cluster.wait_leader(1, Duration::from_secs(20)).await;
    let mut kv = KvClient::connect(format!("http://{}", cluster.addr(leader)))
        .await
        .unwrap();

    // Client A writes; client B overwrites after it.
    let a = open_session(&mut kv).await;
    let r = kv.put(put(a, 1, b"from-a")).await.unwrap().into_inner();
    assert!(r.error.is_none(), "{r:?}");
    let b = open_session(&mut kv).await;
    let r = kv.put(put(b, 1, b"from-b")).await.unwrap().into_inner();
    assert!(r.error.is_none(), "{r:?}");
    // Enough new sessions to push A (the least recently written) out of a
    // table of three.
    for _ in 0..2 {
        open_session(&mut kv).await;
    }

    // A's retry of its applied write (say its reply was lost) must not
    // apply again: it gets SessionExpired, naming A.
    let retry = kv.put(put(a, 1, b"from-a")).await.unwrap().into_inner();
    let e = retry.error.expect("the retry must be refused");
    assert!(
        matches!(e.kind, Some(Kind::SessionExpired(ref s)) if s.client_id == a && s.shard_id == 1),
        "{e:?}"
    );
    assert!(e.message.contains("outcome is unknown"), "{}", e.message);
    assert_eq!(
        read(&mut kv, b"evicted").await.as_deref(),
        Some(&b"from-b"[..]),
        "A's write was applied a second time"
    );
    // A new write of A is refused too: an evicted session never comes back.
    let next = kv.put(put(a, 2, b"a-again")).await.unwrap().into_inner();
    assert!(
        matches!(
            next.error.and_then(|e| e.kind),
            Some(Kind::SessionExpired(_))
        ),
        "an evicted session must stay evicted"
    );

    // The real client turns this into an unknown outcome and carries on
    // with a fresh session.
    let client = atoll_client::Client::connect(cluster.endpoints())
        .await
        .unwrap();
    client.put("evicted", "from-client").await.unwrap();
    assert_eq!(
        read(&mut kv, b"evicted").await.as_deref(),
        Some(&b"from-client"[..])
    );
}
