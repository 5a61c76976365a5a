//! The Kafka sink, with the option names of Flink's Kafka connector: rows
//! as `json`, `csv` or `raw` values, keys from `key.fields`, and
//! `sink.partitioner`. `sink.delivery-guarantee` = `at-least-once` flushes
//! every record at each checkpoint barrier and fails the job on any record
//! the brokers did not take; `none` does not wait.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow::array::{Array, RecordBatch};
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use headwater_runtime::graph::OperatorFactory;
use headwater_runtime::time::without_event_time;
use headwater_runtime::{BoxError, Collector, Operator, OperatorContext};
use rdkafka::ClientConfig;
use rdkafka::client::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};

use super::SinkSpec;
use crate::error::OperatorError;

/// What the sink promises (`sink.delivery-guarantee`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryGuarantee {
    /// Records are sent; a crash may lose those not yet delivered.
    None,
    /// Every record before a checkpoint is delivered before the checkpoint
    /// completes; a restore may send some twice.
    AtLeastOnce,
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
        }
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
        "kafka_sink".into()
    }

    fn factory(&self, schema: &SchemaRef) -> Result<OperatorFactory, OperatorError> {
        let rows = without_event_time_schema(schema);
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
        let spec = Arc::new(self.clone());
        Ok(Arc::new(move |_| {
            Ok(Box::new(KafkaWriter {
                spec: spec.clone(),
                key_columns: key_columns.clone(),
                producer: None,
                failure: Arc::default(),
                partitions: 0,
                subtask: 0,
                next_partition: 0,
            }) as Box<dyn Operator>)
        }))
    }
}

fn without_event_time_schema(schema: &SchemaRef) -> SchemaRef {
    let empty = RecordBatch::new_empty(schema.clone());
    without_event_time(&empty).schema()
}

/// Keeps the first record the brokers refused.
#[derive(Default, Clone)]
struct Deliveries {
    failure: Arc<Mutex<Option<String>>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, message)) = result {
            use rdkafka::message::Message;
            let mut failure = self.failure.lock().unwrap_or_else(|p| p.into_inner());
            failure.get_or_insert_with(|| {
                format!(
                    "the brokers did not take a record for topic {}, partition {}: {e}",
                    message.topic(),
                    message.partition()
                )
            });
        }
    }
}

struct KafkaWriter {
    spec: Arc<KafkaSink>,
    key_columns: Vec<usize>,
    producer: Option<ThreadedProducer<Deliveries>>,
    failure: Arc<Mutex<Option<String>>>,
    /// The topic's partitions (for `fixed` and `round-robin`).
    partitions: i32,
    subtask: usize,
    next_partition: i32,
}

const FLUSH_TIMEOUT: Duration = Duration::from_secs(120);

impl KafkaWriter {
    fn producer(&self) -> Result<&ThreadedProducer<Deliveries>, OperatorError> {
        self.producer
            .as_ref()
            .ok_or_else(|| OperatorError::Config("the Kafka sink is not open".into()))
    }

    fn check_deliveries(&self) -> Result<(), OperatorError> {
        let failure = self.failure.lock().unwrap_or_else(|p| p.into_inner());
        match &*failure {
            Some(e) => Err(OperatorError::Config(e.clone())),
            None => Ok(()),
        }
    }

    /// Waits until every record sent has been delivered (or refused).
    async fn flush(&mut self) -> Result<(), BoxError> {
        if self.spec.delivery == DeliveryGuarantee::None {
            return Ok(());
        }
        let Some(producer) = self.producer.take() else {
            return Ok(());
        };
        let (producer, flushed) = tokio::task::spawn_blocking(move || {
            let flushed = producer.flush(FLUSH_TIMEOUT);
            (producer, flushed)
        })
        .await?;
        self.producer = Some(producer);
        flushed.map_err(|e| {
            OperatorError::Config(format!(
                "the Kafka sink could not deliver its records to topic {}: {e}",
                self.spec.topic
            ))
        })?;
        self.check_deliveries()?;
        Ok(())
    }

    fn partition(&mut self) -> Option<i32> {
        match self.spec.partitioner {
            Partitioner::Default => None,
            Partitioner::Fixed if self.partitions > 0 => {
                Some((self.subtask % self.partitions as usize) as i32)
            }
            Partitioner::RoundRobin if self.partitions > 0 => {
                let p = self.next_partition;
                self.next_partition = (p + 1) % self.partitions;
                Some(p)
            }
            _ => None,
        }
    }

