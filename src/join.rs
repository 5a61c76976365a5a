//! Joins in the Rust API, on keyed streams: Flink's `intervalJoin`
//! (`orders.key_by(&["id"])?.interval_join(payments.key_by(&["order_id"])?)?
//! .between_millis(0, 300_000).join()?`), the regular join of SQL's
//! `JOIN .. ON` (`join`), and the event-time temporal join (`temporal_join`).

use std::sync::Arc;
use std::time::Duration;

use datafusion::logical_expr::Expr;
use headwater_operators::join::{
    IntervalBounds, IntervalJoin, JoinInput, RegularJoin, TemporalJoin,
};
use headwater_runtime::Partitioning;
use headwater_runtime::graph::{Edge, OperatorFactory};
use headwater_runtime::time::user_schema;

pub use headwater_operators::join::JoinType;

use crate::data_stream::DataStream;
use crate::error::{HeadwaterError, Result};

/// Which join a [`JoinBuilder`] makes.
#[derive(Debug, Clone, Copy)]
enum JoinKind {
    Interval,
    Regular,
    Temporal,
}

impl JoinKind {
    fn method(self) -> &'static str {
        match self {
            JoinKind::Interval => "interval_join",
            JoinKind::Regular => "join",
            JoinKind::Temporal => "temporal_join",
        }
    }
}

/// Two keyed streams being joined: set the join's options, then
/// [`JoinBuilder::join`].
pub struct JoinBuilder {
    kind: JoinKind,
    left: DataStream,
    right: DataStream,
    keys: [Vec<String>; 2],
    bounds: Option<IntervalBounds>,
    join_type: JoinType,
    condition: Option<Expr>,
    ttl: Option<Duration>,
}

/// The builder of an interval join (the name it had first).
pub type IntervalJoinBuilder = JoinBuilder;

impl DataStream {
    /// Joins this keyed stream (after [`DataStream::key_by`]) with `other`,
    /// keyed on as many columns of the same types: rows with equal keys whose
    /// event times are close ([`JoinBuilder::between_millis`]). The output is
    /// append-only and keeps event time, so a window can follow.
    pub fn interval_join(self, other: DataStream) -> Result<JoinBuilder> {
        JoinBuilder::new(JoinKind::Interval, self, other)
    }

    /// The regular join of two keyed streams, as SQL's `JOIN .. ON` on the
    /// keys: every pair of rows with equal keys, whenever they arrive. Both
    /// sides' rows are kept in state (bound it with
    /// [`JoinBuilder::state_ttl`]); either side may be a changelog. An inner
    /// join of append-only streams is append-only; otherwise the output is a
    /// changelog (a `_change` column) that views and print sinks apply.
    pub fn join(self, other: DataStream) -> Result<JoinBuilder> {
        JoinBuilder::new(JoinKind::Regular, self, other)
    }

    /// Joins each row of this keyed, append-only stream with the version of
    /// its key in `versions` that was current at the row's event time (SQL's
    /// `JOIN versions FOR SYSTEM_TIME AS OF t`): each row of `versions` (or
    /// each insert or update, if it is a changelog) is a new version of its
    /// key from its event time on. A row waits until the watermark passes
    /// it; the output is append-only, with the left row's event time.
    pub fn temporal_join(self, versions: DataStream) -> Result<JoinBuilder> {
        JoinBuilder::new(JoinKind::Temporal, self, versions)
    }
}

impl JoinBuilder {
    fn new(kind: JoinKind, left: DataStream, right: DataStream) -> Result<Self> {
        let method = kind.method();
        let keys = |s: &DataStream| match &s.partitioning {
            Partitioning::Hash(keys) => Ok(keys.clone()),
            _ => Err(HeadwaterError::Pipeline(format!(
                "{method}() joins keyed streams: call key_by(..) on both first"
            ))),
        };
        let keys = [keys(&left)?, keys(&right)?];
        if keys[0].len() != keys[1].len() {
            return Err(HeadwaterError::Pipeline(format!(
                "{method}(): {} key columns on the left, {} on the right",
                keys[0].len(),
                keys[1].len()
            )));
        }
        Ok(JoinBuilder {
            kind,
            left,
            right,
            keys,
            bounds: None,
            join_type: JoinType::Inner,
            condition: None,
            ttl: None,
        })
    }
}

impl JoinBuilder {
    /// A right row joins a left row when `right time - left time` is within
    /// `lower..=upper` milliseconds (Flink's `between`).
    pub fn between_millis(mut self, lower: i64, upper: i64) -> Self {
        self.bounds = Some(IntervalBounds { lower, upper });
        self
    }

