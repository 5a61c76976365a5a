//! `JSON_VALUE` and `JSON_QUERY`, with Flink's (SQL standard) path
//! language: `lax` or `strict` mode, then `$`, `.key`, `['key']`, `[n]`,
//! `[*]` and `.*`.
//!
//! The script reader lifts the clauses that sqlparser cannot read
//! (`RETURNING type`, the wrapper, `.. ON EMPTY`, `.. ON ERROR`) into
//! string arguments after the path, in that order (`''` when absent).

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, StringArray, new_null_array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{DataFusionError, Result as DfResult, ScalarValue, exec_err, plan_err};
use sonic_rs::{JsonContainerTrait, JsonValueTrait, Value};

use super::Kind;

/// The type named by `RETURNING` (the third argument), STRING without one.
pub fn returning(scalars: &[Option<&ScalarValue>]) -> DfResult<DataType> {
    let name = match scalars.get(2) {
        Some(Some(ScalarValue::Utf8(Some(name)))) => name.to_ascii_uppercase(),
        Some(None) => return plan_err!("JSON_VALUE: RETURNING names a type, not an expression"),
        _ => String::new(),
    };
    Ok(match name.as_str() {
        "" | "STRING" | "VARCHAR" => DataType::Utf8,
        "BOOLEAN" => DataType::Boolean,
        "INT" | "INTEGER" => DataType::Int32,
        "BIGINT" => DataType::Int64,
        "DOUBLE" => DataType::Float64,
        "FLOAT" => DataType::Float32,
        other => {
            return plan_err!(
                "JSON_VALUE .. RETURNING {other} is not supported: use STRING, BOOLEAN, INTEGER, BIGINT or DOUBLE"
            );
        }
    })
}

/// One step of a path.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    Key(String),
    Index(usize),
    AnyMember,
    AnyElement,
}

#[derive(Debug, Clone, PartialEq)]
struct Path {
    strict: bool,
    steps: Vec<Step>,
}

impl Path {
    fn parse(text: &str) -> Result<Path, String> {
        let text = text.trim();
        let (strict, rest) = if let Some(r) = text.strip_prefix("strict ") {
            (true, r.trim_start())
        } else if let Some(r) = text.strip_prefix("lax ") {
            (false, r.trim_start())
        } else {
            (false, text)
        };
        let mut rest = rest
            .strip_prefix('$')
            .ok_or_else(|| format!("the path '{text}' does not start with $"))?;
        let mut steps = Vec::new();
        while !rest.is_empty() {
            if let Some(r) = rest.strip_prefix(".*") {
                steps.push(Step::AnyMember);
                rest = r;
            } else if let Some(r) = rest.strip_prefix('.') {
                if r.starts_with('[') {
                    rest = r;
                    continue;
                }
                let end = r.find(['.', '[']).unwrap_or(r.len());
                if end == 0 {
                    return Err(format!("the path '{text}' has an empty key"));
                }
                steps.push(Step::Key(r[..end].to_string()));
                rest = &r[end..];
            } else if let Some(r) = rest.strip_prefix('[') {
                let end = r
                    .find(']')
                    .ok_or_else(|| format!("the path '{text}' has an unclosed ["))?;
                let inner = r[..end].trim();
                steps.push(if inner == "*" {
                    Step::AnyElement
                } else if let Some(key) = inner
                    .strip_prefix('\'')
                    .and_then(|k| k.strip_suffix('\''))
                    .or_else(|| inner.strip_prefix('"').and_then(|k| k.strip_suffix('"')))
                {
                    Step::Key(key.to_string())
                } else {
                    Step::Index(
                        inner
                            .parse()
                            .map_err(|_| format!("the path '{text}' has a bad index [{inner}]"))?,
                    )
                });
                rest = &r[end + 1..];
            } else {
                return Err(format!("the path '{text}' cannot be read at '{rest}'"));
            }
        }
        Ok(Path { strict, steps })
    }

