//! `'connector' = 'kafka'` tables as sources and sinks, with the options of
//! Flink's Kafka connector: `topic` / `topic-pattern`, `properties.*`
//! (passed to librdkafka), `format`, `scan.startup.*`, `scan.bounded.*`,
//! `scan.topic-partition-discovery.interval`; `key.fields`, `key.format`,
//! `sink.partitioner` and `sink.delivery-guarantee`.

use std::path::PathBuf;

use headwater_operators::DecodeErrorPolicy;
use headwater_operators::formats::LineFormat;
use headwater_operators::sinks::kafka::{
    DeliveryGuarantee, KafkaSink, Partitioner, RowFormat, is_client_setting,
};
use headwater_operators::sources::kafka::{
    BoundedMode, KafkaSource, StartupMode, Topics, ValueFormat, parse_specific_offsets,
};
use headwater_runtime::EventTimeSpec;

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
];

/// The Kafka source of `table`, and where bad records go, if anywhere.
pub fn source(
    table: &TableDef,
    event_time: EventTimeSpec,
) -> Result<(KafkaSource, Option<DeadLetters>), SqlError> {
    let options = &table.options;
    options.check_known("kafka", KNOWN)?;
    let topics = match (options.get("topic"), options.get("topic-pattern")) {
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
    };
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
    let policy = decode_policy(options)?;
    let mut dead_letters = None;
    if policy == DecodeErrorPolicy::DeadLetter {
        dead_letters = Some(dead_letters_of(options, &source)?);
    }
    source = source
        .on_decode_error(policy)
        .with_startup(startup(options)?);
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
            delimiter: b',',
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

/// The options a Kafka sink takes.
const SINK_OPTIONS: &[&str] = &[
    "connector",
    "topic",
    "properties.*",
    "format",
    "value.format",
    "csv.field-delimiter",
    "key.fields",
    "key.format",
    "sink.partitioner",
    "sink.delivery-guarantee",
    "sink.transactional-id-prefix",
];

/// The Kafka sink of `table`.
pub fn sink(table: &TableDef) -> Result<KafkaSink, SqlError> {
    let options = &table.options;
    options.check_known("kafka", SINK_OPTIONS)?;
    let topic = options.require("topic", "a kafka sink (one topic to write)")?;
    if topic.value.contains(';') || topic.value.trim().is_empty() {
        return Err(SqlError::invalid(topic.at, "a kafka sink writes one topic"));
    }
    let servers = options.require(
        "properties.bootstrap.servers",
        "the kafka connector (the brokers to write to)",
    )?;
    let mut sink = KafkaSink::json(&servers.value, topic.value.trim());
    for (key, value) in properties(options) {
        sink = sink.with_property(key, value);
    }
    sink =
        sink.with_format(row_format(options, "format", "value.format")?.unwrap_or(RowFormat::Json));
    if let Some(fields) = options.get("key.fields") {
        let names: Vec<&str> = fields
            .value
            .split(';')
            .map(str::trim)
            .filter(|f| !f.is_empty())
            .collect();
        for name in &names {
            if table.schema.field_with_name(name).is_err() {
                return Err(SqlError::invalid(
                    fields.at,
                    format!(
                        "'key.fields' names `{name}`, which table `{}` does not have",
                        table.name
                    ),
                ));
            }
        }
        let key_format =
            row_format(options, "key.format", "key.format")?.unwrap_or(RowFormat::Json);
        sink = sink.with_key(&names, key_format);
    }
    if let Some(p) = options.get("sink.partitioner") {
        sink = sink.with_partitioner(match p.value.to_lowercase().as_str() {
            "default" => Partitioner::Default,
            "fixed" => Partitioner::Fixed,
            "round-robin" => Partitioner::RoundRobin,
            other => {
                return Err(SqlError::invalid(
                    p.at,
                    format!("'sink.partitioner' is default, fixed or round-robin, not '{other}'"),
                ));
            }
        });
    }
    with_delivery(options, sink)
}

/// The options an upsert-kafka sink takes (Flink's).
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
];