    /// Inner (the default), left, right or full outer (a temporal join:
    /// inner or left). In an interval join an outer side's rows that join
    /// nothing come out with NULLs once their interval has passed; in a
    /// regular join they come out at once, and are retracted at their first
    /// match; in a temporal join a left row with no version comes out with
    /// NULLs.
    pub fn join_type(mut self, join_type: JoinType) -> Self {
        self.join_type = join_type;
        self
    }

    /// A regular join forgets a row that has not changed for `ttl`
    /// (processing time), as Flink's `table.exec.state.ttl`: its state stays
    /// bounded, and a row that arrives later than that misses its matches.
    pub fn state_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Keeps only the joined rows for which `condition` (over the output's
    /// columns) is true; in an outer join, a row whose every pair fails it
    /// counts as unmatched.
    pub fn filter(mut self, condition: Expr) -> Self {
        self.condition = Some(condition);
        self
    }

    /// The joined rows: the left's columns, then the right's (one whose name
    /// the left has too is called `right_<name>`), then `_change` if a
    /// regular join's output is a changelog; the event time is the later of
    /// the two (an interval join), the left row's (a temporal join), or the
    /// later of the two rows' (a regular join).
    pub fn join(self) -> Result<DataStream> {
        let method = self.kind.method();
        let misplaced = |option: &str| {
            Err(HeadwaterError::Pipeline(format!(
                "{method}(): {option} is an option of another join"
            )))
        };
        match self.kind {
            JoinKind::Interval if self.ttl.is_some() => return misplaced("state_ttl"),
            JoinKind::Regular | JoinKind::Temporal if self.bounds.is_some() => {
                return misplaced("between_millis");
            }
            JoinKind::Temporal if self.ttl.is_some() => return misplaced("state_ttl"),
            _ => {}
        }
        let left_names: Vec<String> = user_schema(&self.left.schema)
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        let right_names: Vec<String> = user_schema(&self.right.schema)
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .filter(|name| name != headwater_operators::changelog::CHANGE_COLUMN)
            .collect();
        let left_output: Vec<String> = left_names
            .iter()
            .filter(|name| *name != headwater_operators::changelog::CHANGE_COLUMN)
            .cloned()
            .collect();
        let mut names = left_output.clone();
        for name in &right_names {
            let mut renamed = name.clone();
            while names.contains(&renamed) {
                renamed = format!("right_{renamed}");
            }
            names.push(renamed);
        }
        let inputs = [
            JoinInput {
                schema: self.left.schema.clone(),
                key: self.keys[0].clone(),
                output: left_output,
            },
            JoinInput {
                schema: self.right.schema.clone(),
                key: self.keys[1].clone(),
                output: right_names,
            },
        ];
        let condition = self.condition.as_ref();
        let (schema, factory): (_, OperatorFactory) = match self.kind {
            JoinKind::Interval => {
                let bounds = self.bounds.ok_or_else(|| {
                    HeadwaterError::Pipeline(
                        "interval_join(): give the interval with between_millis(lower, upper)"
                            .into(),
                    )
                })?;
                let join = IntervalJoin::try_new(
                    self.join_type,
                    bounds,
                    &inputs[0],
                    &inputs[1],
                    &names,
                    condition,
                )?;
                (
                    join.output_schema(),
                    Arc::new(move |subtask| join.operator(subtask)),
                )
            }
            JoinKind::Regular => {
                let join = RegularJoin::try_new(
                    self.join_type,
                    &inputs[0],
                    &inputs[1],
                    &names,
                    condition,
                    self.ttl,
                )?;
                (
                    join.output_schema(),
                    Arc::new(move |subtask| join.operator(subtask)),
                )
            }
            JoinKind::Temporal => {
                let join = TemporalJoin::try_new(
                    self.join_type,
                    &inputs[0],
                    &inputs[1],
                    &names,
                    condition,
                )?;
                (
                    join.output_schema(),
                    Arc::new(move |subtask| join.operator(subtask)),
                )
            }
        };
        let env = self.left.env.clone();
        let name = env.unique_name(method);
        let node = {
            let mut b = env.builder();
            let parallelism = b.config.default_parallelism;
            let node = b.graph.add_operator(&name, parallelism, factory)?;
            for (input, stream) in [&self.left, &self.right].into_iter().enumerate() {
                b.graph.add_edge(Edge {
                    from: stream.node,
                    side_output: stream.side_output.clone(),
                    to: node,
                    to_input: input,
                    partitioning: stream.partitioning.clone(),
                })?;
            }
            node
        };
        Ok(DataStream::new(env, node, None, schema))
    }
}
