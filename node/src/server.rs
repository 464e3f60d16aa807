//! The node's one gRPC server (Kv + Raft + Admin + Pd), with graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use atoll_proto::admin_server::AdminServer;
use atoll_proto::kv_server::KvServer;
use atoll_proto::pd_server::PdServer;
use atoll_proto::raft_server::RaftServer;
use tonic::transport::Server;

use crate::error::NodeError;
use crate::raft::peer_pool::{MAX_MESSAGE_BYTES, WINDOW_BYTES};
use crate::service::admin::AdminService;
use crate::service::kv::KvService;
use crate::service::pd::PdService;
use crate::service::raft::RaftService;
use crate::service::NodeCtx;

fn server_err(addr: &str, e: impl std::fmt::Display) -> NodeError {
    NodeError::Server {
        addr: addr.to_string(),
        reason: e.to_string(),
    }
}

/// Binds the listen address (so a bad or busy address fails start-up) and
/// returns the serving future plus the bound address.
pub async fn bind(
    ctx: Arc<NodeCtx>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(SocketAddr, impl Future<Output = Result<(), NodeError>>), NodeError> {
    let listen = ctx.config.listen.clone();
    let addr: SocketAddr = tokio::net::lookup_host(&listen)
        .await
        .map_err(|e| server_err(&listen, format!("cannot resolve listen address: {e}")))?
        .next()
        .ok_or_else(|| server_err(&listen, "listen address resolves to nothing"))?;
    // Large HTTP/2 windows: a peer streaming megabytes of log entries must
    // not stall on flow control, nor send many small DATA frames (h2 answers
    // a flood of those with GOAWAY).
    // Multiplexed KV streams end when the node stops; the graceful
    // shutdown waits for every stream (service::multiplex).
    let (stopping_tx, stopping) = tokio::sync::watch::channel(false);
    let shutdown = async move {
        shutdown.await;
        let _ = stopping_tx.send(true);
    };
    // Keepalive as on every channel (atoll_proto::KEEPALIVE_INTERVAL): a
    // client or peer gone silent has its streams ended, and their
    // operations' slots freed, within seconds.
    let router = Server::builder()
        .http2_keepalive_interval(Some(atoll_proto::KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(atoll_proto::KEEPALIVE_TIMEOUT))
        .initial_connection_window_size(WINDOW_BYTES)
        .initial_stream_window_size(WINDOW_BYTES)
        .add_service(
            KvServer::new(KvService::new(ctx.clone(), stopping))
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(
            RaftServer::new(RaftService::new(ctx.clone()))
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(AdminServer::new(AdminService::new(ctx.clone())))
        .add_service(PdServer::new(PdService::new(ctx.clone())));
    serve(router, addr, listen, shutdown).await
}

#[cfg(not(madsim))]
async fn serve(
    router: tonic::transport::server::Router,
    addr: SocketAddr,
    listen: String,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(SocketAddr, impl Future<Output = Result<(), NodeError>>), NodeError> {
    use futures::StreamExt;
    let incoming = tonic::transport::server::TcpIncoming::bind(addr)
        .map_err(|e| server_err(&listen, format!("cannot listen: {e}")))?
        .with_nodelay(Some(true));
    let bound = incoming.local_addr().map_err(|e| server_err(&listen, e))?;
    // The frames of one reply leave in one write (atoll_proto::batched_writes).
    let incoming = incoming.map(|conn| conn.map(atoll_proto::batched_writes::BatchedWrites::new));
    let fut = async move {
        router
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await
            .map_err(|e| server_err(&listen, e))
    };
    Ok((bound, fut))
}

#[cfg(madsim)]
async fn serve(
    router: tonic::transport::server::Router,
    addr: SocketAddr,
    listen: String,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(SocketAddr, impl Future<Output = Result<(), NodeError>>), NodeError> {
    let fut = async move {
        router
            .serve_with_shutdown(addr, shutdown)
            .await
            .map_err(|e| server_err(&listen, e))
    };
    Ok((addr, fut))
}
