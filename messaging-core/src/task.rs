//! Background tasks that survive a panic: [`catch_panic`] turns a panic inside a future into an
//! error, [`supervise`] runs a loop in a tokio task and starts it again, after a short bounded
//! backoff, whenever it panics. A panic is always logged (`tracing::error!`, with its message),
//! never silent.
//!
//! ```
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicU32, Ordering};
//! use messaging_core::task::supervise;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let runs = Arc::new(AtomicU32::new(0));
//! let r = runs.clone();
//! let task = supervise("example loop", move || {
//!     let r = r.clone();
//!     async move {
//!         if r.fetch_add(1, Ordering::SeqCst) == 0 {
//!             panic!("a bug on the first run");
//!         }
//!         "done"
//!     }
//! });
//! assert_eq!(task.join().await.unwrap(), "done");
//! assert_eq!(runs.load(Ordering::SeqCst), 2);
//! # });
//! ```

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::task::{AbortHandle, JoinError, JoinHandle};

/// A panic caught by [`catch_panic`]: its message (the `&str` or `String` given to `panic!`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("panicked: {message}")]
pub struct Panicked {
    /// What the panic said (`"Box<dyn Any>"` when it was not a string).
    pub message: String,
}

impl Panicked {
    /// The message of a panic payload.
    pub fn from_payload(payload: &(dyn Any + Send)) -> Self {
        let message = if let Some(s) = payload.downcast_ref::<&str>() {
            (*s).to_owned()
        } else if let Some(s) = payload.downcast_ref::<String>() {
            s.clone()
        } else {
            "Box<dyn Any>".to_owned()
        };
        Panicked { message }
    }
}

/// The future of [`catch_panic`].
struct CatchPanic<F>(Pin<Box<F>>);

impl<F: Future> Future for CatchPanic<F> {
    type Output = Result<F::Output, Panicked>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.0.as_mut();
        match std::panic::catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(payload) => Poll::Ready(Err(Panicked::from_payload(&*payload))),
        }
    }
}

/// Runs `future`; a panic inside it becomes `Err(Panicked)` instead of unwinding into the
/// caller. The future is not polled again after a panic; state it shared may be half-updated
/// (it is treated as unwind-safe), so use it where the work can be retried: one tick, one
/// poll, one batch.
///
/// ```
/// use messaging_core::task::catch_panic;
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let r = catch_panic(async { panic!("boom") }).await;
/// assert_eq!(r.unwrap_err().message, "boom");
/// assert_eq!(catch_panic(async { 7 }).await, Ok(7));
/// # });
/// ```
pub async fn catch_panic<F: Future>(future: F) -> Result<F::Output, Panicked> {
    CatchPanic(Box::pin(future)).await
}

/// How [`supervise`] waits before starting a task again: `initial`, doubling up to `max`; back
/// to `initial` once a run lasted longer than `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The first wait (default 100 ms).
    pub initial: Duration,
    /// The longest wait (default 30 s).
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(30),
        }
    }
}

/// A task started by [`supervise`]. Dropping it detaches the task (as with
/// [`tokio::spawn`]); [`abort`](Self::abort) stops it and the run in progress.
pub struct Supervised<T> {
    name: Arc<str>,
    handle: JoinHandle<T>,
    restarts: Arc<AtomicU64>,
}

impl<T> fmt::Debug for Supervised<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Supervised")
            .field("name", &self.name)
            .field("restarts", &self.restarts())
            .field("finished", &self.handle.is_finished())
            .finish()
    }
}

impl<T> Supervised<T> {
    /// The name given to [`supervise`] (in its log lines).
    pub fn name(&self) -> &str {
        &self.name
    }
    /// How many times the task panicked and was started again.
    pub fn restarts(&self) -> u64 {
        self.restarts.load(Ordering::SeqCst)
    }
    /// Whether the task has ended (completed or aborted).
    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }
    /// Stops the task, the run in progress included.
    pub fn abort(&self) {
        self.handle.abort();
    }
    /// A handle that stops the task, usable after [`join`](Self::join) took `self`.
    pub fn abort_handle(&self) -> AbortHandle {
        self.handle.abort_handle()
    }
    /// Waits for the task to complete normally (its value) or to be aborted (`Err`).
    pub async fn join(self) -> Result<T, JoinError> {
        self.handle.await
    }
}

