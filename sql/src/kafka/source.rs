//! Kafka tables read as sources: `kafka` (a stream of records) and
//! `upsert-kafka` (the latest value of each key, as a changelog).

use std::path::PathBuf;

use headwater_operators::DecodeErrorPolicy;
use headwater_operators::formats::LineFormat;
use headwater_operators::sinks::kafka::{KafkaSink, is_client_setting};
use headwater_operators::sources::kafka::{
    BoundedMode, KafkaSource, Metadata, StartupMode, Topics, ValueFormat, parse_specific_offsets,
};
use headwater_runtime::EventTimeSpec;

use super::properties;
use crate::connectors::{DeadLetters, decode_policy, line_format};
use crate::ddl::{Options, TableDef, duration};
use crate::error::SqlError;
use crate::script::OptionValue;

/// The options a Kafka source takes.
const KNOWN: &[&str] = &[
    "connector",
    "topic",
    "topic-pattern",
    "properties.*",
    "format",
    "value.format",
    "csv.field-delimiter",
    "csv.ignore-first-line",
    "json.ignore-parse-errors",
    "csv.ignore-parse-errors",
    "decode-error",
    "decode-error.path",
    "decode-error.topic",
    "decode-error.transactional-id-prefix",
    "scan.startup.mode",
    "scan.startup.timestamp-millis",
    "scan.startup.specific-offsets",
    "scan.bounded.mode",
    "scan.bounded.timestamp-millis",
    "scan.bounded.specific-offsets",
    "scan.topic-partition-discovery.interval",
    "scan.watermark.idle-timeout",
    "key.fields",
    "key.format",
    "value.fields-include",
];

/// The Kafka source of `table`, and where bad records go, if anywhere.
pub fn source(
    table: &TableDef,
    event_time: EventTimeSpec,
) -> Result<(KafkaSource, Option<DeadLetters>), SqlError> {
    let options = &table.options;
    options.check_known("kafka", KNOWN)?;
    let mut source = base(table, topics(options, true)?, event_time)?;
    match (options.get("key.fields"), options.get("key.format")) {
        (Some(fields), format) => {
            let format = format.ok_or_else(|| {
                SqlError::invalid(
                    fields.at,
                    "'key.fields' needs 'key.format' ('json', 'csv' or 'raw')",
                )
            })?;
            let names = fields
                .value
                .split(';')
                .map(str::trim)
                .filter(|f| !f.is_empty())
                .map(str::to_string)
                .collect();
            source = source.with_key(bytes_format(options, format)?, names);
        }
        (None, Some(format)) => {
            return Err(SqlError::invalid(
                format.at,
                "'key.format' needs 'key.fields': the columns the key holds",
            ));
        }
        (None, None) => {}
    }
    source = source.value_includes_key(value_includes_key(options)?);
    source = source.with_startup(startup(options)?);
    if let Some(bounded) = bounded(options)? {
        source = source.bounded(bounded);
    }
    if let Some(interval) = options.get("scan.topic-partition-discovery.interval") {
        let every = duration(&interval.value).ok_or_else(|| {
            SqlError::invalid(
                interval.at,
                format!("`{}` is not a duration such as '30 s'", interval.value),
            )
        })?;
        // Flink turns discovery off with 0 (or a negative interval).
        source = source.with_discovery_interval((!every.is_zero()).then_some(every));
    }
    finish(table, source)
}

/// The upsert-kafka source of `table`: its topic read from the start, each
/// record the latest value of its key (the PRIMARY KEY), a tombstone a delete.
pub fn upsert_source(
    table: &TableDef,
    event_time: EventTimeSpec,
) -> Result<(KafkaSource, Option<DeadLetters>), SqlError> {
    let options = &table.options;
    super::check_upsert_table(table)?;
    // A delete carries only the key: event time must be there too.
    if let Some((column, _)) = &table.watermark
        && !table.primary_key.contains(column)
        && !table.metadata.iter().any(|m| m.column == *column)
    {
        return Err(SqlError::unsupported(
            table.at,
            format!(
                "upsert-kafka table `{}`: the WATERMARK must be on a key column or a METADATA \
                 column (such as `ts TIMESTAMP_LTZ(3) METADATA FROM 'timestamp'`), not on \
                 `{column}`: a delete carries only its key",
                table.name
            ),
        ));
    }
    let need = |key: &str| {
        options.get(key).ok_or_else(|| {
            SqlError::invalid(
                options.at,
                format!("the upsert-kafka connector needs '{key}' ('json', 'csv' or 'raw')"),
            )
        })
    };
    need("value.format")?;
    let key_format = bytes_format(options, need("key.format")?)?;
    let source = base(table, topics(options, false)?, event_time)?
        .with_key(key_format, table.primary_key.clone())
        .value_includes_key(value_includes_key(options)?)
        .with_startup(StartupMode::EarliestOffset)
        .upsert();
    finish(table, source)
}

