//! Updating results: rows that change earlier rows. A changelog stream has a
//! `_change` column saying what each row does, as Flink's `RowKind`: `+I`
//! inserts a row, `-U` retracts the row before an update, `+U` is the row
//! after it, `-D` deletes a row. A consumer applies them by the row's key.

use std::sync::Arc;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{DataType, Field, FieldRef, Schema, SchemaRef};

use crate::error::{OperatorError, Result};

/// The column of a changelog stream that holds each row's change kind.
pub const CHANGE_COLUMN: &str = "_change";

/// What a row of a changelog stream does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Insert,
    UpdateBefore,
    UpdateAfter,
    Delete,
}

impl Change {
    /// Its text in the `_change` column: `+I`, `-U`, `+U`, `-D`.
    pub fn as_str(self) -> &'static str {
        match self {
            Change::Insert => "+I",
            Change::UpdateBefore => "-U",
            Change::UpdateAfter => "+U",
            Change::Delete => "-D",
        }
    }

    /// Whether the row adds to the result (`+I`, `+U`) rather than takes away.
    pub fn is_addition(self) -> bool {
        matches!(self, Change::Insert | Change::UpdateAfter)
    }

    pub fn parse(text: &str) -> Option<Change> {
        Some(match text {
            "+I" => Change::Insert,
            "-U" => Change::UpdateBefore,
            "+U" => Change::UpdateAfter,
            "-D" => Change::Delete,
            _ => return None,
        })
    }
}

/// The `_change` field.
pub fn change_field() -> FieldRef {
    Arc::new(Field::new(CHANGE_COLUMN, DataType::Utf8, false))
}

/// Whether a stream of `schema` is a changelog.
pub fn is_changelog(schema: &Schema) -> bool {
    schema.index_of(CHANGE_COLUMN).is_ok()
}

/// `fields` and then `_change` (the event-time column is added by the runtime's helpers).
pub fn changelog_schema(fields: impl IntoIterator<Item = FieldRef>) -> SchemaRef {
    let mut fields: Vec<FieldRef> = fields.into_iter().collect();
    fields.push(change_field());
    Arc::new(Schema::new(fields))
}

/// Each row's change in `batch`: read from its `_change` column at `column`,
/// or `+I` for every row of an append-only stream (`None`).
pub fn changes_of(batch: &RecordBatch, column: Option<usize>) -> Result<Vec<Change>> {
    let Some(column) = column else {
        return Ok(vec![Change::Insert; batch.num_rows()]);
    };
    let texts = batch.column(column).as_string_opt::<i32>().ok_or_else(|| {
        OperatorError::Config(format!("the `{CHANGE_COLUMN}` column is not text"))
    })?;
    texts
        .iter()
        .map(|text| {
            text.and_then(Change::parse).ok_or_else(|| {
                OperatorError::Config(format!(
                    "`{}` is not a change (+I, -U, +U, -D)",
                    text.unwrap_or("NULL")
                ))
            })
        })
        .collect()
}
