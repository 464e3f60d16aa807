//! Bad input gets a typed error with a readable message, and the node keeps
//! serving afterwards.

mod support;

use std::time::Duration;

use atoll_proto::error::Kind;
use atoll_proto::kv_client::KvClient;
use atoll_proto::{
    BatchRequest, Epoch, GetRequest, OpenSessionRequest, PutRequest, RequestHeader, ScanRequest,
    ShardsRequest, WriteId,
};
use support::Cluster;
use tonic::transport::Channel;

fn header(shard: u64) -> Option<RequestHeader> {
    Some(RequestHeader {
        shard_id: shard,
        epoch: None,
    })
}

/// A session id no shard gave out: fine for requests refused before they
/// reach the state machine.
const NO_SESSION: u64 = 42_000_000;

fn wid(seq: u64) -> Option<WriteId> {
    wid_in(NO_SESSION, seq)
}

fn wid_in(client_id: u64, seq: u64) -> Option<WriteId> {
    Some(WriteId {
        client_id,
        seq,
        first_incomplete: seq,
    })
}

async fn kv(addr: &str) -> KvClient<Channel> {
    KvClient::connect(format!("http://{addr}"))
        .await
        .expect("connect")
        .max_decoding_message_size(64 << 20)
}

fn put(key: &[u8], value: &[u8], seq: u64) -> PutRequest {
    PutRequest {
        header: header(1),
        write_id: wid(seq),
        key: key.to_vec(),
        value: value.to_vec(),
    }
}

#[track_caller]
fn expect_kind(e: Option<atoll_proto::Error>, check: impl Fn(&Kind) -> bool, words: &str) {
    let e = e.expect("expected an error");
    assert!(e.kind.as_ref().is_some_and(&check), "wrong kind: {e:?}");
    assert!(
        e.message.contains(words),
        "message {:?} should mention {words:?}",
        e.message
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_typed_errors_and_the_cluster_keeps_serving() {
    let cluster = Cluster::start(3, "");
    let leader = cluster.wait_leader(1, Duration::from_secs(20)).await;
    let mut c = kv(&cluster.addr(leader)).await;
    let invalid = |k: &Kind| matches!(k, Kind::InvalidArgument(_));

    let r = c.put(put(b"", b"v", 1)).await.unwrap().into_inner();
    expect_kind(r.error, invalid, "empty");
    let r = c
        .put(put(&[b'k'; 4097], b"v", 2))
        .await
        .unwrap()
        .into_inner();
    expect_kind(r.error, invalid, "4097 bytes");
    let r = c
        .put(put(b"k", &vec![0u8; 1024 * 1024 + 1], 3))
        .await
        .unwrap()
        .into_inner();
    expect_kind(r.error, invalid, "limit");
    let r = c
        .put(PutRequest {
            write_id: None,
            ..put(b"k", b"v", 4)
        })
        .await
        .unwrap()
        .into_inner();
    expect_kind(r.error, invalid, "write_id");
    let r = c
        .put(PutRequest {
            header: None,
            ..put(b"k", b"v", 5)
        })
        .await
        .unwrap()
        .into_inner();
    expect_kind(r.error, invalid, "header");
    let r = c
        .scan(ScanRequest {
            header: header(1),
            start: b"z".to_vec(),
            end: b"a".to_vec(),
            limit: 10,
            consistency: 0,
        })
        .await
        .unwrap()
        .into_inner();
    expect_kind(r.error, invalid, "start is after");
    let r = c
        .batch(BatchRequest {
            header: header(1),
            write_id: wid(6),
            mutations: vec![],
        })
        .await
        .unwrap()
        .into_inner();
    expect_kind(r.error, invalid, "no mutations");

    let r = c
        .get(GetRequest {
            header: header(99),
            key: b"k".to_vec(),
            consistency: 0,
        })
        .await
        .unwrap()
        .into_inner();
    expect_kind(
        r.error,
        |k| matches!(k, Kind::ShardNotFound(s) if s.shard_id == 99),
        "shard 99",
    );

    let stale_epoch = Some(RequestHeader {
        shard_id: 1,
        epoch: Some(Epoch {
            version: 77,
            conf_ver: 0,
        }),
    });
    let r = c
        .get(GetRequest {
            header: stale_epoch,
            key: b"k".to_vec(),
            consistency: 0,
        })
        .await
        .unwrap()
        .into_inner();
    expect_kind(
        r.error,
        |k| matches!(k, Kind::EpochMismatch(m) if m.current.len() == 1),
        "epoch",
    );

    // A follower redirects to the leader.
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    let mut f = kv(&cluster.addr(follower)).await;
    let r = f.put(put(b"k", b"v", 7)).await.unwrap().into_inner();
    expect_kind(
        r.error,
        |k| matches!(k, Kind::NotLeader(n) if n.leader_id == Some(leader)),
        "not the leader",
    );

    // A write under a session the shard never opened is refused.
    let r = c.put(put(b"k", b"v", 8)).await.unwrap().into_inner();
    expect_kind(
        r.error,
        |k| matches!(k, Kind::SessionExpired(s) if s.client_id == NO_SESSION),
        "outcome is unknown",
    );

    // Still serving, and nothing of the above was applied.
    let session = c
        .open_session(OpenSessionRequest { header: header(1) })
        .await
        .unwrap()
        .into_inner();
    assert!(session.error.is_none(), "{session:?}");
    let r = c
        .put(PutRequest {
            write_id: wid_in(session.client_id, 1),
            ..put(b"k", b"good", 1)
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r.error.is_none(), "{r:?}");
    let r = c
        .get(GetRequest {
            header: header(1),
            key: b"k".to_vec(),
            consistency: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.value.as_deref(), Some(&b"good"[..]));
    let shards = c
        .shards(ShardsRequest {})
        .await
        .unwrap()
        .into_inner()
        .shards;
    assert_eq!(shards.len(), 1);
    assert_eq!(shards[0].replicas.len(), 3);
    assert_eq!(shards[0].leader_id, Some(leader));
}

#[test]
fn a_data_dir_of_another_node_is_refused_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let run = |id: &str| {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_atoll-node"))
            .args(["--id", id, "--listen", &format!("127.0.0.1:{port}")])
            .arg("--data-dir")
            .arg(&data)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(1500));
        let exited = child.try_wait().unwrap();
        if exited.is_none() {
            child.kill().unwrap();
        }
        let out = child.wait_with_output().unwrap();
        (exited, String::from_utf8_lossy(&out.stderr).to_string())
    };
    let (exited, _) = run("1");
    assert!(exited.is_none(), "node 1 should start and keep running");
    let (exited, stderr) = run("2");
    assert!(
        exited.is_some_and(|s| !s.success()),
        "node 2 must refuse node 1's data dir"
    );
    assert!(stderr.contains("belongs to node 1"), "stderr: {stderr}");

    // A data dir written by another format version is refused, naming both.
    std::fs::write(data.join("FORMAT"), "atoll-data-dir-format 99\n").unwrap();
    let (exited, stderr) = run("1");
    assert!(
        exited.is_some_and(|s| !s.success()),
        "a data dir of format 99 must be refused"
    );
    assert!(
        stderr.contains("format 99") && stderr.contains("this binary reads format"),
        "stderr: {stderr}"
    );

    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_atoll-node"))
        .arg("--data-dir")
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a directory"));
}
