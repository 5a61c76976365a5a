//! CSV, decoded by arrow-csv. Fields must not contain newlines: a file is split
//! at line boundaries.

use arrow::array::RecordBatch;
use arrow::csv::reader::{Decoder, ReaderBuilder};
use arrow::datatypes::SchemaRef;

use super::{BadLine, LineDecoder, sort_lines};
use crate::error::OperatorError;

/// Decodes CSV records, one per line, in the columns of a fixed schema.
pub struct CsvDecoder {
    schema: SchemaRef,
    batch_size: usize,
    delimiter: u8,
    decoder: Decoder,
}

impl CsvDecoder {
    pub fn new(schema: SchemaRef, batch_size: usize, delimiter: u8) -> Self {
        let decoder = build(&schema, batch_size, delimiter);
        CsvDecoder {
            schema,
            batch_size,
            delimiter,
            decoder,
        }
    }

    fn decode_all(
        &mut self,
        mut bytes: &[u8],
        out: &mut Vec<RecordBatch>,
    ) -> Result<(), arrow::error::ArrowError> {
        while !bytes.is_empty() {
            let read = self.decoder.decode(bytes)?;
            bytes = &bytes[read..];
            if read == 0 || self.decoder.capacity() == 0 {
                out.extend(self.decoder.flush()?);
            }
        }
        Ok(())
    }
}

fn build(schema: &SchemaRef, batch_size: usize, delimiter: u8) -> Decoder {
    ReaderBuilder::new(schema.clone())
        .with_header(false)
        .with_delimiter(delimiter)
        .with_batch_size(batch_size)
        .build_decoder()
}

impl LineDecoder for CsvDecoder {
    fn decode(
        &mut self,
        lines: &[u8],
        out: &mut Vec<RecordBatch>,
        bad: &mut Vec<BadLine>,
    ) -> Result<(), OperatorError> {
        let first = out.len();
        let mut input = std::borrow::Cow::Borrowed(lines);
        if lines.last().is_some_and(|b| *b != b'\n') {
            let mut owned = lines.to_vec();
            owned.push(b'\n');
            input = std::borrow::Cow::Owned(owned);
        }
        match self
            .decode_all(&input, out)
            .and_then(|()| self.decoder.flush())
        {
            Ok(last) => {
                out.extend(last);
                return Ok(());
            }
            Err(_) => {
                out.truncate(first);
                self.decoder = build(&self.schema, self.batch_size, self.delimiter);
            }
        }
        let mut probe = build(&self.schema, 1, self.delimiter);
        let (schema, delimiter) = (self.schema.clone(), self.delimiter);
        let good = sort_lines(lines, bad, |line| {
            let result = probe
                .decode(line)
                .and_then(|_| probe.decode(b"\n"))
                .and_then(|_| probe.flush());
            result.map(|_| ()).map_err(|e| {
                probe = build(&schema, 1, delimiter);
                e.to_string()
            })
        });
        for (offset, len) in good {
            self.decode_all(&lines[offset..offset + len], out)?;
            self.decode_all(b"\n", out)?;
        }
        out.extend(self.decoder.flush()?);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::AsArray;
    use arrow::datatypes::{DataType, Field, Float64Type, Schema};

    use super::*;

    #[test]
    fn bad_values_are_reported_and_the_rest_kept() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, false),
            Field::new("v", DataType::Float64, true),
        ]));
        let mut d = CsvDecoder::new(schema, 1024, b',');
        let (mut out, mut bad) = (Vec::new(), Vec::new());
        d.decode(b"a,1.5\nb,oops\nc,2\n", &mut out, &mut bad)
            .unwrap();
        let values: Vec<f64> = out
            .iter()
            .flat_map(|b| b.column(1).as_primitive::<Float64Type>().values().to_vec())
            .collect();
        assert_eq!(values, vec![1.5, 2.0]);
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].offset, 6);
    }
}
