//! openraft's [`AsyncRuntime`] on madsim, for deterministic simulation.
//!
//! openraft's default `TokioRuntime` panics under `--cfg madsim` on its first spawn ("there is no
//! reactor running"), so simulation builds select this runtime instead:
//!
//! ```ignore
//! #[cfg(madsim)]
//! type Rt = crate::raft::madsim_runtime::MadsimRuntime;
//! #[cfg(not(madsim))]
//! type Rt = openraft::TokioRuntime;
//! ```
//!
//! What maps to what:
//! - tasks and sleeps: `madsim::task::spawn`, `madsim::time::{sleep, sleep_until}`;
//! - timeouts: [`MadsimTimeout`], a small hand-written future (madsim's own `timeout` returns an
//!   unnameable `impl Future`, which an associated type cannot name);
//! - instants: `openraft::TokioInstant`, which works because madsim intercepts the clock that
//!   `std::time::Instant::now()` reads, so it shows simulated time;
//! - randomness: `madsim::rand::GlobalRng`, seeded by the simulation;
//! - oneshot channels: tokio's, through openraft's own wrapper; they need no runtime.
//!
//! This file names only `openraft`, `madsim`, `tokio` (madsim-tokio) and `std`.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use openraft::async_runtime::TokioOneShotSender;
use openraft::{AsyncRuntime, OptionalSend, TokioInstant, TokioRuntime};

/// openraft's async runtime on madsim's simulated tasks, clock and RNG.
#[derive(Debug, Default, PartialEq, Eq, Clone, Copy)]
pub struct MadsimRuntime;

impl AsyncRuntime for MadsimRuntime {
    type JoinError = madsim::task::JoinError;
    type JoinHandle<T: OptionalSend + 'static> = madsim::task::JoinHandle<T>;
    type Sleep = madsim::time::Sleep;
    type Instant = TokioInstant;
    type TimeoutError = madsim::time::error::Elapsed;
    type Timeout<R, T: Future<Output = R> + OptionalSend> = MadsimTimeout<R, T>;
    type ThreadLocalRng = madsim::rand::GlobalRng;
    type OneshotSender<T: OptionalSend> = TokioOneShotSender<T>;
    type OneshotReceiverError = tokio::sync::oneshot::error::RecvError;
    type OneshotReceiver<T: OptionalSend> = tokio::sync::oneshot::Receiver<T>;

    fn spawn<T>(future: T) -> Self::JoinHandle<T::Output>
    where
        T: Future + OptionalSend + 'static,
        T::Output: OptionalSend + 'static,
    {
        madsim::task::spawn(future)
    }

    fn sleep(duration: Duration) -> Self::Sleep {
        madsim::time::sleep(duration)
    }

    fn sleep_until(deadline: Self::Instant) -> Self::Sleep {
        madsim::time::sleep_until(deadline.into_std())
    }

    fn timeout<R, F: Future<Output = R> + OptionalSend>(
        duration: Duration,
        future: F,
    ) -> Self::Timeout<R, F> {
        MadsimTimeout::new(future, madsim::time::sleep(duration))
    }

    fn timeout_at<R, F: Future<Output = R> + OptionalSend>(
        deadline: Self::Instant,
        future: F,
    ) -> Self::Timeout<R, F> {
        MadsimTimeout::new(future, madsim::time::sleep_until(deadline.into_std()))
    }

    fn is_panic(join_error: &Self::JoinError) -> bool {
        join_error.is_panic()
    }

    fn thread_rng() -> Self::ThreadLocalRng {
        madsim::rand::thread_rng()
    }

    fn oneshot<T>() -> (Self::OneshotSender<T>, Self::OneshotReceiver<T>)
    where
        T: OptionalSend,
    {
        // Pure channel code: the tokio runtime's version needs no reactor.
        TokioRuntime::oneshot()
    }
}

/// Resolves to the inner future's output, or to `Elapsed` once the deadline passes.
///
/// Like tokio's `Timeout`, the inner future is polled first, so a future that is ready at the
/// deadline still wins.
pub struct MadsimTimeout<R, F> {
    // Boxed so this type is `Unpin` without unsafe pin projection; simulation only.
    future: Pin<Box<F>>,
    deadline: madsim::time::Sleep,
    _output: PhantomData<fn() -> R>,
}

impl<R, F: Future<Output = R>> MadsimTimeout<R, F> {
    fn new(future: F, deadline: madsim::time::Sleep) -> Self {
        Self {
            future: Box::pin(future),
            deadline,
            _output: PhantomData,
        }
    }
}

impl<R, F: Future<Output = R>> Future for MadsimTimeout<R, F> {
    type Output = Result<R, madsim::time::error::Elapsed>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Poll::Ready(out) = self.future.as_mut().poll(cx) {
            return Poll::Ready(Ok(out));
        }
        match Pin::new(&mut self.deadline).poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(madsim::time::error::Elapsed)),
            Poll::Pending => Poll::Pending,
        }
    }
}
