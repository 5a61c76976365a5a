//! `collect`: hands batches back to the program that runs the job, or to a test.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use headwater_runtime::graph::OperatorFactory;
use headwater_runtime::time::without_event_time;
use headwater_runtime::{BoxError, Collector, Operator, OperatorContext};
use tokio::sync::mpsc;

use super::SinkSpec;
use crate::error::OperatorError;

/// Sends every batch (without the event-time column) to a [`CollectReceiver`].
/// The channel is bounded: a receiver that does not read slows the job down.
#[derive(Debug, Clone)]
pub struct CollectSink {
    sender: mpsc::Sender<RecordBatch>,
}

/// The receiving end of a [`CollectSink`]. It ends when every subtask of the sink has finished.
#[derive(Debug)]
pub struct CollectReceiver {
    receiver: mpsc::Receiver<RecordBatch>,
}

impl CollectSink {
    /// A sink and its receiver, which buffers up to `capacity` batches.
    pub fn new(capacity: usize) -> (CollectSink, CollectReceiver) {
        let (sender, receiver) = mpsc::channel(capacity.max(1));
        (CollectSink { sender }, CollectReceiver { receiver })
    }
}

impl CollectReceiver {
    /// The next batch, or `None` once the sink has finished.
    pub async fn recv(&mut self) -> Option<RecordBatch> {
        self.receiver.recv().await
    }

    /// Every batch until the sink has finished.
    pub async fn collect_all(mut self) -> Vec<RecordBatch> {
        let mut all = Vec::new();
        while let Some(b) = self.receiver.recv().await {
            all.push(b);
        }
        all
    }
}

impl SinkSpec for CollectSink {
    fn default_name(&self) -> String {
        "collect".into()
    }

    fn factory(&self, _schema: &SchemaRef) -> Result<OperatorFactory, OperatorError> {
        let sink = self.clone();
        Ok(Arc::new(move |_| {
            Ok(Box::new(sink.clone()) as Box<dyn Operator>)
        }))
    }
}

#[async_trait]
impl Operator for CollectSink {
    async fn process_batch(
        &mut self,
        batch: RecordBatch,
        _: &mut OperatorContext,
        _: &mut dyn Collector,
    ) -> Result<(), BoxError> {
        self.sender
            .send(without_event_time(&batch))
            .await
            .map_err(|_| {
                OperatorError::Config(
                    "the receiver of a collect sink was dropped while the job ran".into(),
                )
                .into()
            })
    }
}
