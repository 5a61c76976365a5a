//! Bytes (a record's value or key) to Arrow rows: `json` and `csv` decode
//! many at once, as lines of one chunk; `raw` is the bytes as one column.

use std::sync::Arc;

use arrow::array::{ArrayRef, BinaryArray, RecordBatch, StringArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, SchemaRef};

use super::records::ValueFormat;
use crate::error::OperatorError;
use crate::formats::{LineDecoder, LineFormat};

/// Decodes bytes (values or keys) as `json`, `csv` or `raw`.
pub(super) struct BytesDecoder {
    pub format: ValueFormat,
    pub schema: SchemaRef,
    lines: Option<(Box<dyn LineDecoder>, usize)>,
    chunk: Vec<u8>,
    /// `value` or `key`, for errors.
    what: &'static str,
}

impl BytesDecoder {
    pub fn new(
        format: ValueFormat,
        schema: SchemaRef,
        what: &'static str,
    ) -> Result<Self, OperatorError> {
        if format == ValueFormat::Raw {
            let ok = schema.fields().len() == 1
                && matches!(
                    schema.field(0).data_type(),
                    DataType::Utf8 | DataType::LargeUtf8 | DataType::Binary
                );
            if !ok {
                return Err(OperatorError::Config(format!(
                    "the 'raw' format needs the {what} to be one STRING or BYTES column"
                )));
            }
        }
        Ok(BytesDecoder {
            format,
            schema,
            lines: None,
            chunk: Vec::new(),
            what,
        })
    }

    /// The rows of `values` (a row for each, `raw`; for each present one,
    /// the others), and the indices of those that do not decode.
    pub fn decode(
        &mut self,
        values: &[Option<&[u8]>],
    ) -> Result<(RecordBatch, Vec<(usize, String)>), OperatorError> {
        match &self.format {
            ValueFormat::Raw => self.raw(values),
            ValueFormat::Lines(format) => {
                let format = format.clone();
                self.lines(&format, values)
            }
        }
    }

    /// Every value as the one column; a STRING that is not UTF-8 is bad.
    fn raw(
        &mut self,
        values: &[Option<&[u8]>],
    ) -> Result<(RecordBatch, Vec<(usize, String)>), OperatorError> {
        let mut bad = Vec::new();
        let nullable = self.schema.field(0).is_nullable();
        let column: ArrayRef = match self.schema.field(0).data_type() {
            DataType::Binary if nullable => {
                Arc::new(values.iter().copied().collect::<BinaryArray>())
            }
            DataType::Binary => {
                let mut bytes = Vec::with_capacity(values.len());
                for (i, value) in values.iter().enumerate() {
                    match value {
                        Some(value) => bytes.push(Some(*value)),
                        None => {
                            bad.push((i, format!("no {}, and its column is NOT NULL", self.what)))
                        }
                    }
                }
                Arc::new(BinaryArray::from(bytes))
            }
            data_type => {
                let mut texts: Vec<Option<&str>> = Vec::with_capacity(values.len());
                for (i, value) in values.iter().enumerate() {
                    match value.map(std::str::from_utf8) {
                        None if !nullable => {
                            bad.push((i, format!("no {}, and its column is NOT NULL", self.what)));
                        }
                        None => texts.push(None),
                        Some(Ok(text)) => texts.push(Some(text)),
                        Some(Err(e)) => {
                            bad.push((i, format!("the {} is not UTF-8 text: {e}", self.what)));
                        }
                    }
                }
                cast(&StringArray::from(texts), data_type)?
            }
        };
        Ok((
            RecordBatch::try_new(self.schema.clone(), vec![column])?,
            bad,
        ))
    }

    /// The values as lines of JSON or CSV, decoded in one chunk.
    fn lines(
        &mut self,
        format: &LineFormat,
        values: &[Option<&[u8]>],
    ) -> Result<(RecordBatch, Vec<(usize, String)>), OperatorError> {
        // Line breaks in a JSON document are only whitespace: one line each.
        let is_json = matches!(format, LineFormat::Json);
        let mut bad: Vec<(usize, String)> = Vec::new();
        let mut starts: Vec<(usize, usize)> = Vec::new();
        self.chunk.clear();
        for (i, value) in values.iter().enumerate() {
            let Some(value) = value else {
                continue; // A tombstone: no row.
            };
            if value.iter().all(u8::is_ascii_whitespace) {
                bad.push((i, format!("the {} is empty", self.what)));
                continue;
            }
            if !is_json && value.iter().any(|&b| b == b'\n' || b == b'\r') {
                bad.push((i, format!("a CSV {} holds a line break", self.what)));
                continue;
            }
            starts.push((self.chunk.len(), i));
            if is_json {
                self.chunk.extend(value.iter().map(|&b| match b {
                    b'\n' | b'\r' => b' ',
                    b => b,
                }));
            } else {
                self.chunk.extend_from_slice(value);
            }
            self.chunk.push(b'\n');
        }
        // One batch for the whole run, so rows keep their records' order.
        let wanted = starts.len().max(1);
        let decoder = match &mut self.lines {
            Some((decoder, size)) if *size >= wanted => decoder,
            _ => {
                let size = wanted.next_power_of_two();
                let decoder = format.decoder(self.schema.clone(), size)?;
                &mut self.lines.insert((decoder, size)).0
            }
        };
        let mut batches = Vec::new();
        let mut bad_lines = Vec::new();
        decoder.decode(&self.chunk, &mut batches, &mut bad_lines)?;
        for line in bad_lines {
            let at = starts.partition_point(|&(start, _)| start <= line.offset);
            if let Some(&(_, record)) = at.checked_sub(1).and_then(|i| starts.get(i)) {
                let error = if self.what == "value" {
                    line.error
                } else {
                    format!("the key: {}", line.error)
                };
                bad.push((record, error));
            }
        }
        bad.sort_by_key(|&(i, _)| i);
        let rows = arrow::compute::concat_batches(&self.schema, &batches)?;
        Ok((rows, bad))
    }
}