    fn is_definite(&self) -> bool {
        self.steps
            .iter()
            .all(|s| matches!(s, Step::Key(_) | Step::Index(_)))
    }

    /// The values the path reaches; in strict mode a missing key or index
    /// is an error.
    fn select<'a>(&self, root: &'a Value) -> Result<Vec<&'a Value>, String> {
        let mut current = vec![root];
        for step in &self.steps {
            let mut next = Vec::new();
            for v in current {
                match step {
                    Step::Key(k) => match v.as_object().and_then(|o| o.get(k)) {
                        Some(x) => next.push(x),
                        None if self.strict => return Err(format!("no member '{k}'")),
                        None => {}
                    },
                    Step::Index(i) => match v.as_array().and_then(|a| a.get(*i)) {
                        Some(x) => next.push(x),
                        None if self.strict => return Err(format!("no element [{i}]")),
                        None => {}
                    },
                    Step::AnyMember => {
                        if let Some(o) = v.as_object() {
                            next.extend(o.iter().map(|(_, x)| x));
                        }
                    }
                    Step::AnyElement => {
                        if let Some(a) = v.as_array() {
                            next.extend(a.iter());
                        }
                    }
                }
            }
            current = next;
        }
        Ok(current)
    }
}

/// What a function gives on an empty result or an error.
#[derive(Debug, Clone, PartialEq)]
enum Behavior {
    Null,
    Error,
    EmptyArray,
    EmptyObject,
    Default(String),
}

fn behavior(text: Option<&str>) -> Behavior {
    let text = text.unwrap_or("").trim();
    match text.to_ascii_uppercase().as_str() {
        "ERROR" => Behavior::Error,
        "EMPTY ARRAY" => Behavior::EmptyArray,
        "EMPTY OBJECT" => Behavior::EmptyObject,
        upper if upper.starts_with("DEFAULT ") => {
            let value = text[8..].trim();
            match value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')) {
                Some(quoted) => Behavior::Default(quoted.replace("''", "'")),
                None if value.eq_ignore_ascii_case("NULL") => Behavior::Null,
                // TRUE, FALSE and numbers, as Flink casts them to STRING.
                None => Behavior::Default(value.to_ascii_lowercase()),
            }
        }
        _ => Behavior::Null,
    }
}

/// Why a row has no plain value.
enum Outcome {
    Value(String),
    Empty,
    Error(String),
}

fn apply(
    name: &str,
    outcome: Outcome,
    on_empty: &Behavior,
    on_error: &Behavior,
) -> DfResult<Option<String>> {
    let fallback = |b: &Behavior, why: String| -> DfResult<Option<String>> {
        Ok(match b {
            Behavior::Null => None,
            Behavior::Error => return exec_err!("{name}: {why}"),
            Behavior::EmptyArray => Some("[]".into()),
            Behavior::EmptyObject => Some("{}".into()),
            Behavior::Default(v) => Some(v.clone()),
        })
    };
    match outcome {
        Outcome::Value(v) => Ok(Some(v)),
        Outcome::Empty => fallback(on_empty, "the path selects nothing".into()),
        Outcome::Error(why) => fallback(on_error, why),
    }
}

fn scalar_text(v: &Value) -> Option<String> {
    if let Some(s) = v.as_str() {
        Some(s.to_string())
    } else if v.is_number() || v.is_boolean() {
        Some(sonic_rs::to_string(v).unwrap_or_default())
    } else {
        None
    }
}

/// How deep a document may nest (it may come from anyone).
const MAX_DEPTH: usize = 128;

/// The document, if it is JSON that nests no deeper than [`MAX_DEPTH`]
/// (checked first, so that no parse recurses without bound).
fn document(json: &str) -> Result<Value, String> {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for b in json.bytes() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(format!("the input nests deeper than {MAX_DEPTH} levels"));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    sonic_rs::from_str::<Value>(json).map_err(|_| "the input is not valid JSON".to_string())
}

