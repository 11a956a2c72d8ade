//! A role (a broker, a worker) run as a task of this process beside a runner, and stopped by
//! it the way a signal stops the role as a process of its own: both `broker::EmbeddedBroker`
//! and `worker::InProcessWorker` are one of these around their role's `run`.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tracing::warn;

/// A role's task and the switch that stops it.
pub struct InProcess<T> {
    stop: oneshot::Sender<()>,
    task: JoinHandle<T>,
}

/// Completes when the owner of an [`InProcess`] stops it (or drops it): the role's shutdown
/// signal.
pub struct Stopped(oneshot::Receiver<()>);

impl Future for Stopped {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.0).poll(cx).map(|_| ())
    }
}

impl<T: Send + 'static> InProcess<T> {
    /// Spawns `run`, handing it the signal that says when to stop.
    pub fn start<F>(run: impl FnOnce(Stopped) -> F) -> Self
    where
        F: Future<Output = T> + Send + 'static,
    {
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(run(Stopped(stopped)));
        Self { stop, task }
    }

    /// Stops the role if it still runs and waits until it has ended; a task that failed
    /// (panicked) is logged as `what` and ends as `failed`.
    pub async fn stop(self, what: &str, failed: T) -> T {
        let _ = self.stop.send(());
        self.task.await.unwrap_or_else(|e| {
            warn!("the {what} task failed: {e}");
            failed
        })
    }
}
