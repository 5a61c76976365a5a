//! A DataFusion logical plan, rewritten into the dataflow: scans become
//! sources, projections and filters become vectorized `PhysicalExpr`
//! operators, a window table function under a `GROUP BY` becomes a window
//! operator. What a stream cannot do is refused with the reason.

use std::sync::Arc;

use datafusion::catalog::view::ViewTable;
use datafusion::common::{Column, DFSchema};
use datafusion::datasource::source_as_provider;
use datafusion::logical_expr::{Aggregate, Expr, LogicalPlan, TableScan};
use headwater_operators::changelog::{CHANGE_COLUMN, Change};
use headwater_operators::normalize::ChangelogNormalize;
use headwater_operators::updating_aggregate::UpdatingAggregate;
use headwater_operators::window::{WindowAggregate, WindowKind};
use headwater_runtime::{EVENT_TIME_FIELD, Partitioning};

use super::columns::{
    change_column, mentions_window_bounds, named, plan_columns, stream_expr, stream_names,
};
use super::dataflow::{Dataflow, Stream};
pub(super) use super::windowing::{PendingWindow, WindowColumns};
use crate::catalog::{DeclaredTable, WindowedTable, downcast};
use crate::connectors;
use crate::error::{Position, SqlError};
use crate::script::TemporalClause;

/// A stream, and the window function it is cut by until its `GROUP BY`.
pub(super) struct Planned {
    pub stream: Stream,
    pub window: Option<PendingWindow>,
    /// A changelog (with `_change`): the result of an updating aggregate.
    pub updating: bool,
    /// The columns that identify a row: an aggregate's GROUP BY columns.
    pub key: Option<Vec<String>>,
    /// The column that holds each row's event time (a table's WATERMARK
    /// column, as long as it is selected as it is): a time attribute.
    pub time: Option<String>,
    /// The columns of the window each row is in: the stream is cut into
    /// windows (by a window function, or as a window aggregate's results).
    pub bounds: Option<WindowColumns>,
}

impl Planned {
    pub(super) fn append(stream: Stream) -> Self {
        Planned {
            stream,
            window: None,
            updating: false,
            key: None,
            time: None,
            bounds: None,
        }
    }
}

/// What a query makes: its stream, whether it is a changelog, and its key.
pub(super) struct QueryStream {
    pub stream: Stream,
    pub updating: bool,
    pub key: Option<Vec<String>>,
}

/// Plans `plan` into `dataflow`; errors are placed at `at` (the statement).
pub(super) fn plan_query(
    dataflow: &mut Dataflow,
    plan: &LogicalPlan,
    at: Position,
    temporal: &[TemporalClause],
) -> Result<QueryStream, SqlError> {
    let mut planner = QueryPlanner {
        dataflow,
        at,
        row_limits: Vec::new(),
        temporal,
        temporal_used: vec![false; temporal.len()],
    };
    let planned = planner.plan(plan)?;
    let planned = planner.materialize(planned)?;
    planner.check_temporal_clauses_used()?;
    Ok(QueryStream {
        stream: planned.stream,
        updating: planned.updating,
        key: planned.key,
    })
}

pub(super) struct QueryPlanner<'a> {
    pub dataflow: &'a mut Dataflow,
    pub at: Position,
    /// `ROW_NUMBER()` columns that a filter limits, and the limits:
    /// deduplications (1) and top-Ns.
    pub row_limits: Vec<(String, u64)>,
    /// The statement's `FOR SYSTEM_TIME AS OF` clauses (temporal joins).
    pub temporal: &'a [TemporalClause],
    /// Which of `temporal` a join has taken.
    pub temporal_used: Vec<bool>,
}