fn json_value(json: &str, path: &Path) -> Outcome {
    let root = match document(json) {
        Ok(root) => root,
        Err(e) => return Outcome::Error(e),
    };
    let selected = match path.select(&root) {
        Ok(s) => s,
        Err(e) => return Outcome::Error(e),
    };
    match selected.as_slice() {
        [] => Outcome::Empty,
        [one] if one.is_null() => Outcome::Empty,
        [one] if path.is_definite() => match scalar_text(one) {
            Some(v) => Outcome::Value(v),
            None => Outcome::Error("the path selects an object or an array, not a scalar".into()),
        },
        _ => Outcome::Error("the path selects more than one value".into()),
    }
}

fn json_query(json: &str, path: &Path, wrapper: &str) -> Outcome {
    let root = match document(json) {
        Ok(root) => root,
        Err(e) => return Outcome::Error(e),
    };
    let selected = match path.select(&root) {
        Ok(s) => s,
        Err(e) => return Outcome::Error(e),
    };
    let text = |v: &Value| sonic_rs::to_string(v).unwrap_or_default();
    let wrapper = wrapper.to_ascii_uppercase();
    let value = if path.is_definite() {
        match selected.first() {
            None => return Outcome::Empty,
            Some(v) => *v,
        }
    } else {
        // An indefinite path selects a list: it is an array.
        let items: Vec<String> = selected.iter().map(|v| text(v)).collect();
        return Outcome::Value(format!("[{}]", items.join(",")));
    };
    let is_container = value.is_array() || value.is_object();
    if wrapper.starts_with("WITH UNCONDITIONAL")
        || (wrapper.starts_with("WITH") && !wrapper.starts_with("WITHOUT") && !value.is_array())
    {
        return Outcome::Value(format!("[{}]", text(value)));
    }
    if !is_container {
        return Outcome::Error("the path selects a scalar; use WITH ARRAY WRAPPER".into());
    }
    Outcome::Value(text(value))
}

