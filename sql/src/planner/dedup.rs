//! Recognizing Flink's deduplication query in a logical plan:
//!
//! ```sql
//! SELECT .. FROM (
//!   SELECT *, ROW_NUMBER() OVER (PARTITION BY event_id ORDER BY event_time) AS rn
//!   FROM orders)
//! WHERE rn = 1
//! ```
//!
//! The filter keeps the first row of each `event_id`: the planner turns the
//! pair into one deduplicating operator. With `ORDER BY event_time DESC` it
//! keeps the latest row of each key instead, an updating query (keep-last).
//! A `ROW_NUMBER()` that partitions by windows is a window top-N
//! ([`super::top_n`]); any other `OVER` is refused.
//!
//! `SELECT DISTINCT ..` is a `GROUP BY` of every column with no aggregate.

use std::sync::Arc;

use datafusion::catalog::TableProvider;
use datafusion::common::{Column, ScalarValue};
use datafusion::datasource::source_as_provider;
use datafusion::logical_expr::{Aggregate, Distinct, Expr, Filter, LogicalPlan, Operator, Window};
use datafusion::prelude::lit;
use headwater_operators::changelog::CHANGE_COLUMN;
use headwater_operators::deduplicate::Deduplicate;
use headwater_operators::normalize::ChangelogNormalize;

use super::columns::change_column;
use super::query::{Planned, QueryPlanner, by_key};
use crate::catalog::{DeclaredTable, downcast};
use crate::error::SqlError;

/// The `ROW_NUMBER()` column that `f` limits, and its limit, if `f` is
/// `rn = 1`, `rn <= n` or `rn < n + 1` over a `ROW_NUMBER()` window below it.
/// `rn <= n AND ..` counts too: the rest filters the rows kept.
pub(super) fn row_limit_filter(f: &Filter) -> Option<(String, u64)> {
    datafusion::logical_expr::utils::split_conjunction(&f.predicate)
        .into_iter()
        .find_map(|conjunct| row_limit_condition(conjunct, &f.input))
}

fn row_limit_condition(predicate: &Expr, input: &LogicalPlan) -> Option<(String, u64)> {
    let Expr::BinaryExpr(b) = predicate else {
        return None;
    };
    let (column, op, value) = match (strip(&b.left), strip(&b.right)) {
        (Expr::Column(c), Expr::Literal(v, _)) => (c.name.clone(), b.op, v.clone()),
        (Expr::Literal(v, _), Expr::Column(c)) => (c.name.clone(), b.op.swap()?, v.clone()),
        _ => return None,
    };
    let n = as_i64(&value)?;
    let limit = match op {
        Operator::Eq if n == 1 => 1,
        Operator::LtEq if n >= 1 => n,
        Operator::Lt if n >= 2 => n - 1,
        _ => return None,
    };
    Some((window_column(input, &column)?, limit as u64))
}

/// The name, at the window, of the column called `name` at `plan`, if it
/// comes from a `ROW_NUMBER()` through projections and aliases only.
fn window_column(plan: &LogicalPlan, name: &str) -> Option<String> {
    match plan {
        LogicalPlan::SubqueryAlias(a) => window_column(&a.input, name),
        LogicalPlan::Projection(p) => {
            let i = p.schema.fields().iter().position(|f| f.name() == name)?;
            match p.expr.get(i)?.clone().unalias() {
                Expr::Column(c) => window_column(&p.input, &c.name),
                _ => None,
            }
        }
        LogicalPlan::Window(w) => {
            let inputs = w.input.schema().fields().len();
            let field = w
                .schema
                .fields()
                .iter()
                .skip(inputs)
                .find(|f| f.name() == name)?;
            Some(field.name().clone())
        }
        _ => None,
    }
}

/// What `OVER` windows can be.
pub(super) const ONLY: &str = "OVER windows are supported to deduplicate, \
    ROW_NUMBER() OVER (PARTITION BY key ORDER BY time [DESC]) AS rn, then WHERE rn = 1, \
    and for a window top-N, ROW_NUMBER() OVER (PARTITION BY window_start, window_end, .. \
    ORDER BY ..) AS rn over a window aggregate or window function, then WHERE rn <= N";

