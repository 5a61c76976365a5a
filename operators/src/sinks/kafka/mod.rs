//! The Kafka sink, with the option names of Flink's Kafka connector: rows
//! as `json`, `csv` or `raw` values, keys from `key.fields`, and
//! `sink.partitioner`. `sink.delivery-guarantee` = `exactly-once` writes in
//! Kafka transactions committed with checkpoints ([`transaction`]);
//! `at-least-once` flushes every record at each checkpoint barrier and fails
//! the job on any record the brokers did not take; `none` does not wait.
//! Dead letters go out through the same sink ([`KafkaSink::dead_letters`]).

mod encode;
mod producer;
mod transaction;

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use headwater_runtime::checkpoint::Restored;
use headwater_runtime::graph::OperatorFactory;
use headwater_runtime::time::without_event_time;
use headwater_runtime::{BoxError, Collector, Operator, OperatorContext};

pub use encode::{
    ERROR_HEADER, OFFSET_HEADER, OutRecord, PARTITION_HEADER, SOURCE_HEADER, TOPIC_HEADER,
    encode_rows,
};
use encode::{PartitionPicker, RecordShape};
use producer::{Deliveries, KafkaProducer};
use transaction::Transactional;
pub use transaction::is_client_setting;

use super::SinkSpec;
use crate::changelog::CHANGE_COLUMN;
use crate::decode_error::dead_letter_schema;
use crate::error::OperatorError;

/// What the sink promises (`sink.delivery-guarantee`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryGuarantee {
    /// Records are sent; a crash may lose those not yet delivered.
    None,
    /// Every record before a checkpoint is delivered before the checkpoint
    /// completes; a restore may send some twice.
    AtLeastOnce,
    /// Records are written in Kafka transactions committed when checkpoints
    /// complete: a `read_committed` consumer sees each exactly once.
    ExactlyOnce,
}

/// Which partition a record goes to (`sink.partitioner`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Partitioner {
    /// By the key's murmur2 hash, as Kafka's Java clients do (records
    /// without a key are spread).
    Default,
    /// Subtask `i` writes to partition `i % partitions`, as Flink's `fixed`.
    Fixed,
    /// Records go to the partitions in turn.
    RoundRobin,
}

/// How a row becomes a record's value (or key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowFormat {
    Json,
    Csv {
        delimiter: u8,
    },
    /// The one column's text or bytes.
    Raw,
}

/// Writes rows to a Kafka topic.
#[derive(Debug, Clone)]
pub struct KafkaSink {
    pub topic: String,
    /// librdkafka's settings: `bootstrap.servers` and any other.
    pub properties: Vec<(String, String)>,
    pub format: RowFormat,
    /// Columns that make the record's key (as JSON), none for no key.
    pub key_fields: Vec<String>,
    pub key_format: RowFormat,
    pub partitioner: Partitioner,
    pub delivery: DeliveryGuarantee,
    /// `sink.transactional-id-prefix`: exactly-once producers are
    /// `<prefix>-<subtask>`. Needed for exactly-once.
    pub transactional_id_prefix: Option<String>,
    /// Writes dead letters (their own key and value, the error in headers)
    /// rather than rows.
    pub dead_letters: bool,
    /// upsert-kafka: rows are upserts and deletes keyed by `key_fields` (the
    /// table's primary key); deletes are tombstones.
    pub upsert: bool,
    /// For upserts: whether values hold the key's columns too
    /// (`value.fields-include` = `ALL`, the default) or not (`EXCEPT_KEY`).
    pub value_includes_key: bool,
}

impl KafkaSink {
    /// JSON rows to `topic`, at least once.
    pub fn json(bootstrap_servers: &str, topic: &str) -> Self {
        KafkaSink {
            topic: topic.to_string(),
            properties: vec![("bootstrap.servers".into(), bootstrap_servers.into())],
            format: RowFormat::Json,
            key_fields: Vec::new(),
            key_format: RowFormat::Json,
            partitioner: Partitioner::Default,
            delivery: DeliveryGuarantee::AtLeastOnce,
            transactional_id_prefix: None,
            dead_letters: false,
            upsert: false,
            value_includes_key: true,
        }
    }

    /// upsert-kafka: JSON upserts keyed by `key` (the primary key), deletes
    /// as tombstones, at least once.
    pub fn upsert(bootstrap_servers: &str, topic: &str, key: &[&str]) -> Self {
        KafkaSink {
            upsert: true,
            ..KafkaSink::json(bootstrap_servers, topic)
        }
        .with_key(key, RowFormat::Json)
    }

    /// Dead letters to `topic`: each bad record's own key and value, with
    /// the error and where it was in headers. Exactly once when the job
    /// takes checkpoints (in transactions `<prefix>-<subtask>`), at least
    /// once when it does not.
    pub fn dead_letters(
        bootstrap_servers: &str,
        topic: &str,
        transactional_id_prefix: &str,
    ) -> Self {
        KafkaSink {
            dead_letters: true,
            ..KafkaSink::json(bootstrap_servers, topic)
        }
        .exactly_once(transactional_id_prefix)
    }

