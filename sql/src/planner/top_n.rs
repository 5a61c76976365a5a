//! `ROW_NUMBER()` windows: Flink's window top-N, or a deduplication.
//!
//! ```sql
//! SELECT * FROM (
//!   SELECT *, ROW_NUMBER() OVER (PARTITION BY window_start, window_end, auction
//!                                ORDER BY price DESC) AS rn
//!   FROM TABLE(TUMBLE(TABLE bids, DESCRIPTOR(ts), INTERVAL '10' SECOND)))
//! WHERE rn <= 3
//! ```
//!
//! A `ROW_NUMBER()` over a window function or a window aggregate,
//! partitioned by the window's start and end, is a window top-N (with
//! `rn = 1`, Flink's window deduplication): ranked once per window when it
//! closes, append-only. Any other is a deduplication ([`super::dedup`]).

use std::sync::Arc;

use datafusion::logical_expr::{Expr, Window};
use headwater_operators::window::{SortKey, WindowTopN};

use super::dedup::ONLY;
use super::query::{Planned, QueryPlanner, by_key};
use super::windowing::WindowColumns;
use crate::error::SqlError;

impl QueryPlanner<'_> {
    /// Plans a `ROW_NUMBER()` window: a window top-N when it partitions a
    /// windowed stream by its windows, a deduplication otherwise.
    pub(super) fn row_number(&mut self, w: &Window) -> Result<Planned, SqlError> {
        let input = self.plan(&w.input)?;
        let windowed = input.window.is_some();
        let input = self.materialize(input)?;
        if let Some(bounds) = input.bounds.clone()
            && partitions_by(w, &bounds)
        {
            return self.window_top_n(w, input, &bounds);
        }
        self.deduplicate(w, input, windowed)
    }

    fn window_top_n(
        &mut self,
        w: &Window,
        input: Planned,
        bounds: &WindowColumns,
    ) -> Result<Planned, SqlError> {
        let [expr] = w.window_expr.as_slice() else {
            return Err(self.unsupported(ONLY));
        };
        let Expr::WindowFunction(function) = expr.clone().unalias() else {
            return Err(self.unsupported(ONLY));
        };
        if function.fun.name() != "row_number" {
            return Err(self.unsupported(format!(
                "{} over windows is not supported; a window top-N numbers rows with ROW_NUMBER()",
                function.fun.name()
            )));
        }
        if input.updating {
            return Err(
                self.unsupported("a window top-N over an updating query is not supported yet")
            );
        }
        let inputs = w.input.schema().fields().len();
        let rank = w.schema.field(inputs).name().clone();
        let Some(&(_, limit)) = self.row_limits.iter().find(|(name, _)| *name == rank) else {
            return Err(self.unsupported(
                "a window top-N keeps the first rows of each window: filter its ROW_NUMBER() \
                 with `rn <= N` (or `rn = 1`) where `rn` is the name you give it",
            ));
        };
        let partition = function
            .params
            .partition_by
            .iter()
            .map(|e| match column(e) {
                Some(name) => Ok(name),
                None => Err(self.unsupported(
                    "a window top-N partitions by columns, not expressions (in its \
                     ROW_NUMBER() OVER (PARTITION BY ..)): compute the value as a column in a subquery",
                )),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let order = function
            .params
            .order_by
            .iter()
            .map(|o| match column(&o.expr) {
                Some(name) => Ok(SortKey {
                    column: name,
                    descending: !o.asc,
                    nulls_first: o.nulls_first,
                }),
                None => Err(self.unsupported(
                    "a window top-N orders by columns, not expressions (in its ROW_NUMBER() \
                     OVER (.. ORDER BY ..)): compute the value as a column in a subquery",
                )),
            })
            .collect::<Result<Vec<_>, _>>()?;
        if order.is_empty() {
            return Err(
                self.unsupported("a window top-N needs an ORDER BY in its ROW_NUMBER() OVER (..)")
            );
        }
        let mut stream = input.stream;
        let parallelism = by_key(&mut stream, &partition);
        let top_n = WindowTopN::try_new(
            &stream.schema,
            &partition,
            &bounds.end,
            &order,
            limit as usize,
            &rank,
        )
        .map_err(|e| self.failed(e.to_string()))?;
        let schema = top_n.output_schema();
        let ranked = self
            .dataflow
            .then(
                stream,
                "window_top_n",
                schema,
                parallelism,
                Arc::new(move |subtask| top_n.operator(subtask)),
            )
            .map_err(|e| self.failed(e))?;
        let mut key = partition;
        key.push(rank);
        Ok(Planned {
            key: Some(key),
            bounds: Some(bounds.clone()),
            ..Planned::append(ranked)
        })
    }
}

/// Whether `w` partitions by the window's start and end.
fn partitions_by(w: &Window, bounds: &WindowColumns) -> bool {
    let names: Vec<String> = w
        .window_expr
        .iter()
        .filter_map(|e| match e.clone().unalias() {
            Expr::WindowFunction(f) => Some(f.params.partition_by.clone()),
            _ => None,
        })
        .flatten()
        .filter_map(|e| column(&e))
        .collect();
    names.contains(&bounds.start) && names.contains(&bounds.end)
}

/// The column `e` is (under any casts).
fn column(e: &Expr) -> Option<String> {
    match e {
        Expr::Column(c) => Some(c.name.clone()),
        Expr::Cast(c) => column(&c.expr),
        Expr::TryCast(c) => column(&c.expr),
        _ => None,
    }
}
