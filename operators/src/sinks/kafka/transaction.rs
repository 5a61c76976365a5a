//! Exactly-once delivery: Kafka transactions committed with checkpoints.
//!
//! Each subtask has one transactional producer, `transactional.id` =
//! `<prefix>-<subtask>`. Records go into an open transaction. At a
//! checkpoint barrier the transaction is flushed (pre-commit) and it is
//! committed when the checkpoint completes. Records that arrive between the
//! barrier and the commit are held in memory and sent in the next
//! transaction: they belong to the next checkpoint.
//!
//! librdkafka cannot take over another producer's open transaction after a
//! crash (Flink's Java sink does, by reflection), and `init_transactions`
//! aborts it. So the checkpoint also holds the records of the transaction it
//! pre-committed (a write-ahead log of one checkpoint's output), and each
//! transaction commits a marker with its records: the offset of the consumer
//! group `<prefix>-<subtask>` on the topic's partition 0 is set to the
//! checkpoint's number (with a tag of the job's lineage). On restore the
//! subtask fences its id (aborting a crashed run's open transaction, and any
//! zombie still writing), reads the marker, and, if the restored checkpoint's
//! transaction did not commit, sends its records again in a new transaction
//! with the marker. Committing is thus idempotent, and exactly once holds.
//!
//! After a rescale, old subtask `j`'s id and pending records are taken over by
//! new subtask `j % parallelism`.

use std::sync::Arc;

use futures::FutureExt;
use headwater_runtime::OperatorContext;
use headwater_runtime::checkpoint::Restored;
use headwater_runtime::metrics::Counter;
use rand::Rng;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerGroupMetadata};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use super::encode::OutRecord;
use super::producer::{self, CALL_TIMEOUT, Deliveries, KafkaProducer};
use crate::error::OperatorError;

/// Bits of a marker's offset that hold the checkpoint; the lineage tag is above.
const CHECKPOINT_BITS: u32 = 40;
const LINEAGE_MASK: u32 = (1 << 22) - 1;

/// A marker offset: the lineage tag and the checkpoint.
fn marker(lineage: u32, checkpoint: u64) -> i64 {
    (i64::from(lineage & LINEAGE_MASK) << CHECKPOINT_BITS)
        | (checkpoint & ((1 << CHECKPOINT_BITS) - 1)) as i64
}

/// Whether the transaction of `checkpoint` committed, given the marker read.
fn committed(read: Option<i64>, lineage: u32, checkpoint: u64) -> bool {
    read.is_some_and(|offset| {
        offset >> CHECKPOINT_BITS == i64::from(lineage & LINEAGE_MASK)
            && (offset & ((1 << CHECKPOINT_BITS) - 1)) as u64 >= checkpoint
    })
}

/// What a checkpoint holds for one subtask.
#[derive(Serialize)]
struct SavedRef<'a> {
    lineage: u32,
    pending: Option<(u64, &'a [OutRecord])>,
}

#[derive(Deserialize)]
struct Saved {
    lineage: u32,
    pending: Option<(u64, Vec<OutRecord>)>,
}

/// One transactional id: its producer and its marker group.
struct Txn {
    id: String,
    producer: KafkaProducer,
    deliveries: Deliveries,
    group: Arc<ConsumerGroupMetadata>,
}

/// Says what a failed transaction step means, naming the transactional id.
fn txn_error(id: &str, step: &str, e: KafkaError) -> OperatorError {
    let fenced = matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::Fenced
                | RDKafkaErrorCode::ProducerFenced
                | RDKafkaErrorCode::InvalidProducerEpoch
        )
    );
    if fenced {
        OperatorError::Config(format!(
            "the Kafka sink was fenced: another producer took transactional id `{id}` over \
             (a second job with the same 'sink.transactional-id-prefix'?), so this one stops"
        ))
    } else {
        OperatorError::Config(format!(
            "the Kafka sink's transaction `{id}` failed to {step}: {e}"
        ))
    }
}

