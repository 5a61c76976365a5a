//! Event time for a source's rows: the event-time column added to each
//! batch, from a column of the rows or the time of arrival.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, TimestampMillisecondArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, TimeUnit, TimestampMillisecondType};

use crate::error::RuntimeError;
use crate::source::EventTimeSpec;
use crate::time::{EVENT_TIME_TYPE, with_event_time};

/// Adds the event-time column to a source's batch.
pub(crate) struct EventTimeAssigner {
    column: Option<String>,
}

impl EventTimeAssigner {
    pub(crate) fn new(spec: &EventTimeSpec) -> Self {
        match spec {
            EventTimeSpec::Column { name, .. } => EventTimeAssigner {
                column: Some(name.clone()),
            },
            EventTimeSpec::ArrivalTime => EventTimeAssigner { column: None },
        }
    }

    pub(crate) fn assign(&self, batch: RecordBatch) -> Result<RecordBatch, RuntimeError> {
        let Some(name) = &self.column else {
            return with_event_time(&batch, arrival_times(batch.num_rows()));
        };
        let column = batch.column_by_name(name).ok_or_else(|| {
            RuntimeError::Schema(format!(
                "event-time column `{name}` is not in the source's rows"
            ))
        })?;
        let times = to_event_time(column)
            .map_err(|e| RuntimeError::Schema(format!("event-time column `{name}`: {e}")))?;
        if times.null_count() > 0 {
            return Err(RuntimeError::Schema(format!(
                "event-time column `{name}` is NULL in {} of {} rows",
                times.null_count(),
                times.len()
            )));
        }
        with_event_time(&batch, times)
    }
}

/// Converts a timestamp, date or integer (epoch milliseconds) column to event time.
fn to_event_time(column: &ArrayRef) -> Result<ArrayRef, RuntimeError> {
    Ok(match column.data_type() {
        DataType::Timestamp(TimeUnit::Millisecond, None) => column.clone(),
        DataType::Timestamp(_, tz) => {
            // The values are UTC instants whatever the zone: only the unit changes.
            let ms = cast(
                column,
                &DataType::Timestamp(TimeUnit::Millisecond, tz.clone()),
            )?;
            Arc::new(
                ms.as_primitive::<TimestampMillisecondType>()
                    .clone()
                    .with_timezone_opt(None::<String>),
            )
        }
        DataType::Int64 => {
            let ints = column.as_primitive::<arrow::datatypes::Int64Type>();
            Arc::new(TimestampMillisecondArray::new(
                ints.values().clone(),
                ints.nulls().cloned(),
            ))
        }
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32 => {
            let ints = cast(column, &DataType::Int64)?;
            return to_event_time(&ints);
        }
        DataType::Date32
        | DataType::Date64
        | DataType::Utf8
        | DataType::LargeUtf8
        | DataType::Utf8View => cast(column, &EVENT_TIME_TYPE)?,
        other => {
            return Err(RuntimeError::Schema(format!(
                "has type {other}; event time needs a timestamp, a date or epoch milliseconds"
            )));
        }
    })
}

/// The wall clock in ms since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// `rows` copies of the wall clock now, as event time.
pub(crate) fn arrival_times(rows: usize) -> ArrayRef {
    Arc::new(TimestampMillisecondArray::from_value(now_ms(), rows))
}
