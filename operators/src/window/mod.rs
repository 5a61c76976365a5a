//! Event-time windows over a keyed stream: tumbling, hopping, cumulating and
//! session windows, aggregated by any DataFusion aggregate function.
//!
//! [`WindowAggregate`] plans a windowed aggregation against the input schema;
//! its operator runs one instance per subtask, behind a hash exchange on the
//! key columns. Results are emitted when the watermark passes a window's end,
//! with the key columns, `window_start`, `window_end` and one column per
//! aggregate. With allowed lateness, a late row updates its fired windows and
//! their new results are emitted again; rows later than that go to the
//! [`LATE_OUTPUT`] side output, counted in the `late_rows` counter.

mod aggregate;
mod assign;
mod fired;
pub(crate) mod keys;
mod output;
mod partials;
mod session;
mod sliced;
mod spec;
mod top_n;

use std::sync::Arc;
use std::time::Duration;

use arrow::datatypes::{FieldRef, SchemaRef};
use datafusion::logical_expr::Expr;
use headwater_runtime::{BoxError, Operator, SubtaskInfo};

pub use aggregate::{Accumulators, AggregateInputs, AggregatePlan, StateRowCodec};
pub use assign::{AssignedWindows, WindowAssigner, assign_windows, millis};
pub use output::{WINDOW_END, WINDOW_START, output_schema};
pub use spec::{Cumulating, Hopping, Session, Slicer, Tumbling, WindowKind};
pub use top_n::{SortKey, WindowTopN};

use crate::error::{OperatorError, Result};
use keys::KeyCodec;

/// The side output that receives rows later than the allowed lateness.
pub const LATE_OUTPUT: &str = "late";

/// The default memory a window subtask may use to pre-aggregate before it
/// moves partials to RocksDB.
pub const DEFAULT_WINDOW_MEMORY: usize = 64 << 20;

/// What every subtask of one window operator shares.
pub(crate) struct WindowShared {
    pub kind: WindowKind,
    pub key_columns: Vec<usize>,
    pub key_fields: Vec<FieldRef>,
    pub plan: AggregatePlan,
    pub output_schema: SchemaRef,
    pub allowed_lateness: i64,
    pub memory_limit: usize,
}

/// A windowed aggregation of a keyed stream, planned against its input.
#[derive(Clone)]
pub struct WindowAggregate {
    shared: Arc<WindowShared>,
    input_schema: SchemaRef,
}

impl WindowAggregate {
    /// Plans `aggregates` over windows of `kind`, per value of `key_columns`.
    pub fn try_new(
        kind: WindowKind,
        key_columns: &[String],
        aggregates: &[Expr],
        input_schema: &SchemaRef,
    ) -> Result<Self> {
        kind.validate()?;
        let mut indices = Vec::new();
        let mut key_fields = Vec::new();
        for name in key_columns {
            let index = input_schema.index_of(name).map_err(|_| {
                OperatorError::Config(format!("window key `{name}` is not a column of the stream"))
            })?;
            indices.push(index);
            key_fields.push(input_schema.fields()[index].clone());
        }
        let plan = AggregatePlan::try_new(aggregates, input_schema)?;
        plan.state_codec()?;
        let output_schema = output_schema(&key_fields, plan.output_fields());
        Ok(WindowAggregate {
            shared: Arc::new(WindowShared {
                kind,
                key_columns: indices,
                key_fields,
                plan,
                output_schema,
                allowed_lateness: 0,
                memory_limit: DEFAULT_WINDOW_MEMORY,
            }),
            input_schema: input_schema.clone(),
        })
    }

    fn shared_mut(&mut self) -> &mut WindowShared {
        Arc::get_mut(&mut self.shared).expect("configured before its operators are made")
    }

    /// Keeps windows open for late rows this long after they fire; each late
    /// row then sends the updated result of its key's windows again.
    pub fn with_allowed_lateness(mut self, lateness: Duration) -> Self {
        self.shared_mut().allowed_lateness =
            i64::try_from(lateness.as_millis()).unwrap_or(i64::MAX);
        self
    }

    /// The memory each subtask may pre-aggregate in before it moves partials to RocksDB.
    pub fn with_memory_limit(mut self, bytes: usize) -> Self {
        self.shared_mut().memory_limit = bytes;
        self
    }

    pub fn kind(&self) -> WindowKind {
        self.shared.kind
    }

    /// The schema of the results (with the event-time column).
    pub fn output_schema(&self) -> SchemaRef {
        self.shared.output_schema.clone()
    }

    /// The schema of the late side output: the input's.
    pub fn late_schema(&self) -> SchemaRef {
        self.input_schema.clone()
    }

    /// The operator of one subtask.
    pub fn operator(&self, subtask: &SubtaskInfo) -> Result<Box<dyn Operator>, BoxError> {
        let keys = KeyCodec::new(
            self.shared.key_columns.clone(),
            self.shared.key_fields.clone(),
            subtask.max_parallelism,
        )?;
        Ok(match Slicer::new(self.shared.kind) {
            Some(slicer) => Box::new(sliced::SlicedWindowOperator::new(
                self.shared.clone(),
                slicer,
                keys,
            )?),
            None => Box::new(session::SessionWindowOperator::new(
                self.shared.clone(),
                keys,
            )?),
        })
    }
}
