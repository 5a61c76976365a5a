//! What a reader asks the brokers when it starts: its partitions, where to
//! read each from, and where a bounded read ends. These calls block: the
//! reader makes them on a blocking thread.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::consumer::{Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};

use super::assign::{TopicPartition, owner};
use super::{BoundedMode, KafkaSource, StartupMode};
use crate::error::OperatorError;

/// The source's consumer.
pub type SourceConsumer = StreamConsumer<SourceContext>;

/// The source's client context: librdkafka's errors go to the log as
/// warnings (the source retries them), and the end of a partition, which a
/// bounded read asks to be told of, is not an error at all.
pub struct SourceContext;

impl ClientContext for SourceContext {
    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(rdkafka::types::RDKafkaErrorCode::PartitionEOF) {
            return;
        }
        tracing::warn!("librdkafka: {error}: {reason}");
    }
}

impl ConsumerContext for SourceContext {}

const TIMEOUT: Duration = Duration::from_secs(10);

/// A reader's partitions: the next offset of each, and (bounded) its end.
#[derive(Debug, Default)]
pub struct Resolved {
    pub next: BTreeMap<TopicPartition, i64>,
    pub stops: BTreeMap<TopicPartition, i64>,
}

/// Why a reader could not start.
#[derive(Debug)]
pub enum ResolveError {
    /// The brokers did not answer: try again.
    Retry(KafkaError),
    /// The table asks for something that cannot be: the job fails.
    Fatal(OperatorError),
}

impl From<KafkaError> for ResolveError {
    fn from(e: KafkaError) -> Self {
        ResolveError::Retry(e)
    }
}

/// The partitions of the source's topics that subtask `index` owns.
fn owned(
    consumer: &SourceConsumer,
    spec: &KafkaSource,
    index: usize,
    parallelism: usize,
) -> Result<Vec<TopicPartition>, KafkaError> {
    let metadata = consumer.fetch_metadata(spec.topics.single(), TIMEOUT)?;
    let mut owned = Vec::new();
    for topic in metadata.topics() {
        if topic.error().is_some() || !spec.topics.matches(topic.name()) {
            continue;
        }
        for partition in topic.partitions() {
            let tp = TopicPartition {
                topic: topic.name().to_string(),
                partition: partition.id(),
            };
            if owner(&tp, parallelism) == index {
                owned.push(tp);
            }
        }
    }
    owned.sort();
    Ok(owned)
}

fn low(consumer: &SourceConsumer, tp: &TopicPartition) -> Result<i64, KafkaError> {
    Ok(consumer
        .fetch_watermarks(&tp.topic, tp.partition, TIMEOUT)?
        .0)
}

fn high(consumer: &SourceConsumer, tp: &TopicPartition) -> Result<i64, KafkaError> {
    Ok(consumer
        .fetch_watermarks(&tp.topic, tp.partition, TIMEOUT)?
        .1)
}

/// The first offset at or after `timestamp` in each partition; the end of
/// a partition with no such record.
fn at_time(
    consumer: &SourceConsumer,
    tps: &[TopicPartition],
    timestamp: i64,
) -> Result<BTreeMap<TopicPartition, i64>, KafkaError> {
    let mut list = TopicPartitionList::new();
    for tp in tps {
        list.add_partition_offset(&tp.topic, tp.partition, Offset::Offset(timestamp))?;
    }
    let found = consumer.offsets_for_times(list, TIMEOUT)?;
    let mut out = BTreeMap::new();
    for tp in tps {
        let offset = match found
            .find_partition(&tp.topic, tp.partition)
            .map(|e| e.offset())
        {
            Some(Offset::Offset(o)) if o >= 0 => o,
            _ => high(consumer, tp)?,
        };
        out.insert(tp.clone(), offset);
    }
    Ok(out)
}

