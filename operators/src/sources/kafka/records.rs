//! Kafka record values to Arrow rows: `json`, `csv` (one record per value)
//! or `raw` (the value as one column). The records of one partition are
//! decoded together, and come out as runs of good rows between the bad
//! records, each with the offset to resume from after it, so that a
//! checkpoint between two of them resumes exactly.

use std::sync::Arc;

use arrow::array::{ArrayRef, BinaryArray, RecordBatch, StringArray};
use arrow::datatypes::{DataType, SchemaRef};

use crate::decode_error::{BadRecord, KafkaOrigin};
use crate::error::OperatorError;
use crate::formats::{LineDecoder, LineFormat};

/// How a record's value is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueFormat {
    /// One JSON document, or one CSV line, per value.
    Lines(LineFormat),
    /// The value's bytes as the one column (STRING or BYTES) of the table.
    Raw,
}

/// One record read from a partition.
#[derive(Debug, Clone)]
pub struct Record {
    pub offset: i64,
    /// `None` for a tombstone.
    pub value: Option<Vec<u8>>,
    /// Kept only where a dead letter may need it.
    pub key: Option<Vec<u8>>,
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

/// Decodes the values of one partition's records.
pub struct RecordDecoder {
    format: ValueFormat,
    schema: SchemaRef,
    lines: Option<(Box<dyn LineDecoder>, usize)>,
    chunk: Vec<u8>,
}

impl RecordDecoder {
    pub fn new(format: ValueFormat, schema: SchemaRef) -> Result<Self, OperatorError> {
        if format == ValueFormat::Raw {
            let ok = schema.fields().len() == 1
                && matches!(
                    schema.field(0).data_type(),
                    DataType::Utf8 | DataType::LargeUtf8 | DataType::Binary
                );
            if !ok {
                return Err(OperatorError::Config(
                    "the 'raw' format needs a table of one STRING or BYTES column".into(),
                ));
            }
        }
        Ok(RecordDecoder {
            format,
            schema,
            lines: None,
            chunk: Vec::new(),
        })
    }

    /// Decodes `records` (in offset order) of `topic` and `partition`.
    pub fn decode(
        &mut self,
        topic: &str,
        partition: i32,
        records: &[Record],
    ) -> Result<Vec<Decoded>, OperatorError> {
        Ok(match &self.format {
            // A tombstone is a NULL value in `raw`, and no row in the others.
            ValueFormat::Raw => {
                let (rows, bad) = self.raw(records)?;
                runs(topic, partition, records, rows, bad, |_| true)
            }
            ValueFormat::Lines(format) => {
                let format = format.clone();
                let (rows, bad) = self.lines(&format, records)?;
                runs(topic, partition, records, rows, bad, |r| r.value.is_some())
            }
        })
    }

    /// Every value as the table's one column; a STRING that is not UTF-8 is bad.
    fn raw(
        &mut self,
        records: &[Record],
    ) -> Result<(RecordBatch, Vec<(usize, String)>), OperatorError> {
        let mut bad = Vec::new();
        let column: ArrayRef = match self.schema.field(0).data_type() {
            DataType::Binary => Arc::new(
                records
                    .iter()
                    .map(|r| r.value.as_deref())
                    .collect::<BinaryArray>(),
            ),
            data_type => {
                let mut values: Vec<Option<&str>> = Vec::with_capacity(records.len());
                for (i, r) in records.iter().enumerate() {
                    match r.value.as_deref().map(std::str::from_utf8) {
                        None => values.push(None),
                        Some(Ok(text)) => values.push(Some(text)),
                        Some(Err(e)) => {
                            bad.push((i, format!("the value is not UTF-8 text: {e}")));
                        }
                    }
                }
                arrow::compute::cast(&StringArray::from(values), data_type)?
            }
        };
        Ok((
            RecordBatch::try_new(self.schema.clone(), vec![column])?,
            bad,
        ))
    }

    /// The values as lines of JSON or CSV, decoded in one chunk.
    fn lines(
        &mut self,
        format: &LineFormat,
        records: &[Record],
    ) -> Result<(RecordBatch, Vec<(usize, String)>), OperatorError> {
        // Line breaks in a JSON document are only whitespace: one line each.
        let is_json = matches!(format, LineFormat::Json);
        let mut bad: Vec<(usize, String)> = Vec::new();
        let mut starts: Vec<(usize, usize)> = Vec::new();
        self.chunk.clear();
        for (i, record) in records.iter().enumerate() {
            let Some(value) = &record.value else {
                continue; // A tombstone: no row.
            };
            if value.iter().all(u8::is_ascii_whitespace) {
                bad.push((i, "the value is empty".into()));
                continue;
            }
            if !is_json && value.iter().any(|&b| b == b'\n' || b == b'\r') {
                bad.push((i, "a CSV value holds a line break".into()));
                continue;
            }
            starts.push((self.chunk.len(), i));
            if is_json {
                self.chunk.extend(value.iter().map(|&b| match b {
                    b'\n' | b'\r' => b' ',
                    b => b,
                }));
            } else {
                self.chunk.extend_from_slice(value);
            }
            self.chunk.push(b'\n');
        }
        // One batch for the whole run, so rows keep their records' order.
        let wanted = starts.len().max(1);
        let decoder = match &mut self.lines {
            Some((decoder, size)) if *size >= wanted => decoder,
            _ => {
                let size = wanted.next_power_of_two();
                let decoder = format.decoder(self.schema.clone(), size)?;
                &mut self.lines.insert((decoder, size)).0
            }
        };
        let mut batches = Vec::new();
        let mut bad_lines = Vec::new();
        decoder.decode(&self.chunk, &mut batches, &mut bad_lines)?;
        for line in bad_lines {
            let at = starts.partition_point(|&(start, _)| start <= line.offset);
            if let Some(&(_, record)) = at.checked_sub(1).and_then(|i| starts.get(i)) {
                bad.push((record, line.error));
            }
        }
        bad.sort_by_key(|&(i, _)| i);
        let rows = arrow::compute::concat_batches(&self.schema, &batches)?;
        Ok((rows, bad))
    }
}

/// Cuts the good rows (in record order) into runs between the bad records;
/// `gives_row` tells which records made a row.
fn runs(
    topic: &str,
    partition: i32,
    records: &[Record],
    rows: RecordBatch,
    bad: Vec<(usize, String)>,
    gives_row: impl Fn(&Record) -> bool,
) -> Vec<Decoded> {
    let mut out = Vec::new();
    let mut row = 0; // The first row of the current run.
    let mut run_start = 0; // Its first record.
    for (index, error) in bad {
        if index > run_start {
            let count = records[run_start..index]
                .iter()
                .filter(|r| gives_row(r))
                .count();
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
    use arrow::datatypes::{Field, Int64Type, Schema};

    use super::*;

    fn record(offset: i64, value: &str) -> Record {
        Record {
            offset,
            value: Some(value.as_bytes().to_vec()),
            key: None,
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
                value: None,
                key: None,
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