/// What both connectors read alike: topics, brokers, properties, the value's
/// format, metadata columns.
fn base(
    table: &TableDef,
    topics: Topics,
    event_time: EventTimeSpec,
) -> Result<KafkaSource, SqlError> {
    let options = &table.options;
    let servers = options.require(
        "properties.bootstrap.servers",
        "the kafka connector (the brokers to read from)",
    )?;
    let mut source = KafkaSource::json(&servers.value, topics, table.schema.clone())
        .with_event_time(event_time)
        .with_format(value_format(options)?);
    for (key, value) in properties(options) {
        source = source.with_property(key, value);
    }
    for m in &table.metadata {
        let metadata = Metadata::parse(&m.name).ok_or_else(|| {
            SqlError::invalid(
                m.at,
                format!(
                    "column `{}`: the kafka connector has no metadata '{}'; it has {}",
                    m.column,
                    m.name,
                    Metadata::NAMES.join(", ")
                ),
            )
        })?;
        source = source.with_metadata(m.column.clone(), metadata);
    }
    Ok(source)
}

/// The decode-error policy and idle timeout, then the checks.
fn finish(
    table: &TableDef,
    mut source: KafkaSource,
) -> Result<(KafkaSource, Option<DeadLetters>), SqlError> {
    let options = &table.options;
    let policy = decode_policy(options)?;
    let mut dead_letters = None;
    if policy == DecodeErrorPolicy::DeadLetter {
        dead_letters = Some(dead_letters_of(options, &source)?);
    }
    source = source.on_decode_error(policy);
    if let Some(idle) = options.get("scan.watermark.idle-timeout") {
        let timeout = duration(&idle.value)
            .filter(|d| !d.is_zero())
            .ok_or_else(|| {
                SqlError::invalid(
                    idle.at,
                    format!("`{}` is not a duration such as '30 s'", idle.value),
                )
            })?;
        source = source.with_idle_timeout(timeout);
    }
    source
        .validate()
        .map_err(|e| SqlError::invalid(options.at, e.to_string()))?;
    Ok((source, dead_letters))
}

/// `topic` (one, or a `;`-separated list) or, where allowed, `topic-pattern`.
fn topics(options: &Options, pattern_allowed: bool) -> Result<Topics, SqlError> {
    let pattern = options.get("topic-pattern").filter(|_| pattern_allowed);
    Ok(match (options.get("topic"), pattern) {
        (Some(topic), None) => {
            let names: Vec<String> = topic
                .value
                .split(';')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_string)
                .collect();
            if names.is_empty() {
                return Err(SqlError::invalid(topic.at, "'topic' names no topic"));
            }
            Topics::Named(names)
        }
        (None, Some(pattern)) => {
            Topics::Pattern(regex::Regex::new(&pattern.value).map_err(|e| {
                SqlError::invalid(pattern.at, format!("'topic-pattern' is not a regex: {e}"))
            })?)
        }
        (Some(topic), Some(_)) => {
            return Err(SqlError::invalid(
                topic.at,
                "give 'topic' or 'topic-pattern', not both",
            ));
        }
        (None, None) => {
            return Err(SqlError::invalid(
                options.at,
                "the kafka connector needs 'topic' (or 'topic-pattern')",
            ));
        }
    })
}

/// `value.fields-include`: ALL (the default) or EXCEPT_KEY.
pub(super) fn value_includes_key(options: &Options) -> Result<bool, SqlError> {
    let Some(include) = options.get("value.fields-include") else {
        return Ok(true);
    };
    match include.value.to_uppercase().as_str() {
        "ALL" => Ok(true),
        "EXCEPT_KEY" => Ok(false),
        other => Err(SqlError::invalid(
            include.at,
            format!("'value.fields-include' is ALL or EXCEPT_KEY, not '{other}'"),
        )),
    }
}

/// Where a Kafka table's bad records go: a topic (`decode-error.topic`, on
/// the same brokers, with the same properties) or a directory.
fn dead_letters_of(options: &Options, source: &KafkaSource) -> Result<DeadLetters, SqlError> {
    match (
        options.get("decode-error.topic"),
        options.get("decode-error.path"),
    ) {
        (Some(topic), None) => {
            let name = topic.value.trim();
            if name.is_empty() || name.contains(';') {
                return Err(SqlError::invalid(
                    topic.at,
                    "'decode-error.topic' names one topic",
                ));
            }
            let mut sink = KafkaSink::dead_letters("", name, "");
            sink.properties = source
                .properties
                .iter()
                .filter(|(key, _)| is_client_setting(key))
                .cloned()
                .collect();
            sink.transactional_id_prefix = options
                .get("decode-error.transactional-id-prefix")
                .map(|p| p.value.clone());
            Ok(DeadLetters::Kafka(sink))
        }
        (None, Some(dir)) => Ok(DeadLetters::Directory(PathBuf::from(&dir.value))),
        (Some(topic), Some(_)) => Err(SqlError::invalid(
            topic.at,
            "give 'decode-error.topic' or 'decode-error.path', not both",
        )),
        (None, None) => Err(SqlError::invalid(
            options.at,
            "'decode-error' = 'dlq' needs 'decode-error.topic' (a Kafka topic) or \
             'decode-error.path' (a directory): where the bad records go",
        )),
    }
}

