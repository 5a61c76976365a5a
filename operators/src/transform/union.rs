//! Union: the rows of several inputs of one schema, as one stream.

use std::sync::Arc;

use arrow::array::{RecordBatch, RecordBatchOptions};
use arrow::datatypes::{Field, Schema, SchemaRef};
use async_trait::async_trait;
use headwater_runtime::{BoxError, Collector, Operator, OperatorContext};

/// Passes every batch of every input on. The runtime merges the inputs'
/// watermarks (the minimum), so event time stays correct.
#[derive(Debug, Clone)]
pub struct Union {
    schema: SchemaRef,
}

impl Union {
    /// A union of inputs of `schemas` (the same columns, the first's
    /// names); a column is nullable if it is in any input.
    pub fn new(schemas: &[SchemaRef]) -> Self {
        let first = &schemas[0];
        let fields: Vec<Field> = first
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let nullable = schemas
                    .iter()
                    .any(|s| s.fields().get(i).is_none_or(|g| g.is_nullable()));
                f.as_ref().clone().with_nullable(nullable)
            })
            .collect();
        Union {
            schema: Arc::new(Schema::new_with_metadata(fields, first.metadata().clone())),
        }
    }

    /// The schema of the union's output.
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
}

#[async_trait]
impl Operator for Union {
    async fn process_batch(
        &mut self,
        batch: RecordBatch,
        _ctx: &mut OperatorContext,
        out: &mut dyn Collector,
    ) -> Result<(), BoxError> {
        if Arc::ptr_eq(&batch.schema(), &self.schema) || *batch.schema() == *self.schema {
            return out.collect(batch).await;
        }
        // The same columns under the union's schema (its nullability).
        let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
        let batch = RecordBatch::try_new_with_options(
            self.schema.clone(),
            batch.columns().to_vec(),
            &options,
        )?;
        out.collect(batch).await
    }
}
