//! One subtask's Kafka reader: its partitions, the offset of the next
//! record to send from each (what checkpoints store), and where a bounded
//! read ends. Records wait in the reader until they are decoded and sent, so
//! a `next` that is cancelled loses nothing.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::FutureExt;
use headwater_runtime::checkpoint::Restored;
use headwater_runtime::metrics::Counter;
use headwater_runtime::{BoxError, OperatorContext, Source, SourcePoll};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use tokio::time::Instant;

use super::KafkaSource;
use super::assign::{TopicPartition, owner};
use super::records::{Decoded, Record, RecordDecoder};
use super::resolve::{ResolveError, Resolved, SourceConsumer, SourceContext, discover, resolve};
use crate::decode_error::{
    BadRecord, DEAD_LETTER_OUTPUT, DECODE_ERRORS_COUNTER, DecodeErrorPolicy, dead_letters_batch,
};
use crate::error::OperatorError;

/// What a checkpoint holds of a reader.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
struct Position {
    /// The offset of the next record to send, by partition.
    next: Vec<(TopicPartition, i64)>,
    /// Where each partition ends, for a bounded read.
    stops: Vec<(TopicPartition, i64)>,
    /// Partitions read to their end.
    finished: Vec<TopicPartition>,
}

/// A decoded record or run of rows, waiting to be sent.
enum Ready {
    Rows(TopicPartition, arrow::array::RecordBatch, i64),
    Bad(TopicPartition, BadRecord, i64),
}

pub(super) struct KafkaReader {
    spec: Arc<KafkaSource>,
    index: usize,
    parallelism: usize,
    consumer: Option<Arc<SourceConsumer>>,
    /// Set once the partitions are resolved and assigned.
    started: bool,
    /// The next offset to send, by partition this subtask reads.
    next: BTreeMap<TopicPartition, i64>,
    stops: BTreeMap<TopicPartition, i64>,
    finished: BTreeSet<TopicPartition>,
    /// From the checkpoint restored, until the reader starts.
    restored: Option<Position>,
    pending: BTreeMap<TopicPartition, Vec<Record>>,
    pending_count: usize,
    ready: VecDeque<Ready>,
    decoder: RecordDecoder,
    /// The splits changed (started, discovered, finished): say so.
    splits_changed: bool,
    topic_ids: HashMap<String, u64>,
    next_discovery: Option<Instant>,
    /// Offsets taken at recent checkpoints, to commit when they complete.
    taken: VecDeque<(u64, Vec<(TopicPartition, i64)>)>,
    errors: Counter,
    /// When the last warning about the brokers was logged.
    warned_at: Option<Instant>,
}

impl KafkaReader {
    pub fn new(
        spec: Arc<KafkaSource>,
        index: usize,
        parallelism: usize,
    ) -> Result<Self, OperatorError> {
        spec.validate()?;
        let decoder = spec.decoder()?;
        Ok(KafkaReader {
            spec,
            index,
            parallelism,
            consumer: None,
            started: false,
            next: BTreeMap::new(),
            stops: BTreeMap::new(),
            finished: BTreeSet::new(),
            restored: None,
            pending: BTreeMap::new(),
            pending_count: 0,
            ready: VecDeque::new(),
            decoder,
            splits_changed: false,
            topic_ids: HashMap::new(),
            next_discovery: None,
            taken: VecDeque::new(),
            errors: Counter::default(),
            warned_at: None,
        })
    }

    fn consumer(&self) -> Result<Arc<SourceConsumer>, OperatorError> {
        self.consumer
            .clone()
            .ok_or_else(|| OperatorError::Config("the Kafka source is not open".into()))
    }

    fn owns(&self, tp: &TopicPartition) -> bool {
        owner(tp, self.parallelism) == self.index
    }

    /// The split id of a partition, for its watermark.
    fn split_id(&mut self, tp: &TopicPartition) -> u64 {
        let next = self.topic_ids.len() as u64;
        let topic = *self.topic_ids.entry(tp.topic.clone()).or_insert(next);
        (topic << 32) | u64::from(tp.partition as u32)
    }

