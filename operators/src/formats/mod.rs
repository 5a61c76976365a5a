//! Formats: bytes to Arrow batches (and back, for sinks).
//!
//! A [`LineDecoder`] turns whole lines into batches. [`ChunkDecoder`] decodes a
//! chunk of many lines in one call, the fast path. Only when that fails does it
//! go line by line, to keep the good rows and report each bad one with its
//! offset. Each format says only how to decode bytes and how to word an error.

mod csv;
mod json;

pub use csv::CsvFormat;
pub use json::JsonFormat;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;

use crate::error::OperatorError;

/// A line that could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLine {
    /// The byte offset of the line within the chunk given to `decode`.
    pub offset: usize,
    /// The line's length, without its newline.
    pub len: usize,
    pub error: String,
}

/// Decodes chunks of complete lines into batches of a fixed schema.
pub trait LineDecoder: Send {
    /// Decodes `lines`: complete lines, each ending in `\n` but perhaps the last.
    /// Good rows go to `out` in batches; bad lines to `bad`.
    fn decode(
        &mut self,
        lines: &[u8],
        out: &mut Vec<RecordBatch>,
        bad: &mut Vec<BadLine>,
    ) -> Result<(), OperatorError>;
}

/// A text format of one record per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineFormat {
    /// JSON lines: one object per line.
    Json,
    /// CSV without newlines inside fields.
    Csv { delimiter: u8, has_header: bool },
}

impl LineFormat {
    pub fn csv() -> Self {
        LineFormat::Csv {
            delimiter: b',',
            has_header: true,
        }
    }

    /// Whether the first line of every file is a header to skip.
    pub fn has_header(&self) -> bool {
        matches!(
            self,
            LineFormat::Csv {
                has_header: true,
                ..
            }
        )
    }

    pub fn decoder(
        &self,
        schema: SchemaRef,
        batch_size: usize,
    ) -> Result<Box<dyn LineDecoder>, OperatorError> {
        Ok(match self {
            LineFormat::Json => Box::new(ChunkDecoder::new(JsonFormat { schema }, batch_size)?),
            LineFormat::Csv { delimiter, .. } => Box::new(ChunkDecoder::new(
                CsvFormat {
                    schema,
                    delimiter: *delimiter,
                },
                batch_size,
            )?),
        })
    }
}

/// The lines of a chunk: (offset, line without its `\n` or `\r\n`), blank lines left out.
pub(crate) fn lines(chunk: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    let mut start = 0;
    std::iter::from_fn(move || {
        while start < chunk.len() {
            let end = memchr::memchr(b'\n', &chunk[start..]).map_or(chunk.len(), |i| start + i);
            let offset = start;
            let mut line = &chunk[start..end];
            start = end + 1;
            if line.last() == Some(&b'\r') {
                line = &line[..line.len() - 1];
            }
            if !line.iter().all(u8::is_ascii_whitespace) {
                return Some((offset, line));
            }
        }
        None
    })
}

/// Whether `rows` is the number of non-blank lines of `chunk`: counted
/// first by newlines (SIMD), and line by line only if that differs.
fn one_row_per_line(chunk: &[u8], rows: usize) -> bool {
    let newlines = memchr::memchr_iter(b'\n', chunk).count();
    let unterminated = usize::from(chunk.last().is_some_and(|&b| b != b'\n'));
    rows == newlines + unterminated || rows == lines(chunk).count()
}

/// A streaming decoder of one format: bytes in, batches out.
pub(crate) trait RecordDecoder: Send {
    /// Decodes all of `bytes`, pushing each full batch to `out`.
    fn feed(&mut self, bytes: &[u8], out: &mut Vec<RecordBatch>) -> Result<(), ArrowError>;
    /// The rows decoded but not yet pushed; an error if a record is incomplete.
    fn finish(&mut self) -> Result<Option<RecordBatch>, ArrowError>;
}

/// How a format makes its decoders, and words an error for one line.
pub(crate) trait RecordFormat: Send {
    type Decoder: RecordDecoder;
    fn decoder(&self, batch_size: usize) -> Result<Self::Decoder, OperatorError>;
    fn describe(&self, _line: &[u8], error: &ArrowError) -> String {
        error.to_string()
    }
    /// Where `bytes` must not reach the decoder at all (a value nested deeper
    /// than the decoder's error path can take), and why: a byte offset.
    fn refuse(&self, _bytes: &[u8]) -> Option<(usize, String)> {
        None
    }
}

/// Decodes a chunk of lines in one go, the fast path. Only when that fails does
/// it go line by line, to keep the good rows and report each bad one.
pub(crate) struct ChunkDecoder<F: RecordFormat> {
    format: F,
    batch_size: usize,
    decoder: F::Decoder,
}

impl<F: RecordFormat> ChunkDecoder<F> {
    pub fn new(format: F, batch_size: usize) -> Result<Self, OperatorError> {
        let decoder = format.decoder(batch_size)?;
        Ok(ChunkDecoder {
            format,
            batch_size,
            decoder,
        })
    }