/// A deduplicating `ROW_NUMBER()`: its keys, and for keep-last (`ORDER BY
/// .. DESC`) the column it orders by.
pub(super) struct RowNumber {
    pub keys: Vec<String>,
    pub last_by: Option<String>,
}

/// The deduplication a `ROW_NUMBER()` window is, or why `w` is not one.
pub(super) fn row_number(w: &Window, first_rows: &[String]) -> Result<RowNumber, String> {
    let [expr] = w.window_expr.as_slice() else {
        return Err(ONLY.into());
    };
    let inputs = w.input.schema().fields().len();
    let name = w.schema.field(inputs).name();
    let Expr::WindowFunction(function) = expr.clone().unalias() else {
        return Err(ONLY.into());
    };
    if function.fun.name() != "row_number" || !first_rows.contains(name) {
        return Err(ONLY.into());
    }
    let last_by = match function.params.order_by.as_slice() {
        [order] if !order.asc => match strip(&order.expr) {
            Expr::Column(c) => Some(c.name.clone()),
            other => {
                return Err(format!(
                    "ROW_NUMBER() .. ORDER BY {other} DESC: keep-last deduplication orders by \
                     the table's event time column"
                ));
            }
        },
        orders if orders.iter().any(|o| !o.asc) => {
            return Err("keep-last deduplication orders by one column: ORDER BY time DESC".into());
        }
        _ => None,
    };
    let keys = function
        .params
        .partition_by
        .iter()
        .map(|e| match strip(e) {
            Expr::Column(c) => Ok(c.name.clone()),
            _ => Err("ROW_NUMBER() deduplicates by columns: PARTITION BY column names".to_string()),
        })
        .collect::<Result<Vec<_>, _>>()?;
    if keys.is_empty() {
        return Err("ROW_NUMBER() needs PARTITION BY the columns that identify a row".into());
    }
    Ok(RowNumber { keys, last_by })
}

/// The table and column that column `name` of `plan` reads as it is,
/// through projections, filters and aliases.
fn source_column(plan: &LogicalPlan, name: &str) -> Option<(Arc<dyn TableProvider>, String)> {
    match plan {
        LogicalPlan::SubqueryAlias(a) => source_column(&a.input, name),
        LogicalPlan::Filter(f) => source_column(&f.input, name),
        LogicalPlan::Projection(p) => {
            let i = p.schema.fields().iter().position(|f| f.name() == name)?;
            match strip(&p.expr.get(i)?.clone().unalias()) {
                Expr::Column(c) => source_column(&p.input, &c.name),
                _ => None,
            }
        }
        LogicalPlan::TableScan(scan) => {
            let provider = source_as_provider(&scan.source).ok()?;
            Some((provider, name.to_string()))
        }
        _ => None,
    }
}

