//! Connector options of `CREATE TABLE .. WITH (..)`, turned into the sources
//! and sinks of the operators crate. Option names follow Flink's.

use datafusion::arrow::datatypes::SchemaRef;
use headwater_operators::DecodeErrorPolicy;
use headwater_operators::formats::LineFormat;
use headwater_operators::sinks::kafka::KafkaSink;
use headwater_operators::sinks::{BlackholeSink, FileSink, SinkSpec, StdoutSink};
use headwater_operators::sources::SourceSpec;
use headwater_operators::sources::datagen::{DatagenSource, FieldGen};
use headwater_operators::sources::filesystem::FileSource;
use headwater_operators::sources::orders::{OrdersSource, order_schema};
use headwater_runtime::EventTimeSpec;

use crate::ddl::{Options, TableDef};
use crate::error::SqlError;

/// A table read as a source: its connector, and where bad rows go if they
/// go anywhere.
pub struct SourceTable {
    pub spec: Box<dyn SourceSpec>,
    /// The connector's own columns, when it makes more than the table declares.
    pub produces: SchemaRef,
    pub event_time: EventTimeSpec,
    pub dead_letters: Option<DeadLetters>,
    /// Upserts by this key (upsert-kafka): rows carry `_change` (`+I` or
    /// `-D`) and become a changelog through a normalize step.
    pub upsert_key: Option<Vec<String>>,
}

/// Where `'decode-error' = 'dlq'` sends bad rows.
pub enum DeadLetters {
    /// JSON lines in this directory (`decode-error.path`).
    Directory(std::path::PathBuf),
    /// This Kafka topic (`decode-error.topic`); the transactional-id prefix
    /// is the table's `decode-error.transactional-id-prefix`, or made from
    /// the job's and the source's names when it has none.
    Kafka(KafkaSink),
}

/// Whether reading `table` gives upserts by its key (upsert-kafka).
pub fn reads_upserts(table: &TableDef) -> bool {
    table
        .connector()
        .is_ok_and(|c| c.value.eq_ignore_ascii_case("upsert-kafka"))
}

/// The source of `table`.
pub fn source(table: &TableDef) -> Result<SourceTable, SqlError> {
    let connector = table.connector()?;
    let options = &table.options;
    let event_time = match &table.watermark {
        Some((column, delay)) => EventTimeSpec::column(column, *delay),
        None => EventTimeSpec::ArrivalTime,
    };
    let mut dead_letters = None;
    let mut upsert_key = None;
    let name = connector.value.to_lowercase();
    if let Some(m) = table.metadata.first()
        && name != "kafka"
        && name != "upsert-kafka"
    {
        return Err(SqlError::unsupported(
            m.at,
            format!(
                "column `{}`: the {name} connector has no metadata columns",
                m.column
            ),
        ));
    }
    let spec: Box<dyn SourceSpec> = match name.as_str() {
        "filesystem" => {
            options.check_known(
                "filesystem",
                &[
                    "connector",
                    "path",
                    "format",
                    "csv.field-delimiter",
                    "csv.ignore-first-line",
                    "json.ignore-parse-errors",
                    "csv.ignore-parse-errors",
                    "decode-error",
                    "decode-error.path",
                    "rows-per-second",
                ],
            )?;
            let path = &options.require("path", "the filesystem connector")?.value;
            let format = line_format(options)?;
            let policy = decode_policy(options)?;
            if policy == DecodeErrorPolicy::DeadLetter {
                let dir = options.require(
                    "decode-error.path",
                    "'decode-error' = 'dlq' (where the bad rows go)",
                )?;
                dead_letters = Some(DeadLetters::Directory(dir.value.clone().into()));
            }
            let mut source = FileSource::json(path, table.schema.clone())
                .with_event_time(event_time.clone())
                .on_decode_error(policy);
            source.format = format;
            if let Some(rate) = options.number_in("rows-per-second", MIN_RATE..=MAX_RATE)? {
                source = source.with_rows_per_second(rate);
            }
            Box::new(source)
        }
        "kafka" => {
            let (source, dlq) = crate::kafka::source(table, event_time.clone())?;
            dead_letters = dlq;
            Box::new(source)
        }
        "datagen" => Box::new(datagen(table, event_time.clone())?),
        "orders" => {
            options.check_known(
                "orders",
                &[
                    "connector",
                    "seed",
                    "number-of-orders",
                    "events-per-second",
                    "duplicate-rate",
                    // Taken by every source; a generator has nothing to decode.
                    "decode-error",
                ],
            )?;
            let mut source = OrdersSource::new(options.number("seed")?.unwrap_or(0));
            if let Some(n) = options.number("number-of-orders")? {
                source = source.orders(n);
            }
            if let Some(rate) = options.number_in("events-per-second", MIN_RATE..=MAX_RATE)? {
                source = source.events_per_second(rate);
            }
            if let Some(rate) = options.number_in("duplicate-rate", 0.0..=1.0)? {
                source = source.duplicate_rate(rate);
            }
            check_columns_of(table, &order_schema(), "orders")?;
            Box::new(source)
        }
        "upsert-kafka" => {
            let (source, dlq) = crate::kafka::upsert_source(table, event_time.clone())?;
            dead_letters = dlq;
            upsert_key = Some(table.primary_key.clone());
            Box::new(source)
        }
        "print" | "blackhole" => {
            return Err(SqlError::invalid(
                connector.at,
                format!(
                    "table `{}` is a {} sink: it cannot be read",
                    table.name, connector.value
                ),
            ));
        }
        other => return Err(unknown_connector(connector.at, other)),
    };
    Ok(SourceTable {
        produces: spec.schema(),
        spec,
        event_time,
        dead_letters,
        upsert_key,
    })
}

