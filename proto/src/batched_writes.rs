//! [`BatchedWrites`]: one `writev` for the frames of a gRPC reply instead of
//! one per frame.
//!
//! hyper's HTTP/2 connection task writes and flushes as soon as any frame is
//! queued. A unary gRPC reply is three frames (HEADERS, DATA, trailing
//! HEADERS) that the reply's own task queues one after the other, and the
//! connection task, running beside it on another worker, usually flushes the
//! first ones before the trailers are queued: `strace` on a leader serving
//! reads showed two `writev`s per reply, and `perf` put a third of its CPU in
//! `writev` (on loopback the sender's syscall also runs the receiver's TCP
//! input). A request is the same on the client side (HEADERS, DATA, an empty
//! DATA with END_STREAM).
//!
//! This wrapper keeps written bytes in a buffer, and on the first `flush`
//! after new bytes it yields once (wakes its task and returns `Pending`), so
//! that frames queued by tasks already running land in the same buffer; the
//! next `flush` writes everything in one call. The cost is one trip through
//! the runtime's queue per flush; gRPC semantics are untouched, as nothing is
//! ever held past a second `flush`.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tonic::transport::Uri;

/// Bytes held before a write must drain them first (backpressure).
const MAX_HELD: usize = 256 * 1024;

/// Buffer capacity a connection keeps between bursts.
const KEPT_CAPACITY: usize = 64 * 1024;

/// An I/O stream whose writes are gathered until the second flush.
#[derive(Debug)]
pub struct BatchedWrites<T> {
    inner: T,
    held: Vec<u8>,
    /// How much of `held` already went out.
    sent: usize,
    /// The current flush already yielded once.
    yielded: bool,
}

impl<T> BatchedWrites<T> {
    pub fn new(inner: T) -> Self {
        Self {
            inner,
            held: Vec::new(),
            sent: 0,
            yielded: false,
        }
    }

    pub fn get_ref(&self) -> &T {
        &self.inner
    }
}

impl<T: AsyncWrite + Unpin> BatchedWrites<T> {
    /// Writes out everything held.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.held.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.held[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        self.held.clear();
        if self.held.capacity() > KEPT_CAPACITY {
            // A burst (a snapshot chunk, a large append) does not pin its
            // buffer to an idle connection.
            self.held = Vec::new();
        }
        self.sent = 0;
        Poll::Ready(Ok(()))
    }

    fn room(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.held.len() >= MAX_HELD {
            ready!(self.poll_drain(cx))?;
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for BatchedWrites<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.room(cx))?;
        let n = buf.len().min(MAX_HELD - this.held.len());
        this.held.extend_from_slice(&buf[..n]);
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.room(cx))?;
        let mut n = 0;
        for buf in bufs {
            let take = buf.len().min(MAX_HELD - this.held.len());
            this.held.extend_from_slice(&buf[..take]);
            n += take;
            if take < buf.len() {
                break;
            }
        }
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.held.len() > this.sent {
            if !this.yielded {
                // Let the tasks that are about to queue more frames run first.
                this.yielded = true;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            ready!(this.poll_drain(cx))?;
        }
        this.yielded = false;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

/// The client side: dials like tonic's own connector (TCP_NODELAY on) and
/// wraps the stream. Use with `Endpoint::connect_with_connector_lazy`; the
/// endpoint's connect timeout still applies.
#[derive(Clone, Debug)]
pub struct Connector {
    http: HttpConnector,
}

impl Default for Connector {
    fn default() -> Self {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        Self { http }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl tower_service::Service<Uri> for Connector {
    type Response = TokioIo<BatchedWrites<TcpStream>>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.http.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let dial = self.http.call(uri);
        Box::pin(async move {
            let io = dial.await?;
            Ok(TokioIo::new(BatchedWrites::new(io.into_inner())))
        })
    }
}

/// The server side: tonic asks the stream for its addresses.
impl tonic::transport::server::Connected for BatchedWrites<tokio::net::TcpStream> {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for BatchedWrites<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// Counts the writes that reach it.
    #[derive(Default)]
    struct Counting {
        writes: usize,
        bytes: Vec<u8>,
    }

    impl AsyncWrite for Counting {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let this = self.get_mut();
            this.writes += 1;
            this.bytes.extend_from_slice(buf);
            Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn frames_written_before_a_flush_go_out_in_one_write() {
        let mut io = BatchedWrites::new(Counting::default());
        io.write_all(b"headers").await.unwrap();
        io.write_all(b"data").await.unwrap();
        io.write_all(b"trailers").await.unwrap();
        assert_eq!(io.get_ref().writes, 0, "nothing goes out before a flush");
        io.flush().await.unwrap();
        assert_eq!(io.get_ref().writes, 1);
        assert_eq!(io.get_ref().bytes, b"headersdatatrailers");
        io.write_all(b"next").await.unwrap();
        io.shutdown().await.unwrap();
        assert_eq!(io.get_ref().bytes, b"headersdatatrailersnext");
    }

    #[tokio::test]
    async fn a_flush_yields_once_then_writes() {
        let mut io = BatchedWrites::new(Counting::default());
        io.write_all(b"x").await.unwrap();
        let waker = futures_noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(Pin::new(&mut io).poll_flush(&mut cx).is_pending());
        assert!(Pin::new(&mut io).poll_flush(&mut cx).is_ready());
        assert_eq!(io.get_ref().writes, 1);
        // Nothing held: a flush does not yield.
        assert!(Pin::new(&mut io).poll_flush(&mut cx).is_ready());
    }

    #[tokio::test]
    async fn a_full_buffer_drains_before_it_takes_more() {
        let mut io = BatchedWrites::new(Counting::default());
        let big = vec![7u8; MAX_HELD + 10];
        io.write_all(&big).await.unwrap();
        assert_eq!(io.get_ref().writes, 1, "the first MAX_HELD bytes went out");
        io.flush().await.unwrap();
        assert_eq!(io.get_ref().bytes, big);
    }

    fn futures_noop_waker() -> std::task::Waker {
        std::task::Waker::noop().clone()
    }
}