    /// The partitions that still hold the watermark: those not finished,
    /// and finished ones whose last rows are still to be sent.
    fn splits(&mut self) -> Vec<u64> {
        let active: Vec<TopicPartition> = self
            .next
            .keys()
            .filter(|tp| !self.finished.contains(*tp) || self.unsent(tp))
            .cloned()
            .collect();
        active.iter().map(|tp| self.split_id(tp)).collect()
    }

    /// Whether records of `tp` wait to be decoded or sent.
    fn unsent(&self, tp: &TopicPartition) -> bool {
        self.pending.contains_key(tp)
            || self.ready.iter().any(|r| match r {
                Ready::Rows(t, ..) | Ready::Bad(t, ..) => t == tp,
            })
    }

    /// After the rows of `tp` were taken from `ready`: a finished partition
    /// with nothing left no longer counts for the watermark.
    fn sent_from(&mut self, tp: &TopicPartition) {
        if self.finished.contains(tp) && !self.unsent(tp) {
            self.splits_changed = true;
        }
    }

    /// Logs trouble with the brokers, at most every 10 s: librdkafka retries.
    fn warn(&mut self, what: &str) {
        let now = Instant::now();
        if self
            .warned_at
            .is_none_or(|at| now.duration_since(at) >= Duration::from_secs(10))
        {
            self.warned_at = Some(now);
            tracing::warn!(
                subtask = self.index,
                "the Kafka source: {what}; it keeps retrying"
            );
        }
    }