/// The sink of `table`.
pub fn sink(table: &TableDef) -> Result<Box<dyn SinkSpec>, SqlError> {
    let connector = table.connector()?;
    if let Some(m) = table.metadata.first() {
        return Err(SqlError::unsupported(
            m.at,
            format!(
                "table `{}` has METADATA column `{}`: writing metadata is not supported; \
                 declare a table without it to write to",
                table.name, m.column
            ),
        ));
    }
    let options = &table.options;
    Ok(match connector.value.to_lowercase().as_str() {
        "filesystem" => {
            options.check_known("filesystem", &["connector", "path", "format"])?;
            let path = &options.require("path", "the filesystem connector")?.value;
            let format = options.require("format", "the filesystem connector")?;
            if !format.value.eq_ignore_ascii_case("json") {
                return Err(SqlError::unsupported(
                    format.at,
                    format!("the filesystem sink writes 'json', not '{}'", format.value),
                ));
            }
            Box::new(FileSink::json(path))
        }
        "kafka" => Box::new(crate::kafka::sink(table)?),
        "upsert-kafka" => Box::new(crate::kafka::upsert_sink(table)?),
        "print" => {
            options.check_known("print", &["connector", "format"])?;
            match options.get("format").map(|f| f.value.to_lowercase()) {
                Some(f) if f == "table" => Box::new(StdoutSink::table()),
                _ => Box::new(StdoutSink::json()),
            }
        }
        "blackhole" => {
            options.check_known("blackhole", &["connector"])?;
            Box::new(BlackholeSink)
        }
        "datagen" | "orders" => {
            return Err(SqlError::invalid(
                connector.at,
                format!(
                    "table `{}` is a {} source: it cannot be written",
                    table.name, connector.value
                ),
            ));
        }
        other => return Err(unknown_connector(connector.at, other)),
    })
}

/// Whether the sink of `table` takes a changelog (rows with `_change`).
pub fn takes_changes(table: &TableDef) -> bool {
    table.options.get("connector").is_some_and(|c| {
        matches!(
            c.value.to_lowercase().as_str(),
            "print" | "blackhole" | "upsert-kafka"
        )
    })
}

fn unknown_connector(at: crate::error::Position, name: &str) -> SqlError {
    SqlError::invalid(
        at,
        format!(
            "unknown connector '{name}': use filesystem, kafka, upsert-kafka, datagen, orders, print or blackhole"
        ),
    )
}

pub(crate) fn line_format(options: &Options) -> Result<LineFormat, SqlError> {
    let format = options.require("format", "the filesystem connector")?;
    match format.value.to_lowercase().as_str() {
        "json" => Ok(LineFormat::Json),
        "csv" => {
            let delimiter = match options.get("csv.field-delimiter") {
                None => b',',
                Some(d) if d.value.len() == 1 => d.value.as_bytes()[0],
                Some(d) if d.value == "\\t" => b'\t',
                Some(d) => {
                    return Err(SqlError::invalid(
                        d.at,
                        format!("'csv.field-delimiter' is one character, not `{}`", d.value),
                    ));
                }
            };
            Ok(LineFormat::Csv {
                delimiter,
                has_header: options.flag("csv.ignore-first-line")?.unwrap_or(false),
            })
        }
        other => Err(SqlError::unsupported(
            format.at,
            format!("format '{other}' is not supported: use 'json' or 'csv'"),
        )),
    }
}

/// `'decode-error' = 'fail' | 'skip' | 'dlq'`, or Flink's `'json.ignore-parse-errors' = 'true'`.
pub(crate) fn decode_policy(options: &Options) -> Result<DecodeErrorPolicy, SqlError> {
    if let Some(v) = options.get("decode-error") {
        return v
            .value
            .parse()
            .map_err(|e: headwater_operators::OperatorError| {
                SqlError::invalid(v.at, e.to_string())
            });
    }
    let ignore = options.flag("json.ignore-parse-errors")?.unwrap_or(false)
        || options.flag("csv.ignore-parse-errors")?.unwrap_or(false);
    Ok(if ignore {
        DecodeErrorPolicy::Skip
    } else {
        DecodeErrorPolicy::Fail
    })
}