impl QueryPlanner<'_> {
    pub(super) fn failed(&self, e: String) -> SqlError {
        SqlError::plan(self.at, e)
    }

    pub(super) fn unsupported(&self, message: impl Into<String>) -> SqlError {
        SqlError::unsupported(self.at, message)
    }

    pub(super) fn plan(&mut self, plan: &LogicalPlan) -> Result<Planned, SqlError> {
        match plan {
            LogicalPlan::TableScan(scan) => self.scan(scan),
            LogicalPlan::SubqueryAlias(a) => self.plan(&a.input),
            LogicalPlan::Projection(p) => {
                let input = self.plan(&p.input)?;
                let input = self.materialize(input)?;
                let mut exprs = named(&p.expr, p.input.schema(), &stream_names(&p.schema));
                if input.updating {
                    exprs.push(change_column());
                }
                // The key and the time attribute survive if selected as they are.
                let selected = |k: &String| {
                    exprs.iter().find_map(|e| match e {
                        Expr::Column(c) if c.name == *k => Some(k.clone()),
                        Expr::Alias(a) => match a.expr.as_ref() {
                            Expr::Column(c) if c.name == *k => Some(a.name.clone()),
                            _ => None,
                        },
                        _ => None,
                    })
                };
                let key = input
                    .key
                    .as_ref()
                    .and_then(|key| key.iter().map(selected).collect::<Option<Vec<String>>>());
                let time = input.time.as_ref().and_then(selected);
                let bounds = input.bounds.as_ref().and_then(|b| {
                    Some(WindowColumns {
                        start: selected(&b.start)?,
                        end: selected(&b.end)?,
                        assigned: b.assigned,
                    })
                });
                let stream = self
                    .dataflow
                    .project(input.stream, &exprs)
                    .map_err(|e| self.failed(e))?;
                Ok(Planned {
                    stream,
                    window: None,
                    updating: input.updating,
                    key,
                    time,
                    bounds,
                })
            }
            LogicalPlan::Filter(f) => {
                // `FROM a, b WHERE ..`: the WHERE is the join's condition.
                if let LogicalPlan::Join(j) = f.input.as_ref()
                    && j.on.is_empty()
                    && j.filter.is_none()
                    && j.join_type == datafusion::logical_expr::JoinType::Inner
                {
                    return self.join(j, Some(&f.predicate));
                }
                if let Some(limit) = super::dedup::row_limit_filter(f) {
                    self.row_limits.push(limit);
                }
                let input = self.plan(&f.input)?;
                let predicate = stream_expr(&f.predicate, f.input.schema());
                if input.window.is_some() && mentions_window_bounds(&predicate) {
                    return Err(self.unsupported(
                        "a WHERE on window_start or window_end is not supported; filter the results instead (HAVING)",
                    ));
                }
                let stream = self
                    .dataflow
                    .filter(input.stream, &predicate)
                    .map_err(|e| self.failed(e))?;
                Ok(Planned {
                    stream,
                    window: input.window,
                    updating: input.updating,
                    key: input.key,
                    time: input.time,
                    bounds: input.bounds,
                })
            }
            LogicalPlan::Aggregate(a) => self.aggregate(a),
            LogicalPlan::Union(u) => {
                let mut planned = Vec::new();
                for input in &u.inputs {
                    let p = self.plan(input)?;
                    planned.push(self.materialize(p)?);
                }
                // A UNION ALL with an updating input is a changelog: the rows
                // of an append-only input are inserts.
                let updating = planned.iter().any(|p| p.updating);
                let mut inputs = Vec::new();
                for p in planned {
                    // Inputs' columns take the union's names.
                    let mut exprs = named(
                        &p.stream
                            .schema
                            .fields()
                            .iter()
                            .take(u.schema.fields().len())
                            .map(|f| Expr::Column(Column::new_unqualified(f.name())))
                            .collect::<Vec<_>>(),
                        &DFSchema::empty(),
                        &stream_names(&u.schema),
                    );
                    if p.updating {
                        exprs.push(change_column());
                    } else if updating {
                        exprs.push(
                            datafusion::prelude::lit(Change::Insert.as_str()).alias(CHANGE_COLUMN),
                        );
                    }
                    inputs.push(
                        self.dataflow
                            .project(p.stream, &exprs)
                            .map_err(|e| self.failed(e))?,
                    );
                }
                let stream = self.dataflow.union(inputs).map_err(|e| self.failed(e))?;
                let mut planned = Planned::append(stream);
                planned.updating = updating;
                Ok(planned)
            }
            LogicalPlan::Sort(_) => Err(self.unsupported(
                "ORDER BY on an unbounded stream is not supported; use a window or a view",
            )),
            LogicalPlan::Limit(_) => Err(self.unsupported(
                "LIMIT on an unbounded stream is not supported; use a window or a view",
            )),
            LogicalPlan::Join(j) => self.join(j, None),
            LogicalPlan::Window(w) => self.row_number(w),
            LogicalPlan::Distinct(d) => {
                let aggregate =
                    super::dedup::distinct_as_aggregate(d).map_err(|e| self.unsupported(e))?;
                let planned = self.aggregate(&aggregate)?;
                // The aggregate's hidden count goes; the row's columns stay.
                let groups = aggregate.group_expr.len();
                let mut columns: Vec<Expr> = aggregate.schema.fields()[..groups]
                    .iter()
                    .map(|f| Expr::Column(Column::new_unqualified(f.name())))
                    .collect();
                if planned.updating {
                    columns.push(change_column());
                }
                let stream = self
                    .dataflow
                    .project(planned.stream, &columns)
                    .map_err(|e| self.failed(e))?;
                Ok(Planned { stream, ..planned })
            }
            other => Err(self.unsupported(format!(
                "{} is not supported in a streaming query",
                other.display()
            ))),
        }
    }

    fn scan(&mut self, scan: &TableScan) -> Result<Planned, SqlError> {
        let provider =
            source_as_provider(&scan.source).map_err(|e| SqlError::datafusion(e, self.at))?;
        let (table, window) = if let Some(t) = downcast::<DeclaredTable>(&provider) {
            (&t.def, None)
        } else if let Some(w) = downcast::<WindowedTable>(&provider) {
            if let Some(view) = downcast::<ViewTable>(&w.input) {
                return self.window_over_view(w, view);
            }
            let Some(t) = downcast::<DeclaredTable>(&w.input) else {
                return Err(self.unsupported(format!(
                    "a window function over `{}` is not supported: window a table or a view",
                    w.table
                )));
            };
            match &t.def.watermark {
                Some((column, _)) if *column == w.time_column => {}
                Some((column, _)) => {
                    return Err(self.unsupported(format!(
                        "windows of `{}` run on its event time `{column}` (its WATERMARK), not on `{}`",
                        t.def.name, w.time_column
                    )));
                }
                None => {
                    return Err(SqlError::invalid(
                        self.at,
                        format!(
                            "table `{}` has no event time: declare WATERMARK FOR {} AS {} - INTERVAL '..' SECOND",
                            t.def.name, w.time_column, w.time_column
                        ),
                    ));
                }
            }
            (&t.def, Some(PendingWindow { kind: w.kind }))
        } else {
            return Err(self.unsupported(format!(
                "table `{}` cannot be read by a job",
                scan.table_name
            )));
        };
        // An upsert-kafka table is a changelog keyed by its primary key.
        let upsert = connectors::reads_upserts(table);
        if upsert && window.is_some() {
            return Err(self.unsupported(format!(
                "a window over upsert-kafka table `{}` is not supported: it is a changelog, \
                 not a stream of events",
                table.name
            )));
        }
        // Every query of the script reads a table from the same source, so
        // that a checkpoint cuts all of them at the same place in its input.
        let declared = table.schema.fields();
        let mut columns: Vec<Expr> = declared
            .iter()
            .map(|f| Expr::Column(Column::new_unqualified(f.name())))
            .collect();
        if upsert {
            columns.push(change_column());
        }
        let mut stream = match self.dataflow.sources.get(&table.name) {
            Some(shared) => shared.clone(),
            None => {
                let source = connectors::source(table)?;
                let mut stream = self
                    .dataflow
                    .source(&table.name, &source)
                    .map_err(|e| self.failed(e))?;
                if let Some(key) = &source.upsert_key {
                    stream = self.normalize(stream, key)?;
                }
                // The connector may make more columns than the table declares.
                let produced: Vec<&String> = stream
                    .schema
                    .fields()
                    .iter()
                    .map(|f| f.name())
                    .filter(|n| *n != EVENT_TIME_FIELD)
                    .collect();
                let same = produced.len() == columns.len()
                    && produced.iter().zip(&columns).all(|(a, b)| match b {
                        Expr::Column(c) => **a == c.name,
                        _ => false,
                    });
                if !same {
                    stream = self
                        .dataflow
                        .project(stream, &columns)
                        .map_err(|e| self.failed(e))?;
                }
                self.dataflow
                    .sources
                    .insert(table.name.clone(), stream.clone());
                stream
            }
        };
        let mut key = upsert.then(|| table.primary_key.clone());
        if let Some(projection) = &scan.projection
            && projection.len() != declared.len()
        {
            let mut exprs: Vec<Expr> = projection
                .iter()
                .map(|&i| Expr::Column(Column::new_unqualified(declared[i].name())))
                .collect();
            if upsert {
                exprs.push(change_column());
            }
            key = key.filter(|key| {
                key.iter()
                    .all(|k| projection.iter().any(|&i| declared[i].name() == k))
            });
            stream = self
                .dataflow
                .project(stream, &exprs)
                .map_err(|e| self.failed(e))?;
        }
        // The table's event time, if it is read and is not a changelog's.
        let time = table
            .watermark
            .as_ref()
            .map(|(column, _)| column.clone())
            .filter(|column| !upsert && stream.schema.fields().iter().any(|f| f.name() == column));
        Ok(Planned {
            stream,
            window,
            updating: upsert,
            key,
            time,
            bounds: None,
        })
    }

    fn aggregate(&mut self, a: &Aggregate) -> Result<Planned, SqlError> {
        let input = self.plan(&a.input)?;
        if input.updating {
            return Err(self.unsupported(
                "an aggregate of an updating query (of an aggregate, or of an upsert-kafka table) is not supported yet",
            ));
        }
        let Some(window) = input.window else {
            let over_bounds = input.bounds.as_ref().is_some_and(|b| {
                b.assigned
                    && a.group_expr.iter().any(|e| {
                        matches!(stream_expr(e, a.input.schema()), Expr::Column(c) if c.name == b.start || c.name == b.end)
                    })
            });
            if over_bounds {
                return Err(self.unsupported(
                    "between a window function and its GROUP BY only WHERE may come; \
                     GROUP BY window_start, window_end directly",
                ));
            }
            return self.updating_aggregate(a, input.stream);
        };
        let has_bounds = a.group_expr.iter().any(|e| {
            matches!(stream_expr(e, a.input.schema()), Expr::Column(c) if c.name == "window_start" || c.name == "window_end")
        });
        let (stream, mut keys) = self.group_keys(a, input.stream)?;
        keys.retain(|k| k != "window_start" && k != "window_end");
        if !has_bounds {
            return Err(self.unsupported(
                "a GROUP BY over a window function must include window_start or window_end",
            ));
        }
        let groups = a.group_expr.len();
        let aggregates = named(
            &a.aggr_expr,
            a.input.schema(),
            &stream_names(&a.schema)[groups..],
        );
        let mut stream = stream;
        let parallelism = by_key(&mut stream, &keys);
        let operator = WindowAggregate::try_new(window.kind, &keys, &aggregates, &stream.schema)
            .map_err(|e| self.failed(e.to_string()))?;
        let name = match window.kind {
            WindowKind::Tumbling { .. } => "tumbling_window",
            WindowKind::Hopping { .. } => "hopping_window",
            WindowKind::Cumulating { .. } => "cumulating_window",
            WindowKind::Session { .. } => "session_window",
        };
        let schema = operator.output_schema();
        let windows = self
            .dataflow
            .then(
                stream,
                name,
                schema,
                parallelism,
                Arc::new(move |subtask| operator.operator(subtask)),
            )
            .map_err(|e| self.failed(e))?;
        // The columns in the order and with the names the plan above expects.
        let columns = plan_columns(a);
        let stream = self
            .dataflow
            .project(windows, &columns)
            .map_err(|e| self.failed(e))?;
        let names = stream_names(&a.schema);
        let bound = |bound: &str| {
            a.group_expr.iter().zip(&names).find_map(|(e, name)| {
                matches!(stream_expr(e, a.input.schema()), Expr::Column(c) if c.name == bound)
                    .then(|| name.clone())
            })
        };
        let bounds = bound("window_start")
            .zip(bound("window_end"))
            .map(|(start, end)| WindowColumns {
                start,
                end,
                assigned: false,
            });
        let key = Some(names[..groups].to_vec());
        Ok(Planned {
            key,
            bounds,
            ..Planned::append(stream)
        })
    }

    /// The key columns of `a`'s GROUP BY. An expression (`date_bin(..)`,
    /// `lower(name)`) is computed first into a column named as the
    /// aggregate's output calls it.
    fn group_keys(
        &mut self,
        a: &Aggregate,
        stream: Stream,
    ) -> Result<(Stream, Vec<String>), SqlError> {
        let keys = a
            .group_expr
            .iter()
            .zip(stream_names(&a.schema))
            .map(|(e, name)| (stream_expr(e, a.input.schema()), name))
            .collect();
        self.key_columns(stream, keys)
    }

    /// `stream` with a column for each key expression that is not a column
    /// already, named as given; returns the key columns' names.
    pub(super) fn key_columns(
        &mut self,
        stream: Stream,
        keys: Vec<(Expr, String)>,
    ) -> Result<(Stream, Vec<String>), SqlError> {
        let mut names = Vec::new();
        let mut computed = Vec::new();
        for (e, name) in keys {
            match e {
                Expr::Column(c) => names.push(c.name),
                other => {
                    computed.push(other.alias(&name));
                    names.push(name);
                }
            }
        }
        if computed.is_empty() {
            return Ok((stream, names));
        }
        let mut exprs: Vec<Expr> = stream
            .schema
            .fields()
            .iter()
            .filter(|f| f.name() != headwater_runtime::EVENT_TIME_FIELD)
            .map(|f| Expr::Column(Column::new_unqualified(f.name())))
            .collect();
        exprs.extend(computed);
        let stream = self
            .dataflow
            .project(stream, &exprs)
            .map_err(|e| self.failed(e))?;
        Ok((stream, names))
    }

    /// Upserts by `key` made into a changelog: `+I`, `-U`/`+U`, `-D`.
    fn normalize(&mut self, mut stream: Stream, key: &[String]) -> Result<Stream, SqlError> {
        stream.partitioning = Partitioning::Hash(key.to_vec());
        let normalize = ChangelogNormalize::try_new(key, &stream.schema)
            .map_err(|e| self.failed(e.to_string()))?;
        self.dataflow
            .then(
                stream,
                "normalize",
                normalize.output_schema(),
                None,
                Arc::new(move |subtask| normalize.operator(subtask)),
            )
            .map_err(|e| self.failed(e))
    }

    fn updating_aggregate(&mut self, a: &Aggregate, stream: Stream) -> Result<Planned, SqlError> {
        let (mut stream, keys) = self.group_keys(a, stream)?;
        let groups = a.group_expr.len();
        let aggregates = named(
            &a.aggr_expr,
            a.input.schema(),
            &stream_names(&a.schema)[groups..],
        );
        let parallelism = by_key(&mut stream, &keys);
        let operator = UpdatingAggregate::try_new(&keys, &aggregates, &stream.schema)
            .map_err(|e| self.failed(e.to_string()))?;
        let schema = operator.output_schema();
        let results = self
            .dataflow
            .then(
                stream,
                "updating_aggregate",
                schema,
                parallelism,
                Arc::new(move |subtask| operator.operator(subtask)),
            )
            .map_err(|e| self.failed(e))?;
        let mut columns = plan_columns(a);
        columns.push(change_column());
        let stream = self
            .dataflow
            .project(results, &columns)
            .map_err(|e| self.failed(e))?;
        let key = Some(stream_names(&a.schema)[..groups].to_vec());
        Ok(Planned {
            stream,
            window: None,
            updating: true,
            key,
            time: None,
            bounds: None,
        })
    }
}

/// Sends `stream` to the subtask of its key; with no key, one subtask sees
/// every row. Returns the parallelism the receiving operator must have.
pub(super) fn by_key(stream: &mut Stream, keys: &[String]) -> Option<usize> {
    if keys.is_empty() {
        stream.partitioning = Partitioning::Rebalance;
        Some(1)
    } else {
        stream.partitioning = Partitioning::Hash(keys.to_vec());
        None
    }
}
