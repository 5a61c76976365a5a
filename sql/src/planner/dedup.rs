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
//! pair into one deduplicating operator. Any other `OVER` is refused.

use datafusion::common::ScalarValue;
use datafusion::logical_expr::{Expr, Filter, LogicalPlan, Operator, Window};

/// The `ROW_NUMBER()` column that `f` keeps at 1, if `f` is `rn = 1` (or
/// `rn <= 1`, `rn < 2`) over a `ROW_NUMBER()` window below it.
/// `rn = 1 AND ..` counts too: the rest filters the first rows.
pub(super) fn first_row_filter(f: &Filter) -> Option<String> {
    datafusion::logical_expr::utils::split_conjunction(&f.predicate)
        .into_iter()
        .find_map(|conjunct| first_row_condition(conjunct, &f.input))
}

fn first_row_condition(predicate: &Expr, input: &LogicalPlan) -> Option<String> {
    let Expr::BinaryExpr(b) = predicate else {
        return None;
    };
    let (column, op, value) = match (strip(&b.left), strip(&b.right)) {
        (Expr::Column(c), Expr::Literal(v, _)) => (c.name.clone(), b.op, v.clone()),
        (Expr::Literal(v, _), Expr::Column(c)) => (c.name.clone(), b.op.swap()?, v.clone()),
        _ => return None,
    };
    let n = as_i64(&value)?;
    let first_only = matches!(
        (op, n),
        (Operator::Eq, 1) | (Operator::LtEq, 1) | (Operator::Lt, 2)
    );
    if !first_only {
        return None;
    }
    window_column(input, &column)
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

/// The key columns of a deduplicating window, or why `w` is not one.
pub(super) fn first_row_keys(w: &Window, first_rows: &[String]) -> Result<Vec<String>, String> {
    const ONLY: &str = "OVER windows are supported only to deduplicate: \
        ROW_NUMBER() OVER (PARTITION BY key ORDER BY time) AS rn, then WHERE rn = 1";
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
    if function.params.order_by.iter().any(|s| !s.asc) {
        return Err(
            "ROW_NUMBER() with ORDER BY .. DESC keeps the last row of each key, which updates \
             results; only the first row (ORDER BY .. ASC) is supported"
                .into(),
        );
    }
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
    Ok(keys)
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
