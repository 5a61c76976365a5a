//! Kafka record values to Arrow rows: `json`, `csv` (one record per value)
//! or `raw` (the value as one column). The records of one partition are
//! decoded together, and come out as runs of good rows between the bad
//! records, each with the offset to resume from after it, so that a
//! checkpoint between two of them resumes exactly.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringArray, UInt32Array};
use arrow::compute::{cast, take};
use arrow::datatypes::SchemaRef;
use rdkafka::message::{Headers, Message, Timestamp};

use super::bytes::BytesDecoder;
use super::columns::{
    ColumnSource, KeyColumns, Layout, MetadataColumn, TimestampType, metadata_column,
};
use crate::changelog::{Change, changelog_schema};
use crate::decode_error::{BadRecord, KafkaOrigin};
use crate::error::OperatorError;
use crate::formats::LineFormat;

/// How a record's value is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueFormat {
    /// One JSON document, or one CSV line, per value.
    Lines(LineFormat),
    /// The value's bytes as the one column (STRING or BYTES) of the table.
    Raw,
}

/// One record read from a partition.
#[derive(Debug, Clone, Default)]
pub struct Record {
    pub offset: i64,
    /// `None` for a tombstone.
    pub value: Option<Vec<u8>>,
    /// Kept only where a column or a dead letter needs it.
    pub key: Option<Vec<u8>>,
    /// Epoch milliseconds, if the record has a time.
    pub timestamp: Option<i64>,
    pub timestamp_type: TimestampType,
    /// Kept only where a column needs them.
    pub headers: Option<Vec<(String, Option<Vec<u8>>)>>,
}

impl Record {
    /// The record of `message`, with its key and headers if they are wanted.
    pub fn of(message: &impl Message, keep_key: bool, keep_headers: bool) -> Record {
        let (timestamp, timestamp_type) = match message.timestamp() {
            Timestamp::NotAvailable => (None, TimestampType::None),
            Timestamp::CreateTime(t) => (Some(t), TimestampType::CreateTime),
            Timestamp::LogAppendTime(t) => (Some(t), TimestampType::LogAppendTime),
        };
        let headers = keep_headers.then(|| {
            message.headers().map_or_else(Vec::new, |headers| {
                headers
                    .iter()
                    .map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec)))
                    .collect()
            })
        });
        Record {
            offset: message.offset(),
            value: message.payload().map(<[u8]>::to_vec),
            key: keep_key
                .then(|| message.key().map(<[u8]>::to_vec))
                .flatten(),
            timestamp,
            timestamp_type,
            headers,
        }
    }
}

/// What a run of a partition's records gave, in order.
#[derive(Debug)]
pub enum Decoded {
    /// Rows (perhaps none, when the run held only tombstones), and the
    /// offset after the run.
    Rows {
        batch: RecordBatch,
        next_offset: i64,
    },
    /// A record that does not decode, and the offset after it.
    Bad { record: BadRecord, next_offset: i64 },
}

/// Where a record is, for errors and dead letters.
pub fn location(topic: &str, partition: i32, offset: i64) -> String {
    format!("topic {topic}, partition {partition}, offset {offset}")
}

/// Decodes one partition's records into rows of the table: values, keys and
/// metadata. An upsert table's rows carry `_change`: `+I` for a value, `-D`
/// for a tombstone (the key's columns, the others NULL).
pub struct RecordDecoder {
    layout: Layout,
    output: SchemaRef,
    upsert: bool,
    value: BytesDecoder,
    key: Option<BytesDecoder>,
    needs_key: bool,
    needs_headers: bool,
}

impl RecordDecoder {
    /// Rows of `table` from records whose values are `format` (the simple
    /// case: no key, no metadata, not upsert).
    pub fn new(format: ValueFormat, table: SchemaRef) -> Result<Self, OperatorError> {
        Self::with_layout(format, table, None, true, &[], false)
    }

    /// Rows of `table`: values in `format`, the key's columns from `key`,
    /// metadata columns, and for an `upsert` table the change column.
    pub fn with_layout(
        format: ValueFormat,
        table: SchemaRef,
        key: Option<&KeyColumns>,
        value_includes_key: bool,
        metadata: &[MetadataColumn],
        upsert: bool,
    ) -> Result<Self, OperatorError> {
        let layout = Layout::new(&table, key, value_includes_key, metadata)?;
        if upsert && layout.key.is_none() {
            return Err(OperatorError::Config(
                "an upsert table reads its key: give the key's format and fields".into(),
            ));
        }
        let value = BytesDecoder::new(format, layout.value.clone(), "value")?;
        let key = layout
            .key
            .as_ref()
            .map(|(format, schema)| BytesDecoder::new(format.clone(), schema.clone(), "key"))
            .transpose()?;
        let output = if upsert {
            upsert_schema(&table, key_columns(&layout))
        } else {
            table
        };
        Ok(RecordDecoder {
            needs_key: layout.needs_key(),
            needs_headers: layout.needs_headers(),
            layout,
            output,
            upsert,
            value,
            key,
        })
    }

