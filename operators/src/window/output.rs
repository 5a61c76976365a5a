//! The rows a window emits: key columns, `window_start`, `window_end`, one
//! column per aggregate, and event time `window_end - 1` (the window's last instant).

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, TimestampMillisecondArray};
use arrow::compute::concat_batches;
use arrow::datatypes::{Field, FieldRef, Schema, SchemaRef};
use headwater_runtime::time::{EVENT_TIME_TYPE, event_time_field};

use crate::error::Result;

pub const WINDOW_START: &str = "window_start";
pub const WINDOW_END: &str = "window_end";

/// The schema of a window's results.
pub fn output_schema(key_fields: &[FieldRef], aggregate_fields: &[FieldRef]) -> SchemaRef {
    let mut fields: Vec<FieldRef> = key_fields.to_vec();
    fields.push(Arc::new(Field::new(WINDOW_START, EVENT_TIME_TYPE, false)));
    fields.push(Arc::new(Field::new(WINDOW_END, EVENT_TIME_TYPE, false)));
    fields.extend(aggregate_fields.iter().cloned());
    fields.push(event_time_field());
    Arc::new(Schema::new(fields))
}

/// Gathers result rows into batches of a useful size.
pub struct ResultBuffer {
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
    rows: usize,
}

/// Results are sent once this many rows are buffered.
const TARGET_ROWS: usize = 8192;

impl ResultBuffer {
    pub fn new(schema: SchemaRef) -> Self {
        ResultBuffer {
            schema,
            batches: Vec::new(),
            rows: 0,
        }
    }

    /// Adds results: `keys` (the key columns), the windows of each row, and the aggregates.
    pub fn push(
        &mut self,
        keys: Vec<ArrayRef>,
        starts: Vec<i64>,
        ends: Vec<i64>,
        aggregates: Vec<ArrayRef>,
    ) -> Result<()> {
        let rows = starts.len();
        if rows == 0 {
            return Ok(());
        }
        let times: Vec<i64> = ends.iter().map(|e| e - 1).collect();
        let mut columns = keys;
        columns.push(Arc::new(TimestampMillisecondArray::from(starts)));
        columns.push(Arc::new(TimestampMillisecondArray::from(ends)));
        columns.extend(aggregates);
        columns.push(Arc::new(TimestampMillisecondArray::from(times)));
        self.batches
            .push(RecordBatch::try_new(self.schema.clone(), columns)?);
        self.rows += rows;
        Ok(())
    }

    /// A batch to send, if enough rows are buffered (or `all`, if any are).
    pub fn take(&mut self, all: bool) -> Result<Option<RecordBatch>> {
        if self.rows == 0 || (!all && self.rows < TARGET_ROWS) {
            return Ok(None);
        }
        let batch = if self.batches.len() == 1 {
            self.batches.pop().expect("one batch")
        } else {
            let b = concat_batches(&self.schema, &self.batches)?;
            self.batches.clear();
            b
        };
        self.rows = 0;
        Ok(Some(batch))
    }
}