impl Txn {
    /// A producer for `id`, registered with the brokers: this fences every
    /// earlier producer of the id and aborts its open transaction.
    async fn open(properties: &[(String, String)], id: String) -> Result<Txn, OperatorError> {
        let deliveries = Deliveries::default();
        let producer = producer::create(
            properties,
            &[("partitioner", "murmur2_random"), ("transactional.id", &id)],
            &deliveries,
        )?;
        let group = {
            let consumer: BaseConsumer = marker_group_config(properties, &id)
                .create()
                .map_err(|e| OperatorError::Config(format!("the Kafka sink's settings: {e}")))?;
            Arc::new(consumer.group_metadata().ok_or_else(|| {
                OperatorError::Config(format!("no group metadata for group `{id}`"))
            })?)
        };
        producer::blocking(&producer, |p| p.init_transactions(CALL_TIMEOUT))
            .await?
            .map_err(|e| txn_error(&id, "start", e))?;
        Ok(Txn {
            id,
            producer,
            deliveries,
            group,
        })
    }

    /// The marker of this id's group on `topic`, as committed.
    async fn read_marker(
        &self,
        properties: &[(String, String)],
        topic: &str,
    ) -> Result<Option<i64>, OperatorError> {
        let config = marker_group_config(properties, &self.id);
        let topic = topic.to_string();
        let id = self.id.clone();
        tokio::task::spawn_blocking(move || {
            let consumer: BaseConsumer = config.create()?;
            let mut partitions = TopicPartitionList::new();
            partitions.add_partition(&topic, 0);
            let read = consumer.committed_offsets(partitions, CALL_TIMEOUT)?;
            Ok::<_, KafkaError>(read.elements().first().and_then(|e| match e.offset() {
                Offset::Offset(o) => Some(o),
                _ => None,
            }))
        })
        .await
        .map_err(|e| OperatorError::Config(format!("reading a marker failed: {e}")))?
        .map_err(|e| txn_error(&id, "read its commit marker", e))
    }

    fn begin(&self) -> Result<(), OperatorError> {
        self.producer
            .begin_transaction()
            .map_err(|e| txn_error(&self.id, "begin", e))
    }

    async fn send_all(&self, topic: &str, records: &[OutRecord]) -> Result<(), OperatorError> {
        for record in records {
            producer::send(&self.producer, &self.deliveries, topic, record).await?;
        }
        Ok(())
    }

    /// Adds the marker of `checkpoint` and waits until every record is written.
    async fn pre_commit(
        &self,
        topic: &str,
        lineage: u32,
        checkpoint: u64,
    ) -> Result<(), OperatorError> {
        let mut offsets = TopicPartitionList::new();
        offsets
            .add_partition_offset(topic, 0, Offset::Offset(marker(lineage, checkpoint)))
            .map_err(|e| txn_error(&self.id, "mark its checkpoint", e))?;
        let group = self.group.clone();
        producer::blocking(&self.producer, move |p| {
            p.send_offsets_to_transaction(&offsets, &group, CALL_TIMEOUT)
        })
        .await?
        .map_err(|e| txn_error(&self.id, "mark its checkpoint", e))?;
        producer::blocking(&self.producer, |p| p.flush(CALL_TIMEOUT))
            .await?
            .map_err(|e| txn_error(&self.id, "flush", e))?;
        self.deliveries.check()
    }

    async fn commit(&self) -> Result<(), OperatorError> {
        producer::blocking(&self.producer, |p| p.commit_transaction(CALL_TIMEOUT))
            .await?
            .map_err(|e| txn_error(&self.id, "commit", e))
    }

    /// Commits `pending` (the records of `checkpoint`) unless its marker says
    /// it committed already.
    async fn recover(
        &self,
        properties: &[(String, String)],
        topic: &str,
        lineage: u32,
        (checkpoint, records): (u64, Vec<OutRecord>),
    ) -> Result<usize, OperatorError> {
        let read = self.read_marker(properties, topic).await?;
        if committed(read, lineage, checkpoint) {
            return Ok(0);
        }
        tracing::warn!(
            transactional_id = %self.id,
            checkpoint,
            records = records.len(),
            "the transaction of the restored checkpoint did not commit before the crash: \
             its records are sent again, in a new transaction"
        );
        self.begin()?;
        self.send_all(topic, &records).await?;
        self.pre_commit(topic, lineage, checkpoint).await?;
        self.commit().await?;
        Ok(records.len())
    }
}

