//! Server streams (WatchStudy, WatchCriticalItems) fed by a task through a bounded channel: a
//! slow reader slows its task, never grows the server's memory, and a reader that goes away
//! ends the task at its next send.

use std::pin::Pin;
use tokio_stream::Stream;
use tonic::Status;

pub type WatchStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// A stream of what `body` sends.
pub fn async_stream<T, F, Fut>(body: F) -> WatchStream<T>
where
    T: Send + 'static,
    F: FnOnce(tokio::sync::mpsc::Sender<Result<T, Status>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(body(tx));
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}
