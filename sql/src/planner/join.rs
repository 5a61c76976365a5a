//! Joins of two streams. A join whose condition bounds the two tables'
//! event times against each other (`b.ts BETWEEN a.ts - INTERVAL '1' MINUTE
//! AND a.ts`) is an interval join, as in Flink: its state is bounded by the
//! watermarks. A join of two windowed streams on equal windows
//! (`a.window_start = b.window_start AND a.window_end = b.window_end`) is a
//! window join. Any other join is a regular join: its rows stay in state
//! (bounded by `table.exec.state.ttl`), it takes updating inputs, and it
//! emits a changelog unless it is an inner join of append-only inputs. A
//! join of a table `FOR SYSTEM_TIME AS OF` the left's time is a temporal
//! join (see `temporal_join.rs`). The
//! condition is split into equal keys (the exchange and the state key), the
//! time interval or the windows, and a residual predicate on joined rows.

use std::sync::Arc;

use datafusion::common::{DFSchema, ScalarValue};
use datafusion::logical_expr::utils::{conjunction, split_conjunction};
use datafusion::logical_expr::{
    Between, BinaryExpr, Expr, ExprSchemable, Join, JoinType as PlanJoinType, Operator,
};
use headwater_operators::join::{
    IntervalBounds, IntervalJoin, JoinInput, JoinType, RegularJoin, TemporalJoin, WindowJoin,
};
use headwater_runtime::graph::OperatorFactory;

use super::columns::{stream_expr, stream_names};
use super::query::{Planned, QueryPlanner, WindowColumns, by_key};
use crate::error::SqlError;