    /// Exactly once, in transactions `<prefix>-<subtask>`.
    pub fn exactly_once(mut self, transactional_id_prefix: &str) -> Self {
        self.delivery = DeliveryGuarantee::ExactlyOnce;
        self.transactional_id_prefix = Some(transactional_id_prefix.to_string());
        self
    }

    pub fn with_property(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        let key = key.into();
        self.properties.retain(|(k, _)| *k != key);
        self.properties.push((key, value.into()));
        self
    }

    pub fn with_format(mut self, format: RowFormat) -> Self {
        self.format = format;
        self
    }

    /// Keys records by these columns.
    pub fn with_key(mut self, fields: &[&str], format: RowFormat) -> Self {
        self.key_fields = fields.iter().map(|f| f.to_string()).collect();
        self.key_format = format;
        self
    }

    pub fn with_partitioner(mut self, partitioner: Partitioner) -> Self {
        self.partitioner = partitioner;
        self
    }

    pub fn with_delivery(mut self, delivery: DeliveryGuarantee) -> Self {
        self.delivery = delivery;
        self
    }
}

impl SinkSpec for KafkaSink {
    fn default_name(&self) -> String {
        if self.upsert {
            "upsert_kafka_sink".into()
        } else if self.dead_letters {
            "kafka_dead_letters".into()
        } else {
            "kafka_sink".into()
        }
    }

    fn factory(&self, schema: &SchemaRef) -> Result<OperatorFactory, OperatorError> {
        let rows = without_event_time_schema(schema);
        let shape = if self.dead_letters {
            if rows.fields() != dead_letter_schema().fields() {
                return Err(OperatorError::Config(
                    "a dead-letter sink takes a source's dead letters".into(),
                ));
            }
            RecordShape::DeadLetters
        } else if self.upsert {
            let change = rows.index_of(CHANGE_COLUMN).ok();
            let columns: Vec<usize> = (0..rows.fields().len())
                .filter(|&i| Some(i) != change)
                .collect();
            let mut key_columns = Vec::new();
            for name in &self.key_fields {
                key_columns.push(rows.index_of(name).map_err(|_| {
                    OperatorError::Config(format!(
                        "the primary key names `{name}`, which the sink's rows do not have"
                    ))
                })?);
            }
            if key_columns.is_empty() {
                return Err(OperatorError::Config(
                    "an upsert-kafka sink needs a key: PRIMARY KEY (..) NOT ENFORCED".into(),
                ));
            }
            let value_columns: Vec<usize> = columns
                .into_iter()
                .filter(|i| self.value_includes_key || !key_columns.contains(i))
                .collect();
            if self.format == RowFormat::Raw && value_columns.len() != 1 {
                return Err(OperatorError::Config(
                    "the 'raw' value format writes one column".into(),
                ));
            }
            if self.key_format == RowFormat::Raw && key_columns.len() != 1 {
                return Err(OperatorError::Config("a 'raw' key is one column".into()));
            }
            RecordShape::Upsert {
                key_columns,
                key_format: self.key_format,
                value_columns,
                value_format: self.format,
                change,
            }
        } else {
            let mut key_columns = Vec::new();
            for name in &self.key_fields {
                key_columns.push(rows.index_of(name).map_err(|_| {
                    OperatorError::Config(format!(
                        "'key.fields' names `{name}`, which the sink's rows do not have"
                    ))
                })?);
            }
            if self.format == RowFormat::Raw && rows.fields().len() != 1 {
                return Err(OperatorError::Config(
                    "the 'raw' format writes one column: select only it".into(),
                ));
            }
            if self.key_format == RowFormat::Raw && key_columns.len() > 1 {
                return Err(OperatorError::Config(
                    "a 'raw' key is one column: give one 'key.fields'".into(),
                ));
            }
            RecordShape::Rows {
                format: self.format,
                key_columns,
                key_format: self.key_format,
            }
        };
        if self.delivery == DeliveryGuarantee::ExactlyOnce
            && self
                .transactional_id_prefix
                .as_deref()
                .is_none_or(|p| p.trim().is_empty())
        {
            return Err(OperatorError::Config(
                "exactly-once delivery needs 'sink.transactional-id-prefix', unique to this job"
                    .into(),
            ));
        }
        let spec = Arc::new(self.clone());
        Ok(Arc::new(move |subtask| {
            Ok(Box::new(KafkaWriter {
                spec: spec.clone(),
                shape: shape.clone(),
                picker: PartitionPicker::new(spec.partitioner, subtask.index),
                delivery: None,
            }) as Box<dyn Operator>)
        }))
    }
}

fn without_event_time_schema(schema: &SchemaRef) -> SchemaRef {
    let empty = RecordBatch::new_empty(schema.clone());
    without_event_time(&empty).schema()
}