/// `'format'` (or `'value.format'`): json, csv or raw.
fn value_format(options: &Options) -> Result<ValueFormat, SqlError> {
    let Some(format) = options
        .get("format")
        .or_else(|| options.get("value.format"))
    else {
        return Err(SqlError::invalid(
            options.at,
            "the kafka connector needs 'format' ('json', 'csv' or 'raw')",
        ));
    };
    bytes_format(options, format)
}

/// A format option's value (of a key or a value): json, csv or raw.
fn bytes_format(options: &Options, format: &OptionValue) -> Result<ValueFormat, SqlError> {
    match format.value.to_lowercase().as_str() {
        "json" => Ok(ValueFormat::Lines(LineFormat::Json)),
        "raw" => Ok(ValueFormat::Raw),
        "csv" if options.get("format").is_some() => {
            let format = line_format(options)?;
            // A record is never a header.
            Ok(ValueFormat::Lines(match format {
                LineFormat::Csv { delimiter, .. } => LineFormat::Csv {
                    delimiter,
                    has_header: false,
                },
                other => other,
            }))
        }
        "csv" => Ok(ValueFormat::Lines(LineFormat::Csv {
            delimiter: options
                .get("csv.field-delimiter")
                .and_then(|d| match d.value.as_str() {
                    "\\t" => Some(b'\t'),
                    v if v.len() == 1 => Some(v.as_bytes()[0]),
                    _ => None,
                })
                .unwrap_or(b','),
            has_header: false,
        })),
        other => Err(SqlError::unsupported(
            format.at,
            format!(
                "format '{other}' is not supported by the kafka connector: use 'json', 'csv' or 'raw'"
            ),
        )),
    }
}

fn millis(options: &Options, key: &str, mode: &OptionValue) -> Result<i64, SqlError> {
    options
        .number::<i64>(key)?
        .ok_or_else(|| SqlError::invalid(mode.at, format!("the 'timestamp' mode needs '{key}'")))
}

fn specific(options: &Options, key: &str, mode: &OptionValue) -> Result<Vec<(i32, i64)>, SqlError> {
    let given = options
        .get(key)
        .ok_or_else(|| SqlError::invalid(mode.at, format!("'specific-offsets' needs '{key}'")))?;
    parse_specific_offsets(&given.value).map_err(|e| SqlError::invalid(given.at, e.to_string()))
}

/// `scan.startup.mode` (Flink's default: `group-offsets`).
fn startup(options: &Options) -> Result<StartupMode, SqlError> {
    let Some(mode) = options.get("scan.startup.mode") else {
        return Ok(StartupMode::GroupOffsets);
    };
    Ok(match mode.value.to_lowercase().as_str() {
        "earliest-offset" => StartupMode::EarliestOffset,
        "latest-offset" => StartupMode::LatestOffset,
        "group-offsets" => StartupMode::GroupOffsets,
        "timestamp" => {
            StartupMode::Timestamp(millis(options, "scan.startup.timestamp-millis", mode)?)
        }
        "specific-offsets" => {
            StartupMode::SpecificOffsets(specific(options, "scan.startup.specific-offsets", mode)?)
        }
        other => {
            return Err(SqlError::invalid(
                mode.at,
                format!(
                    "'scan.startup.mode' is earliest-offset, latest-offset, group-offsets, timestamp or specific-offsets, not '{other}'"
                ),
            ));
        }
    })
}

/// `scan.bounded.mode` (none: the source never ends).
fn bounded(options: &Options) -> Result<Option<BoundedMode>, SqlError> {
    let Some(mode) = options.get("scan.bounded.mode") else {
        return Ok(None);
    };
    Ok(Some(match mode.value.to_lowercase().as_str() {
        "unbounded" => return Ok(None),
        "latest-offset" => BoundedMode::LatestOffset,
        "timestamp" => {
            BoundedMode::Timestamp(millis(options, "scan.bounded.timestamp-millis", mode)?)
        }
        "specific-offsets" => {
            BoundedMode::SpecificOffsets(specific(options, "scan.bounded.specific-offsets", mode)?)
        }
        other => {
            return Err(SqlError::invalid(
                mode.at,
                format!(
                    "'scan.bounded.mode' is unbounded, latest-offset, timestamp or specific-offsets, not '{other}'"
                ),
            ));
        }
    }))
}
