//! Joins of two streams. Input 0 is the left side, input 1 the right; both
//! arrive hashed on their join keys, so a key's rows of both sides meet in
//! one subtask, and its state lives in that key's key group.

mod interval;
mod output;
mod regular;
mod regular_state;
pub(crate) mod side;
mod temporal;
mod temporal_state;
mod window;

pub use interval::{IntervalBounds, IntervalJoin};
pub use regular::RegularJoin;
pub use temporal::TemporalJoin;
pub use window::WindowJoin;

use arrow::datatypes::{FieldRef, SchemaRef};
use arrow::row::{RowConverter, SortField};
use headwater_runtime::{BoxError, EVENT_TIME_FIELD, OperatorContext};

use crate::error::{OperatorError, Result};
use crate::window::keys::{KeyCodec, key_columns_of};

/// Which rows a join emits: pairs, and which unmatched rows padded with
/// NULLs; or, for a semi or anti join (`IN`/`EXISTS` and `NOT EXISTS`
/// subqueries), the left rows alone that have a match or have none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinType {
    Inner,
    Left,
    Right,
    Full,
    LeftSemi,
    LeftAnti,
}

impl JoinType {
    /// Whether unmatched rows of `side` (0 left, 1 right) are emitted.
    pub fn keeps_unmatched(self, side: usize) -> bool {
        match self {
            JoinType::Inner | JoinType::LeftSemi => false,
            JoinType::Left | JoinType::LeftAnti => side == 0,
            JoinType::Right => side == 1,
            JoinType::Full => true,
        }
    }

    /// Whether rows of `side` that have a match are emitted alone (a semi join).
    pub fn keeps_matched_alone(self, side: usize) -> bool {
        self == JoinType::LeftSemi && side == 0
    }

    /// Whether joined pairs are emitted (not by a semi or anti join).
    pub fn emits_pairs(self) -> bool {
        !matches!(self, JoinType::LeftSemi | JoinType::LeftAnti)
    }
}

/// One input of a join: its stream's schema (with the event-time column),
/// its key columns, and the columns it gives the output, in order.
#[derive(Debug, Clone)]
pub struct JoinInput {
    pub schema: SchemaRef,
    pub key: Vec<String>,
    pub output: Vec<String>,
}

/// A join input with its columns found.
#[derive(Debug, Clone)]
pub(crate) struct ResolvedInput {
    pub key_columns: Vec<usize>,
    pub key_fields: Vec<FieldRef>,
    pub output_columns: Vec<usize>,
    pub output_fields: Vec<FieldRef>,
}

impl ResolvedInput {
    /// The codec of this input's join key.
    pub fn key_codec(&self, max_parallelism: u32) -> Result<KeyCodec> {
        KeyCodec::new(
            self.key_columns.clone(),
            self.key_fields.clone(),
            max_parallelism,
        )
    }

    /// A converter of this input's output columns to Arrow's row format.
    pub fn row_converter(&self) -> Result<RowConverter> {
        Ok(RowConverter::new(
            self.output_fields
                .iter()
                .map(|f| SortField::new(f.data_type().clone()))
                .collect(),
        )?)
    }
}

/// Which input of a two-input join the batch being processed came from.
pub(crate) fn input_side(ctx: &OperatorContext) -> std::result::Result<usize, BoxError> {
    match ctx.current_input {
        side @ (0 | 1) => Ok(side),
        side => Err(format!("a join has two inputs, not input {side}").into()),
    }
}

impl JoinInput {
    pub(crate) fn resolve(&self, side: &str) -> Result<ResolvedInput> {
        let (key_columns, key_fields) = key_columns_of(&self.key, &self.schema)?;
        let (output_columns, output_fields) = key_columns_of(&self.output, &self.schema)?;
        if self.schema.index_of(EVENT_TIME_FIELD).is_err() {
            return Err(OperatorError::Config(format!(
                "the {side} input of the join has no event time"
            )));
        }
        Ok(ResolvedInput {
            key_columns,
            key_fields,
            output_columns,
            output_fields,
        })
    }
}
