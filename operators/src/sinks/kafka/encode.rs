//! Rows into Kafka records: values and keys as `json`, `csv` or `raw`, the
//! partition the sink's partitioner picks, and dead letters as their
//! original key and value with the error in headers.

use arrow::array::{Array, AsArray, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Int32Type, Int64Type};
use serde::{Deserialize, Serialize};

use super::{Partitioner, RowFormat};
use crate::error::OperatorError;

/// One record, ready to send. The exactly-once sink keeps the records of an
/// open transaction in its checkpoint, so this is serializable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutRecord {
    pub key: Option<Vec<u8>>,
    /// `None`: a tombstone.
    pub value: Option<Vec<u8>>,
    /// `None`: the producer's partitioner picks (by the key's hash).
    pub partition: Option<i32>,
    pub headers: Vec<(String, Vec<u8>)>,
}

/// The headers of a dead letter: what was wrong, and where the record was.
pub const ERROR_HEADER: &str = "headwater.error";
pub const TOPIC_HEADER: &str = "headwater.source.topic";
pub const PARTITION_HEADER: &str = "headwater.source.partition";
pub const OFFSET_HEADER: &str = "headwater.source.offset";
/// Where a dead letter from a file came from (file and line).
pub const SOURCE_HEADER: &str = "headwater.source";

/// What the sink's rows are.
#[derive(Debug, Clone)]
pub enum RecordShape {
    /// The user's rows, as values, keyed by some of their columns.
    Rows {
        format: RowFormat,
        key_columns: Vec<usize>,
        key_format: RowFormat,
    },
    /// Dead letters (the schema of `decode_error::dead_letter_schema`): each
    /// goes out as the bad record's own key and value.
    DeadLetters,
    /// Upserts (upsert-kafka): an insert or the row after an update is its
    /// key and value, a delete is its key and no value (a tombstone), and
    /// the row before an update is dropped. `change` is the changelog's
    /// `_change` column; without one, every row is an insert.
    Upsert {
        key_columns: Vec<usize>,
        key_format: RowFormat,
        value_columns: Vec<usize>,
        value_format: RowFormat,
        change: Option<usize>,
    },
}

/// Picks partitions for `fixed` and `round-robin`.
#[derive(Debug)]
pub struct PartitionPicker {
    pub partitioner: Partitioner,
    /// The topic's partitions (0 until known).
    pub partitions: i32,
    pub subtask: usize,
    next: i32,
}

impl PartitionPicker {
    pub fn new(partitioner: Partitioner, subtask: usize) -> Self {
        PartitionPicker {
            partitioner,
            partitions: 0,
            subtask,
            next: subtask as i32,
        }
    }

    pub fn pick(&mut self) -> Option<i32> {
        if self.partitions <= 0 {
            return None;
        }
        match self.partitioner {
            Partitioner::Default => None,
            Partitioner::Fixed => Some((self.subtask % self.partitions as usize) as i32),
            Partitioner::RoundRobin => {
                let p = self.next.rem_euclid(self.partitions);
                self.next = (p + 1) % self.partitions;
                Some(p)
            }
        }
    }
}

/// The records of `rows` (the user's columns, without event time).
pub fn encode(
    rows: &RecordBatch,
    shape: &RecordShape,
    picker: &mut PartitionPicker,
) -> Result<Vec<OutRecord>, OperatorError> {
    match shape {
        RecordShape::Rows {
            format,
            key_columns,
            key_format,
        } => {
            let values = encode_rows(rows, *format)?;
            let mut keys = if key_columns.is_empty() {
                None
            } else {
                Some(encode_rows(&rows.project(key_columns)?, *key_format)?.into_iter())
            };
            Ok(values
                .into_iter()
                .map(|value| OutRecord {
                    key: keys.as_mut().and_then(Iterator::next),
                    value: Some(value),
                    partition: picker.pick(),
                    headers: Vec::new(),
                })
                .collect())
        }
        RecordShape::DeadLetters => dead_letters(rows, picker),
        RecordShape::Upsert {
            key_columns,
            key_format,
            value_columns,
            value_format,
            change,
        } => {
            // The row before an update is dropped; a delete keeps its key only.
            let filtered;
            let (rows, deletes) = match change {
                Some(c) => {
                    let before = StringArray::new_scalar("-U");
                    let keep = arrow::compute::kernels::cmp::neq(rows.column(*c), &before)?;
                    filtered = arrow::compute::filter_record_batch(rows, &keep)?;
                    let delete = StringArray::new_scalar("-D");
                    let deletes = arrow::compute::kernels::cmp::eq(filtered.column(*c), &delete)?;
                    (&filtered, Some(deletes))
                }
                None => (rows, None),
            };
            let keys = encode_rows(&rows.project(key_columns)?, *key_format)?;
            let values = encode_rows(&rows.project(value_columns)?, *value_format)?;
            Ok(keys
                .into_iter()
                .zip(values)
                .enumerate()
                .map(|(i, (key, value))| OutRecord {
                    key: Some(key),
                    value: (!deletes.as_ref().is_some_and(|d| d.value(i))).then_some(value),
                    partition: picker.pick(),
                    headers: Vec::new(),
                })
                .collect())
        }
    }
}

