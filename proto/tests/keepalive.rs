//! HTTP/2 keepalive ends calls on a connection whose peer went silent
//! without closing it (a cut network, a machine without power), instead of
//! leaving them to their own deadlines.

#![cfg(not(madsim))]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use atoll_proto::raft_client::RaftClient;
use atoll_proto::{connect_lazy_with_keepalive, RaftMessage};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// An HTTP/2 server that takes every request and never answers (it does
/// answer PINGs: h2 does that by itself while the connection is polled).
async fn silent_server() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut conn) = h2::server::handshake(socket).await else {
                    return;
                };
                let mut held = Vec::new();
                while let Some(Ok(call)) = conn.accept().await {
                    held.push(call);
                }
            });
        }
    });
    addr
}

/// Forwards bytes both ways until `frozen`; from then on it forwards
/// nothing and keeps both sockets open, as a cut network does.
async fn freezing_proxy(to: std::net::SocketAddr, frozen: Arc<AtomicBool>) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = TcpStream::connect(to).await else {
                return;
            };
            let (cr, cw) = client.into_split();
            let (sr, sw) = server.into_split();
            tokio::spawn(pipe(cr, sw, frozen.clone()));
            tokio::spawn(pipe(sr, cw, frozen.clone()));
        }
    });
    addr
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    frozen: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let Ok(n) = from.read(&mut buf).await else {
            return;
        };
        if n == 0 {
            return;
        }
        if frozen.load(Ordering::SeqCst) {
            // Hold both halves open and pass nothing on, for good.
            std::future::pending::<()>().await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

#[tokio::test]
async fn a_call_on_a_connection_gone_silent_fails_by_keepalive() {
    let server = silent_server().await;
    let frozen = Arc::new(AtomicBool::new(false));
    let proxy = freezing_proxy(server, frozen.clone()).await;
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{proxy}")).unwrap();
    let channel = connect_lazy_with_keepalive(
        endpoint,
        Duration::from_millis(200),
        Duration::from_millis(300),
    );
    let mut client = RaftClient::new(channel);
    // A first call opens the connection (the server never answers it).
    let mut first = tonic::Request::new(RaftMessage::default());
    first.set_timeout(Duration::from_millis(300));
    let status = client.append_entries(first).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Cancelled, "{status}");
    // Keepalive runs on the healthy connection without ending it.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut second = tonic::Request::new(RaftMessage::default());
    second.set_timeout(Duration::from_millis(300));
    let status = client.append_entries(second).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Cancelled, "{status}");

    frozen.store(true, Ordering::SeqCst);
    let started = Instant::now();
    // No deadline of its own: only keepalive can end it.
    let ended = tokio::time::timeout(
        Duration::from_secs(20),
        client.append_entries(RaftMessage::default()),
    )
    .await
    .expect("the call on the silent connection was never ended");
    let status = ended.unwrap_err();
    println!(
        "ended after {:?}: {:?} {}",
        started.elapsed(),
        status.code(),
        status.message()
    );
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status}");
}