    /// The rows' schema: the table's columns (and `_change`, for upserts).
    pub fn schema(&self) -> SchemaRef {
        self.output.clone()
    }

    /// Whether records must keep their keys, or their headers.
    pub fn needs_key(&self) -> bool {
        self.needs_key
    }

    pub fn needs_headers(&self) -> bool {
        self.needs_headers
    }

    /// Decodes `records` (in offset order) of `topic` and `partition`.
    pub fn decode(
        &mut self,
        topic: &str,
        partition: i32,
        records: &[Record],
    ) -> Result<Vec<Decoded>, OperatorError> {
        let values: Vec<Option<&[u8]>> = records.iter().map(|r| r.value.as_deref()).collect();
        let (value_rows, mut bad) = self.value.decode(&values)?;
        // Raw makes a row of a tombstone (a NULL value); the others none.
        let raw = self.value.format == ValueFormat::Raw;
        if self.layout.value_only && !self.upsert {
            let gives_row: Vec<bool> = records.iter().map(|r| raw || r.value.is_some()).collect();
            return Ok(runs(topic, partition, records, value_rows, bad, &gives_row));
        }
        let mut is_bad = vec![false; records.len()];
        for &(i, _) in &bad {
            is_bad[i] = true;
        }
        // The value row of each record that has one; an upsert's tombstone
        // makes a row too (a delete).
        let mut value_row: Vec<Option<u32>> = Vec::with_capacity(records.len());
        let mut rows_out: Vec<usize> = Vec::with_capacity(records.len());
        let mut next = 0u32;
        for (i, r) in records.iter().enumerate() {
            let has_value = !is_bad[i] && (raw || r.value.is_some());
            value_row.push(has_value.then(|| {
                next += 1;
                next - 1
            }));
            if has_value || (!is_bad[i] && self.upsert) {
                rows_out.push(i);
            }
        }
        // Keys: a key that does not decode makes its record bad.
        let mut key_rows = None;
        if let Some(decoder) = &mut self.key {
            let keys: Vec<Option<&[u8]>> = rows_out
                .iter()
                .map(|&i| records[i].key.as_deref())
                .collect();
            let (rows, key_bad) = decoder.decode(&keys)?;
            let raw_key = decoder.format == ValueFormat::Raw;
            // The key row of each record: as the decoder makes rows.
            let mut dropped = vec![false; rows_out.len()];
            for (j, error) in key_bad {
                dropped[j] = true;
                bad.push((rows_out[j], error));
            }
            let mut key_row: Vec<Option<u32>> = Vec::with_capacity(keys.len());
            let mut next = 0u32;
            for (j, key) in keys.iter().enumerate() {
                let made_row = !dropped[j] && (raw_key || key.is_some());
                key_row.push(made_row.then(|| {
                    next += 1;
                    next - 1
                }));
            }
            // A record without a key has NULL key columns, where they allow it.
            let key_required =
                self.upsert || decoder.schema.fields().iter().any(|f| !f.is_nullable());
            if key_required {
                for (j, key) in keys.iter().enumerate() {
                    if key.is_none() && !dropped[j] {
                        dropped[j] = true;
                        bad.push((rows_out[j], "the record has no key".into()));
                    }
                }
            }
            let kept: Vec<(usize, Option<u32>)> = rows_out
                .iter()
                .zip(key_row)
                .zip(&dropped)
                .filter(|(_, dropped)| !**dropped)
                .map(|((&i, k), _)| (i, k))
                .collect();
            rows_out = kept.iter().map(|&(i, _)| i).collect();
            key_rows = Some((rows, kept.iter().map(|&(_, k)| k).collect::<UInt32Array>()));
            bad.sort_by_key(|&(i, _)| i);
        }
        let picked: UInt32Array = rows_out.iter().map(|&i| value_row[i]).collect();
        let out_records: Vec<&Record> = rows_out.iter().map(|&i| &records[i]).collect();
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.output.fields().len());
        for (source, field) in self.layout.columns.iter().zip(self.output.fields()) {
            let column = match *source {
                ColumnSource::Value(j) => take(value_rows.column(j), &picked, None)?,
                ColumnSource::Key(j) => {
                    let (rows, picked) = key_rows.as_ref().expect("a key column has a key decoder");
                    take(rows.column(j), picked, None)?
                }
                ColumnSource::Meta(m) => {
                    let column = metadata_column(m, topic, partition, &out_records)?;
                    cast(&column, field.data_type())?
                }
            };
            columns.push(column);
        }
        if self.upsert {
            columns.push(Arc::new(StringArray::from_iter_values(
                out_records.iter().map(|r| {
                    if r.value.is_some() {
                        Change::Insert.as_str()
                    } else {
                        Change::Delete.as_str()
                    }
                }),
            )));
        }
        let rows = RecordBatch::try_new(self.output.clone(), columns)?;
        let mut gives_row = vec![false; records.len()];
        for &i in &rows_out {
            gives_row[i] = true;
        }
        Ok(runs(topic, partition, records, rows, bad, &gives_row))
    }
}

