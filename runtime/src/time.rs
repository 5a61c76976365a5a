//! Event time: the one column every batch carries, and the watermarks that follow it.
//!
//! Every batch that flows between operators has an event-time column named
//! [`EVENT_TIME_FIELD`], of type `Timestamp(Millisecond)`. Sources add it from a
//! column of the user's data (or from the arrival time); sinks drop it again.

use std::fmt;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch, TimestampMillisecondArray};
use arrow::compute::kernels::aggregate;
use arrow::datatypes::{DataType, Field, FieldRef, Schema, SchemaRef, TimeUnit};

use crate::error::RuntimeError;

/// The name of the event-time column in every batch between operators.
pub const EVENT_TIME_FIELD: &str = "_event_time";

/// The data type of the event-time column.
pub const EVENT_TIME_TYPE: DataType = DataType::Timestamp(TimeUnit::Millisecond, None);

/// A point in event time: milliseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventTime(pub i64);

impl EventTime {
    /// The watermark a bounded source sends when its input ends: every window fires.
    pub const MAX: EventTime = EventTime(i64::MAX);
    pub const MIN: EventTime = EventTime(i64::MIN);

    pub fn millis(self) -> i64 {
        self.0
    }
}

impl fmt::Display for EventTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            EventTime::MAX => f.write_str("+inf"),
            EventTime::MIN => f.write_str("-inf"),
            EventTime(ms) => match arrow::temporal_conversions::timestamp_ms_to_datetime(ms) {
                Some(t) => write!(f, "{}", t.format("%Y-%m-%dT%H:%M:%S%.3f")),
                None => write!(f, "{ms}ms"),
            },
        }
    }
}

/// What a channel says about event time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Watermark {
    /// No later row on this channel has an event time `<=` this one.
    EventTime(EventTime),
    /// The sender has had no input for a while: do not wait for it.
    /// Any later data or watermark makes it active again.
    Idle,
}

/// The event-time field, as it appears in every schema between operators.
pub fn event_time_field() -> FieldRef {
    Arc::new(Field::new(EVENT_TIME_FIELD, EVENT_TIME_TYPE, false))
}

/// The event-time column of a batch.
pub fn event_time_column(batch: &RecordBatch) -> Result<&TimestampMillisecondArray, RuntimeError> {
    let column = batch.column_by_name(EVENT_TIME_FIELD).ok_or_else(|| {
        RuntimeError::Schema(format!(
            "batch has no `{EVENT_TIME_FIELD}` column (columns: {})",
            column_names(batch.schema_ref())
        ))
    })?;
    column
        .as_any()
        .downcast_ref::<TimestampMillisecondArray>()
        .ok_or_else(|| {
            RuntimeError::Schema(format!(
                "`{EVENT_TIME_FIELD}` has type {}, expected {EVENT_TIME_TYPE}",
                column.data_type()
            ))
        })
}

/// The largest event time in a batch, or `None` for an empty batch.
pub fn max_event_time(batch: &RecordBatch) -> Result<Option<EventTime>, RuntimeError> {
    Ok(aggregate::max(event_time_column(batch)?).map(EventTime))
}

/// Appends the event-time column to a batch of user data.
pub fn with_event_time(batch: &RecordBatch, times: ArrayRef) -> Result<RecordBatch, RuntimeError> {
    let schema = schema_with_event_time(batch.schema_ref());
    let mut columns = batch.columns().to_vec();
    columns.push(times);
    Ok(RecordBatch::try_new(schema, columns)?)
}

/// A user schema with the event-time column appended.
pub fn schema_with_event_time(schema: &SchemaRef) -> SchemaRef {
    let mut fields: Vec<FieldRef> = schema.fields().iter().cloned().collect();
    fields.push(event_time_field());
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// The user's columns: a batch without the runtime's event-time column.
/// Zero-copy: the remaining columns are shared.
pub fn without_event_time(batch: &RecordBatch) -> RecordBatch {
    match batch.schema_ref().index_of(EVENT_TIME_FIELD) {
        Ok(i) => {
            let mut batch = batch.clone();
            batch.remove_column(i);
            batch
        }
        Err(_) => batch.clone(),
    }
}

/// A schema without the runtime's event-time column.
pub fn user_schema(schema: &SchemaRef) -> SchemaRef {
    match schema.index_of(EVENT_TIME_FIELD) {
        Ok(i) => {
            let mut fields: Vec<FieldRef> = schema.fields().iter().cloned().collect();
            fields.remove(i);
            Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
        }
        Err(_) => schema.clone(),
    }
}

pub(crate) fn column_names(schema: &Schema) -> String {
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    names.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_and_appends_event_time() {
        let schema = Arc::new(Schema::new(vec![Field::new("a", DataType::Int64, false)]));
        let batch = RecordBatch::try_new(
            schema,
            vec![Arc::new(arrow::array::Int64Array::from(vec![1, 2]))],
        )
        .unwrap();
        let times: ArrayRef = Arc::new(TimestampMillisecondArray::from(vec![5, 9]));
        let with = with_event_time(&batch, times).unwrap();
        assert_eq!(max_event_time(&with).unwrap(), Some(EventTime(9)));
        assert_eq!(without_event_time(&with), batch);
    }

    #[test]
    fn displays_as_utc() {
        assert_eq!(EventTime(1_000).to_string(), "1970-01-01T00:00:01.000");
        assert_eq!(EventTime::MAX.to_string(), "+inf");
    }
}
