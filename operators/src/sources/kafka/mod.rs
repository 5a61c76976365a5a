//! The Kafka source, with the option names of Flink's Kafka connector.
//!
//! Each subtask reads the partitions it owns ([`assign`]), from offsets
//! that live in the checkpoint; when a checkpoint completes they are also
//! committed to the consumer group, for monitoring and `group-offsets`.
//! Values are decoded as `json`, `csv` or `raw` ([`records`]) under the
//! decode-error policy, and each partition keeps its own watermark.

pub mod assign;
mod bytes;
pub mod columns;
mod reader;
pub mod records;
mod resolve;

use std::sync::Arc;
use std::time::Duration;

use arrow::datatypes::SchemaRef;
use headwater_runtime::graph::SourceFactory;
use headwater_runtime::{EventTimeSpec, Source, SubtaskInfo};

pub use assign::{TopicPartition, Topics};
pub use columns::{KeyColumns, Metadata, MetadataColumn};
pub use records::ValueFormat;

use crate::decode_error::DecodeErrorPolicy;
use crate::error::OperatorError;
use crate::sources::SourceSpec;

/// Where a partition is first read from (`scan.startup.mode`), when the
/// checkpoint has no offset for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartupMode {
    EarliestOffset,
    LatestOffset,
    /// The group's committed offsets; with none, `auto.offset.reset` decides
    /// (and without it the job fails, as Flink's does).
    GroupOffsets,
    /// The first record at or after this time (epoch milliseconds).
    Timestamp(i64),
    /// Given offsets by partition of the (one) topic; others from the earliest.
    SpecificOffsets(Vec<(i32, i64)>),
}

/// Where a bounded source stops (`scan.bounded.mode`): each partition ends
/// before this position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BoundedMode {
    /// The end of each partition when the job starts.
    LatestOffset,
    /// The first record at or after this time (epoch milliseconds).
    Timestamp(i64),
    /// Given offsets by partition of the (one) topic.
    SpecificOffsets(Vec<(i32, i64)>),
}

/// A Kafka topic (or topics) read as a source.
#[derive(Debug, Clone)]
pub struct KafkaSource {
    pub topics: Topics,
    /// librdkafka's settings: `bootstrap.servers`, `group.id`, and any other.
    pub properties: Vec<(String, String)>,
    pub format: ValueFormat,
    pub schema: SchemaRef,
    pub event_time: EventTimeSpec,
    pub on_decode_error: DecodeErrorPolicy,
    pub startup: StartupMode,
    pub bounded: Option<BoundedMode>,
    /// How often new partitions (and topics of a pattern) are looked for;
    /// `None`: never.
    pub discovery_interval: Option<Duration>,
    /// Rows per batch at most.
    pub batch_size: usize,
    /// A partition with no records for this long stops holding the
    /// watermark back; `None`: the job's idle timeout.
    pub idle_timeout: Option<Duration>,
    /// The key's format and the columns it holds (`key.format`, `key.fields`).
    pub key: Option<KeyColumns>,
    /// Whether the value holds the key's columns too (`'value.fields-include'
    /// = 'ALL'`, the default) or only the others (`EXCEPT_KEY`).
    pub value_includes_key: bool,
    /// Columns filled from the records' metadata.
    pub metadata: Vec<MetadataColumn>,
    /// upsert-kafka: each record is the latest value of its key, a tombstone
    /// deletes it; rows come out with `_change` (`+I` or `-D`), to be made
    /// into a changelog by [`crate::normalize::ChangelogNormalize`].
    pub upsert: bool,
}

impl KafkaSource {
    /// JSON values of `topics` on `bootstrap_servers`, read from the
    /// earliest offsets.
    pub fn json(bootstrap_servers: &str, topics: Topics, schema: SchemaRef) -> Self {
        KafkaSource {
            topics,
            properties: vec![("bootstrap.servers".into(), bootstrap_servers.into())],
            format: ValueFormat::Lines(crate::formats::LineFormat::Json),
            schema,
            event_time: EventTimeSpec::ArrivalTime,
            on_decode_error: DecodeErrorPolicy::Fail,
            startup: StartupMode::GroupOffsets,
            bounded: None,
            discovery_interval: Some(Duration::from_secs(300)),
            batch_size: 8192,
            idle_timeout: None,
            key: None,
            value_includes_key: true,
            metadata: Vec::new(),
            upsert: false,
        }
        .with_startup(StartupMode::EarliestOffset)
    }

    pub fn with_property(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        let key = key.into();
        self.properties.retain(|(k, _)| *k != key);
        self.properties.push((key, value.into()));
        self
    }

    pub fn with_format(mut self, format: ValueFormat) -> Self {
        self.format = format;
        self
    }

    pub fn with_event_time(mut self, event_time: EventTimeSpec) -> Self {
        self.event_time = event_time;
        self
    }

    pub fn on_decode_error(mut self, policy: DecodeErrorPolicy) -> Self {
        self.on_decode_error = policy;
        self
    }

