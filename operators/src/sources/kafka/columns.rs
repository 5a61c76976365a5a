//! Where each column of a Kafka table comes from: the record's value, its
//! key (`key.format` with `key.fields`), or its metadata (`METADATA FROM
//! 'timestamp'`, `'partition'`, ...), as Flink's Kafka connector reads them.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryArray, BinaryBuilder, Int32Array, Int64Array, MapBuilder, MapFieldNames,
    StringArray, StringBuilder, TimestampMillisecondArray,
};
use arrow::compute::can_cast_types;
use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};

use super::records::{Record, ValueFormat};
use crate::error::OperatorError;

/// A record's metadata that a column can hold (`METADATA FROM 'name'`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metadata {
    /// `topic`: STRING.
    Topic,
    /// `partition`: INT.
    Partition,
    /// `offset`: BIGINT.
    Offset,
    /// `timestamp`: TIMESTAMP_LTZ(3), the record's create or append time.
    Timestamp,
    /// `timestamp-type`: `NoTimestampType`, `CreateTime` or `LogAppendTime`.
    TimestampType,
    /// `headers`: MAP<STRING, BYTES>.
    Headers,
    /// `key`: the key's raw bytes (BYTES).
    Key,
}

impl Metadata {
    /// The names `METADATA FROM` takes.
    pub const NAMES: [&'static str; 7] = [
        "topic",
        "partition",
        "offset",
        "timestamp",
        "timestamp-type",
        "headers",
        "key",
    ];

    pub fn parse(name: &str) -> Option<Metadata> {
        Some(match name {
            "topic" => Metadata::Topic,
            "partition" => Metadata::Partition,
            "offset" => Metadata::Offset,
            "timestamp" => Metadata::Timestamp,
            "timestamp-type" => Metadata::TimestampType,
            "headers" => Metadata::Headers,
            "key" => Metadata::Key,
            _ => return None,
        })
    }

    /// The type the metadata has before it is cast to its column's.
    pub fn data_type(self) -> DataType {
        match self {
            Metadata::Topic | Metadata::TimestampType => DataType::Utf8,
            Metadata::Partition => DataType::Int32,
            Metadata::Offset => DataType::Int64,
            Metadata::Timestamp => DataType::Timestamp(TimeUnit::Millisecond, None),
            Metadata::Headers => headers_type(),
            Metadata::Key => DataType::Binary,
        }
    }

    /// Whether records must keep their keys or headers to fill it.
    pub fn needs_key(self) -> bool {
        self == Metadata::Key
    }

    pub fn needs_headers(self) -> bool {
        self == Metadata::Headers
    }
}

/// `MAP<STRING, BYTES>` as Arrow writes it.
pub fn headers_type() -> DataType {
    let entries = Fields::from(vec![
        Field::new("keys", DataType::Utf8, false),
        Field::new("values", DataType::Binary, true),
    ]);
    DataType::Map(
        Arc::new(Field::new("entries", DataType::Struct(entries), false)),
        false,
    )
}

/// A column filled from metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataColumn {
    pub column: String,
    pub metadata: Metadata,
}

/// The key of the records, decoded into columns of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyColumns {
    pub format: ValueFormat,
    /// The table's columns the key holds (`key.fields`), in the key's order.
    pub fields: Vec<String>,
}

/// Where one column of the table comes from.
#[derive(Debug, Clone, Copy)]
pub(super) enum ColumnSource {
    Value(usize),
    Key(usize),
    Meta(Metadata),
}

/// How a record becomes a row of the table.
#[derive(Debug, Clone)]
pub(super) struct Layout {
    /// The columns decoded from the value.
    pub value: SchemaRef,
    /// The columns decoded from the key, with its format.
    pub key: Option<(ValueFormat, SchemaRef)>,
    /// For each column of the table, in order.
    pub columns: Vec<ColumnSource>,
    /// True when the value alone makes the row, column for column.
    pub value_only: bool,
}

