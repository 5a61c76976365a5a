//! Joins in the Rust API, as Flink's `intervalJoin`:
//! `orders.key_by(&["id"])?.interval_join(payments.key_by(&["order_id"])?)?
//! .between_millis(0, 300_000).join()?`.

use std::sync::Arc;

use datafusion::logical_expr::Expr;
use headwater_operators::join::{IntervalBounds, IntervalJoin, JoinInput};
use headwater_runtime::Partitioning;
use headwater_runtime::graph::Edge;
use headwater_runtime::time::user_schema;

pub use headwater_operators::join::JoinType;

use crate::data_stream::DataStream;
use crate::error::{HeadwaterError, Result};

/// Two keyed streams waiting for their time interval.
pub struct IntervalJoinBuilder {
    left: DataStream,
    right: DataStream,
    keys: [Vec<String>; 2],
    bounds: Option<IntervalBounds>,
    join_type: JoinType,
    condition: Option<Expr>,
}

impl DataStream {
    /// Joins this keyed stream (after [`DataStream::key_by`]) with `other`,
    /// keyed on as many columns of the same types: rows with equal keys whose
    /// event times are close ([`IntervalJoinBuilder::between_millis`]).
    pub fn interval_join(self, other: DataStream) -> Result<IntervalJoinBuilder> {
        let keys = |s: &DataStream| match &s.partitioning {
            Partitioning::Hash(keys) => Ok(keys.clone()),
            _ => Err(HeadwaterError::Pipeline(
                "interval_join() joins keyed streams: call key_by(..) on both first".into(),
            )),
        };
        let keys = [keys(&self)?, keys(&other)?];
        if keys[0].len() != keys[1].len() {
            return Err(HeadwaterError::Pipeline(format!(
                "interval_join(): {} key columns on the left, {} on the right",
                keys[0].len(),
                keys[1].len()
            )));
        }
        Ok(IntervalJoinBuilder {
            left: self,
            right: other,
            keys,
            bounds: None,
            join_type: JoinType::Inner,
            condition: None,
        })
    }
}

impl IntervalJoinBuilder {
    /// A right row joins a left row when `right time - left time` is within
    /// `lower..=upper` milliseconds (Flink's `between`).
    pub fn between_millis(mut self, lower: i64, upper: i64) -> Self {
        self.bounds = Some(IntervalBounds { lower, upper });
        self
    }

    /// Inner (the default), left, right or full outer: an outer side's rows
    /// that join nothing come out with NULLs once their interval has passed.
    pub fn join_type(mut self, join_type: JoinType) -> Self {
        self.join_type = join_type;
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
    /// the left has too is called `right_<name>`), with the later of the two
    /// event times.
    pub fn join(self) -> Result<DataStream> {
        let bounds = self.bounds.ok_or_else(|| {
            HeadwaterError::Pipeline(
                "interval_join(): give the interval with between_millis(lower, upper)".into(),
            )
        })?;
        let left_names: Vec<String> = user_schema(&self.left.schema)
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        let right_names: Vec<String> = user_schema(&self.right.schema)
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        let mut names = left_names.clone();
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
                output: left_names,
            },
            JoinInput {
                schema: self.right.schema.clone(),
                key: self.keys[1].clone(),
                output: right_names,
            },
        ];
        let join = IntervalJoin::try_new(
            self.join_type,
            bounds,
            &inputs[0],
            &inputs[1],
            &names,
            self.condition.as_ref(),
        )?;
        let env = self.left.env.clone();
        let name = env.unique_name("interval_join");
        let schema = join.output_schema();
        let node = {
            let mut b = env.builder();
            let parallelism = b.config.default_parallelism;
            let node = b.graph.add_operator(
                &name,
                parallelism,
                Arc::new(move |subtask| join.operator(subtask)),
            )?;
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
