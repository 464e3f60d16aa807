//! A retried write (same client id + seq) is applied once and answered with
//! the original result; a retry of an already-acknowledged seq is refused.

mod support;

use std::time::Duration;

use atoll_proto::error::Kind;
use atoll_proto::kv_client::KvClient;
use atoll_proto::{CasRequest, GetRequest, RequestHeader, WriteId};
use support::Cluster;

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

    let first = kv.cas(cas(7, 1, 1, None, b"1")).await.unwrap().into_inner();
    assert!(first.error.is_none() && first.succeeded, "{first:?}");
    // Another client moves the value on.
    let other = kv
        .cas(cas(8, 1, 1, Some(b"1"), b"2"))
        .await
        .unwrap()
        .into_inner();
    assert!(other.succeeded, "{other:?}");
    // The retry of client 7's write is not applied again (it would fail the
    // comparison now) but answered as the first attempt was.
    let retry = kv.cas(cas(7, 1, 1, None, b"1")).await.unwrap().into_inner();
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

    // Client 7 moves on (seq 2, everything below acknowledged); a late copy
    // of seq 1 is refused rather than applied.
    let next = kv
        .cas(cas(7, 2, 2, Some(b"2"), b"3"))
        .await
        .unwrap()
        .into_inner();
    assert!(next.succeeded, "{next:?}");
    let late = kv.cas(cas(7, 1, 2, None, b"1")).await.unwrap().into_inner();
    let e = late.error.expect("late retry must be refused");
    assert!(matches!(e.kind, Some(Kind::InvalidArgument(_))), "{e:?}");
    assert!(e.message.contains("already acknowledged"), "{}", e.message);
}
