//! A tour of the client against a running dev cluster.
//!
//! ```text
//! ATOLL_ENDPOINTS=127.0.0.1:7101,127.0.0.1:7102,127.0.0.1:7103 \
//!     cargo run -p atoll-client --example basic
//! ```

use atoll_client::{Client, Compare, Error, Mutation, Txn, TxnOp};

const DEFAULT_ENDPOINTS: &str = "127.0.0.1:7101,127.0.0.1:7102,127.0.0.1:7103";

#[tokio::main]
async fn main() -> Result<(), Error> {
    let endpoints =
        std::env::var("ATOLL_ENDPOINTS").unwrap_or_else(|_| DEFAULT_ENDPOINTS.to_string());
    let client = Client::connect(endpoints.split(',')).await?;
    println!("connected; write sessions open on first write");

    client.put("example/greeting", "hello").await?;
    let value = client.get("example/greeting").await?;
    println!(
        "get example/greeting -> {:?}",
        value.as_deref().map(String::from_utf8_lossy)
    );

    let swap = client
        .cas("example/greeting", Some(b"hello"), Some(b"hi"))
        .await?;
    println!(
        "cas hello -> hi: succeeded={} previous={:?}",
        swap.succeeded,
        lossy(&swap.previous)
    );
    let stale = client
        .cas("example/greeting", Some(b"hello"), Some(b"hey"))
        .await?;
    println!(
        "cas hello -> hey: succeeded={} previous={:?}",
        stale.succeeded,
        lossy(&stale.previous)
    );

    let batch = vec![
        Mutation::put("example/a", "1"),
        Mutation::put("example/b", "2"),
    ];
    match client.batch(batch).await {
        Ok(()) => println!("batch applied"),
        // The keys may straddle a shard boundary in a split cluster.
        Err(Error::CrossShardBatch) => println!("batch spans shards; skipped"),
        Err(other) => return Err(other),
    }

    // Move 1 from a to b only if both still hold what the batch wrote.
    let transfer = Txn::new()
        .when(Compare::equal("example/a", "1"))
        .when(Compare::equal("example/b", "2"))
        .then(TxnOp::put("example/a", "0"))
        .then(TxnOp::put("example/b", "3"))
        .otherwise(TxnOp::get("example/a"));
    match client.txn(transfer).await {
        Ok(outcome) => println!("txn: compares held={}", outcome.succeeded),
        Err(Error::CrossShardBatch) => println!("txn spans shards; skipped"),
        Err(other) => return Err(other),
    }

    for (key, value) in client.scan("example/", "example0", 0).await? {
        println!(
            "scan {} = {}",
            String::from_utf8_lossy(&key),
            String::from_utf8_lossy(&value)
        );
    }

    let (value, applied) = client.get_stale("example/a").await?;
    println!(
        "stale get example/a -> {:?} (applied index {applied})",
        lossy(&value)
    );

    for key in ["example/greeting", "example/a", "example/b"] {
        println!("delete {key} -> existed={}", client.delete(key).await?);
    }
    Ok(())
}

fn lossy(value: &Option<Vec<u8>>) -> Option<String> {
    value
        .as_deref()
        .map(|v| String::from_utf8_lossy(v).into_owned())
}
