//! The librdkafka producer under both delivery modes: creating it, sending a
//! record (waiting while its queue is full), and running its blocking calls
//! off the async threads.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::client::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};

use super::encode::OutRecord;
use crate::error::OperatorError;

/// How long a blocking producer call (flush, a transaction step) may take.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(120);

/// Keeps the first record the brokers refused.
#[derive(Default, Clone)]
pub struct Deliveries {
    failure: Arc<Mutex<Option<String>>>,
}

impl Deliveries {
    /// The first refusal since the last [`Deliveries::clear`], as an error.
    pub fn check(&self) -> Result<(), OperatorError> {
        let failure = self.failure.lock().unwrap_or_else(|p| p.into_inner());
        match &*failure {
            Some(e) => Err(OperatorError::Config(e.clone())),
            None => Ok(()),
        }
    }
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, message)) = result {
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

pub type KafkaProducer = Arc<ThreadedProducer<Deliveries>>;

/// A producer with the user's `properties`, over `defaults`.
pub fn create(
    properties: &[(String, String)],
    defaults: &[(&str, &str)],
    deliveries: &Deliveries,
) -> Result<KafkaProducer, OperatorError> {
    let mut config = ClientConfig::new();
    for (key, value) in defaults {
        config.set(*key, *value);
    }
    for (key, value) in properties {
        config.set(key, value);
    }
    let producer: ThreadedProducer<Deliveries> = config
        .create_with_context(deliveries.clone())
        .map_err(|e| OperatorError::Config(format!("the Kafka sink's settings: {e}")))?;
    Ok(Arc::new(producer))
}

/// Runs a blocking call of the producer on a blocking thread.
pub async fn blocking<T: Send + 'static>(
    producer: &KafkaProducer,
    call: impl FnOnce(&ThreadedProducer<Deliveries>) -> T + Send + 'static,
) -> Result<T, OperatorError> {
    let producer = producer.clone();
    tokio::task::spawn_blocking(move || call(&producer))
        .await
        .map_err(|e| OperatorError::Config(format!("a Kafka producer call failed: {e}")))
}

/// The number of partitions of `topic`.
pub async fn partitions(producer: &KafkaProducer, topic: &str) -> Result<i32, OperatorError> {
    let name = topic.to_string();
    let count = blocking(producer, move |p| {
        p.client()
            .fetch_metadata(Some(&name), Duration::from_secs(30))
            .map(|m| {
                m.topics()
                    .first()
                    .map_or(0, |t| t.partitions().len() as i32)
            })
    })
    .await?
    .map_err(|e| {
        OperatorError::Config(format!(
            "the Kafka sink cannot read topic {topic}'s partitions: {e}"
        ))
    })?;
    if count == 0 {
        return Err(OperatorError::Config(format!(
            "topic {topic} has no partitions (does it exist?)"
        )));
    }
    Ok(count)
}

/// Sends one record, waiting while the producer's queue is full.
pub async fn send(
    producer: &KafkaProducer,
    deliveries: &Deliveries,
    topic: &str,
    record: &OutRecord,
) -> Result<(), OperatorError> {
    let headers = (!record.headers.is_empty()).then(|| {
        record
            .headers
            .iter()
            .fold(OwnedHeaders::new(), |headers, (key, value)| {
                headers.insert(Header {
                    key,
                    value: Some(value),
                })
            })
    });
    loop {
        let mut out = BaseRecord::<[u8], [u8], ()>::to(topic);
        if let Some(value) = &record.value {
            out = out.payload(value);
        }
        if let Some(key) = &record.key {
            out = out.key(key);
        }
        if let Some(p) = record.partition {
            out = out.partition(p);
        }
        if let Some(headers) = &headers {
            out = out.headers(headers.clone());
        }
        match producer.send(out) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                deliveries.check()?;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err((e, _)) => {
                return Err(OperatorError::Config(format!(
                    "the Kafka sink cannot send to topic {topic}: {e}"
                )));
            }
        }
    }
}

/// Waits until every record sent has been delivered (or refused).
pub async fn flush(
    producer: &KafkaProducer,
    deliveries: &Deliveries,
    topic: &str,
) -> Result<(), OperatorError> {
    blocking(producer, |p| p.flush(CALL_TIMEOUT))
        .await?
        .map_err(|e| {
            OperatorError::Config(format!(
                "the Kafka sink could not deliver its records to topic {topic}: {e}"
            ))
        })?;
    deliveries.check()
}
