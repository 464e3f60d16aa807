//! Transactions against real node processes: a bank of accounts moved
//! between by concurrent clients never gains or loses money, no read sees
//! half a transfer, a retried txn is answered and not applied twice, and
//! the node refuses an oversized txn.

mod support;

use std::time::Duration;

use atoll_client::{Client, Compare, Txn, TxnOp};
use atoll_proto::error::Kind;
use atoll_proto::kv_client::KvClient;
use atoll_proto::{txn_op, OpenSessionRequest, RequestHeader, TxnRequest, WriteId};
use rand::{Rng, SeedableRng};
use support::Cluster;

const ACCOUNTS: usize = 5;
const START_BALANCE: u64 = 100;
const TOTAL: u64 = ACCOUNTS as u64 * START_BALANCE;

fn account(i: usize) -> String {
    format!("acct/{i}")
}

/// Every balance, read in one txn of gets (one consistent, linearizable
/// view); panics if the total is not `TOTAL`.
async fn balances(client: &Client) -> Vec<u64> {
    let read = (0..ACCOUNTS).fold(Txn::new(), |t, i| t.then(TxnOp::get(account(i))));
    let outcome = client.txn(read).await.expect("read txn");
    let balances: Vec<u64> = outcome
        .values()
        .map(|v| {
            let text = String::from_utf8(v.expect("every account exists").to_vec());
            text.expect("utf-8").parse().expect("a number")
        })
        .collect();
    assert_eq!(balances.len(), ACCOUNTS);
    assert_eq!(
        balances.iter().sum::<u64>(),
        TOTAL,
        "a read saw money appear or vanish: {balances:?}"
    );
    balances
}

/// Moves money between random accounts `transfers` times; returns how many
/// compares failed (another task moved money in between) and were retried.
async fn transfer_loop(client: Client, seed: u64, transfers: usize) -> usize {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut conflicts = 0;
    let mut done = 0;
    while done < transfers {
        let now = balances(&client).await;
        let from = rng.gen_range(0..ACCOUNTS);
        let to = (from + rng.gen_range(1..ACCOUNTS)) % ACCOUNTS;
        let amount = rng.gen_range(0..=now[from].min(20));
        let (a, b) = (account(from), account(to));
        let transfer = Txn::new()
            .when(Compare::equal(a.clone(), now[from].to_string()))
            .when(Compare::equal(b.clone(), now[to].to_string()))
            .then(TxnOp::put(a, (now[from] - amount).to_string()))
            .then(TxnOp::put(b, (now[to] + amount).to_string()));
        let outcome = client.txn(transfer).await.expect("transfer txn");
        if outcome.succeeded {
            done += 1;
        } else {
            conflicts += 1;
        }
    }
    conflicts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_bank_transfers_keep_the_total_and_retries_apply_once() {
    let cluster = Cluster::start(3, "");
    let leader = cluster.wait_leader(1, Duration::from_secs(20)).await;
    let client = Client::connect(cluster.endpoints()).await.expect("connect");

    // Open the accounts once: a second opening would find them present.
    let open = (0..ACCOUNTS).fold(Txn::new(), |t, i| {
        t.when(Compare::absent(account(i)))
            .then(TxnOp::put(account(i), START_BALANCE.to_string()))
    });
    assert!(client.txn(open.clone()).await.expect("open").succeeded);
    assert!(!client.txn(open).await.expect("reopen").succeeded);

    let tasks: Vec<_> = (0..4)
        .map(|seed| tokio::spawn(transfer_loop(client.clone(), seed, 12)))
        .collect();
    let mut conflicts = 0;
    for task in tasks {
        conflicts += task.await.expect("transfer task");
    }
    let end = balances(&client).await;
    println!("48 transfers, {conflicts} compares failed and were retried; balances {end:?}");

    // A retry of an applied txn (same write id) gets its first answer and
    // changes nothing, though the same txn under a new id would fail now.
    let mut kv = KvClient::connect(format!("http://{}", cluster.addr(leader)))
        .await
        .expect("connect to the leader");
    let session = kv
        .open_session(OpenSessionRequest { header: header() })
        .await
        .expect("open session")
        .into_inner();
    assert!(session.error.is_none(), "{session:?}");
    let bump = |seq| TxnRequest {
        header: header(),
        write_id: Some(WriteId {
            client_id: session.client_id,
            seq,
            first_incomplete: seq,
        }),
        compares: vec![atoll_proto::Compare {
            key: account(0).into_bytes(),
            op: atoll_proto::CompareOp::Equal as i32,
            value: Some(end[0].to_string().into_bytes()),
        }],
        success: vec![put(&account(0), "999"), put("bonus", "paid")],
        failure: vec![],
    };
    for attempt in 0..2 {
        let r = kv.txn(bump(1)).await.expect("txn rpc").into_inner();
        assert!(r.error.is_none(), "{r:?}");
        assert!(r.succeeded, "attempt {attempt} of one write id: {r:?}");
        assert_eq!(r.results.len(), 2);
    }
    let r = kv.txn(bump(2)).await.expect("txn rpc").into_inner();
    assert!(!r.succeeded, "a new write id runs the txn again: {r:?}");
    let now = client.get(account(0)).await.expect("get");
    assert_eq!(now.as_deref(), Some(&b"999"[..]));

    // The node bounds a txn at `limits.max_txn_ops` (128) compares + ops.
    let mut huge = bump(3);
    huge.success = (0..128).map(|i| put(&format!("k{i}"), "v")).collect();
    let r = kv.txn(huge).await.expect("txn rpc").into_inner();
    let e = r.error.expect("an oversized txn must be refused");
    assert!(matches!(e.kind, Some(Kind::InvalidArgument(_))), "{e:?}");
    assert!(e.message.contains("129 compares and ops"), "{}", e.message);
}

fn header() -> Option<RequestHeader> {
    Some(RequestHeader {
        shard_id: 1,
        epoch: None,
    })
}

fn put(key: &str, value: &str) -> atoll_proto::TxnOp {
    atoll_proto::TxnOp {
        op: Some(txn_op::Op::Put(atoll_proto::TxnPut {
            key: key.as_bytes().to_vec(),
            value: value.as_bytes().to_vec(),
        })),
    }
}
