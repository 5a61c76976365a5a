//! What a source does with a row it cannot decode: the decode-error policy.
//!
//! - `fail`: the job fails, naming the file, line and what was wrong.
//! - `skip`: the row is dropped and counted (the `decode_errors` counter of the source).
//! - `dlq`: the raw row, the error and its position go to the source's
//!   [`DEAD_LETTER_OUTPUT`] side output, which the job routes to a sink. Counted too.
//!
//! A bad row never crashes the job with a panic, and never disappears without a count.

use std::str::FromStr;
use std::sync::{Arc, LazyLock};

use arrow::array::{
    BinaryBuilder, Int32Builder, Int64Builder, RecordBatch, StringBuilder, UInt64Builder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use crate::error::OperatorError;

/// The side output that carries dead letters.
pub const DEAD_LETTER_OUTPUT: &str = "dead_letters";

/// The name of the counter of rows that failed to decode.
pub const DECODE_ERRORS_COUNTER: &str = "decode_errors";

/// What to do with a row that cannot be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DecodeErrorPolicy {
    /// Fail the job, naming the position and the error.
    #[default]
    Fail,
    /// Drop the row and count it.
    Skip,
    /// Send the raw row, the error and its position to the dead-letter output.
    DeadLetter,
}

impl FromStr for DecodeErrorPolicy {
    type Err = OperatorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "fail" => Ok(DecodeErrorPolicy::Fail),
            "skip" => Ok(DecodeErrorPolicy::Skip),
            "dlq" | "dead-letter" | "dead_letter" => Ok(DecodeErrorPolicy::DeadLetter),
            other => Err(OperatorError::Config(format!(
                "unknown decode-error policy `{other}`: expected fail, skip or dlq"
            ))),
        }
    }
}

static DEAD_LETTER_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("source", DataType::Utf8, false),
        Field::new("line", DataType::UInt64, true),
        Field::new("byte_offset", DataType::UInt64, true),
        Field::new("error", DataType::Utf8, false),
        Field::new("raw", DataType::Utf8, false),
        // Where a Kafka record came from, and its exact key and value bytes.
        Field::new("topic", DataType::Utf8, true),
        Field::new("partition", DataType::Int32, true),
        Field::new("offset", DataType::Int64, true),
        Field::new("key", DataType::Binary, true),
        Field::new("value", DataType::Binary, true),
    ]))
});

/// The schema of dead letters: where the row came from, what was wrong, and the row.
pub fn dead_letter_schema() -> SchemaRef {
    DEAD_LETTER_SCHEMA.clone()
}

/// One row that failed to decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRecord {
    /// The file (or topic and partition) it came from.
    pub source: String,
    /// The 1-based line number, where the input has lines.
    pub line: Option<u64>,
    pub byte_offset: Option<u64>,
    pub error: String,
    pub raw: Vec<u8>,
    /// Set for a Kafka record: its position and key.
    pub kafka: Option<KafkaOrigin>,
}

/// Where a bad Kafka record was, and its key (`raw` holds its value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaOrigin {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
}

impl BadRecord {
    /// "file:line: error", for the `fail` policy and for logs.
    pub fn location(&self) -> String {
        match (self.line, self.byte_offset) {
            (Some(line), _) => format!("{}:{line}", self.source),
            (None, Some(offset)) => format!("{} at byte {offset}", self.source),
            (None, None) => self.source.clone(),
        }
    }

    pub fn into_error(self) -> OperatorError {
        OperatorError::Decode {
            location: self.location(),
            message: self.error,
        }
    }
}

/// Builds a batch of dead letters.
pub fn dead_letters_batch(records: &[BadRecord]) -> Result<RecordBatch, OperatorError> {
    let mut source = StringBuilder::new();
    let mut line = UInt64Builder::with_capacity(records.len());
    let mut offset = UInt64Builder::with_capacity(records.len());
    let mut error = StringBuilder::new();
    let mut raw = StringBuilder::new();
    let mut topic = StringBuilder::new();
    let mut partition = Int32Builder::with_capacity(records.len());
    let mut kafka_offset = Int64Builder::with_capacity(records.len());
    let mut key = BinaryBuilder::new();
    let mut value = BinaryBuilder::new();
    for r in records {
        source.append_value(&r.source);
        line.append_option(r.line);
        offset.append_option(r.byte_offset);
        error.append_value(&r.error);
        raw.append_value(String::from_utf8_lossy(&r.raw));
        let origin = r.kafka.as_ref();
        topic.append_option(origin.map(|o| &o.topic));
        partition.append_option(origin.map(|o| o.partition));
        kafka_offset.append_option(origin.map(|o| o.offset));
        key.append_option(origin.and_then(|o| o.key.as_deref()));
        value.append_option(origin.map(|_| &r.raw));
    }
    Ok(RecordBatch::try_new(
        dead_letter_schema(),
        vec![
            Arc::new(source.finish()),
            Arc::new(line.finish()),
            Arc::new(offset.finish()),
            Arc::new(error.finish()),
            Arc::new(raw.finish()),
            Arc::new(topic.finish()),
            Arc::new(partition.finish()),
            Arc::new(kafka_offset.finish()),
            Arc::new(key.finish()),
            Arc::new(value.finish()),
        ],
    )?)
}
