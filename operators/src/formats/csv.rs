//! CSV, decoded by arrow-csv. Fields must not contain newlines: a file is split
//! at line boundaries.

use arrow::array::RecordBatch;
use arrow::csv::reader::{Decoder, ReaderBuilder};
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;

use super::{RecordDecoder, RecordFormat};
use crate::error::OperatorError;

/// CSV records, one per line, in the columns of a fixed schema. The header
/// line, if any, is skipped by the reader, not here.
pub struct CsvFormat {
    pub schema: SchemaRef,
    pub delimiter: u8,
}

pub struct CsvRecords {
    decoder: Decoder,
}

impl RecordFormat for CsvFormat {
    type Decoder = CsvRecords;

    fn decoder(&self, batch_size: usize) -> Result<CsvRecords, OperatorError> {
        let decoder = ReaderBuilder::new(self.schema.clone())
            .with_header(false)
            .with_delimiter(self.delimiter)
            .with_batch_size(batch_size)
            .build_decoder();
        Ok(CsvRecords { decoder })
    }

    /// arrow-csv's message without the data it quotes (`Error while parsing
    /// value 'x' as type Int64 for column 0 at line 3. Row data: '[..]'`).
    fn describe(&self, _line: &[u8], error: &ArrowError) -> String {
        without_data(&error.to_string())
    }
}

fn without_data(message: &str) -> String {
    let message = message.split(" Row data:").next().unwrap_or(message);
    match (message.find(" value '"), message.rfind("' as type ")) {
        (Some(start), Some(end)) if start < end => {
            format!("{}{}", &message[..start], &message[end + 1..])
        }
        _ => message.to_string(),
    }
    .trim_end_matches('.')
    .to_string()
}

impl RecordDecoder for CsvRecords {
    fn feed(&mut self, mut bytes: &[u8], out: &mut Vec<RecordBatch>) -> Result<(), ArrowError> {
        while !bytes.is_empty() {
            let read = self.decoder.decode(bytes)?;
            bytes = &bytes[read..];
            if self.decoder.capacity() == 0 {
                out.extend(self.decoder.flush()?);
            }
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<Option<RecordBatch>, ArrowError> {
        self.decoder.flush()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::AsArray;
    use arrow::datatypes::{DataType, Field, Float64Type, Schema};

    use super::*;

    #[test]
    fn errors_leave_the_data_out() {
        let m = without_data(
            "Parser error: Error while parsing value 'root:x:0' as type Int64 for column 0 at line 3. Row data: '[root:x:0,1]'",
        );
        assert_eq!(
            m,
            "Parser error: Error while parsing as type Int64 for column 0 at line 3"
        );
    }
    use crate::formats::{ChunkDecoder, LineDecoder};

    #[test]
    fn bad_values_are_reported_and_the_rest_kept() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, false),
            Field::new("v", DataType::Float64, true),
        ]));
        let mut d = ChunkDecoder::new(
            CsvFormat {
                schema,
                delimiter: b',',
            },
            1024,
        )
        .unwrap();
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