impl Layout {
    /// The layout of `table`'s columns; `value_includes_key` as Flink's
    /// `'value.fields-include' = 'ALL'` (the default): the value holds the
    /// key's columns too (they are taken from the key all the same).
    pub fn new(
        table: &SchemaRef,
        key: Option<&KeyColumns>,
        value_includes_key: bool,
        metadata: &[MetadataColumn],
    ) -> Result<Layout, OperatorError> {
        let config = |m: String| OperatorError::Config(m);
        for m in metadata {
            let field = table
                .field_with_name(&m.column)
                .map_err(|_| config(format!("metadata column `{}` is not a column", m.column)))?;
            if !can_cast_types(&m.metadata.data_type(), field.data_type()) {
                return Err(config(format!(
                    "column `{}` cannot hold metadata {:?}: it is {}, the metadata is {}",
                    m.column,
                    m.metadata,
                    field.data_type(),
                    m.metadata.data_type()
                )));
            }
        }
        let key_fields: &[String] = key.map_or(&[], |k| &k.fields);
        for name in key_fields {
            if table.field_with_name(name).is_err() {
                return Err(config(format!("'key.fields' names `{name}`, not a column")));
            }
            if metadata.iter().any(|m| m.column == *name) {
                return Err(config(format!(
                    "`{name}` is a metadata column and cannot be a key field"
                )));
            }
        }
        if key.is_some_and(|k| k.fields.is_empty()) {
            return Err(config("'key.format' needs 'key.fields'".into()));
        }
        let mut value_fields = Vec::new();
        let mut columns = Vec::new();
        for field in table.fields() {
            let name = field.name();
            if let Some(m) = metadata.iter().find(|m| m.column == *name) {
                columns.push(ColumnSource::Meta(m.metadata));
                continue;
            }
            let in_key = key_fields.iter().position(|k| k == name);
            if in_key.is_none() || value_includes_key {
                value_fields.push(field.clone());
            }
            columns.push(match in_key {
                Some(i) => ColumnSource::Key(i),
                None => ColumnSource::Value(value_fields.len() - 1),
            });
        }
        let value_only = key.is_none() && metadata.is_empty();
        let key = key
            .map(|k| {
                let fields: Vec<Field> = k
                    .fields
                    .iter()
                    .map(|name| {
                        table
                            .field_with_name(name)
                            .cloned()
                            .map_err(|e| config(e.to_string()))
                    })
                    .collect::<Result<_, _>>()?;
                Ok::<_, OperatorError>((k.format.clone(), Arc::new(Schema::new(fields))))
            })
            .transpose()?;
        Ok(Layout {
            value: Arc::new(Schema::new(value_fields)),
            key,
            columns,
            value_only,
        })
    }

    /// Whether records must keep their keys.
    pub fn needs_key(&self) -> bool {
        self.key.is_some()
            || self
                .columns
                .iter()
                .any(|c| matches!(c, ColumnSource::Meta(m) if m.needs_key()))
    }

    pub fn needs_headers(&self) -> bool {
        self.columns
            .iter()
            .any(|c| matches!(c, ColumnSource::Meta(m) if m.needs_headers()))
    }
}

/// The column of `metadata` for `records`.
pub(super) fn metadata_column(
    metadata: Metadata,
    topic: &str,
    partition: i32,
    records: &[&Record],
) -> Result<ArrayRef, OperatorError> {
    let n = records.len();
    Ok(match metadata {
        Metadata::Topic => Arc::new(StringArray::from(vec![topic; n])),
        Metadata::Partition => Arc::new(Int32Array::from(vec![partition; n])),
        Metadata::Offset => Arc::new(Int64Array::from_iter_values(
            records.iter().map(|r| r.offset),
        )),
        Metadata::Timestamp => Arc::new(TimestampMillisecondArray::from(
            records.iter().map(|r| r.timestamp).collect::<Vec<_>>(),
        )),
        Metadata::TimestampType => Arc::new(StringArray::from_iter_values(
            records.iter().map(|r| r.timestamp_type.name()),
        )),
        Metadata::Key => Arc::new(
            records
                .iter()
                .map(|r| r.key.as_deref())
                .collect::<BinaryArray>(),
        ),
        Metadata::Headers => {
            let names = MapFieldNames {
                entry: "entries".into(),
                key: "keys".into(),
                value: "values".into(),
            };
            let mut builder =
                MapBuilder::new(Some(names), StringBuilder::new(), BinaryBuilder::new());
            for record in records {
                for (name, value) in record.headers.iter().flatten() {
                    builder.keys().append_value(name);
                    builder.values().append_option(value.as_deref());
                }
                builder.append(true)?;
            }
            Arc::new(builder.finish())
        }
    })
}

/// How a record's timestamp was set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimestampType {
    #[default]
    None,
    CreateTime,
    LogAppendTime,
}

impl TimestampType {
    /// As Flink names it.
    pub fn name(self) -> &'static str {
        match self {
            TimestampType::None => "NoTimestampType",
            TimestampType::CreateTime => "CreateTime",
            TimestampType::LogAppendTime => "LogAppendTime",
        }
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{Array, AsArray, RecordBatch};
    use arrow::datatypes::{Int32Type, Int64Type, TimestampMillisecondType};

