//! The node answers within the caller's gRPC deadline (issue 7, item 7;
//! docs/operations.md, "Timeouts"): a leader that cannot commit (both
//! followers killed) answers a write sent with a 1 s deadline with a typed
//! `Unavailable` before that deadline, instead of waiting its own
//! `raft.write_timeout_ms` (5 s) while the caller's RPC times out with no
//! answer. A write sent without a deadline still gets the node's limit.

mod support;

use std::time::Duration;

use atoll_proto::kv_client::KvClient;
use atoll_proto::{ErrorKind, OpenSessionRequest, PutRequest, RequestHeader, WriteId};
use support::Cluster;
use tonic::Request;

const SECS: fn(u64) -> Duration = Duration::from_secs;

fn put(client_id: u64, seq: u64) -> PutRequest {
    PutRequest {
        header: Some(RequestHeader {
            shard_id: 1,
            epoch: None,
        }),
        write_id: Some(WriteId {
            client_id,
            seq,
            first_incomplete: 1,
        }),
        key: format!("k{seq}").into_bytes(),
        value: b"v".to_vec(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_without_quorum_answers_a_write_before_the_callers_deadline() {
    let mut cluster = Cluster::start(3, "");
    let leader = cluster.wait_leader(1, SECS(20)).await;
    let mut kv = KvClient::connect(format!("http://{}", cluster.addr(leader)))
        .await
        .expect("connect to the leader");
    let header = RequestHeader {
        shard_id: 1,
        epoch: None,
    };
    let opened = kv
        .open_session(OpenSessionRequest {
            header: Some(header),
        })
        .await
        .expect("OpenSession")
        .into_inner();
    assert_eq!(opened.error, None, "{}", cluster.logs());
    for id in (1..=3).filter(|id| *id != leader) {
        cluster.kill9(id);
    }

    // tonic's client enforces the deadline too: a reply at all means the
    // node answered in time.
    let mut request = Request::new(put(opened.client_id, 1));
    request.set_timeout(SECS(1));
    let reply = kv.put(request).await.unwrap_or_else(|status| {
        panic!("the node should answer before the 1 s deadline, got {status:?}")
    });
    let error = reply
        .into_inner()
        .error
        .expect("no quorum: the write fails");
    assert!(
        matches!(error.kind, Some(ErrorKind::Unavailable(_))),
        "{error:?}"
    );
    assert!(
        error.message.contains("(the request's deadline)")
            && error.message.contains("may still apply"),
        "{}",
        error.message
    );

    // Without a deadline, the node's own limit (5 s) bounds the wait.
    let reply = kv
        .put(put(opened.client_id, 2))
        .await
        .expect("the node answers");
    let error = reply
        .into_inner()
        .error
        .expect("no quorum: the write fails");
    assert!(
        error.message.contains("(raft.write_timeout_ms)"),
        "{}",
        error.message
    );
}