    fn decode_whole(&mut self, lines: &[u8], out: &mut Vec<RecordBatch>) -> Result<(), ArrowError> {
        self.decoder.feed(lines, out)?;
        if lines.last() != Some(&b'\n') {
            self.decoder.feed(b"\n", out)?;
        }
        out.extend(self.decoder.finish()?);
        Ok(())
    }
}

impl<F: RecordFormat> LineDecoder for ChunkDecoder<F> {
    fn decode(
        &mut self,
        chunk: &[u8],
        out: &mut Vec<RecordBatch>,
        bad: &mut Vec<BadLine>,
    ) -> Result<(), OperatorError> {
        let first = out.len();
        // The fast path holds only if every line made exactly one row: an
        // unterminated CSV quote swallows the lines after it, and two JSON
        // objects on a line make two rows, both without an error.
        if self.format.refuse(chunk).is_none()
            && self.decode_whole(chunk, out).is_ok()
            && one_row_per_line(chunk, out[first..].iter().map(RecordBatch::num_rows).sum())
        {
            return Ok(());
        }
        out.truncate(first);
        self.decoder = self.format.decoder(self.batch_size)?;
        // Slow path: try each line alone, then decode the good ones together.
        let mut probe = self.format.decoder(1)?;
        let mut scratch = Vec::new();
        let mut good = Vec::new();
        for (offset, line) in lines(chunk) {
            if let Some((at, error)) = self.format.refuse(line) {
                bad.push(BadLine {
                    offset,
                    len: line.len(),
                    error: format!("{error} at column {}", at + 1),
                });
                continue;
            }
            let result = probe
                .feed(line, &mut scratch)
                .and_then(|()| probe.feed(b"\n", &mut scratch))
                .and_then(|()| probe.finish());
            let rows = scratch.iter().map(RecordBatch::num_rows).sum::<usize>()
                + result
                    .as_ref()
                    .map_or(0, |last| last.as_ref().map_or(0, RecordBatch::num_rows));
            scratch.clear();
            let error = match result {
                Ok(_) if rows == 1 => {
                    good.push(line);
                    continue;
                }
                Ok(_) if rows == 0 => {
                    "the line holds no complete record (an unterminated quote?)".to_string()
                }
                Ok(_) => format!("the line holds {rows} records, not one"),
                Err(e) => self.format.describe(line, &e),
            };
            bad.push(BadLine {
                offset,
                len: line.len(),
                error,
            });
            probe = self.format.decoder(1)?;
        }
        for line in good {
            self.decoder.feed(line, out)?;
            self.decoder.feed(b"\n", out)?;
        }
        out.extend(self.decoder.finish()?);
        Ok(())
    }
}

#[cfg(test)]
mod property_tests {
    use std::sync::Arc;

    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use proptest::prelude::*;

    use super::*;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
            Field::new("price", DataType::Decimal128(10, 2), true),
            Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, None), true),
            Field::new(
                "tags",
                DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
                true,
            ),
        ]))
    }

    /// Lines that are mostly valid, with random damage.
    fn json_line() -> impl Strategy<Value = String> {
        prop_oneof![
            (any::<i64>(), "\\PC{0,10}").prop_map(|(id, name)| format!(
                "{{\"id\":{id},\"name\":{},\"price\":\"1.25\",\"ts\":1700000000000,\"tags\":[\"a\"]}}",
                serde_json::Value::from(name)
            )),
            "\\PC{0,40}",
            "[\\[\\]{}\",:0-9a-z ]{0,60}",
            (1usize..400).prop_map(|n| format!("{{\"id\":1,\"tags\":{}{}}}", "[".repeat(n), "]".repeat(n))),
        ]
    }

    fn check(format: &LineFormat, input: &[String]) -> Result<(), TestCaseError> {
        let chunk = input.join("\n");
        let mut decoder = format.decoder(schema(), 4).unwrap();
        let (mut out, mut bad) = (Vec::new(), Vec::new());
        decoder
            .decode(chunk.as_bytes(), &mut out, &mut bad)
            .unwrap();
        let good: usize = out.iter().map(RecordBatch::num_rows).sum();
        let non_blank = lines(chunk.as_bytes()).count();
        prop_assert_eq!(good + bad.len(), non_blank);
        for b in &bad {
            prop_assert!(b.offset + b.len <= chunk.len());
            prop_assert!(b.offset == 0 || chunk.as_bytes()[b.offset - 1] == b'\n');
            prop_assert!(!b.error.is_empty());
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]

        /// Every non-blank line is a row or a bad line at its own offset;
        /// nothing panics, however deep or broken the line.
        #[test]
        fn json_lines_decode_or_are_reported(lines in prop::collection::vec(json_line(), 0..20)) {
            check(&LineFormat::Json, &lines)?;
        }

        #[test]
        fn csv_lines_decode_or_are_reported(lines in prop::collection::vec("[-0-9a-z,.\"' ]{0,40}", 0..20)) {
            check(&LineFormat::Csv { delimiter: b',', has_header: false }, &lines)?;
        }
    }
}