impl QueryPlanner<'_> {
    /// `j`, with `more` (a WHERE over a join without a condition) joined to
    /// its condition.
    pub(super) fn join(&mut self, j: &Join, more: Option<&Expr>) -> Result<Planned, SqlError> {
        let join_type = match j.join_type {
            PlanJoinType::Inner => JoinType::Inner,
            PlanJoinType::Left => JoinType::Left,
            PlanJoinType::Right => JoinType::Right,
            PlanJoinType::Full => JoinType::Full,
            // `IN (SELECT ..)` and `EXISTS (..)`, decorrelated.
            PlanJoinType::LeftSemi => JoinType::LeftSemi,
            PlanJoinType::LeftAnti if j.null_aware => {
                return Err(self.unsupported(
                    "NOT IN (SELECT ..) is not supported: a NULL in the subquery makes it \
                     false for every row; write NOT EXISTS (SELECT .. WHERE ..) instead",
                ));
            }
            PlanJoinType::LeftAnti => JoinType::LeftAnti,
            PlanJoinType::LeftMark => {
                return Err(self.unsupported(
                    "IN or EXISTS subqueries under OR or NOT are not supported; use them as \
                     conditions of the WHERE joined by AND",
                ));
            }
            other => {
                return Err(self.unsupported(format!("{other} joins are not supported yet")));
            }
        };
        let temporal = self.temporal_clause(j)?;
        let left = self.plan(&j.left)?;
        let left = self.materialize(left)?;
        let right = self.plan(&j.right)?;
        let right = self.materialize(right)?;
        let updating = left.updating || right.updating;
        let mut conjuncts: Vec<Expr> = j.on.iter().map(|(l, r)| l.clone().eq(r.clone())).collect();
        for e in j.filter.iter().chain(more) {
            conjuncts.extend(split_conjunction(e).into_iter().cloned());
        }

        let schemas = [j.left.schema().as_ref(), j.right.schema().as_ref()];
        let times = [left.time.as_deref(), right.time.as_deref()];
        let mut condition = Condition::split(conjuncts, schemas, times);
        let window = match (&left.bounds, &right.bounds) {
            (Some(l), Some(r)) => condition.take_window([l, r], schemas),
            _ => None,
        };
        let kind = match (window, condition.lower, condition.upper) {
            // `FOR SYSTEM_TIME AS OF`: its time conditions filter the pairs.
            _ if temporal.is_some() => {
                let right_keys: Vec<Expr> = condition.keys.iter().map(|k| k[1].clone()).collect();
                let clause = temporal.expect("a temporal clause");
                self.check_temporal(
                    clause,
                    join_type,
                    &left,
                    &right,
                    schemas[0],
                    &right_keys,
                    schemas[1],
                )?;
                let times = std::mem::take(&mut condition.time_conjuncts);
                condition.residual.extend(times);
                Matched::Temporal
            }
            (Some(_), _, _) if updating => {
                return Err(self.unsupported(
                    "a window join of an updating query (an aggregate, keep-last deduplication \
                     or an upsert-kafka table) is not supported: a window join needs append-only \
                     inputs",
                ));
            }
            (Some(bounds), _, _) if join_type.emits_pairs() => Matched::Windows(bounds),
            (None, Some(lower), Some(upper)) if !updating && join_type.emits_pairs() => {
                Matched::Interval(IntervalBounds { lower, upper })
            }
            // Anything else is a regular join: its time conditions, if any,
            // only filter the joined rows.
            _ => {
                let times = std::mem::take(&mut condition.time_conjuncts);
                condition.residual.extend(times);
                Matched::Regular
            }
        };
        if let Matched::Interval(IntervalBounds { lower, upper }) = kind
            && lower > upper
        {
            return Err(self.unsupported(format!(
                "the join's time interval is empty: the right time minus the left is at least \
                 {lower} ms and at most {upper} ms"
            )));
        }

        // Each side's key columns, computed where a key is an expression.
        let mut streams = [left.stream, right.stream];
        let mut keys: [Vec<String>; 2] = [Vec::new(), Vec::new()];
        for side in 0..2 {
            let exprs: Vec<Expr> = condition
                .keys
                .iter()
                .map(|pair| {
                    let e = stream_expr(&pair[side], schemas[side]);
                    if side == 1 {
                        let left_type = pair[0].get_type(schemas[0]);
                        let right_type = pair[1].get_type(schemas[1]);
                        match (left_type, right_type) {
                            (Ok(l), Ok(r)) if l != r => return e.cast_to(&l, schemas[1]),
                            _ => {}
                        }
                    }
                    Ok(e)
                })
                .collect::<Result<_, _>>()
                .map_err(|e| SqlError::datafusion(e, self.at))?;
            let named = exprs
                .into_iter()
                .enumerate()
                .map(|(i, e)| (e, format!("__join_key_{i}")))
                .collect();
            let (stream, mut names) = self.key_columns(streams[side].clone(), named)?;
            // A window join's rows meet per key and window.
            if let Matched::Windows(bounds) = &kind {
                names.push(bounds[side].start.clone());
            }
            streams[side] = stream;
            keys[side] = names;
        }
        let [mut left_stream, mut right_stream] = streams;
        let inputs = [&left_stream, &right_stream].map(|s| s.schema.clone());
        let join_inputs: Vec<JoinInput> = (0..2)
            .map(|side| JoinInput {
                schema: inputs[side].clone(),
                key: keys[side].clone(),
                output: stream_names(schemas[side]),
            })
            .collect();
        // A semi or anti join's schema is its left input's: its condition
        // sees both sides.
        let both = if join_type.emits_pairs() {
            j.schema.clone()
        } else {
            Arc::new(
                j.left
                    .schema()
                    .join(j.right.schema())
                    .map_err(|e| SqlError::datafusion(e, self.at))?,
            )
        };
        let residual = conjunction(condition.residual).map(|e| stream_expr(&e, &both));
        let names = stream_names(&both);
        let regular = matches!(kind, Matched::Regular);
        let temporal_join = matches!(kind, Matched::Temporal);
        let mut changelog = false;
        let (name, schema, factory): (_, _, OperatorFactory) = match kind {
            Matched::Regular => {
                let operator = RegularJoin::try_new(
                    join_type,
                    &join_inputs[0],
                    &join_inputs[1],
                    &names,
                    residual.as_ref(),
                    self.dataflow.state_ttl,
                )
                .map_err(|e| self.failed(e.to_string()))?;
                changelog = operator.is_changelog();
                let schema = operator.output_schema();
                (
                    "join",
                    schema,
                    Arc::new(move |subtask| operator.operator(subtask)),
                )
            }
            Matched::Temporal => {
                let operator = TemporalJoin::try_new(
                    join_type,
                    &join_inputs[0],
                    &join_inputs[1],
                    &names,
                    residual.as_ref(),
                )
                .map_err(|e| self.failed(e.to_string()))?;
                let schema = operator.output_schema();
                (
                    "temporal_join",
                    schema,
                    Arc::new(move |subtask| operator.operator(subtask)),
                )
            }
            Matched::Windows(bounds) => {
                let operator = WindowJoin::try_new(
                    join_type,
                    &join_inputs[0],
                    &join_inputs[1],
                    [&bounds[0].end, &bounds[1].end],
                    &names,
                    residual.as_ref(),
                )
                .map_err(|e| self.failed(e.to_string()))?;
                let schema = operator.output_schema();
                (
                    "window_join",
                    schema,
                    Arc::new(move |subtask| operator.operator(subtask)),
                )
            }
            Matched::Interval(bounds) => {
                let operator = IntervalJoin::try_new(
                    join_type,
                    bounds,
                    &join_inputs[0],
                    &join_inputs[1],
                    &names,
                    residual.as_ref(),
                )
                .map_err(|e| self.failed(e.to_string()))?;
                let schema = operator.output_schema();
                (
                    "interval_join",
                    schema,
                    Arc::new(move |subtask| operator.operator(subtask)),
                )
            }
        };
        // Without keys, one subtask sees every row (as in Flink).
        let parallelism = by_key(&mut left_stream, &keys[0]);
        by_key(&mut right_stream, &keys[1]);
        let stream = self
            .dataflow
            .join(
                left_stream,
                right_stream,
                name,
                schema,
                parallelism,
                factory,
            )
            .map_err(|e| self.failed(e))?;
        let mut planned = Planned::append(stream);
        planned.updating = changelog;
        if temporal_join {
            // Each row keeps its left row's event time: a time attribute.
            let left_names = stream_names(schemas[0]);
            planned.time = left
                .time
                .as_ref()
                .and_then(|t| left_names.iter().position(|n| n == t))
                .map(|i| names[i].clone());
        }
        if regular && changelog {
            // Rows of keyed inputs are told apart by both keys.
            planned.key = match (&left.key, &right.key) {
                (Some(l), Some(r)) => {
                    let out = |side: usize, key: &[String]| -> Option<Vec<String>> {
                        let columns = stream_names(schemas[side]);
                        let offset = if side == 0 {
                            0
                        } else {
                            stream_names(schemas[0]).len()
                        };
                        key.iter()
                            .map(|k| {
                                columns
                                    .iter()
                                    .position(|c| c == k)
                                    .map(|i| names[offset + i].clone())
                            })
                            .collect()
                    };
                    out(0, l).zip(out(1, r)).map(|(mut l, r)| {
                        l.extend(r);
                        l
                    })
                }
                _ => None,
            };
        }
        Ok(planned)
    }
}

