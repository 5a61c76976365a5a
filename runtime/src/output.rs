//! The output side of a task: routes from its operators' outputs to downstream channels.

use arrow::array::RecordBatch;

use crate::channel::{Message, Sender};
use crate::error::RuntimeError;
use crate::graph::NodeId;
use crate::metrics::Counter;
use crate::partition::Partitioner;

/// One outgoing edge of a task: an output of one of its operators, split over
/// the channels to the downstream subtasks.
#[derive(Debug)]
pub(crate) struct Route {
    pub from: NodeId,
    pub side_output: Option<String>,
    pub partitioner: Partitioner,
    /// One channel per downstream subtask this route reaches, by target index.
    pub senders: Vec<Sender>,
}

/// Every outgoing edge of a task.
#[derive(Debug)]
pub(crate) struct OutputRouter {
    routes: Vec<Route>,
    /// Rows sent to a side output that nothing consumes, counted, never silent.
    unrouted_side_rows: Counter,
    parts: Vec<(usize, RecordBatch)>,
}

impl OutputRouter {
    pub fn new(routes: Vec<Route>, unrouted_side_rows: Counter) -> Self {
        OutputRouter {
            routes,
            unrouted_side_rows,
            parts: Vec::new(),
        }
    }

    /// Sends a batch from an output of node `from` along every edge leaving it.
    pub async fn send_data(
        &mut self,
        from: NodeId,
        side_output: Option<&str>,
        batch: RecordBatch,
    ) -> Result<(), RuntimeError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let mut routed = false;
        for route in &mut self.routes {
            if route.from != from || route.side_output.as_deref() != side_output {
                continue;
            }
            routed = true;
            let parts = &mut self.parts;
            route
                .partitioner
                .split(batch.clone(), |t, b| parts.push((t, b)))?;
            for (target, part) in parts.drain(..) {
                route.senders[target]
                    .send(Message::Data(part))
                    .await
                    .map_err(|_| RuntimeError::ChannelClosed)?;
            }
        }
        if !routed && side_output.is_some() {
            self.unrouted_side_rows.add(batch.num_rows() as u64);
        }
        Ok(())
    }

    /// Sends a watermark or end of stream down every edge, to every subtask.
    pub async fn broadcast(&mut self, message: Message) -> Result<(), RuntimeError> {
        for route in &self.routes {
            for sender in &route.senders {
                sender
                    .send(message.clone())
                    .await
                    .map_err(|_| RuntimeError::ChannelClosed)?;
            }
        }
        Ok(())
    }
}
