//! JSON lines, decoded by arrow-json.
//!
//! arrow-json is lenient in one way: it takes the commas between fields as
//! optional, so `{"a": 1 "b": 2}` decodes as if the comma were there.

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use arrow::json::reader::{Decoder, ReaderBuilder};

use super::{RecordDecoder, RecordFormat};
use crate::error::OperatorError;

/// JSON objects, one per line, in a fixed schema. Fields not in the schema are
/// ignored; a missing nullable field is NULL. A timestamp field takes an
/// RFC 3339 string or epoch milliseconds.
pub struct JsonFormat {
    pub schema: SchemaRef,
}

pub struct JsonRecords {
    decoder: Decoder,
    batch_size: usize,
}

impl RecordFormat for JsonFormat {
    type Decoder = JsonRecords;

    fn decoder(&self, batch_size: usize) -> Result<JsonRecords, OperatorError> {
        let decoder = ReaderBuilder::new(self.schema.clone())
            .with_batch_size(batch_size)
            .build_decoder()?;
        Ok(JsonRecords {
            decoder,
            batch_size,
        })
    }

    /// The JSON syntax error with its column, or arrow's error for a value of the wrong type.
    fn describe(&self, line: &[u8], error: &ArrowError) -> String {
        if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(line) {
            let message = e.to_string();
            let message = message.split(" at line ").next().unwrap_or(&message);
            return format!("invalid JSON at column {}: {message}", e.column());
        }
        match error {
            ArrowError::JsonError(m) => m.clone(),
            other => other.to_string(),
        }
    }
}

impl RecordDecoder for JsonRecords {
    fn feed(&mut self, mut bytes: &[u8], out: &mut Vec<RecordBatch>) -> Result<(), ArrowError> {
        while !bytes.is_empty() {
            let read = self.decoder.decode(bytes)?;
            bytes = &bytes[read..];
            if self.decoder.len() >= self.batch_size {
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

    use arrow::array::{AsArray, Int64Array};
    use arrow::datatypes::{DataType, Field, Int64Type, Schema};

    use super::*;
    use crate::formats::{ChunkDecoder, LineDecoder};

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
        ]))
    }

    #[test]
    fn keeps_good_lines_and_reports_bad_ones() {
        let mut d = ChunkDecoder::new(JsonFormat { schema: schema() }, 2).unwrap();
        let input = b"{\"id\":1,\"name\":\"a\"}\n{\"id\":2,\"name\" \"b\"}\n\n{\"id\":\"x\"}\n{\"id\":4}\n{\"id\":5}";
        let (mut out, mut bad) = (Vec::new(), Vec::new());
        d.decode(input, &mut out, &mut bad).unwrap();
        let ids: Vec<i64> = out
            .iter()
            .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
            .collect();
        assert_eq!(ids, vec![1, 4, 5]);
        assert_eq!(bad.len(), 2);
        assert_eq!(bad[0].offset, 20);
        assert!(bad[0].error.contains("column 16"), "{}", bad[0].error);
        assert!(bad[1].error.contains("id"), "{}", bad[1].error);
        // The decoder still works afterwards, on the fast path.
        let (mut out, mut bad) = (Vec::new(), Vec::new());
        d.decode(b"{\"id\":7}\n", &mut out, &mut bad).unwrap();
        assert_eq!(
            out[0].column(0).as_primitive::<Int64Type>(),
            &Int64Array::from(vec![7])
        );
        assert!(bad.is_empty());
    }
}