/// What bounds a join's state: windows, a time interval, or nothing (a
/// regular join, whose rows stay until retracted or their time to live ends).
enum Matched {
    Windows([WindowColumns; 2]),
    Interval(IntervalBounds),
    Regular,
    /// `FOR SYSTEM_TIME AS OF`: each left row joins the version of its time.
    Temporal,
}

/// A join condition taken apart.
struct Condition {
    /// Pairs of equal expressions: [left side's, right side's].
    keys: Vec<[Expr; 2]>,
    /// The least and greatest `right time - left time` (ms) the condition allows.
    lower: Option<i64>,
    upper: Option<i64>,
    /// The conjuncts that gave `lower` and `upper`: a regular join filters by them.
    time_conjuncts: Vec<Expr>,
    residual: Vec<Expr>,
}

impl Condition {
    fn split(conjuncts: Vec<Expr>, schemas: [&DFSchema; 2], times: [Option<&str>; 2]) -> Self {
        let mut condition = Condition {
            keys: Vec::new(),
            lower: None,
            upper: None,
            time_conjuncts: Vec::new(),
            residual: Vec::new(),
        };
        let side_of = |e: &Expr| -> Option<usize> {
            let columns = e.column_refs();
            if columns.is_empty() {
                return None;
            }
            (0..2).find(|&s| columns.iter().all(|c| schemas[s].has_column(c)))
        };
        let time_term = |e: &Expr| time_term(e, schemas, times);
        for conjunct in conjuncts {
            let comparisons: Vec<(Expr, Operator, Expr)> = match &conjunct {
                Expr::Between(Between {
                    expr,
                    negated: false,
                    low,
                    high,
                }) => vec![
                    (*expr.clone(), Operator::GtEq, *low.clone()),
                    (*expr.clone(), Operator::LtEq, *high.clone()),
                ],
                Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
                    vec![(*left.clone(), *op, *right.clone())]
                }
                _ => Vec::new(),
            };
            let bounds: Option<Vec<(Operator, i64)>> = comparisons
                .iter()
                .map(|(a, op, b)| {
                    let ((sa, ca), (sb, cb)) = (time_term(a)?, time_term(b)?);
                    match (sa, sb) {
                        // right + ca op left + cb: right - left op cb - ca
                        (1, 0) => Some((*op, cb.checked_sub(ca)?)),
                        (0, 1) => Some((flipped(*op)?, ca.checked_sub(cb)?)),
                        _ => None,
                    }
                })
                .collect();
            if let Some(bounds) = bounds.filter(|b| !b.is_empty()) {
                if bounds.iter().all(|(op, _)| flipped(*op).is_some()) {
                    for (op, c) in bounds {
                        condition.bound(op, c);
                    }
                    condition.time_conjuncts.push(conjunct);
                    continue;
                }
            }
            if let Expr::BinaryExpr(BinaryExpr {
                left,
                op: Operator::Eq,
                right,
            }) = &conjunct
            {
                match (side_of(left), side_of(right)) {
                    (Some(0), Some(1)) => {
                        condition.keys.push([*left.clone(), *right.clone()]);
                        continue;
                    }
                    (Some(1), Some(0)) => {
                        condition.keys.push([*right.clone(), *left.clone()]);
                        continue;
                    }
                    _ => {}
                }
            }
            condition.residual.push(conjunct);
        }
        condition
    }

    /// Takes the equalities of both sides' window starts and ends out of
    /// the keys: if both are there, the join is a window join of `bounds`.
    fn take_window(
        &mut self,
        bounds: [&WindowColumns; 2],
        schemas: [&DFSchema; 2],
    ) -> Option<[WindowColumns; 2]> {
        let column = |e: &Expr, side: usize| match stream_expr(e, schemas[side]) {
            Expr::Column(c) => Some(c.name),
            _ => None,
        };
        let position = |pick: fn(&WindowColumns) -> &String| {
            self.keys.iter().position(|[l, r]| {
                column(l, 0).as_ref() == Some(pick(bounds[0]))
                    && column(r, 1).as_ref() == Some(pick(bounds[1]))
            })
        };
        let start = position(|b| &b.start)?;
        let end = position(|b| &b.end)?;
        for i in [start.max(end), start.min(end)] {
            self.keys.remove(i);
        }
        Some(bounds.map(WindowColumns::clone))
    }

    /// Narrows the interval by `right - left op c`.
    fn bound(&mut self, op: Operator, c: i64) {
        let raise = |b: &mut Option<i64>, v: i64| *b = Some(b.map_or(v, |b| b.max(v)));
        let lower = |b: &mut Option<i64>, v: i64| *b = Some(b.map_or(v, |b| b.min(v)));
        match op {
            Operator::GtEq => raise(&mut self.lower, c),
            Operator::Gt => raise(&mut self.lower, c.saturating_add(1)),
            Operator::LtEq => lower(&mut self.upper, c),
            Operator::Lt => lower(&mut self.upper, c.saturating_sub(1)),
            Operator::Eq => {
                raise(&mut self.lower, c);
                lower(&mut self.upper, c);
            }
            _ => {}
        }
    }
}