    use super::super::records::{Decoded, RecordDecoder};
    use super::*;
    use crate::formats::LineFormat;

    fn table() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
            Field::new("part", DataType::Int32, false),
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Millisecond, None),
                false,
            ),
            Field::new("headers", headers_type(), false),
        ]))
    }

    fn record(offset: i64, key: Option<&str>, value: Option<&str>) -> Record {
        Record {
            offset,
            key: key.map(|k| k.as_bytes().to_vec()),
            value: value.map(|v| v.as_bytes().to_vec()),
            timestamp: Some(1000 + offset),
            timestamp_type: TimestampType::CreateTime,
            headers: Some(vec![("h".into(), Some(offset.to_string().into_bytes()))]),
        }
    }

    fn decoder(upsert: bool) -> RecordDecoder {
        let json = ValueFormat::Lines(LineFormat::Json);
        RecordDecoder::with_layout(
            json.clone(),
            table(),
            Some(&KeyColumns {
                format: json,
                fields: vec!["id".into()],
            }),
            false,
            &[
                MetadataColumn {
                    column: "part".into(),
                    metadata: Metadata::Partition,
                },
                MetadataColumn {
                    column: "ts".into(),
                    metadata: Metadata::Timestamp,
                },
                MetadataColumn {
                    column: "headers".into(),
                    metadata: Metadata::Headers,
                },
            ],
            upsert,
        )
        .unwrap()
    }

    fn records() -> Vec<Record> {
        vec![
            record(0, Some(r#"{"id":1}"#), Some(r#"{"name":"a"}"#)),
            record(1, Some("not a key"), Some(r#"{"name":"b"}"#)),
            record(2, Some(r#"{"id":2}"#), None),
            record(3, None, Some(r#"{"name":"d"}"#)),
            record(4, Some(r#"{"id":5}"#), Some(r#"{"name":"e"}"#)),
        ]
    }

    /// The rows and bad offsets of a decode, in order.
    fn summary(decoded: &[Decoded]) -> (Vec<RecordBatch>, Vec<i64>) {
        let mut rows = Vec::new();
        let mut bad = Vec::new();
        for d in decoded {
            match d {
                Decoded::Rows { batch, .. } => rows.push(batch.clone()),
                Decoded::Bad { record, .. } => {
                    bad.push(record.kafka.as_ref().unwrap().offset);
                }
            }
        }
        (rows, bad)
    }

    #[test]
    fn key_columns_and_metadata_fill_their_columns() {
        let mut decoder = decoder(false);
        let (rows, bad) = summary(&decoder.decode("t", 7, &records()).unwrap());
        // A key that does not decode, and no key for a NOT NULL key column.
        assert_eq!(bad, [1, 3]);
        let rows = arrow::compute::concat_batches(&decoder.schema(), &rows).unwrap();
        // The tombstone makes no row.
        let ids = rows.column(0).as_primitive::<Int64Type>();
        assert_eq!(ids.values().to_vec(), [1, 5]);
        let names = rows.column(1).as_string::<i32>();
        assert_eq!(names.value(1), "e");
        assert!(
            rows.column(2)
                .as_primitive::<Int32Type>()
                .values()
                .iter()
                .all(|&p| p == 7)
        );
        let ts = rows.column(3).as_primitive::<TimestampMillisecondType>();
        assert_eq!(ts.values().to_vec(), [1000, 1004]);
        let headers = rows.column(4).as_map();
        let values = headers.value(1);
        assert_eq!(values.column(1).as_binary::<i32>().value(0), b"4");
    }

    #[test]
    fn an_upsert_tombstone_is_a_delete_of_its_key() {
        let mut decoder = decoder(true);
        let (rows, bad) = summary(&decoder.decode("t", 0, &records()).unwrap());
        assert_eq!(bad, [1, 3], "bad keys and missing keys are bad records");
        let rows = arrow::compute::concat_batches(&decoder.schema(), &rows).unwrap();
        let ids: Vec<i64> = rows.column(0).as_primitive::<Int64Type>().values().to_vec();
        assert_eq!(ids, [1, 2, 5]);
        let changes: Vec<&str> = rows
            .column_by_name("_change")
            .unwrap()
            .as_string::<i32>()
            .iter()
            .flatten()
            .collect();
        assert_eq!(changes, ["+I", "-D", "+I"]);
        assert!(rows.column(1).is_null(1), "a delete has only its key");
    }
}
