//! Blackhole: takes every row and keeps none. For benchmarks and dry runs.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use headwater_runtime::graph::OperatorFactory;
use headwater_runtime::{BoxError, Collector, Operator, OperatorContext};

use super::SinkSpec;
use crate::error::OperatorError;

/// Discards its input. Its `rows_in` metric counts what it got.
#[derive(Debug, Clone, Copy, Default)]
pub struct BlackholeSink;

impl SinkSpec for BlackholeSink {
    fn default_name(&self) -> String {
        "blackhole".into()
    }

    fn factory(&self, _schema: &SchemaRef) -> Result<OperatorFactory, OperatorError> {
        Ok(Arc::new(|_| {
            Ok(Box::new(BlackholeSink) as Box<dyn Operator>)
        }))
    }
}

#[async_trait]
impl Operator for BlackholeSink {
    async fn process_batch(
        &mut self,
        _: RecordBatch,
        _: &mut OperatorContext,
        _: &mut dyn Collector,
    ) -> Result<(), BoxError> {
        Ok(())
    }
}
