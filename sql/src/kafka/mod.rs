//! `'connector' = 'kafka'` and `'upsert-kafka'` tables as sources and
//! sinks, with the options of Flink's Kafka connectors: `topic` /
//! `topic-pattern`, `properties.*` (passed to librdkafka), `format`,
//! `scan.startup.*`, `scan.bounded.*`, `scan.topic-partition-discovery.interval`;
//! `key.fields`, `key.format`, `value.fields-include`, `sink.partitioner` and
//! `sink.delivery-guarantee`; and `METADATA` columns.

mod sink;
mod source;

pub use sink::{sink, upsert_sink};
pub use source::{source, upsert_source};

use headwater_operators::sinks::kafka::RowFormat;

/// The options an upsert-kafka table takes (Flink's), read or written.
const UPSERT_OPTIONS: &[&str] = &[
    "connector",
    "topic",
    "properties.*",
    "key.format",
    "value.format",
    "csv.field-delimiter",
    "value.fields-include",
    "sink.delivery-guarantee",
    "sink.transactional-id-prefix",
    "scan.watermark.idle-timeout",
    "decode-error",
    "decode-error.path",
    "decode-error.topic",
    "decode-error.transactional-id-prefix",
];

use crate::ddl::{Options, TableDef};
use crate::error::SqlError;

/// The librdkafka settings of a table: its `properties.*` options, unprefixed.
pub(crate) fn properties(options: &Options) -> impl Iterator<Item = (&str, String)> {
    options
        .values
        .iter()
        .filter_map(|(key, value)| Some((key.strip_prefix("properties.")?, value.value.clone())))
}

/// A row format option (`format` or its alias): json, csv or raw.
pub(crate) fn row_format(
    options: &Options,
    key: &str,
    alias: &str,
) -> Result<Option<RowFormat>, SqlError> {
    let Some(format) = options.get(key).or_else(|| options.get(alias)) else {
        return Ok(None);
    };
    let delimiter = match options.get("csv.field-delimiter") {
        Some(d) if d.value.len() == 1 => d.value.as_bytes()[0],
        Some(d) if d.value == "\\t" => b'\t',
        _ => b',',
    };
    Ok(Some(match format.value.to_lowercase().as_str() {
        "json" => RowFormat::Json,
        "csv" => RowFormat::Csv { delimiter },
        "raw" => RowFormat::Raw,
        other => {
            return Err(SqlError::unsupported(
                format.at,
                format!(
                    "format '{other}' is not supported by the kafka connector: use 'json', 'csv' or 'raw'"
                ),
            ));
        }
    }))
}

/// What an upsert-kafka table needs, read or written: known options and a
/// primary key.
fn check_upsert_table(table: &TableDef) -> Result<(), SqlError> {
    table.options.check_known("upsert-kafka", UPSERT_OPTIONS)?;
    if table.primary_key.is_empty() {
        return Err(SqlError::invalid(
            table.at,
            format!(
                "upsert-kafka table `{}` needs a key: declare PRIMARY KEY (..) NOT ENFORCED",
                table.name
            ),
        ));
    }
    Ok(())
}