/// The comparison with its sides swapped: `a < b` is `b > a`.
fn flipped(op: Operator) -> Option<Operator> {
    Some(match op {
        Operator::Lt => Operator::Gt,
        Operator::LtEq => Operator::GtEq,
        Operator::Gt => Operator::Lt,
        Operator::GtEq => Operator::LtEq,
        Operator::Eq => Operator::Eq,
        _ => return None,
    })
}

/// `e` as a side's time attribute plus a fixed number of milliseconds.
fn time_term(e: &Expr, schemas: [&DFSchema; 2], times: [Option<&str>; 2]) -> Option<(usize, i64)> {
    match e {
        Expr::Column(c) => (0..2).find_map(|side| {
            let index = schemas[side].maybe_index_of_column(c)?;
            let name = &stream_names(schemas[side])[index];
            (Some(name.as_str()) == times[side]).then_some((side, 0))
        }),
        Expr::Cast(cast) => time_term(&cast.expr, schemas, times),
        Expr::TryCast(cast) => time_term(&cast.expr, schemas, times),
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            let term = |e| time_term(e, schemas, times);
            let ((side, base), ms) = match (term(left), term(right)) {
                (Some(t), None) => (t, interval_millis(right)?),
                (None, Some(t)) if *op == Operator::Plus => (t, interval_millis(left)?),
                _ => return None,
            };
            match op {
                Operator::Plus => Some((side, base.checked_add(ms)?)),
                Operator::Minus => Some((side, base.checked_sub(ms)?)),
                _ => None,
            }
        }
        _ => None,
    }
}

/// A fixed interval literal in milliseconds (no months or years).
fn interval_millis(e: &Expr) -> Option<i64> {
    match e {
        Expr::Literal(ScalarValue::IntervalMonthDayNano(Some(v)), _) if v.months == 0 => {
            (v.days as i64 * 86_400_000).checked_add(v.nanoseconds / 1_000_000)
        }
        Expr::Literal(ScalarValue::IntervalDayTime(Some(v)), _) => {
            Some(v.days as i64 * 86_400_000 + v.milliseconds as i64)
        }
        Expr::Cast(cast) => interval_millis(&cast.expr),
        _ => None,
    }
}