/// The longest generated string: a block of rows holds 1024 of them.
const MAX_STRING_LENGTH: usize = 65_536;
/// Rates of generators and of replayed files, in rows per second.
const MIN_RATE: f64 = 1e-3;
const MAX_RATE: f64 = 1e12;

/// Flink's datagen options: `number-of-rows`, `rows-per-second`, and per
/// field `fields.<f>.kind` (`random` or `sequence`), `.min`, `.max`,
/// `.length`, `.start`, `.end`; plus `seed`.
fn datagen(table: &TableDef, event_time: EventTimeSpec) -> Result<DatagenSource, SqlError> {
    let options = &table.options;
    options.check_known(
        "datagen",
        &[
            "connector",
            "number-of-rows",
            "rows-per-second",
            "seed",
            "fields.*",
            "decode-error",
        ],
    )?;
    let mut source = DatagenSource::new(table.schema.clone());
    source.event_time = event_time;
    if let Some(seed) = options.number("seed")? {
        source = source.seed(seed);
    }
    if let Some(rate) = options.number_in("rows-per-second", MIN_RATE..=MAX_RATE)? {
        source = source.rows_per_second(rate);
    }
    let mut rows = options.number::<u64>("number-of-rows")?;
    for (key, value) in &options.values {
        let Some(rest) = key.strip_prefix("fields.") else {
            continue;
        };
        let Some((field, _)) = rest.rsplit_once('.') else {
            return Err(SqlError::invalid(
                value.at,
                format!("option '{key}': expected fields.<column>.<setting>"),
            ));
        };
        if table.schema.field_with_name(field).is_err() {
            return Err(SqlError::invalid(
                value.at,
                format!(
                    "option '{key}': table `{}` has no column `{field}`",
                    table.name
                ),
            ));
        }
    }
    for field in table.schema.fields() {
        let name = field.name();
        let key = |s: &str| format!("fields.{name}.{s}");
        let kind = options.get(&key("kind")).map(|k| k.value.to_lowercase());
        let generator = match kind.as_deref() {
            Some("sequence") => {
                let start: i64 = options.number(&key("start"))?.unwrap_or(0);
                if let Some(end) = options.number::<i64>(&key("end"))? {
                    let count =
                        (i128::from(end) - i128::from(start) + 1).clamp(0, u64::MAX.into()) as u64;
                    rows = Some(rows.map_or(count, |r| r.min(count)));
                }
                FieldGen::Sequence { start, step: 1 }
            }
            None | Some("random") => {
                let min = options.number_in(&key("min"), -f64::MAX..=f64::MAX)?;
                let max = options.number_in(&key("max"), -f64::MAX..=f64::MAX)?;
                let length = options
                    .number_in(&key("length"), 0..=MAX_STRING_LENGTH)?
                    .unwrap_or(10);
                FieldGen::Random { min, max, length }
            }
            Some(other) => {
                let at = options.get(&key("kind")).map_or(options.at, |v| v.at);
                return Err(SqlError::invalid(
                    at,
                    format!(
                        "option '{}': `{other}` is not random or sequence",
                        key("kind")
                    ),
                ));
            }
        };
        source = source.field(name.clone(), generator);
    }
    if let Some(rows) = rows {
        source = source.row_count(rows);
    }
    source
        .validate()
        .map_err(|e| SqlError::invalid(options.at, e.to_string()))?;
    Ok(source)
}

/// A generator table may declare some of the generator's columns, with their types.
fn check_columns_of(
    table: &TableDef,
    produced: &SchemaRef,
    connector: &str,
) -> Result<(), SqlError> {
    for field in table.schema.fields() {
        match produced.field_with_name(field.name()) {
            Ok(p) if p.data_type() == field.data_type() => {}
            Ok(p) => {
                return Err(SqlError::invalid(
                    table.at,
                    format!(
                        "column `{}` of the {connector} connector is {}, not {}",
                        field.name(),
                        p.data_type(),
                        field.data_type()
                    ),
                ));
            }
            Err(_) => {
                let names: Vec<_> = produced
                    .fields()
                    .iter()
                    .map(|f| f.name().as_str())
                    .collect();
                return Err(SqlError::invalid(
                    table.at,
                    format!(
                        "the {connector} connector has no column `{}`; it has {}",
                        field.name(),
                        names.join(", ")
                    ),
                ));
            }
        }
    }
    Ok(())
}
