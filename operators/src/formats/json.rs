//! JSON lines, decoded by arrow-json.

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow::json::reader::{Decoder, ReaderBuilder};

use super::{BadLine, LineDecoder, sort_lines};
use crate::error::OperatorError;

/// Decodes JSON objects, one per line, into batches of a fixed schema. Fields
/// not in the schema are ignored; a missing nullable field is NULL. A timestamp
/// field takes an RFC 3339 string or epoch milliseconds.
pub struct JsonDecoder {
    schema: SchemaRef,
    batch_size: usize,
    decoder: Decoder,
}

impl JsonDecoder {
    pub fn new(schema: SchemaRef, batch_size: usize) -> Result<Self, OperatorError> {
        let decoder = build(&schema, batch_size)?;
        Ok(JsonDecoder {
            schema,
            batch_size,
            decoder,
        })
    }

    fn decode_all(
        &mut self,
        mut bytes: &[u8],
        out: &mut Vec<RecordBatch>,
    ) -> Result<(), arrow::error::ArrowError> {
        while !bytes.is_empty() {
            let read = self.decoder.decode(bytes)?;
            bytes = &bytes[read..];
            if self.decoder.len() >= self.batch_size {
                out.extend(self.decoder.flush()?);
            }
        }
        Ok(())
    }
}

fn build(schema: &SchemaRef, batch_size: usize) -> Result<Decoder, OperatorError> {
    Ok(ReaderBuilder::new(schema.clone())
        .with_batch_size(batch_size)
        .build_decoder()?)
}

impl LineDecoder for JsonDecoder {
    fn decode(
        &mut self,
        lines: &[u8],
        out: &mut Vec<RecordBatch>,
        bad: &mut Vec<BadLine>,
    ) -> Result<(), OperatorError> {
        let first = out.len();
        let fast = self.decode_all(lines, out).and_then(|()| {
            // A chunk ends with a whole line; a partial record here means a line was cut.
            self.decoder.decode(b"\n")?;
            self.decoder.flush()
        });
        match fast {
            Ok(last) => {
                out.extend(last);
                return Ok(());
            }
            Err(_) => {
                out.truncate(first);
                self.decoder = build(&self.schema, self.batch_size)?;
            }
        }
        // Slow path: find the bad lines one by one, then decode the good ones.
        let mut probe = build(&self.schema, 1)?;
        let schema = self.schema.clone();
        let good = sort_lines(lines, bad, |line| {
            let result = probe
                .decode(line)
                .and_then(|_| probe.decode(b"\n"))
                .and_then(|_| probe.flush());
            result.map(|_| ()).map_err(|e| {
                probe = build(&schema, 1).expect("the schema built a decoder before");
                describe(line, &e)
            })
        });
        for (offset, len) in good {
            self.decode_all(&lines[offset..offset + len], out)?;
            self.decoder.decode(b"\n")?;
        }
        out.extend(self.decoder.flush()?);
        Ok(())
    }
}

/// A message for a bad line: the JSON syntax error with its column, or arrow's
/// error for a value of the wrong type.
fn describe(line: &[u8], error: &arrow::error::ArrowError) -> String {
    if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(line) {
        let message = e.to_string();
        let message = message.split(" at line ").next().unwrap_or(&message);
        return format!("invalid JSON at column {}: {message}", e.column());
    }
    match error {
        arrow::error::ArrowError::JsonError(m) => m.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{AsArray, Int64Array};
    use arrow::datatypes::{DataType, Field, Int64Type, Schema};

    use super::*;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
        ]))
    }

    #[test]
    fn keeps_good_lines_and_reports_bad_ones() {
        let mut d = JsonDecoder::new(schema(), 2).unwrap();
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