fn column<'a>(rows: &'a RecordBatch, name: &str) -> Result<&'a dyn Array, OperatorError> {
    rows.column_by_name(name)
        .map(|c| c.as_ref())
        .ok_or_else(|| OperatorError::Config(format!("dead letters have no `{name}` column")))
}

/// Dead letters: the record's own key and value (for a file's row, its
/// text), with the error and the position in headers.
fn dead_letters(
    rows: &RecordBatch,
    picker: &mut PartitionPicker,
) -> Result<Vec<OutRecord>, OperatorError> {
    let source = column(rows, "source")?.as_string::<i32>();
    let error = column(rows, "error")?.as_string::<i32>();
    let raw = column(rows, "raw")?.as_string::<i32>();
    let topic = column(rows, "topic")?.as_string::<i32>();
    let partition = column(rows, "partition")?.as_primitive::<Int32Type>();
    let offset = column(rows, "offset")?.as_primitive::<Int64Type>();
    let key = column(rows, "key")?.as_binary::<i32>();
    let value = column(rows, "value")?.as_binary::<i32>();
    let line = arrow::compute::cast(column(rows, "line")?, &DataType::Utf8)?;
    let line = line.as_string::<i32>();
    Ok((0..rows.num_rows())
        .map(|i| {
            let mut headers = vec![(ERROR_HEADER.to_string(), error.value(i).as_bytes().to_vec())];
            let record_value = if topic.is_null(i) {
                let mut at = source.value(i).to_string();
                if line.is_valid(i) {
                    at = format!("{at}:{}", line.value(i));
                }
                headers.push((SOURCE_HEADER.into(), at.into_bytes()));
                raw.value(i).as_bytes().to_vec()
            } else {
                headers.push((TOPIC_HEADER.into(), topic.value(i).as_bytes().to_vec()));
                headers.push((
                    PARTITION_HEADER.into(),
                    partition.value(i).to_string().into_bytes(),
                ));
                headers.push((
                    OFFSET_HEADER.into(),
                    offset.value(i).to_string().into_bytes(),
                ));
                if value.is_null(i) {
                    Vec::new()
                } else {
                    value.value(i).to_vec()
                }
            };
            OutRecord {
                key: key.is_valid(i).then(|| key.value(i).to_vec()),
                value: Some(record_value),
                partition: picker.pick(),
                headers,
            }
        })
        .collect())
}

/// Each row of `batch` in `format`, as bytes.
pub fn encode_rows(batch: &RecordBatch, format: RowFormat) -> Result<Vec<Vec<u8>>, OperatorError> {
    if batch.num_rows() == 0 {
        return Ok(Vec::new());
    }
    match format {
        RowFormat::Raw => {
            let column = arrow::compute::cast(batch.column(0), &DataType::Binary)?;
            let column = column.as_binary::<i32>();
            Ok((0..column.len())
                .map(|i| {
                    if column.is_null(i) {
                        Vec::new()
                    } else {
                        column.value(i).to_vec()
                    }
                })
                .collect())
        }
        RowFormat::Json => {
            let mut writer = arrow::json::LineDelimitedWriter::new(Vec::new());
            writer.write(batch)?;
            writer.finish()?;
            Ok(split_lines(&writer.into_inner()))
        }
        RowFormat::Csv { delimiter } => {
            let mut writer = arrow::csv::WriterBuilder::new()
                .with_header(false)
                .with_delimiter(delimiter)
                .build(Vec::new());
            writer.write(batch)?;
            let lines = split_lines(&writer.into_inner());
            if lines.len() == batch.num_rows() {
                return Ok(lines);
            }
            // A quoted field holds a line break: one row at a time.
            (0..batch.num_rows())
                .map(|i| {
                    let mut writer = arrow::csv::WriterBuilder::new()
                        .with_header(false)
                        .with_delimiter(delimiter)
                        .build(Vec::new());
                    writer.write(&batch.slice(i, 1))?;
                    let mut row = writer.into_inner();
                    if row.last() == Some(&b'\n') {
                        row.pop();
                    }
                    Ok(row)
                })
                .collect()
        }
    }
}

