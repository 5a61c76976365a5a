//! Union: the rows of several inputs of one schema, as one stream.

use arrow::array::RecordBatch;
use async_trait::async_trait;
use headwater_runtime::{BoxError, Collector, Operator, OperatorContext};

/// Passes every batch of every input on. The runtime merges the inputs'
/// watermarks (the minimum), so event time stays correct.
#[derive(Debug, Clone, Default)]
pub struct Union;

#[async_trait]
impl Operator for Union {
    async fn process_batch(
        &mut self,
        batch: RecordBatch,
        _ctx: &mut OperatorContext,
        out: &mut dyn Collector,
    ) -> Result<(), BoxError> {
        out.collect(batch).await
    }
}