/// Fences the ids `<prefix>-j` above the parallelism (`j` from it up to the
/// max parallelism, those with `j % parallelism == subtask`): a run at a
/// higher parallelism that crashed before its first checkpoint left them,
/// perhaps with an open transaction that would hold `read_committed`
/// readers back until the broker's timeout. Registering each id aborts its
/// transaction. Ids never used cost one round trip each.
async fn fence_beyond(
    properties: &[(String, String)],
    prefix: &str,
    subtask: usize,
    parallelism: usize,
    max_parallelism: usize,
) -> Result<(), OperatorError> {
    let ids: Vec<String> = (parallelism..max_parallelism.max(parallelism))
        .filter(|j| j % parallelism == subtask)
        .map(|j| format!("{prefix}-{j}"))
        .collect();
    for chunk in ids.chunks(16) {
        let fenced = chunk.iter().map(|id| {
            let mut config = ClientConfig::new();
            for (key, value) in properties {
                config.set(key, value);
            }
            config.set("transactional.id", id);
            let id = id.clone();
            tokio::task::spawn_blocking(move || {
                let producer: BaseProducer = config.create()?;
                producer.init_transactions(CALL_TIMEOUT)
            })
            .map(move |joined| match joined {
                Ok(result) => result.map_err(|e| txn_error(&id, "be fenced", e)),
                Err(e) => Err(OperatorError::Config(format!("fencing `{id}` failed: {e}"))),
            })
        });
        for result in futures::future::join_all(fenced).await {
            result?;
        }
    }
    Ok(())
}

/// A consumer of the marker group `group` (never subscribed): for its group
/// metadata, and to read the committed marker.
fn marker_group_config(properties: &[(String, String)], group: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    for (key, value) in properties.iter().filter(|(k, _)| is_client_setting(k)) {
        config.set(key, value);
    }
    config
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed");
    config
}

/// Settings a consumer and a producer share (brokers, security, timeouts):
/// one's own settings would only make the other warn.
pub fn is_client_setting(key: &str) -> bool {
    key == "bootstrap.servers"
        || key == "client.id"
        || key.starts_with("security.")
        || key.starts_with("ssl.")
        || key.starts_with("sasl.")
        || key.starts_with("socket.")
        || key.starts_with("broker.")
        || key.starts_with("reconnect.")
        || key.starts_with("metadata.")
}

/// The exactly-once delivery of one subtask.
pub struct Transactional {
    topic: String,
    prefix: String,
    properties: Vec<(String, String)>,
    subtask: usize,
    parallelism: usize,
    txn: Txn,
    /// Tags this job's markers, so that a marker a different job left under
    /// the same prefix is never taken for this job's commit.
    lineage: u32,
    in_txn: bool,
    /// The records of the open transaction.
    txn_records: Vec<OutRecord>,
    /// Set once the open transaction is pre-committed for this checkpoint.
    covers: Option<u64>,
    /// Records that came after that barrier.
    held: Vec<OutRecord>,
    recovered: Counter,
    commits: Counter,
}

impl Transactional {
    pub async fn open(
        topic: &str,
        prefix: &str,
        properties: &[(String, String)],
        ctx: &OperatorContext,
    ) -> Result<Self, OperatorError> {
        let subtask = ctx.subtask.index;
        let txn = Txn::open(properties, format!("{prefix}-{subtask}")).await?;
        fence_beyond(
            properties,
            prefix,
            subtask,
            ctx.subtask.parallelism,
            ctx.subtask.max_parallelism as usize,
        )
        .await?;
        Ok(Transactional {
            topic: topic.to_string(),
            prefix: prefix.to_string(),
            properties: properties.to_vec(),
            subtask,
            parallelism: ctx.subtask.parallelism,
            txn,
            lineage: rand::rng().random::<u32>() & LINEAGE_MASK,
            in_txn: false,
            txn_records: Vec::new(),
            covers: None,
            held: Vec::new(),
            recovered: ctx.metrics.counter("records_recovered"),
            commits: ctx.metrics.counter("transactions_committed"),
        })
    }