/// How records reach the brokers.
enum Delivery {
    /// `none` or `at-least-once` (`wait`: flush at each barrier).
    Plain {
        producer: KafkaProducer,
        deliveries: Deliveries,
        wait: bool,
    },
    Transactional(Box<Transactional>),
}

struct KafkaWriter {
    spec: Arc<KafkaSink>,
    shape: RecordShape,
    picker: PartitionPicker,
    delivery: Option<Delivery>,
}

impl KafkaWriter {
    fn delivery(&mut self) -> Result<&mut Delivery, OperatorError> {
        self.delivery
            .as_mut()
            .ok_or_else(|| OperatorError::Config("the Kafka sink is not open".into()))
    }

    /// Plain delivery: waits until every record sent is delivered.
    async fn flush(&mut self) -> Result<(), OperatorError> {
        let topic = self.spec.topic.clone();
        if let Delivery::Plain {
            producer,
            deliveries,
            wait: true,
        } = self.delivery()?
        {
            producer::flush(producer, deliveries, &topic).await?;
        }
        Ok(())
    }
}

#[async_trait]
impl Operator for KafkaWriter {
    async fn open(&mut self, ctx: &mut OperatorContext) -> Result<(), BoxError> {
        let spec = self.spec.clone();
        let exactly_once = match (spec.delivery, ctx.checkpointing) {
            (DeliveryGuarantee::ExactlyOnce, true) => true,
            // Dead letters of a job without checkpoints: at least once.
            (DeliveryGuarantee::ExactlyOnce, false) if spec.dead_letters => false,
            (DeliveryGuarantee::ExactlyOnce, false) => {
                return Err(OperatorError::Config(format!(
                    "the exactly-once Kafka sink to topic {} commits with checkpoints, and this \
                     job takes none: give it a checkpoint directory (--checkpoint-dir)",
                    spec.topic
                ))
                .into());
            }
            _ => false,
        };
        let delivery = if exactly_once {
            let prefix = spec.transactional_id_prefix.as_deref().unwrap_or_default();
            Delivery::Transactional(Box::new(
                Transactional::open(&spec.topic, prefix, &spec.properties, ctx).await?,
            ))
        } else {
            let deliveries = Deliveries::default();
            // Kafka's Java partitioner, so keys land where Flink's would.
            let producer = producer::create(
                &spec.properties,
                &[
                    ("partitioner", "murmur2_random"),
                    ("enable.idempotence", "true"),
                ],
                &deliveries,
            )?;
            Delivery::Plain {
                producer,
                deliveries,
                wait: spec.delivery != DeliveryGuarantee::None,
            }
        };
        if spec.partitioner != Partitioner::Default {
            let producer = match &delivery {
                Delivery::Plain { producer, .. } => producer.clone(),
                Delivery::Transactional(t) => t.producer(),
            };
            self.picker.partitions = producer::partitions(&producer, &spec.topic).await?;
        }
        self.delivery = Some(delivery);
        Ok(())
    }

    async fn process_batch(
        &mut self,
        batch: RecordBatch,
        _: &mut OperatorContext,
        _: &mut dyn Collector,
    ) -> Result<(), BoxError> {
        let rows = without_event_time(&batch);
        let records = encode::encode(&rows, &self.shape, &mut self.picker)?;
        let topic = self.spec.topic.clone();
        match self.delivery()? {
            Delivery::Plain {
                producer,
                deliveries,
                ..
            } => {
                deliveries.check()?;
                for record in &records {
                    producer::send(producer, deliveries, &topic, record).await?;
                }
            }
            Delivery::Transactional(t) => t.write(records).await?,
        }
        Ok(())
    }

    async fn snapshot_state(
        &mut self,
        checkpoint: u64,
        _: &mut OperatorContext,
    ) -> Result<Option<Vec<u8>>, BoxError> {
        match self.delivery()? {
            // At least once: what came before the barrier is delivered
            // before the checkpoint can complete.
            Delivery::Plain { .. } => {
                self.flush().await?;
                Ok(None)
            }
            Delivery::Transactional(t) => Ok(Some(t.snapshot(checkpoint).await?)),
        }
    }

    async fn restore_state(
        &mut self,
        restored: Restored,
        _: &mut OperatorContext,
    ) -> Result<(), BoxError> {
        if let Delivery::Transactional(t) = self.delivery()? {
            t.restore(restored).await?;
        }
        Ok(())
    }

    async fn notify_checkpoint_complete(
        &mut self,
        checkpoint: u64,
        _: &mut OperatorContext,
    ) -> Result<(), BoxError> {
        if let Delivery::Transactional(t) = self.delivery()? {
            t.checkpoint_complete(checkpoint).await?;
        }
        Ok(())
    }

    async fn on_end_of_input(
        &mut self,
        _: &mut OperatorContext,
        _: &mut dyn Collector,
    ) -> Result<(), BoxError> {
        // A transaction is committed by the job's last checkpoint.
        Ok(self.flush().await?)
    }
}
