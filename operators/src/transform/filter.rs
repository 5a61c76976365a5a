//! Filter: keeps the rows for which a predicate is true.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::compute::filter_record_batch;
use arrow::datatypes::{DataType, SchemaRef};
use async_trait::async_trait;
use datafusion::common::cast::as_boolean_array;
use datafusion::logical_expr::Expr;
use datafusion::physical_expr::PhysicalExpr;
use headwater_runtime::{BoxError, Collector, Operator, OperatorContext};

use super::expr::plan_expr;
use crate::error::OperatorError;

/// Keeps rows where a boolean expression is true (NULL counts as false).
#[derive(Debug, Clone)]
pub struct Filter {
    predicate: Arc<dyn PhysicalExpr>,
}

impl Filter {
    /// Plans `predicate` over the input schema; it must be boolean.
    pub fn try_new(predicate: &Expr, input: &SchemaRef) -> Result<Self, OperatorError> {
        let planned = plan_expr(predicate, input)?;
        if planned.field.data_type() != &DataType::Boolean {
            return Err(OperatorError::Config(format!(
                "filter `{predicate}` is of type {}, not BOOLEAN",
                planned.field.data_type()
            )));
        }
        Ok(Filter {
            predicate: planned.expr,
        })
    }
}

#[async_trait]
impl Operator for Filter {
    async fn process_batch(
        &mut self,
        batch: RecordBatch,
        _ctx: &mut OperatorContext,
        out: &mut dyn Collector,
    ) -> Result<(), BoxError> {
        let mask = self
            .predicate
            .evaluate(&batch)?
            .into_array(batch.num_rows())?;
        let mask = as_boolean_array(&mask)?;
        let kept = mask.true_count();
        if kept == 0 {
            return Ok(());
        }
        if kept == batch.num_rows() {
            return out.collect(batch).await;
        }
        out.collect(filter_record_batch(&batch, mask)?).await
    }
}
