//! A window table function on its own (`SELECT * FROM TABLE(TUMBLE(..))`,
//! the input of a window join): every row once for each window it is in,
//! with that window's `window_start` and `window_end`. Rows keep their own
//! event time, so the output is on time wherever its input was.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, Int64Array, RecordBatch, TimestampMillisecondArray, UInt32Array,
};
use arrow::compute::take;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use async_trait::async_trait;
use headwater_runtime::time::event_time_column;
use headwater_runtime::{BoxError, Collector, EVENT_TIME_FIELD, Operator, OperatorContext};

use super::{WINDOW_END, WINDOW_START, WindowKind};
use crate::error::{OperatorError, Result};

/// The windows of each row: positions in the input, and each one's window.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct AssignedWindows {
    pub rows: Vec<u32>,
    pub starts: Vec<i64>,
    pub ends: Vec<i64>,
}

/// The windows of `kind` that the rows at `times` (ms; NULL in none) are in.
/// A session window depends on the rows around it: it has no such form.
pub fn assign_windows(
    kind: WindowKind,
    times: impl IntoIterator<Item = Option<i64>>,
) -> Result<AssignedWindows> {
    let mut out = AssignedWindows::default();
    let mut push = |row: usize, start: i64, end: i64| {
        out.rows.push(row as u32);
        out.starts.push(start);
        out.ends.push(end);
    };
    for (row, t) in times.into_iter().enumerate() {
        let Some(t) = t else { continue };
        match kind {
            WindowKind::Tumbling { size } => {
                let start = t - t.rem_euclid(size);
                push(row, start, start + size);
            }
            WindowKind::Hopping { size, slide } => {
                let mut start = t - t.rem_euclid(slide);
                while start > t - size {
                    push(row, start, start + size);
                    start -= slide;
                }
            }
            WindowKind::Cumulating { step, max_size } => {
                let base = t - t.rem_euclid(max_size);
                let mut end = t - t.rem_euclid(step) + step;
                while end <= base + max_size {
                    push(row, base, end);
                    end += step;
                }
            }
            WindowKind::Session { .. } => {
                return Err(OperatorError::Config(
                    "a SESSION window needs a GROUP BY: a row's session depends on the rows \
                     around it"
                        .into(),
                ));
            }
        }
    }
    Ok(out)
}

/// A stateless operator that cuts a stream into windows of one kind.
#[derive(Clone)]
pub struct WindowAssigner {
    kind: WindowKind,
    output: SchemaRef,
}

impl WindowAssigner {
    /// Cuts streams of `input` schema (with the event-time column) into
    /// windows of `kind`; the output has the input's columns, then
    /// `window_start` and `window_end`, then the event time.
    pub fn try_new(kind: WindowKind, input: &SchemaRef) -> Result<Self> {
        kind.validate()?;
        if let WindowKind::Session { .. } = kind {
            assign_windows(kind, [Some(0)])?;
        }
        let mut fields: Vec<Field> = input
            .fields()
            .iter()
            .filter(|f| f.name() != EVENT_TIME_FIELD)
            .map(|f| f.as_ref().clone())
            .collect();
        for name in [WINDOW_START, WINDOW_END] {
            if fields.iter().any(|f| f.name() == name) {
                return Err(OperatorError::Config(format!(
                    "the stream has a column `{name}` already: a window function adds its own"
                )));
            }
            fields.push(Field::new(
                name,
                DataType::Timestamp(TimeUnit::Millisecond, None),
                false,
            ));
        }
        let time = input
            .field_with_name(EVENT_TIME_FIELD)
            .map_err(|_| OperatorError::Config("a window function needs an event time".into()))?;
        fields.push(time.clone());
        Ok(WindowAssigner {
            kind,
            output: Arc::new(Schema::new(fields)),
        })
    }

    pub fn output_schema(&self) -> SchemaRef {
        self.output.clone()
    }

    /// The rows of `batch` in their windows.
    pub fn assign(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        let times = event_time_column(batch)?;
        let windows = assign_windows(self.kind, times.iter())?;
        let indices = UInt32Array::from(windows.rows);
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.output.fields().len());
        let time_index = batch.schema().index_of(EVENT_TIME_FIELD)?;
        for (i, column) in batch.columns().iter().enumerate() {
            if i != time_index {
                columns.push(take(column, &indices, None)?);
            }
        }
        columns.push(Arc::new(TimestampMillisecondArray::from(windows.starts)));
        columns.push(Arc::new(TimestampMillisecondArray::from(windows.ends)));
        columns.push(take(batch.column(time_index), &indices, None)?);
        Ok(RecordBatch::try_new(self.output.clone(), columns)?)
    }

    /// The operator of a subtask (all are alike).
    pub fn operator(&self) -> Box<dyn Operator> {
        Box::new(self.clone())
    }
}

#[async_trait]
impl Operator for WindowAssigner {
    async fn process_batch(
        &mut self,
        batch: RecordBatch,
        _ctx: &mut OperatorContext,
        out: &mut dyn Collector,
    ) -> std::result::Result<(), BoxError> {
        let windowed = self.assign(&batch)?;
        if windowed.num_rows() > 0 {
            out.collect(windowed).await?;
        }
        Ok(())
    }
}

/// The times of `column` in milliseconds, for [`assign_windows`].
pub fn millis(column: &ArrayRef) -> Result<Int64Array> {
    let ms = arrow::compute::cast(column, &DataType::Timestamp(TimeUnit::Millisecond, None))?;
    let ms = arrow::compute::cast(&ms, &DataType::Int64)?;
    Ok(ms
        .as_any()
        .downcast_ref::<Int64Array>()
        .cloned()
        .ok_or_else(|| OperatorError::Config("a time column is not a timestamp".into()))?)
}
