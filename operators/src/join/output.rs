//! What every join makes: the left input's output columns, then the
//! right's, then the event time; joined pairs, rows padded with NULLs for
//! the other side, and the residual predicate over joined rows.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, RecordBatch, new_null_array};
use arrow::compute::prep_null_mask_filter;
use arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::logical_expr::Expr;
use datafusion::physical_expr::PhysicalExpr;
use headwater_runtime::time::event_time_field;

use super::{JoinInput, JoinType, ResolvedInput};
use crate::error::{OperatorError, Result};
use crate::transform::expr::plan_expr;

/// What [`JoinOutput::try_new`] is told a regular join is.
pub(crate) const REGULAR: &str = "a regular join";

/// The two inputs of a join, resolved, and the schema of what it emits.
#[derive(Clone)]
pub(crate) struct JoinOutput {
    pub join_type: JoinType,
    pub inputs: [ResolvedInput; 2],
    pub schema: SchemaRef,
    /// Evaluated on each joined row (of the output schema).
    residual: Option<Arc<dyn PhysicalExpr>>,
}

impl JoinOutput {
    /// Checks that both inputs have keys of the same types, and names the
    /// output columns `names`; `what` names the join in errors.
    pub fn try_new(
        what: &str,
        join_type: JoinType,
        left: &JoinInput,
        right: &JoinInput,
        names: &[String],
        residual: Option<&Expr>,
    ) -> Result<Self> {
        let inputs = [left.resolve("left")?, right.resolve("right")?];
        // A regular join without equal keys is a nested-loop join of one
        // subtask; interval and window joins need keys.
        if inputs[0].key_fields.len() != inputs[1].key_fields.len()
            || (inputs[0].key_fields.is_empty() && what != REGULAR)
        {
            return Err(OperatorError::Config(format!(
                "{what} needs equal keys on both sides (a.k = b.k)"
            )));
        }
        for (l, r) in inputs[0].key_fields.iter().zip(&inputs[1].key_fields) {
            if l.data_type() != r.data_type() {
                return Err(OperatorError::Config(format!(
                    "join keys `{}` ({}) and `{}` ({}) have different types",
                    l.name(),
                    l.data_type(),
                    r.name(),
                    r.data_type()
                )));
            }
        }
        let fields: Vec<_> = inputs
            .iter()
            .enumerate()
            .flat_map(|(side, input)| {
                // A semi or anti join pads its left rows too (then drops the right's columns).
                let nullable = join_type.keeps_unmatched(1 - side) || !join_type.emits_pairs();
                input
                    .output_fields
                    .iter()
                    .map(move |f| (f, f.is_nullable() || nullable))
            })
            .collect();
        if fields.len() != names.len() {
            return Err(OperatorError::Config(format!(
                "the join makes {} columns, and {} names were given",
                fields.len(),
                names.len()
            )));
        }
        let mut columns: Vec<Field> = fields
            .iter()
            .zip(names)
            .map(|((f, nullable), name)| Field::new(name, f.data_type().clone(), *nullable))
            .collect();
        columns.push(event_time_field().as_ref().clone());
        let schema = Arc::new(Schema::new(columns));
        let residual = match residual {
            Some(expr) => Some(plan_expr(expr, &schema)?.expr),
            None => None,
        };
        Ok(JoinOutput {
            join_type,
            inputs,
            schema,
            residual,
        })
    }

    /// Joined rows: the left's columns, the right's, and their event times.
    pub fn joined(
        &self,
        left: Vec<ArrayRef>,
        right: Vec<ArrayRef>,
        times: ArrayRef,
    ) -> Result<RecordBatch> {
        let mut columns = left;
        columns.extend(right);
        columns.push(times);
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }

    /// Rows of `side` with NULLs for the other side's columns.
    pub fn padded(&self, side: usize, own: Vec<ArrayRef>, times: ArrayRef) -> Result<RecordBatch> {
        let len = times.len();
        let nulls: Vec<ArrayRef> = self.inputs[1 - side]
            .output_fields
            .iter()
            .map(|f| new_null_array(f.data_type(), len))
            .collect();
        if side == 0 {
            self.joined(own, nulls, times)
        } else {
            self.joined(nulls, own, times)
        }
    }

    /// Which joined rows pass the residual predicate (NULL does not).
    pub fn residual(&self, pairs: &RecordBatch) -> Result<BooleanArray> {
        let Some(predicate) = &self.residual else {
            return Ok(BooleanArray::from(vec![true; pairs.num_rows()]));
        };
        let value = predicate.evaluate(pairs)?.into_array(pairs.num_rows())?;
        let mask = value
            .as_boolean_opt()
            .ok_or_else(|| OperatorError::Config("the join condition is not a boolean".into()))?;
        Ok(match mask.nulls() {
            Some(_) => prep_null_mask_filter(mask),
            None => mask.clone(),
        })
    }
}