/// Where each partition is first read from, by the startup mode.
fn startup(
    consumer: &SourceConsumer,
    spec: &KafkaSource,
    tps: &[TopicPartition],
) -> Result<BTreeMap<TopicPartition, i64>, ResolveError> {
    let mut out = BTreeMap::new();
    match &spec.startup {
        StartupMode::EarliestOffset => {
            for tp in tps {
                out.insert(tp.clone(), low(consumer, tp)?);
            }
        }
        StartupMode::LatestOffset => {
            for tp in tps {
                out.insert(tp.clone(), high(consumer, tp)?);
            }
        }
        StartupMode::Timestamp(t) => out = at_time(consumer, tps, *t)?,
        StartupMode::SpecificOffsets(given) => {
            for tp in tps {
                let offset = match given.iter().find(|(p, _)| *p == tp.partition) {
                    Some(&(_, o)) => o,
                    None => low(consumer, tp)?,
                };
                out.insert(tp.clone(), offset);
            }
        }
        StartupMode::GroupOffsets => {
            let mut list = TopicPartitionList::new();
            for tp in tps {
                list.add_partition(&tp.topic, tp.partition);
            }
            let committed = consumer.committed_offsets(list, TIMEOUT)?;
            let reset = spec
                .property("auto.offset.reset")
                .map(str::to_ascii_lowercase);
            for tp in tps {
                let offset = match committed
                    .find_partition(&tp.topic, tp.partition)
                    .map(|e| e.offset())
                {
                    Some(Offset::Offset(o)) if o >= 0 => o,
                    _ => match reset.as_deref() {
                        Some("earliest" | "smallest" | "beginning") => low(consumer, tp)?,
                        Some("latest" | "largest" | "end") => high(consumer, tp)?,
                        _ => {
                            return Err(ResolveError::Fatal(OperatorError::Config(format!(
                                "'scan.startup.mode' = 'group-offsets': group `{}` has no \
                                 committed offset for topic {}, partition {}; set \
                                 'properties.auto.offset.reset' to 'earliest' or 'latest'",
                                spec.property("group.id").unwrap_or("headwater"),
                                tp.topic,
                                tp.partition
                            ))));
                        }
                    },
                };
                out.insert(tp.clone(), offset);
            }
        }
    }
    Ok(out)
}

/// Where each partition of a bounded read ends (exclusive).
fn stops(
    consumer: &SourceConsumer,
    mode: &BoundedMode,
    tps: &[TopicPartition],
) -> Result<BTreeMap<TopicPartition, i64>, KafkaError> {
    let mut out = BTreeMap::new();
    match mode {
        BoundedMode::LatestOffset => {
            for tp in tps {
                out.insert(tp.clone(), high(consumer, tp)?);
            }
        }
        BoundedMode::Timestamp(t) => out = at_time(consumer, tps, *t)?,
        BoundedMode::SpecificOffsets(given) => {
            for tp in tps {
                let offset = match given.iter().find(|(p, _)| *p == tp.partition) {
                    Some(&(_, o)) => o,
                    None => high(consumer, tp)?,
                };
                out.insert(tp.clone(), offset);
            }
        }
    }
    Ok(out)
}

/// The partitions subtask `index` reads, and where: from the checkpoint
/// (`stored`: next offsets and stops) where it has them; a partition new
/// since the checkpoint from its earliest offset; without a checkpoint, by
/// the startup mode.
pub fn resolve(
    consumer: &SourceConsumer,
    spec: &KafkaSource,
    index: usize,
    parallelism: usize,
    stored: Option<&(BTreeMap<TopicPartition, i64>, BTreeMap<TopicPartition, i64>)>,
) -> Result<Resolved, ResolveError> {
    let tps = owned(consumer, spec, index, parallelism)?;
    let mut resolved = Resolved::default();
    match stored {
        None => resolved.next = startup(consumer, spec, &tps)?,
        Some((next, _)) => {
            for tp in &tps {
                let offset = match next.get(tp) {
                    Some(&o) => o,
                    None => low(consumer, tp)?,
                };
                resolved.next.insert(tp.clone(), offset);
            }
        }
    }
    if let Some(mode) = &spec.bounded {
        let missing: Vec<TopicPartition> = tps
            .iter()
            .filter(|tp| stored.is_none_or(|(_, s)| !s.contains_key(*tp)))
            .cloned()
            .collect();
        resolved.stops = stops(consumer, mode, &missing)?;
        if let Some((_, stored_stops)) = stored {
            for tp in &tps {
                if let Some(&stop) = stored_stops.get(tp) {
                    resolved.stops.insert(tp.clone(), stop);
                }
            }
        }
    }
    Ok(resolved)
}

/// Partitions subtask `index` owns that it does not read yet, each with its
/// earliest offset.
pub fn discover(
    consumer: &SourceConsumer,
    spec: &KafkaSource,
    index: usize,
    parallelism: usize,
    known: &BTreeSet<TopicPartition>,
) -> Result<Vec<(TopicPartition, i64)>, KafkaError> {
    let mut found = Vec::new();
    for tp in owned(consumer, spec, index, parallelism)? {
        if !known.contains(&tp) {
            let offset = low(consumer, &tp)?;
            found.push((tp, offset));
        }
    }
    Ok(found)
}
