//! Kafka tables written as sinks: `kafka` (each row a record) and
//! `upsert-kafka` (each key's latest row, deletes as tombstones).

use headwater_operators::sinks::kafka::{DeliveryGuarantee, KafkaSink, Partitioner, RowFormat};

use super::{properties, row_format};
use crate::ddl::{Options, TableDef};
use crate::error::SqlError;
use crate::script::OptionValue;

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

/// The upsert-kafka sink of `table`: upserts keyed by its primary key,
/// deletes as tombstones.
pub fn upsert_sink(table: &TableDef) -> Result<KafkaSink, SqlError> {
    let options = &table.options;
    super::check_upsert_table(table)?;
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
    sink.value_includes_key = super::source::value_includes_key(options)?;
    with_delivery(options, sink)
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