/// Aborts the run in progress when the supervisor itself is aborted or dropped.
struct AbortOnDrop(AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs `make()` in a tokio task and, whenever that future panics, logs the panic
/// (`tracing::error!` with the task's name and the panic message) and starts `make()` again
/// after a backoff ([`Backoff::default`]: 100 ms doubling to 30 s). A run that completes
/// normally ends the supervision with its value. Must be called inside a tokio runtime.
///
/// See the [module docs](self) for an example.
pub fn supervise<F, Fut, T>(name: impl Into<String>, make: F) -> Supervised<T>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    supervise_with(name, Backoff::default(), make)
}

/// [`supervise`] with another backoff.
pub fn supervise_with<F, Fut, T>(
    name: impl Into<String>,
    backoff: Backoff,
    mut make: F,
) -> Supervised<T>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let name: Arc<str> = Arc::from(name.into());
    let restarts = Arc::new(AtomicU64::new(0));
    let (task_name, counter) = (name.clone(), restarts.clone());
    let handle = tokio::spawn(async move {
        let mut wait = backoff.initial;
        loop {
            let started = Instant::now();
            let run = tokio::spawn(make());
            let guard = AbortOnDrop(run.abort_handle());
            let result = run.await;
            drop(guard);
            match result {
                Ok(value) => return value,
                Err(e) if e.is_panic() => {
                    let panic = Panicked::from_payload(&*e.into_panic());
                    if started.elapsed() > backoff.max {
                        wait = backoff.initial;
                    }
                    let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
                    tracing::error!(
                        task = %task_name,
                        panic = %panic.message,
                        restarts = n,
                        wait_ms = wait.as_millis() as u64,
                        "background task panicked; restarting it"
                    );
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(backoff.max);
                }
                // The run was cancelled from outside (the runtime is shutting down): nothing
                // to restart, and no value to end with; wait to be dropped with the runtime.
                Err(e) => {
                    tracing::error!(task = %task_name, error = %e, "background task cancelled");
                    return std::future::pending::<T>().await;
                }
            }
        }
    });
    Supervised {
        name,
        handle,
        restarts,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    #[tokio::test(start_paused = true)]
    async fn a_panicking_task_is_restarted_with_a_growing_bounded_backoff() {
        let runs = Arc::new(AtomicU32::new(0));
        let r = runs.clone();
        let t0 = tokio::time::Instant::now();
        let backoff = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(250),
        };
        let task = supervise_with("flaky", backoff, move || {
            let r = r.clone();
            async move {
                let n = r.fetch_add(1, Ordering::SeqCst);
                if n < 3 {
                    panic!("run {n} failed");
                }
                n
            }
        });
        let value = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                if task.is_finished() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        assert!(value.is_ok(), "finished");
        assert_eq!(task.restarts(), 3);
        assert_eq!(task.join().await.unwrap(), 3);
        // 100 + 200 + 250 (capped).
        let waited = t0.elapsed();
        assert!(
            waited >= Duration::from_millis(550) && waited < Duration::from_millis(700),
            "{waited:?}"
        );
    }

    #[tokio::test]
    async fn normal_completion_ends_it_and_abort_stops_the_run() {
        let task = supervise("once", || async { 5 });
        assert_eq!(task.join().await.unwrap(), 5);

        let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
        let task = supervise("forever", move || {
            let tx = tx.clone();
            async move {
                let _tx = tx;
                std::future::pending::<()>().await
            }
        });
        tokio::task::yield_now().await;
        task.abort();
        assert!(task.join().await.unwrap_err().is_cancelled());
        // The run's sender was dropped with the run: the channel closes.
        assert!(rx.recv().await.is_none());
    }

    #[tokio::test]
    async fn catch_panic_reads_string_payloads() {
        let n = 3;
        let e = catch_panic(async move { panic!("n = {n}") })
            .await
            .unwrap_err();
        assert_eq!(e.message, "n = 3");
        assert_eq!(e.to_string(), "panicked: n = 3");
    }
}
