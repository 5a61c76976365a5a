//! Project: computes new columns from expressions. The event-time column is
//! always carried along, so a projection never loses event time.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch};
use arrow::datatypes::{FieldRef, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::logical_expr::Expr;
use datafusion::physical_expr::PhysicalExpr;
use headwater_runtime::time::{EVENT_TIME_FIELD, event_time_field};
use headwater_runtime::{BoxError, Collector, Operator, OperatorContext};

use super::expr::plan_expr;
use crate::error::OperatorError;

/// Evaluates a list of expressions on each batch.
#[derive(Debug, Clone)]
pub struct Project {
    exprs: Vec<Arc<dyn PhysicalExpr>>,
    /// The output schema, with the event-time column last.
    schema: SchemaRef,
    event_time_index: usize,
}

impl Project {
    /// Plans `exprs` over `input` (which holds the event-time column). A column
    /// is named by its alias, or by the expression's text.
    pub fn try_new(exprs: &[Expr], input: &SchemaRef) -> Result<Self, OperatorError> {
        let event_time_index = input.index_of(EVENT_TIME_FIELD).map_err(|_| {
            OperatorError::Config(format!(
                "a projection's input needs the `{EVENT_TIME_FIELD}` column"
            ))
        })?;
        let mut fields: Vec<FieldRef> = Vec::with_capacity(exprs.len() + 1);
        let mut exprs_out = Vec::with_capacity(exprs.len());
        for expr in exprs {
            let planned = plan_expr(expr, input)?;
            let field = planned.field;
            if field.name() == EVENT_TIME_FIELD {
                return Err(OperatorError::Config(format!(
                    "`{EVENT_TIME_FIELD}` is a reserved column name"
                )));
            }
            if fields.iter().any(|f| f.name() == field.name()) {
                return Err(OperatorError::Config(format!(
                    "two columns of the projection are named `{}`; give one an alias",
                    field.name()
                )));
            }
            fields.push(Arc::new(field));
            exprs_out.push(planned.expr);
        }
        fields.push(event_time_field());
        Ok(Project {
            exprs: exprs_out,
            schema: Arc::new(Schema::new(fields)),
            event_time_index,
        })
    }

    /// The schema of the batches this projection makes.
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
}

#[async_trait]
impl Operator for Project {
    async fn process_batch(
        &mut self,
        batch: RecordBatch,
        _ctx: &mut OperatorContext,
        out: &mut dyn Collector,
    ) -> Result<(), BoxError> {
        let rows = batch.num_rows();
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.exprs.len() + 1);
        for expr in &self.exprs {
            columns.push(expr.evaluate(&batch)?.into_array(rows)?);
        }
        columns.push(batch.column(self.event_time_index).clone());
        out.collect(RecordBatch::try_new(self.schema.clone(), columns)?)
            .await
    }
}