impl QueryPlanner<'_> {
    /// `ROW_NUMBER() OVER (PARTITION BY k ORDER BY t) .. WHERE rn = 1`: the
    /// first row of each key, the rest dropped; with `ORDER BY t DESC`, the
    /// row of each key with the latest event time, as a changelog (Flink's
    /// deduplications).
    pub(super) fn deduplicate(
        &mut self,
        w: &Window,
        input: Planned,
        windowed: bool,
    ) -> Result<Planned, SqlError> {
        let first_rows: Vec<String> = self
            .row_limits
            .iter()
            .filter(|(_, limit)| *limit == 1)
            .map(|(name, _)| name.clone())
            .collect();
        let dedup = row_number(w, &first_rows).map_err(|e| self.unsupported(e))?;
        let keys = dedup.keys;
        if windowed || input.updating {
            return Err(self.unsupported(
                "ROW_NUMBER() deduplicates a table's rows; it cannot come after a window function or an aggregate",
            ));
        }
        let columns = w.schema.fields();
        let inputs = w.input.schema().fields().len();
        let mut exprs: Vec<Expr> = super::columns::stream_names(&w.schema)[..inputs]
            .iter()
            .map(|name| Expr::Column(Column::new_unqualified(name)))
            .collect();
        let (kept, updating) = match &dedup.last_by {
            None => {
                let mut stream = input.stream;
                let parallelism = by_key(&mut stream, &keys);
                let first = Deduplicate::try_new(&keys, &stream.schema, self.dataflow.state_ttl)
                    .map_err(|e| self.failed(e.to_string()))?;
                let schema = stream.schema.clone();
                let kept = self
                    .dataflow
                    .then(
                        stream,
                        "deduplicate",
                        schema,
                        parallelism,
                        Arc::new(move |subtask| first.operator(subtask)),
                    )
                    .map_err(|e| self.failed(e))?;
                (kept, false)
            }
            Some(column) => {
                self.check_event_time(&w.input, column)?;
                // Every row is an upsert of its key.
                let mut upserts = exprs.clone();
                upserts.push(lit("+I").alias(CHANGE_COLUMN));
                let mut stream = self
                    .dataflow
                    .project(input.stream, &upserts)
                    .map_err(|e| self.failed(e))?;
                let parallelism = by_key(&mut stream, &keys);
                let last = ChangelogNormalize::keep_last(&keys, &stream.schema)
                    .map_err(|e| self.failed(e.to_string()))?;
                let schema = last.output_schema();
                let kept = self
                    .dataflow
                    .then(
                        stream,
                        "keep_last",
                        schema,
                        parallelism,
                        Arc::new(move |subtask| last.operator(subtask)),
                    )
                    .map_err(|e| self.failed(e))?;
                (kept, true)
            }
        };
        // Every row that goes on is number 1 of its key.
        let one = ScalarValue::UInt64(Some(1))
            .cast_to(columns[inputs].data_type())
            .map_err(|e| SqlError::datafusion(e, self.at))?;
        exprs.push(lit(one).alias(columns[inputs].name()));
        if updating {
            exprs.push(change_column());
        }
        let stream = self
            .dataflow
            .project(kept, &exprs)
            .map_err(|e| self.failed(e))?;
        // One row per key goes on: the key identifies it (a view's key).
        Ok(Planned {
            key: Some(keys),
            updating,
            // Keep-first passes rows on as they are, in their time; keep-last's
            // rows are versions at their event time (a versioned view, as
            // Flink's, that a temporal join can look up).
            time: input.time,
            ..Planned::append(stream)
        })
    }

    /// Keep-last orders by the event time of the table it reads (its
    /// `WATERMARK` column): the operator compares event times.
    fn check_event_time(&self, input: &LogicalPlan, column: &str) -> Result<(), SqlError> {
        let traced = source_column(input, column);
        let rowtime = traced.as_ref().and_then(|(provider, name)| {
            let table = downcast::<DeclaredTable>(provider)?;
            let (watermark, _) = table.def.watermark.as_ref()?;
            (watermark == name).then_some(())
        });
        if rowtime.is_none() {
            return Err(self.unsupported(format!(
                "ROW_NUMBER() .. ORDER BY {column} DESC: keep-last deduplication orders by the \
                 event time of the table it reads (the column of its WATERMARK), and `{column}` is not it"
            )));
        }
        Ok(())
    }
}

/// `SELECT DISTINCT` as the aggregate it is: every column a group key, and
/// a count (the aggregate operators keep at least one), which the planner
/// drops after it.
pub(super) fn distinct_as_aggregate(d: &Distinct) -> Result<Aggregate, String> {
    let Distinct::All(input) = d else {
        return Err("SELECT DISTINCT ON is not supported; use ROW_NUMBER() .. WHERE rn = 1".into());
    };
    let keys = input
        .schema()
        .columns()
        .into_iter()
        .map(Expr::Column)
        .collect();
    let count = datafusion::functions_aggregate::count::count_all().alias("__distinct_rows");
    Aggregate::try_new(input.clone(), keys, vec![count]).map_err(|e| e.to_string())
}

/// The expression under any casts.
fn strip(e: &Expr) -> &Expr {
    match e {
        Expr::Cast(c) => strip(&c.expr),
        Expr::TryCast(c) => strip(&c.expr),
        other => other,
    }
}

fn as_i64(v: &ScalarValue) -> Option<i64> {
    match v
        .cast_to(&datafusion::arrow::datatypes::DataType::Int64)
        .ok()?
    {
        ScalarValue::Int64(Some(n)) => Some(n),
        _ => None,
    }
}