    pub fn with_startup(mut self, startup: StartupMode) -> Self {
        self.startup = startup;
        self
    }

    /// Ends the source where `bounded` says: a bounded job then ends by itself.
    pub fn bounded(mut self, bounded: BoundedMode) -> Self {
        self.bounded = Some(bounded);
        self
    }

    pub fn with_discovery_interval(mut self, interval: Option<Duration>) -> Self {
        self.discovery_interval = interval;
        self
    }

    /// A partition with no records for `timeout` stops holding the
    /// watermark back (`scan.watermark.idle-timeout`).
    pub fn with_idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = Some(timeout);
        self
    }

    /// The key, in `format`, holds `fields` (columns of the table).
    pub fn with_key(mut self, format: ValueFormat, fields: Vec<String>) -> Self {
        self.key = Some(KeyColumns { format, fields });
        self
    }

    /// Whether the value holds the key's columns too (the default).
    pub fn value_includes_key(mut self, includes: bool) -> Self {
        self.value_includes_key = includes;
        self
    }

    /// Column `column` holds the records' `metadata`.
    pub fn with_metadata(mut self, column: impl Into<String>, metadata: Metadata) -> Self {
        self.metadata.push(MetadataColumn {
            column: column.into(),
            metadata,
        });
        self
    }

    /// Reads the topic as upserts by key (upsert-kafka): set the key first.
    pub fn upsert(mut self) -> Self {
        self.upsert = true;
        self
    }

    /// The decoder of this source's records.
    pub fn decoder(&self) -> Result<records::RecordDecoder, OperatorError> {
        records::RecordDecoder::with_layout(
            self.format.clone(),
            self.schema.clone(),
            self.key.as_ref(),
            self.value_includes_key,
            &self.metadata,
            self.upsert,
        )
    }

    pub fn with_batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size.max(1);
        self
    }

    /// The setting `key` of librdkafka, if given.
    pub fn property(&self, key: &str) -> Option<&str> {
        self.properties
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Checks what can be checked before connecting.
    pub fn validate(&self) -> Result<(), OperatorError> {
        if self.property("bootstrap.servers").is_none_or(str::is_empty) {
            return Err(OperatorError::Config(
                "the Kafka source needs 'properties.bootstrap.servers'".into(),
            ));
        }
        let specific = matches!(self.startup, StartupMode::SpecificOffsets(_))
            || matches!(self.bounded, Some(BoundedMode::SpecificOffsets(_)));
        if specific && self.topics.single().is_none() {
            return Err(OperatorError::Config(
                "specific offsets name partitions of one topic: give one 'topic'".into(),
            ));
        }
        self.decoder()?;
        Ok(())
    }
}

impl SourceSpec for KafkaSource {
    fn default_name(&self) -> String {
        "kafka".into()
    }

    /// The table's columns; an upsert source's rows also carry `_change`.
    fn schema(&self) -> SchemaRef {
        self.decoder()
            .map(|d| d.schema())
            .unwrap_or_else(|_| self.schema.clone())
    }

    fn event_time(&self) -> EventTimeSpec {
        self.event_time.clone()
    }

    fn decode_error_policy(&self) -> Option<DecodeErrorPolicy> {
        Some(self.on_decode_error)
    }

    fn idle_timeout(&self) -> Option<Duration> {
        self.idle_timeout
    }

    fn factory(&self) -> SourceFactory {
        let spec = Arc::new(self.clone());
        Arc::new(move |subtask: &SubtaskInfo| {
            Ok(Box::new(reader::KafkaReader::new(
                spec.clone(),
                subtask.index,
                subtask.parallelism,
            )?) as Box<dyn Source>)
        })
    }
}

/// Flink's `'partition:0,offset:42;partition:1,offset:300'`.
pub fn parse_specific_offsets(text: &str) -> Result<Vec<(i32, i64)>, OperatorError> {
    let bad = |part: &str| {
        OperatorError::Config(format!(
            "specific offsets are 'partition:0,offset:42;partition:1,offset:300', not `{part}`"
        ))
    };
    let mut out = Vec::new();
    for part in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let mut partition = None;
        let mut offset = None;
        for item in part.split(',') {
            let (key, value) = item.split_once(':').ok_or_else(|| bad(part))?;
            match key.trim() {
                "partition" => partition = value.trim().parse::<i32>().ok(),
                "offset" => offset = value.trim().parse::<i64>().ok(),
                _ => return Err(bad(part)),
            }
        }
        match (partition, offset) {
            (Some(p), Some(o)) if p >= 0 && o >= 0 => out.push((p, o)),
            _ => return Err(bad(part)),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specific_offsets_in_flinks_syntax() {
        assert_eq!(
            parse_specific_offsets("partition:0,offset:42;partition:1,offset:300").unwrap(),
            [(0, 42), (1, 300)]
        );
        assert!(parse_specific_offsets("partition:0").is_err());
        assert!(parse_specific_offsets("partition:-1,offset:3").is_err());
        assert!(parse_specific_offsets("p:0,offset:3").is_err());
    }
}
