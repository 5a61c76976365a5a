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
        if self.decode_whole(chunk, out).is_ok() {
            return Ok(());
        }
        out.truncate(first);
        self.decoder = self.format.decoder(self.batch_size)?;
        // Slow path: try each line alone, then decode the good ones together.
        let mut probe = self.format.decoder(1)?;
        let mut scratch = Vec::new();
        let mut good = Vec::new();
        for (offset, line) in lines(chunk) {
            let result = probe
                .feed(line, &mut scratch)
                .and_then(|()| probe.feed(b"\n", &mut scratch))
                .and_then(|()| probe.finish());
            scratch.clear();
            match result {
                Ok(_) => good.push(line),
                Err(e) => {
                    bad.push(BadLine {
                        offset,
                        len: line.len(),
                        error: self.format.describe(line, &e),
                    });
                    probe = self.format.decoder(1)?;
                }
            }
        }
        for line in good {
            self.decoder.feed(line, out)?;
            self.decoder.feed(b"\n", out)?;
        }
        out.extend(self.decoder.finish()?);
        Ok(())
    }
}