    /// The producer (for metadata).
    pub fn producer(&self) -> KafkaProducer {
        self.txn.producer.clone()
    }

    /// Commits what the restored checkpoint pre-committed, for this subtask
    /// and for the old subtasks it takes over.
    pub async fn restore(&mut self, restored: Restored) -> Result<(), OperatorError> {
        for state in restored.states {
            let index = state.index;
            if index % self.parallelism != self.subtask {
                continue;
            }
            let saved = match &state.bytes {
                Some(bytes) => Some(postcard::from_bytes::<Saved>(bytes).map_err(|e| {
                    OperatorError::Config(format!(
                        "the Kafka sink's checkpoint state of subtask {index} is damaged: {e}"
                    ))
                })?),
                None => None,
            };
            let (lineage, pending) = match saved {
                Some(s) => (s.lineage, s.pending),
                None => (self.lineage, None),
            };
            if index == self.subtask {
                self.lineage = lineage;
                if let Some(pending) = pending {
                    let n = self
                        .txn
                        .recover(&self.properties, &self.topic, lineage, pending)
                        .await?;
                    self.recovered.add(n as u64);
                }
            } else {
                // Fences the old id, then commits its records if need be.
                let old = Txn::open(&self.properties, format!("{}-{index}", self.prefix)).await?;
                if let Some(pending) = pending {
                    let n = old
                        .recover(&self.properties, &self.topic, lineage, pending)
                        .await?;
                    self.recovered.add(n as u64);
                }
            }
        }
        Ok(())
    }

    pub async fn write(&mut self, records: Vec<OutRecord>) -> Result<(), OperatorError> {
        if self.covers.is_some() {
            self.held.extend(records);
            return Ok(());
        }
        self.txn.deliveries.check()?;
        if !self.in_txn && !records.is_empty() {
            self.txn.begin()?;
            self.in_txn = true;
        }
        self.txn.send_all(&self.topic, &records).await?;
        self.txn_records.extend(records);
        Ok(())
    }

    /// Pre-commits the open transaction for `checkpoint`; returns the state
    /// the checkpoint keeps.
    pub async fn snapshot(&mut self, checkpoint: u64) -> Result<Vec<u8>, OperatorError> {
        if !self.held.is_empty() {
            // The last barrier's checkpoint has not completed (or it failed):
            // the open transaction covers this one too.
            let held = std::mem::take(&mut self.held);
            self.txn.send_all(&self.topic, &held).await?;
            self.txn_records.extend(held);
        }
        let pending = if self.in_txn {
            self.txn
                .pre_commit(&self.topic, self.lineage, checkpoint)
                .await?;
            self.covers = Some(checkpoint);
            Some((checkpoint, self.txn_records.as_slice()))
        } else {
            None
        };
        let saved = SavedRef {
            lineage: self.lineage,
            pending,
        };
        postcard::to_allocvec(&saved)
            .map_err(|e| OperatorError::Config(format!("saving the Kafka sink's state: {e}")))
    }

    /// Checkpoint `checkpoint` is complete: commits the transaction it covers.
    pub async fn checkpoint_complete(&mut self, checkpoint: u64) -> Result<(), OperatorError> {
        let Some(covers) = self.covers else {
            return Ok(());
        };
        if covers > checkpoint {
            return Ok(());
        }
        self.txn.commit().await?;
        self.commits.add(1);
        self.covers = None;
        self.in_txn = false;
        self.txn_records.clear();
        let held = std::mem::take(&mut self.held);
        if !held.is_empty() {
            self.write(held).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_tell_commits_of_this_lineage_only() {
        let m = marker(5, 42);
        assert!(m > 0);
        assert!(committed(Some(m), 5, 42));
        assert!(
            committed(Some(m), 5, 41),
            "a later commit covers earlier ones"
        );
        assert!(!committed(Some(m), 5, 43));
        assert!(!committed(Some(m), 6, 42), "another job's marker");
        assert!(!committed(None, 5, 1));
        assert!(committed(
            Some(marker(LINEAGE_MASK, (1 << 40) - 1)),
            LINEAGE_MASK,
            7
        ));
    }
}