    /// Finds this subtask's partitions, where to read each from and where
    /// to stop, and assigns them to the consumer; retried until the brokers
    /// answer.
    /// Resolves the partitions and offsets to read, and assigns them. Safe to
    /// cancel (a checkpoint barrier drops `next`): nothing changes before the
    /// last await, so the restored position stays what a checkpoint takes.
    async fn start(&mut self) -> Result<(), BoxError> {
        let consumer = self.consumer()?;
        let restored = self.restored.clone();
        let resolved: Resolved = loop {
            let spec = self.spec.clone();
            let consumer = consumer.clone();
            let (index, parallelism) = (self.index, self.parallelism);
            let stored = restored.as_ref().map(|p| {
                (
                    p.next.iter().cloned().collect::<BTreeMap<_, _>>(),
                    p.stops.iter().cloned().collect::<BTreeMap<_, _>>(),
                )
            });
            let attempt = tokio::task::spawn_blocking(move || {
                resolve(&consumer, &spec, index, parallelism, stored.as_ref())
            })
            .await?;
            match attempt {
                Ok(resolved) => break resolved,
                Err(ResolveError::Fatal(e)) => return Err(e.into()),
                Err(ResolveError::Retry(e)) => {
                    self.warn(&format!("cannot read the topics' partitions: {e}"));
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        };
        let finished: BTreeSet<TopicPartition> = restored
            .map(|p| p.finished.into_iter().filter(|tp| self.owns(tp)).collect())
            .unwrap_or_default();
        let mut assignment = TopicPartitionList::new();
        for (tp, &offset) in &resolved.next {
            let done =
                finished.contains(tp) || resolved.stops.get(tp).is_some_and(|&stop| offset >= stop);
            if !done {
                assignment.add_partition_offset(&tp.topic, tp.partition, Offset::Offset(offset))?;
            }
        }
        consumer.assign(&assignment)?;
        self.restored = None;
        self.finished = finished;
        for (tp, &offset) in &resolved.next {
            if resolved.stops.get(tp).is_some_and(|&stop| offset >= stop) {
                self.finished.insert(tp.clone());
            }
        }
        self.next = resolved.next;
        self.stops = resolved.stops;
        self.started = true;
        self.splits_changed = true;
        self.next_discovery = self.discovery_due();
        tracing::info!(
            subtask = self.index,
            partitions = self.next.len(),
            "the Kafka source reads its partitions"
        );
        Ok(())
    }

    fn discovery_due(&self) -> Option<Instant> {
        if self.spec.bounded.is_some() {
            return None;
        }
        self.spec.discovery_interval.map(|i| Instant::now() + i)
    }

    /// Looks for partitions (and topics) new since the reader started, and
    /// reads the ones it owns from their earliest offsets.
    async fn discover(&mut self) -> Result<(), BoxError> {
        self.next_discovery = self.discovery_due();
        let consumer = self.consumer()?;
        let spec = self.spec.clone();
        let (index, parallelism) = (self.index, self.parallelism);
        let known: BTreeSet<TopicPartition> = self.next.keys().cloned().collect();
        let found = tokio::task::spawn_blocking(move || {
            discover(&consumer, &spec, index, parallelism, &known)
        })
        .await?;
        let found = match found {
            Ok(found) => found,
            Err(e) => {
                self.warn(&format!("cannot look for new partitions: {e}"));
                return Ok(());
            }
        };
        if found.is_empty() {
            return Ok(());
        }
        let mut assignment = TopicPartitionList::new();
        for (tp, offset) in &found {
            assignment.add_partition_offset(&tp.topic, tp.partition, Offset::Offset(*offset))?;
        }
        if let Err(e) = self.consumer()?.incremental_assign(&assignment) {
            self.warn(&format!("cannot read the new partitions yet: {e}"));
            return Ok(());
        }
        for (tp, offset) in found {
            tracing::info!(
                subtask = self.index,
                topic = %tp.topic,
                partition = tp.partition,
                "the Kafka source reads a new partition"
            );
            self.next.insert(tp, offset);
        }
        self.splits_changed = true;
        Ok(())
    }

    /// Takes what the consumer has: waits up to 100 ms for a first record,
    /// then takes what is there without waiting, up to a batch.
    async fn gather(&mut self) -> Result<(), BoxError> {
        let consumer = self.consumer()?;
        let first = tokio::time::timeout(Duration::from_millis(100), consumer.recv()).await;
        let Ok(first) = first else {
            // Nothing new: a bounded partition may have ended in transaction
            // markers, which are not records.
            return self.reached_end(None);
        };
        self.take(first.map(|m| m.detach()))?;
        while self.pending_count < self.spec.batch_size {
            match consumer.recv().now_or_never() {
                Some(result) => self.take(result.map(|m| m.detach()))?,
                None => break,
            }
        }
        Ok(())
    }

    fn take(
        &mut self,
        result: Result<rdkafka::message::OwnedMessage, KafkaError>,
    ) -> Result<(), BoxError> {
        let message = match result {
            Ok(message) => message,
            Err(KafkaError::PartitionEOF(partition)) => {
                self.reached_end(Some(partition))?;
                return Ok(());
            }
            Err(e) => {
                self.warn(&e.to_string());
                return Ok(());
            }
        };
        let tp = TopicPartition {
            topic: message.topic().to_string(),
            partition: message.partition(),
        };
        let offset = message.offset();
        let Some(&next) = self.next.get(&tp) else {
            return Ok(()); // Not ours (any more).
        };
        if offset < next || self.finished.contains(&tp) {
            return Ok(());
        }
        let stop = self.stops.get(&tp).copied();
        if stop.is_some_and(|stop| offset >= stop) {
            self.finish(&tp)?;
            return Ok(());
        }
        let keep_key =
            self.decoder.needs_key() || self.spec.on_decode_error == DecodeErrorPolicy::DeadLetter;
        let record = Record::of(&message, keep_key, self.decoder.needs_headers());
        self.pending.entry(tp.clone()).or_default().push(record);
        self.pending_count += 1;
        if stop.is_some_and(|stop| offset + 1 >= stop) {
            self.finish(&tp)?;
        }
        Ok(())
    }

    /// A bounded partition is read to its end: the consumer stops fetching it.
    fn finish(&mut self, tp: &TopicPartition) -> Result<(), BoxError> {
        if self.finished.insert(tp.clone()) {
            let mut list = TopicPartitionList::new();
            list.add_partition(&tp.topic, tp.partition);
            // Records it still fetches are dropped all the same.
            if let Err(e) = self.consumer()?.incremental_unassign(&list) {
                tracing::debug!("the Kafka source keeps fetching a finished partition: {e}");
            }
            self.splits_changed = true;
        }
        Ok(())
    }

    /// The consumer reached the end of partition `partition` (of some
    /// topic; of any, with `None`): a bounded one whose position is at or
    /// past its stop is done.
    fn reached_end(&mut self, partition: Option<i32>) -> Result<(), BoxError> {
        if self.spec.bounded.is_none() {
            return Ok(());
        }
        let positions = self.consumer()?.position()?;
        let done: Vec<TopicPartition> = self
            .stops
            .iter()
            .filter(|(tp, _)| {
                partition.is_none_or(|p| tp.partition == p) && !self.finished.contains(*tp)
            })
            .filter(|(tp, stop)| {
                let at = positions
                    .find_partition(&tp.topic, tp.partition)
                    .and_then(|e| match e.offset() {
                        Offset::Offset(o) => Some(o),
                        _ => None,
                    });
                at.is_some_and(|at| at >= **stop)
                    || self.next.get(*tp).is_some_and(|next| next >= *stop)
            })
            .map(|(tp, _)| tp.clone())
            .collect();
        for tp in done {
            self.finish(&tp)?;
        }
        Ok(())
    }

    /// Decodes what was gathered, partition by partition.
    fn decode(&mut self) -> Result<(), BoxError> {
        for (tp, records) in std::mem::take(&mut self.pending) {
            for decoded in self.decoder.decode(&tp.topic, tp.partition, &records)? {
                self.ready.push_back(match decoded {
                    Decoded::Rows { batch, next_offset } => {
                        Ready::Rows(tp.clone(), batch, next_offset)
                    }
                    Decoded::Bad {
                        record,
                        next_offset,
                    } => Ready::Bad(tp.clone(), record, next_offset),
                });
            }
        }
        self.pending_count = 0;
        Ok(())
    }

    fn all_done(&self) -> bool {
        self.spec.bounded.is_some()
            && self.next.keys().all(|tp| self.finished.contains(tp))
            && self.pending.is_empty()
            && self.ready.is_empty()
    }

    fn position(&self) -> Position {
        match (&self.restored, self.started) {
            // Not started yet: what was restored, as it was.
            (Some(restored), false) => Position {
                next: restored.next.clone(),
                stops: restored.stops.clone(),
                finished: restored.finished.clone(),
            },
            _ => Position {
                next: self.next.iter().map(|(tp, &o)| (tp.clone(), o)).collect(),
                stops: self.stops.iter().map(|(tp, &o)| (tp.clone(), o)).collect(),
                finished: self.finished.iter().cloned().collect(),
            },
        }
    }
}

#[async_trait]
impl Source for KafkaReader {
    fn schema(&self) -> arrow::datatypes::SchemaRef {
        self.decoder.schema()
    }

    async fn open(&mut self, ctx: &mut OperatorContext) -> Result<(), BoxError> {
        self.errors = ctx.metrics.counter(DECODE_ERRORS_COUNTER);
        let mut config = ClientConfig::new();
        // Headwater's defaults, which the table's properties may change.
        config
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("isolation.level", "read_committed")
            .set("auto.offset.reset", "earliest")
            .set("group.id", "headwater");
        for (key, value) in &self.spec.properties {
            config.set(key, value);
        }
        // The end of a bounded partition is seen as an event.
        config.set(
            "enable.partition.eof",
            if self.spec.bounded.is_some() {
                "true"
            } else {
                "false"
            },
        );
        let consumer: SourceConsumer = config
            .create_with_context(SourceContext)
            .map_err(|e| OperatorError::Config(format!("the Kafka source's settings: {e}")))?;
        self.consumer = Some(Arc::new(consumer));
        Ok(())
    }

    async fn next(&mut self, _ctx: &mut OperatorContext) -> Result<SourcePoll, BoxError> {
        if !self.started {
            self.start().await?;
        }
        loop {
            if self.splits_changed {
                self.splits_changed = false;
                return Ok(SourcePoll::Splits(self.splits()));
            }
            if let Some(ready) = self.ready.pop_front() {
                match ready {
                    Ready::Rows(tp, batch, next_offset) => {
                        let split = self.split_id(&tp);
                        self.sent_from(&tp);
                        self.next.insert(tp, next_offset);
                        return Ok(SourcePoll::SplitBatch { split, batch });
                    }
                    Ready::Bad(tp, record, next_offset) => {
                        self.errors.add(1);
                        self.sent_from(&tp);
                        match self.spec.on_decode_error {
                            DecodeErrorPolicy::Fail => return Err(record.into_error().into()),
                            DecodeErrorPolicy::Skip => {
                                self.next.insert(tp, next_offset);
                            }
                            DecodeErrorPolicy::DeadLetter => {
                                let batch = dead_letters_batch(std::slice::from_ref(&record))?;
                                self.next.insert(tp, next_offset);
                                return Ok(SourcePoll::Side {
                                    output: DEAD_LETTER_OUTPUT.into(),
                                    batch,
                                });
                            }
                        }
                        continue;
                    }
                }
            }
            if self.all_done() {
                return Ok(SourcePoll::Finished);
            }
            if self.next_discovery.is_some_and(|at| Instant::now() >= at) {
                self.discover().await?;
                continue;
            }
            self.gather().await?;
            if self.pending_count > 0 {
                self.decode()?;
            }
        }
    }

    async fn snapshot_state(&mut self) -> Result<Option<Vec<u8>>, BoxError> {
        Ok(Some(postcard::to_stdvec(&self.position())?))
    }

    async fn snapshot_state_at(&mut self, checkpoint: u64) -> Result<Option<Vec<u8>>, BoxError> {
        let position = self.position();
        if self.started {
            self.taken.push_back((checkpoint, position.next.clone()));
            while self.taken.len() > 16 {
                self.taken.pop_front();
            }
        }
        Ok(Some(postcard::to_stdvec(&position)?))
    }

    /// Commits the offsets of a completed checkpoint to the consumer group
    /// (when the table names one), for monitoring and `group-offsets`.
    async fn notify_checkpoint_complete(&mut self, checkpoint: u64) -> Result<(), BoxError> {
        let Some(at) = self.taken.iter().position(|(id, _)| *id == checkpoint) else {
            return Ok(());
        };
        let (_, offsets) = self.taken.remove(at).expect("found above");
        self.taken.retain(|(id, _)| *id > checkpoint);
        if self.spec.property("group.id").is_none() || offsets.is_empty() {
            return Ok(());
        }
        let mut list = TopicPartitionList::new();
        for (tp, offset) in &offsets {
            list.add_partition_offset(&tp.topic, tp.partition, Offset::Offset(*offset))?;
        }
        if let Err(e) = self.consumer()?.commit(&list, CommitMode::Async) {
            // Only monitoring reads these: the checkpoint holds the truth.
            self.warn(&format!("cannot commit offsets to the group: {e}"));
        }
        Ok(())
    }

    /// Takes the offsets of the partitions this subtask owns, from every
    /// old subtask's position when the parallelism changed.
    async fn restore_state(&mut self, restored: Restored) -> Result<(), BoxError> {
        let mut position = Position::default();
        for blob in restored.blobs() {
            let old: Position = postcard::from_bytes(blob)
                .map_err(|e| format!("a stored Kafka position does not decode: {e}"))?;
            position
                .next
                .extend(old.next.into_iter().filter(|(tp, _)| self.owns(tp)));
            position
                .stops
                .extend(old.stops.into_iter().filter(|(tp, _)| self.owns(tp)));
            position
                .finished
                .extend(old.finished.into_iter().filter(|tp| self.owns(tp)));
        }
        self.restored = Some(position);
        Ok(())
    }
}