/// The key's columns of the table, by index.
fn key_columns(layout: &Layout) -> Vec<usize> {
    layout
        .columns
        .iter()
        .enumerate()
        .filter(|(_, c)| matches!(c, ColumnSource::Key(_)))
        .map(|(i, _)| i)
        .collect()
}

/// An upsert table's rows: its columns, all but the key's nullable (a
/// delete has only its key), then `_change`.
fn upsert_schema(table: &SchemaRef, key: Vec<usize>) -> SchemaRef {
    let fields = table.fields().iter().enumerate().map(|(i, f)| {
        if key.contains(&i) {
            f.clone()
        } else {
            Arc::new(f.as_ref().clone().with_nullable(true))
        }
    });
    changelog_schema(fields)
}

/// Cuts the good rows (in record order) into runs between the bad records;
/// `gives_row` tells which records made a row.
fn runs(
    topic: &str,
    partition: i32,
    records: &[Record],
    rows: RecordBatch,
    bad: Vec<(usize, String)>,
    gives_row: &[bool],
) -> Vec<Decoded> {
    let mut out = Vec::new();
    let mut row = 0; // The first row of the current run.
    let mut run_start = 0; // Its first record.
    for (index, error) in bad {
        if index > run_start {
            let count = gives_row[run_start..index].iter().filter(|&&g| g).count();
            out.push(Decoded::Rows {
                batch: rows.slice(row, count),
                next_offset: records[index].offset,
            });
            row += count;
        }
        let record = &records[index];
        out.push(Decoded::Bad {
            record: BadRecord {
                source: location(topic, partition, record.offset),
                line: None,
                byte_offset: None,
                error,
                raw: record.value.clone().unwrap_or_default(),
                kafka: Some(KafkaOrigin {
                    topic: topic.to_string(),
                    partition,
                    offset: record.offset,
                    key: record.key.clone(),
                }),
            },
            next_offset: record.offset + 1,
        });
        run_start = index + 1;
    }
    if let Some(last) = records.last()
        && run_start < records.len()
    {
        out.push(Decoded::Rows {
            batch: rows.slice(row, rows.num_rows() - row),
            next_offset: last.offset + 1,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use arrow::array::AsArray;
    use arrow::datatypes::{DataType, Field, Int64Type, Schema};

    use super::*;

    fn record(offset: i64, value: &str) -> Record {
        Record {
            offset,
            value: Some(value.as_bytes().to_vec()),
            ..Record::default()
        }
    }

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
        ]))
    }

    #[test]
    fn bad_records_cut_the_rows_into_runs_with_exact_offsets() {
        let mut decoder =
            RecordDecoder::new(ValueFormat::Lines(LineFormat::Json), schema()).unwrap();
        let records = vec![
            record(10, r#"{"id":1,"name":"a"}"#),
            record(11, "{\n  \"id\": 2,\n  \"name\": \"pretty\"\n}"),
            Record {
                offset: 13,
                ..Record::default()
            },
            record(14, r#"{"id":"nope"}"#),
            record(15, r#"{"id":4}"#),
            record(16, "not json"),
        ];
        let decoded = decoder.decode("t", 3, &records).unwrap();
        let summary: Vec<String> = decoded
            .iter()
            .map(|d| match d {
                Decoded::Rows { batch, next_offset } => {
                    let ids: Vec<i64> = batch
                        .column(0)
                        .as_primitive::<Int64Type>()
                        .values()
                        .to_vec();
                    format!("rows {ids:?} -> {next_offset}")
                }
                Decoded::Bad {
                    record,
                    next_offset,
                } => format!("bad {} -> {next_offset}", record.source),
            })
            .collect();
        assert_eq!(
            summary,
            [
                "rows [1, 2] -> 14",
                "bad topic t, partition 3, offset 14 -> 15",
                "rows [4] -> 16",
                "bad topic t, partition 3, offset 16 -> 17",
            ]
        );
    }

    #[test]
    fn raw_values_are_one_column() {
        let schema = Arc::new(Schema::new(vec![Field::new("line", DataType::Utf8, true)]));
        let mut decoder = RecordDecoder::new(ValueFormat::Raw, schema).unwrap();
        let records = vec![
            record(0, "hello"),
            Record {
                offset: 1,
                value: Some(vec![0xff, 0xfe]),
                key: Some(b"k".to_vec()),
                ..Record::default()
            },
            record(2, "world"),
        ];
        let decoded = decoder.decode("t", 0, &records).unwrap();
        assert_eq!(decoded.len(), 3);
        let Decoded::Rows { batch, next_offset } = &decoded[2] else {
            panic!("{decoded:?}")
        };
        assert_eq!(*next_offset, 3);
        assert_eq!(batch.column(0).as_string::<i32>().value(0), "world");
        let wide = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int64, true),
            Field::new("b", DataType::Int64, true),
        ]));
        assert!(RecordDecoder::new(ValueFormat::Raw, wide).is_err());
    }
}