pub fn evaluate(kind: Kind, args: &[ArrayRef], return_type: &DataType) -> DfResult<ArrayRef> {
    let rows = args[0].len();
    let string = |i: usize, row: usize| -> Option<&str> {
        let a = args.get(i)?.as_string::<i32>();
        (!a.is_null(row)).then(|| a.value(row))
    };
    let name = kind.name().to_uppercase();
    let (empty_at, error_at) = if kind == Kind::JsonValue {
        (3, 4)
    } else {
        (4, 5)
    };
    let mut out: Vec<Option<String>> = Vec::with_capacity(rows);
    let mut last_path: Option<(String, Path)> = None;
    for row in 0..rows {
        let (Some(json), Some(path_text)) = (string(0, row), string(1, row)) else {
            out.push(None);
            continue;
        };
        if last_path.as_ref().is_none_or(|(t, _)| t != path_text) {
            let path = Path::parse(path_text)
                .map_err(|e| DataFusionError::Execution(format!("{name}: {e}")))?;
            last_path = Some((path_text.to_string(), path));
        }
        let path = &last_path.as_ref().expect("set above").1;
        let on_empty = behavior(string(empty_at, row));
        let on_error = behavior(string(error_at, row));
        let outcome = match kind {
            Kind::JsonValue => json_value(json, path),
            _ => json_query(json, path, string(3, row).unwrap_or("")),
        };
        out.push(apply(&name, outcome, &on_empty, &on_error)?);
    }
    let text: ArrayRef = Arc::new(StringArray::from(out));
    if return_type == &DataType::Utf8 {
        return Ok(text);
    }
    // RETURNING: a value that does not convert is an error, handled ON ERROR.
    let converted = cast(&text, return_type)
        .or_else(|_| Ok::<_, DataFusionError>(new_null_array(return_type, rows)))?;
    let on_error = behavior(args.get(error_at).and_then(|a| {
        let a = a.as_string::<i32>();
        (!a.is_empty() && !a.is_null(0)).then(|| a.value(0))
    }));
    for row in 0..rows {
        if text.is_valid(row) && converted.is_null(row) && on_error == Behavior::Error {
            return exec_err!(
                "{name}: '{}' is not a {return_type}",
                text.as_string::<i32>().value(row)
            );
        }
    }
    Ok(converted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(json: &str, path: &str) -> Option<String> {
        match json_value(json, &Path::parse(path).unwrap()) {
            Outcome::Value(v) => Some(v),
            _ => None,
        }
    }

    fn query(json: &str, path: &str, wrapper: &str) -> Option<String> {
        match json_query(json, &Path::parse(path).unwrap(), wrapper) {
            Outcome::Value(v) => Some(v),
            _ => None,
        }
    }

    /// The examples of Flink's documentation.
    #[test]
    fn flink_documented_outputs() {
        assert_eq!(value(r#"{"a": true}"#, "$.a").as_deref(), Some("true"));
        assert_eq!(value(r#"{"a": true}"#, "lax $.b"), None);
        assert_eq!(
            value(r#"{"a.b": [0.998,0.996]}"#, r#"$.["a.b"][0]"#).as_deref(),
            Some("0.998")
        );
        assert_eq!(
            value(
                r#"{"contains blank": "right"}"#,
                "strict $.['contains blank']"
            )
            .as_deref(),
            Some("right")
        );
        assert!(matches!(
            json_value(r#"{"a": true}"#, &Path::parse("strict $.b").unwrap()),
            Outcome::Error(_)
        ));
        assert_eq!(
            query(r#"{ "a": { "b": 1 } }"#, "$.a", "").as_deref(),
            Some(r#"{"b":1}"#)
        );
        assert_eq!(query("[1, 2]", "$", "").as_deref(), Some("[1,2]"));
        assert_eq!(
            query(r#"{"a":[{"c":"c1"},{"c":"c2"}]}"#, "lax $.a[*].c", "").as_deref(),
            Some(r#"["c1","c2"]"#)
        );
        assert_eq!(
            query("{}", "$", "WITH CONDITIONAL ARRAY WRAPPER").as_deref(),
            Some("[{}]")
        );
        assert_eq!(
            query("[1, 2]", "$", "WITH CONDITIONAL ARRAY WRAPPER").as_deref(),
            Some("[1,2]")
        );
        assert_eq!(
            query("[1, 2]", "$", "WITH UNCONDITIONAL ARRAY WRAPPER").as_deref(),
            Some("[[1,2]]")
        );
        assert_eq!(query("1", "$", ""), None);
        assert_eq!(
            query("1", "$", "WITH CONDITIONAL ARRAY WRAPPER").as_deref(),
            Some("[1]")
        );
        // Key order is the document's.
        assert_eq!(
            query(r#"{"z": 1, "a": 2}"#, "$", "").as_deref(),
            Some(r#"{"z":1,"a":2}"#)
        );
    }

    #[test]
    fn deep_documents_are_errors_not_crashes() {
        let deep = "[".repeat(200_000);
        assert!(matches!(
            json_value(&deep, &Path::parse("$").unwrap()),
            Outcome::Error(_)
        ));
        let fine = format!("{}1{}", "[".repeat(100), "]".repeat(100));
        assert!(matches!(
            json_query(&fine, &Path::parse("$").unwrap(), ""),
            Outcome::Value(_)
        ));
        // Brackets inside strings do not count.
        let quoted = format!("{{\"a\": \"{}\"}}", "[".repeat(1000));
        assert!(matches!(
            json_value(&quoted, &Path::parse("$.a").unwrap()),
            Outcome::Value(_)
        ));
    }

    #[test]
    fn bad_paths_are_errors() {
        assert!(Path::parse("a.b").is_err());
        assert!(Path::parse("$.a[").is_err());
        assert!(Path::parse("$.a[x]").is_err());
    }
}