fn split_lines(bytes: &[u8]) -> Vec<Vec<u8>> {
    bytes
        .split(|&b| b == b'\n')
        .filter(|line| !line.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{Field, Schema};

    use super::*;
    use crate::decode_error::{BadRecord, KafkaOrigin, dead_letters_batch};

    #[test]
    fn rows_become_json_csv_or_raw_values() {
        let batch = RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("id", DataType::Int64, false),
                Field::new("name", DataType::Utf8, true),
            ])),
            vec![
                Arc::new(Int64Array::from(vec![1, 2])),
                Arc::new(StringArray::from(vec![Some("a,b"), None])),
            ],
        )
        .unwrap();
        let json = encode_rows(&batch, RowFormat::Json).unwrap();
        assert_eq!(json[0], br#"{"id":1,"name":"a,b"}"#);
        assert_eq!(json[1], br#"{"id":2}"#);
        let csv = encode_rows(&batch, RowFormat::Csv { delimiter: b',' }).unwrap();
        assert_eq!(csv[0], b"1,\"a,b\"");
        assert_eq!(csv[1], b"2,");
        let raw = encode_rows(&batch.project(&[1]).unwrap(), RowFormat::Raw).unwrap();
        assert_eq!(raw, [b"a,b".to_vec(), Vec::new()]);
    }

    #[test]
    fn dead_letters_keep_their_bytes_and_say_where_they_were() {
        let letters = dead_letters_batch(&[
            BadRecord {
                source: "topic t, partition 2, offset 7".into(),
                line: None,
                byte_offset: None,
                error: "not json".into(),
                raw: vec![0xff, b'x'],
                kafka: Some(KafkaOrigin {
                    topic: "t".into(),
                    partition: 2,
                    offset: 7,
                    key: Some(b"k1".to_vec()),
                }),
            },
            BadRecord {
                source: "in.jsonl".into(),
                line: Some(3),
                byte_offset: Some(40),
                error: "bad".into(),
                raw: b"{oops".to_vec(),
                kafka: None,
            },
        ])
        .unwrap();
        let mut picker = PartitionPicker::new(Partitioner::Default, 0);
        let records = encode(&letters, &RecordShape::DeadLetters, &mut picker).unwrap();
        assert_eq!(records[0].key.as_deref(), Some(&b"k1"[..]));
        assert_eq!(records[0].value.as_deref(), Some(&[0xff, b'x'][..]));
        let header = |r: &OutRecord, name: &str| {
            r.headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| String::from_utf8(v.clone()).unwrap())
        };
        assert_eq!(header(&records[0], ERROR_HEADER).unwrap(), "not json");
        assert_eq!(header(&records[0], TOPIC_HEADER).unwrap(), "t");
        assert_eq!(header(&records[0], PARTITION_HEADER).unwrap(), "2");
        assert_eq!(header(&records[0], OFFSET_HEADER).unwrap(), "7");
        assert_eq!(records[1].key, None);
        assert_eq!(records[1].value.as_deref(), Some(&b"{oops"[..]));
        assert_eq!(header(&records[1], SOURCE_HEADER).unwrap(), "in.jsonl:3");
    }

    #[test]
    fn upserts_drop_the_row_before_an_update_and_delete_with_tombstones() {
        let batch = RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("customer", DataType::Utf8, false),
                Field::new("orders", DataType::Int64, false),
                Field::new("_change", DataType::Utf8, false),
            ])),
            vec![
                Arc::new(StringArray::from(vec!["a", "a", "a", "b"])),
                Arc::new(Int64Array::from(vec![1, 1, 2, 5])),
                Arc::new(StringArray::from(vec!["+I", "-U", "+U", "-D"])),
            ],
        )
        .unwrap();
        let shape = RecordShape::Upsert {
            key_columns: vec![0],
            key_format: RowFormat::Json,
            value_columns: vec![0, 1],
            value_format: RowFormat::Json,
            change: Some(2),
        };
        let mut picker = PartitionPicker::new(Partitioner::Default, 0);
        let records = encode(&batch, &shape, &mut picker).unwrap();
        let shown: Vec<(String, Option<String>)> = records
            .iter()
            .map(|r| {
                (
                    String::from_utf8(r.key.clone().unwrap()).unwrap(),
                    r.value.clone().map(|v| String::from_utf8(v).unwrap()),
                )
            })
            .collect();
        assert_eq!(
            shown,
            [
                (
                    r#"{"customer":"a"}"#.into(),
                    Some(r#"{"customer":"a","orders":1}"#.into())
                ),
                (
                    r#"{"customer":"a"}"#.into(),
                    Some(r#"{"customer":"a","orders":2}"#.into())
                ),
                (r#"{"customer":"b"}"#.into(), None),
            ]
        );
    }

    #[test]
    fn fixed_and_round_robin_pick_partitions() {
        let mut fixed = PartitionPicker::new(Partitioner::Fixed, 5);
        fixed.partitions = 3;
        assert_eq!([fixed.pick(), fixed.pick()], [Some(2), Some(2)]);
        let mut turns = PartitionPicker::new(Partitioner::RoundRobin, 1);
        turns.partitions = 3;
        let picked: Vec<_> = (0..4).map(|_| turns.pick().unwrap()).collect();
        assert_eq!(picked, [1, 2, 0, 1]);
        let mut default = PartitionPicker::new(Partitioner::Default, 0);
        default.partitions = 3;
        assert_eq!(default.pick(), None);
    }
}