    /// Sends one record, waiting while the producer's queue is full.
    async fn send(&mut self, key: Option<&[u8]>, value: &[u8]) -> Result<(), BoxError> {
        let partition = self.partition();
        let topic = self.spec.topic.clone();
        loop {
            let mut record = BaseRecord::<[u8], [u8], ()>::to(&topic).payload(value);
            if let Some(key) = key {
                record = record.key(key);
            }
            if let Some(p) = partition {
                record = record.partition(p);
            }
            match self.producer()?.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    self.check_deliveries()?;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err((e, _)) => {
                    return Err(OperatorError::Config(format!(
                        "the Kafka sink cannot send to topic {topic}: {e}"
                    ))
                    .into());
                }
            }
        }
    }
}

/// Each row of `batch` in `format`, as bytes.
pub fn encode_rows(batch: &RecordBatch, format: RowFormat) -> Result<Vec<Vec<u8>>, OperatorError> {
    if batch.num_rows() == 0 {
        return Ok(Vec::new());
    }
    match format {
        RowFormat::Raw => {
            let column =
                arrow::compute::cast(batch.column(0), &arrow::datatypes::DataType::Binary)?;
            let column = column
                .as_any()
                .downcast_ref::<arrow::array::BinaryArray>()
                .ok_or_else(|| OperatorError::Config("a raw column is not bytes".into()))?;
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

#[async_trait]
impl Operator for KafkaWriter {
    async fn open(&mut self, ctx: &mut OperatorContext) -> Result<(), BoxError> {
        self.subtask = ctx.subtask.index;
        let mut config = ClientConfig::new();
        // Kafka's Java partitioner, so keys land where Flink's would.
        config.set("partitioner", "murmur2_random");
        config.set("enable.idempotence", "true");
        for (key, value) in &self.spec.properties {
            config.set(key, value);
        }
        let context = Deliveries {
            failure: self.failure.clone(),
        };
        let producer: ThreadedProducer<Deliveries> = config
            .create_with_context(context)
            .map_err(|e| OperatorError::Config(format!("the Kafka sink's settings: {e}")))?;
        if self.spec.partitioner != Partitioner::Default {
            let topic = self.spec.topic.clone();
            let (producer, count) = tokio::task::spawn_blocking(move || {
                let count = producer
                    .client()
                    .fetch_metadata(Some(&topic), Duration::from_secs(30))
                    .map(|m| {
                        m.topics()
                            .first()
                            .map_or(0, |t| t.partitions().len() as i32)
                    });
                (producer, count)
            })
            .await?;
            self.partitions = count.map_err(|e| {
                OperatorError::Config(format!(
                    "the Kafka sink cannot read topic {}'s partitions: {e}",
                    self.spec.topic
                ))
            })?;
            if self.partitions == 0 {
                return Err(OperatorError::Config(format!(
                    "topic {} has no partitions (does it exist?)",
                    self.spec.topic
                ))
                .into());
            }
            self.producer = Some(producer);
        } else {
            self.producer = Some(producer);
        }
        Ok(())
    }

    async fn process_batch(
        &mut self,
        batch: RecordBatch,
        _: &mut OperatorContext,
        _: &mut dyn Collector,
    ) -> Result<(), BoxError> {
        self.check_deliveries()?;
        let rows = without_event_time(&batch);
        let values = encode_rows(&rows, self.spec.format)?;
        let keys = if self.key_columns.is_empty() {
            None
        } else {
            Some(encode_rows(
                &rows.project(&self.key_columns)?,
                self.spec.key_format,
            )?)
        };
        for (i, value) in values.iter().enumerate() {
            let key = keys.as_ref().map(|k| k[i].as_slice());
            self.send(key, value).await?;
        }
        Ok(())
    }

    async fn snapshot_state(
        &mut self,
        _checkpoint: u64,
        _: &mut OperatorContext,
    ) -> Result<Option<Vec<u8>>, BoxError> {
        // At least once: what came before the barrier is delivered before
        // the checkpoint can complete.
        self.flush().await?;
        Ok(None)
    }

    async fn on_end_of_input(
        &mut self,
        _: &mut OperatorContext,
        _: &mut dyn Collector,
    ) -> Result<(), BoxError> {
        self.flush().await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;

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
}
