//! Formats: bytes to Arrow batches (and back, for sinks).
//!
//! A [`LineDecoder`] turns whole lines into batches. It decodes a chunk of many
//! lines in one call, the fast path. Only when that fails does it go line by
//! line, to keep the good rows and report each bad one with its offset.

mod csv;
mod json;

pub use csv::CsvDecoder;
pub use json::JsonDecoder;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;

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
            LineFormat::Json => Box::new(JsonDecoder::new(schema, batch_size)?),
            LineFormat::Csv { delimiter, .. } => {
                Box::new(CsvDecoder::new(schema, batch_size, *delimiter))
            }
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

/// Decodes line by line with `decode_one`, after a chunk failed as a whole: the
/// good lines go to `good` (as offsets), the bad ones to `bad`.
pub(crate) fn sort_lines(
    chunk: &[u8],
    bad: &mut Vec<BadLine>,
    mut decode_one: impl FnMut(&[u8]) -> Result<(), String>,
) -> Vec<(usize, usize)> {
    let mut good = Vec::new();
    for (offset, line) in lines(chunk) {
        match decode_one(line) {
            Ok(()) => good.push((offset, line.len())),
            Err(error) => bad.push(BadLine {
                offset,
                len: line.len(),
                error,
            }),
        }
    }
    good
}
