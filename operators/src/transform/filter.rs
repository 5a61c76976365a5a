//! Filter: keeps the rows for which a predicate is true.
//!
//! Over a changelog, an update is a `-U` row followed at once by its `+U`
//! row. When the filter keeps one half only, the kept half changes kind: a
//! `-U` whose new row is dropped is a delete (`-D`), a `+U` whose old row
//! was dropped is an insert (`+I`). So a consumer that applies changes by
//! key (a view, an upsert sink that skips `-U`) never keeps a row that left
//! the filter's range.

use std::sync::Arc;

use arrow::array::{Array, AsArray, BooleanArray, RecordBatch, StringArray};
use arrow::compute::filter_record_batch;
use arrow::datatypes::{DataType, SchemaRef};
use async_trait::async_trait;
use datafusion::common::cast::as_boolean_array;
use datafusion::logical_expr::Expr;
use datafusion::physical_expr::PhysicalExpr;
use headwater_runtime::{BoxError, Collector, Operator, OperatorContext};

use super::expr::plan_expr;
use crate::changelog::{CHANGE_COLUMN, Change};
use crate::error::OperatorError;

/// Keeps rows where a boolean expression is true (NULL counts as false).
#[derive(Debug, Clone)]
pub struct Filter {
    predicate: Arc<dyn PhysicalExpr>,
    /// The `_change` column, over a changelog.
    change: Option<usize>,
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
            change: input.index_of(CHANGE_COLUMN).ok(),
        })
    }
}

/// The change kinds of a changelog's rows once `mask` filters them: the
/// kept half of a split update becomes a delete or an insert. `None` when
/// no kind changes.
fn split_updates(changes: &StringArray, mask: &BooleanArray) -> Option<StringArray> {
    let kept = |r: usize| mask.is_valid(r) && mask.value(r);
    let kind = |r: usize| Change::parse(changes.value(r));
    let mut retagged: Option<Vec<&str>> = None;
    for r in 0..changes.len() {
        if !kept(r) {
            continue;
        }
        let new = match kind(r) {
            Some(Change::UpdateBefore) => {
                let paired = r + 1 < changes.len() && kind(r + 1) == Some(Change::UpdateAfter);
                (!(paired && kept(r + 1))).then_some(Change::Delete)
            }
            Some(Change::UpdateAfter) => {
                let paired = r > 0 && kind(r - 1) == Some(Change::UpdateBefore);
                (!(paired && kept(r - 1))).then_some(Change::Insert)
            }
            _ => None,
        };
        if let Some(new) = new {
            let kinds =
                retagged.get_or_insert_with(|| changes.iter().map(|c| c.unwrap_or("")).collect());
            kinds[r] = new.as_str();
        }
    }
    retagged.map(StringArray::from)
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
        let mut batch = batch;
        if let Some(change) = self.change {
            let changes = batch.column(change).as_string::<i32>();
            if let Some(retagged) = split_updates(changes, mask) {
                let mut columns = batch.columns().to_vec();
                columns[change] = Arc::new(retagged);
                batch = RecordBatch::try_new(batch.schema(), columns)?;
            }
        }
        if kept == batch.num_rows() {
            return out.collect(batch).await;
        }
        out.collect(filter_record_batch(&batch, mask)?).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kept_half_of_a_split_update_is_a_delete_or_an_insert() {
        let changes = StringArray::from(vec!["-U", "+U", "-U", "+U", "-U", "+U", "+I", "-D"]);
        let mask = BooleanArray::from(vec![true, false, false, true, true, true, true, false]);
        let retagged = split_updates(&changes, &mask).unwrap();
        let kinds: Vec<&str> = retagged.iter().flatten().collect();
        assert_eq!(kinds, ["-D", "+U", "-U", "+I", "-U", "+U", "+I", "-D"]);
        let all = BooleanArray::from(vec![true; 8]);
        assert!(split_updates(&changes, &all).is_none());
    }
}
