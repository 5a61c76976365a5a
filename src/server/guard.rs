//! A statement's time limit and its cancellation: a deadline bounds the
//! planning and every batch that streams out; a Postgres `CancelRequest`
//! stops the stream at the next batch.

use std::pin::Pin;
use std::task::{Context, Poll};

use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::{Stream, StreamExt};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use super::engine::StatementError;

/// When a statement must have finished (`None`: no limit).
#[derive(Debug, Clone, Copy)]
pub struct Deadline(pub Option<Instant>);

impl Deadline {
    /// Runs `work`, or fails with 57014 at the deadline.
    pub async fn run<T>(&self, work: impl Future<Output = T>) -> Result<T, StatementError> {
        match self.0 {
            Some(at) => tokio::time::timeout_at(at, work)
                .await
                .map_err(|_| timed_out()),
            None => Ok(work.await),
        }
    }
}

fn timed_out() -> StatementError {
    StatementError::new("57014", "canceling statement due to statement timeout")
}

/// The SQLSTATE and text Postgres gives a statement stopped by its deadline
/// or a cancel request: the stream's error carries them.
pub fn stopped_error(e: &DataFusionError) -> Option<StatementError> {
    let text = e.to_string();
    if text.contains("canceling statement due to statement timeout") {
        Some(timed_out())
    } else if text.contains("canceling statement due to user request") {
        Some(cancelled())
    } else {
        None
    }
}

/// The error of a statement stopped by a cancel request.
pub fn cancelled() -> StatementError {
    StatementError::new("57014", "canceling statement due to user request")
}

/// `stream`, ending in an error at `deadline` or when `cancel` fires.
pub fn guarded(
    stream: SendableRecordBatchStream,
    deadline: Deadline,
    cancel: Option<CancellationToken>,
) -> SendableRecordBatchStream {
    let schema = stream.schema();
    let guarded = Guarded {
        inner: stream,
        sleep: deadline.0.map(|at| Box::pin(tokio::time::sleep_until(at))),
        cancel: cancel.map(|c| Box::pin(c.cancelled_owned())),
        done: false,
    };
    Box::pin(RecordBatchStreamAdapter::new(schema, guarded))
}

/// Adds a cancel signal to a stream already guarded by its deadline.
pub fn cancellable(
    stream: SendableRecordBatchStream,
    cancel: CancellationToken,
) -> SendableRecordBatchStream {
    guarded(stream, Deadline(None), Some(cancel))
}

struct Guarded {
    inner: SendableRecordBatchStream,
    sleep: Option<Pin<Box<Sleep>>>,
    cancel: Option<Pin<Box<WaitForCancellationFutureOwned>>>,
    done: bool,
}

impl Stream for Guarded {
    type Item = Result<arrow::array::RecordBatch, DataFusionError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        if let Some(sleep) = self.sleep.as_mut()
            && sleep.as_mut().poll(cx).is_ready()
        {
            self.done = true;
            return Poll::Ready(Some(Err(DataFusionError::Execution(timed_out().message))));
        }
        if let Some(cancel) = self.cancel.as_mut()
            && cancel.as_mut().poll(cx).is_ready()
        {
            self.done = true;
            return Poll::Ready(Some(Err(DataFusionError::Execution(cancelled().message))));
        }
        self.inner.poll_next_unpin(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use arrow::datatypes::Schema;
    use futures::stream;

    use super::*;

    fn endless() -> SendableRecordBatchStream {
        let schema = Arc::new(Schema::empty());
        Box::pin(RecordBatchStreamAdapter::new(
            schema,
            stream::pending::<Result<arrow::array::RecordBatch, DataFusionError>>(),
        ))
    }

    #[tokio::test]
    async fn a_stream_ends_in_an_error_at_its_deadline() {
        let deadline = Deadline(Some(Instant::now() + Duration::from_millis(50)));
        let mut s = guarded(endless(), deadline, None);
        let e = s.next().await.unwrap().unwrap_err();
        assert_eq!(stopped_error(&e).unwrap().code, "57014");
        assert!(s.next().await.is_none());
    }

    #[tokio::test]
    async fn a_cancel_stops_the_stream() {
        let token = CancellationToken::new();
        let mut s = cancellable(endless(), token.clone());
        token.cancel();
        let e = s.next().await.unwrap().unwrap_err();
        assert!(stopped_error(&e).unwrap().message.contains("user request"));
    }
}
