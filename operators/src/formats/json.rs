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

/// The deepest nesting of arrays and objects a line may have. arrow-json's
/// error path walks a value recursively, so a line like `{"a":[[[[..]]]]}`
/// nested thousands deep would overflow the stack: such a line is a bad line.
pub const MAX_JSON_NESTING: usize = 128;

/// The byte offset where `bytes` first nests deeper than `limit`, outside
/// strings, read as arrow-json reads them: values may span lines. Strings
/// are skipped with memchr; a stray closer counts as depth 0 (arrow-json
/// refuses it on its own, without recursing).
pub fn nesting_beyond(bytes: &[u8], limit: usize) -> Option<usize> {
    const PLAIN: u8 = 0;
    const QUOTE: u8 = 1;
    const OPEN: u8 = 2;
    const CLOSE: u8 = 3;
    static CLASS: [u8; 256] = {
        let mut class = [PLAIN; 256];
        class[b'"' as usize] = QUOTE;
        class[b'[' as usize] = OPEN;
        class[b'{' as usize] = OPEN;
        class[b']' as usize] = CLOSE;
        class[b'}' as usize] = CLOSE;
        class
    };
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        match CLASS[bytes[i] as usize] {
            PLAIN => {}
            QUOTE => loop {
                // To the closing quote, past escapes.
                i += 1;
                match memchr::memchr2(b'"', b'\\', bytes.get(i..)?) {
                    Some(k) if bytes[i + k] == b'\\' => i += k + 1,
                    Some(k) => {
                        i += k;
                        break;
                    }
                    None => return None,
                }
            },
            OPEN => {
                depth += 1;
                if depth > limit {
                    return Some(i);
                }
            }
            _ => depth = depth.saturating_sub(1),
        }
        i += 1;
    }
    None
}

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
        let message = match error {
            ArrowError::JsonError(m) => m.clone(),
            other => other.to_string(),
        };
        without_value(&message)
    }

    fn refuse(&self, bytes: &[u8]) -> Option<(usize, String)> {
        nesting_beyond(bytes, MAX_JSON_NESTING).map(|at| {
            (
                at,
                format!("JSON nested deeper than {MAX_JSON_NESTING} levels"),
            )
        })
    }
}

/// arrow-json's message without the value it quotes (`expected i64 got
/// "root:x:0:0"`): an error names the field and the type, never the data.
fn without_value(message: &str) -> String {
    let message = match message.find(" got ") {
        Some(at) => &message[..at],
        None => message,
    };
    // `failed to parse "root:x:0:0" as Int64`: quoted data goes.
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(start) = rest.find('"') {
        out.push_str(&rest[..start]);
        match rest[start + 1..].find('"') {
            Some(end) => {
                out.push_str("the value");
                rest = &rest[start + 1 + end + 1..];
            }
            None => {
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
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

    #[test]
    fn a_line_nested_too_deep_is_a_bad_line_and_the_rest_decode() {
        let mut d = ChunkDecoder::new(JsonFormat { schema: schema() }, 8).unwrap();
        let deep = format!("{{\"id\":{}1{}}}", "[".repeat(100_000), "]".repeat(100_000));
        let input = format!("{{\"id\":1}}\n{deep}\n{{\"id\":3,\"name\":\"[[[[\"}}\n");
        let (mut out, mut bad) = (Vec::new(), Vec::new());
        d.decode(input.as_bytes(), &mut out, &mut bad).unwrap();
        let ids: Vec<i64> = out
            .iter()
            .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
            .collect();
        assert_eq!(ids, vec![1, 3]);
        assert_eq!(bad.len(), 1, "{bad:?}");
        assert_eq!(bad[0].offset, 9);
        assert!(bad[0].error.contains("nested deeper"), "{}", bad[0].error);
        assert!(bad[0].error.contains("column 134"), "{}", bad[0].error);
    }

    #[test]
    fn nesting_counts_brackets_outside_strings_only() {
        assert_eq!(nesting_beyond(br#"{"a":"[[[[[[["}"#, 2), None);
        assert_eq!(nesting_beyond(br#"{"a":"\"[[[[[[["}"#, 2), None);
        assert_eq!(nesting_beyond(br#"{"a":[[1]]}"#, 2), Some(6));
        assert_eq!(nesting_beyond(b"{\"a\":[1]}\n{\"a\":[1]}", 2), None);
        // A value may span lines: arrow-json reads on.
        assert_eq!(nesting_beyond(b"{\"a\":[\n[1]]}", 2), Some(7));
        assert_eq!(nesting_beyond(br#"{"a":"\\"}"#, 0), Some(0));
        assert_eq!(nesting_beyond(br#"{"a":"unterminated [[["#, 1), None);
    }

    #[test]
    fn errors_name_the_field_but_not_the_value() {
        let mut d = ChunkDecoder::new(JsonFormat { schema: schema() }, 8).unwrap();
        let (mut out, mut bad) = (Vec::new(), Vec::new());
        d.decode(b"{\"id\":\"root:x:0:0\"}\n", &mut out, &mut bad)
            .unwrap();
        assert_eq!(bad.len(), 1);
        assert!(bad[0].error.contains("id"), "{}", bad[0].error);
        assert!(!bad[0].error.contains("root"), "{}", bad[0].error);
    }
}