/// The upsert-kafka sink of `table`: upserts keyed by its primary key,
/// deletes as tombstones.
pub fn upsert_sink(table: &TableDef) -> Result<KafkaSink, SqlError> {
    let options = &table.options;
    options.check_known("upsert-kafka", UPSERT_OPTIONS)?;
    if table.primary_key.is_empty() {
        return Err(SqlError::invalid(
            table.at,
            format!(
                "upsert-kafka table `{}` needs a key: declare PRIMARY KEY (..) NOT ENFORCED",
                table.name
            ),
        ));
    }
    let topic = options.require("topic", "an upsert-kafka table (one topic)")?;
    if topic.value.contains(';') || topic.value.trim().is_empty() {
        return Err(SqlError::invalid(
            topic.at,
            "an upsert-kafka table has one topic",
        ));
    }
    let servers = options.require(
        "properties.bootstrap.servers",
        "the upsert-kafka connector (the brokers to write to)",
    )?;
    let key: Vec<&str> = table.primary_key.iter().map(String::as_str).collect();
    let mut sink = KafkaSink::upsert(&servers.value, topic.value.trim(), &key);
    for (k, value) in properties(options) {
        sink = sink.with_property(k, value);
    }
    let need = |key: &str| {
        row_format(options, key, key)?.ok_or_else(|| {
            SqlError::invalid(
                options.at,
                format!("the upsert-kafka connector needs '{key}' ('json', 'csv' or 'raw')"),
            )
        })
    };
    sink.key_format = need("key.format")?;
    sink.format = need("value.format")?;
    if let Some(include) = options.get("value.fields-include") {
        sink.value_includes_key = match include.value.to_uppercase().as_str() {
            "ALL" => true,
            "EXCEPT_KEY" => false,
            other => {
                return Err(SqlError::invalid(
                    include.at,
                    format!("'value.fields-include' is ALL or EXCEPT_KEY, not '{other}'"),
                ));
            }
        };
    }
    with_delivery(options, sink)
}

/// The librdkafka settings of a table: its `properties.*` options, unprefixed.
fn properties(options: &Options) -> impl Iterator<Item = (&str, String)> {
    options
        .values
        .iter()
        .filter_map(|(key, value)| Some((key.strip_prefix("properties.")?, value.value.clone())))
}

/// `sink.delivery-guarantee`, and for exactly-once its
/// `sink.transactional-id-prefix`, applied to `sink`.
fn with_delivery(options: &Options, mut sink: KafkaSink) -> Result<KafkaSink, SqlError> {
    let Some(g) = options.get("sink.delivery-guarantee") else {
        return Ok(sink);
    };
    let guarantee = delivery_guarantee(options, g)?;
    if guarantee == DeliveryGuarantee::ExactlyOnce {
        sink.transactional_id_prefix = options
            .get("sink.transactional-id-prefix")
            .map(|p| p.value.trim().to_string());
    }
    Ok(sink.with_delivery(guarantee))
}

/// `sink.delivery-guarantee`; exactly-once needs `sink.transactional-id-prefix`.
fn delivery_guarantee(options: &Options, g: &OptionValue) -> Result<DeliveryGuarantee, SqlError> {
    Ok(match g.value.to_lowercase().as_str() {
        "at-least-once" => DeliveryGuarantee::AtLeastOnce,
        "none" => DeliveryGuarantee::None,
        "exactly-once" => {
            if options
                .get("sink.transactional-id-prefix")
                .is_none_or(|p| p.value.trim().is_empty())
            {
                return Err(SqlError::invalid(
                    g.at,
                    "'sink.delivery-guarantee' = 'exactly-once' needs \
                     'sink.transactional-id-prefix', a name unique to this job (its \
                     producers are <prefix>-<subtask>)",
                ));
            }
            DeliveryGuarantee::ExactlyOnce
        }
        other => {
            return Err(SqlError::invalid(
                g.at,
                format!(
                    "'sink.delivery-guarantee' is at-least-once, exactly-once or none, not '{other}'"
                ),
            ));
        }
    })
}

/// A row format option (`format` or its alias): json, csv or raw.
fn row_format(options: &Options, key: &str, alias: &str) -> Result<Option<RowFormat>, SqlError> {
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
