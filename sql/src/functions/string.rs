//! Flink's string functions that DataFusion lacks or means otherwise:
//! `REGEXP_EXTRACT`, `SPLIT_INDEX` and `LOCATE`.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int32Array, StringArray};
use datafusion::arrow::datatypes::{DataType, Int64Type};
use datafusion::common::{Result as DfResult, plan_err};
use regex::Regex;

use super::Kind;

pub fn coerce(kind: Kind, types: &[DataType]) -> DfResult<Vec<DataType>> {
    let mut out = Vec::with_capacity(types.len());
    for (i, t) in types.iter().enumerate() {
        let wants_integer = match kind {
            Kind::SplitIndex | Kind::RegexpExtract | Kind::Locate => i == 2,
            _ => false,
        };
        if wants_integer {
            if !(t.is_integer() || t.is_null()) {
                return plan_err!(
                    "{}: argument {} is an INTEGER, not {t}",
                    kind.name().to_uppercase(),
                    i + 1
                );
            }
            out.push(DataType::Int64);
        } else {
            out.push(DataType::Utf8);
        }
    }
    Ok(out)
}

/// The last regex compiled, reused while the pattern stays the same; an
/// invalid one is remembered as such.
#[derive(Default)]
struct Regexes {
    last: Option<(String, Option<Regex>)>,
}

impl Regexes {
    fn get(&mut self, pattern: &str) -> Option<&Regex> {
        if self.last.as_ref().is_none_or(|(p, _)| p != pattern) {
            // Java's and Rust's syntax agree on the common forms; one this
            // crate cannot read gives NULL, as an invalid one does in Flink.
            let regex = regex::RegexBuilder::new(pattern)
                .size_limit(1 << 20)
                .build()
                .ok();
            self.last = Some((pattern.to_string(), regex));
        }
        self.last.as_ref().and_then(|(_, r)| r.as_ref())
    }
}

pub fn evaluate(kind: Kind, args: &[ArrayRef]) -> DfResult<ArrayRef> {
    let rows = args[0].len();
    let text = |i: usize| args[i].as_string::<i32>();
    let integer = |i: usize| args.get(i).map(|a| a.as_primitive::<Int64Type>());
    let any_null = |row: usize| args.iter().any(|a| a.is_null(row));
    Ok(match kind {
        Kind::RegexpExtract => {
            let (subject, pattern, index) = (text(0), text(1), integer(2));
            let mut regexes = Regexes::default();
            let out: StringArray = (0..rows)
                .map(|row| {
                    if any_null(row) {
                        return None;
                    }
                    let group = index.map_or(0, |g| g.value(row));
                    let regex = regexes.get(pattern.value(row))?;
                    let captures = regex.captures(subject.value(row))?;
                    let group = usize::try_from(group).ok()?;
                    captures.get(group).map(|m| m.as_str().to_string())
                })
                .collect();
            Arc::new(out)
        }
        Kind::SplitIndex => {
            let (subject, separator, index) = (text(0), text(1), integer(2).expect("3 args"));
            let out: StringArray = (0..rows)
                .map(|row| {
                    if any_null(row) {
                        return None;
                    }
                    let index = usize::try_from(index.value(row)).ok()?;
                    let (s, sep) = (subject.value(row), separator.value(row));
                    if s.is_empty() {
                        return None;
                    }
                    if sep.is_empty() {
                        return s.split_whitespace().nth(index).map(str::to_string);
                    }
                    s.split(sep).nth(index).map(str::to_string)
                })
                .collect();
            Arc::new(out)
        }
        Kind::Locate => {
            let (needle, haystack, from) = (text(0), text(1), integer(2));
            let out: Int32Array = (0..rows)
                .map(|row| {
                    if any_null(row) {
                        return None;
                    }
                    let start = from.map_or(1, |f| f.value(row));
                    Some(locate(needle.value(row), haystack.value(row), start))
                })
                .collect();
            Arc::new(out)
        }
        _ => unreachable!("not a string function"),
    })
}

/// The 1-based character position of `needle` in `haystack` at or after
/// character `start`; 0 when absent or when `start` is below 1.
fn locate(needle: &str, haystack: &str, start: i64) -> i32 {
    if start < 1 {
        return 0;
    }
    let Some((byte_start, _)) = haystack.char_indices().nth((start - 1) as usize).or(
        // Just past the end: only the empty string is found there.
        (haystack.chars().count() as i64 == start - 1).then_some((haystack.len(), ' ')),
    ) else {
        return 0;
    };
    match haystack[byte_start..].find(needle) {
        Some(at) => (haystack[..byte_start + at].chars().count() + 1) as i32,
        None => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::locate;

    #[test]
    fn locate_counts_characters_from_one() {
        assert_eq!(locate("bar", "foobarbar", 1), 4);
        assert_eq!(locate("bar", "foobarbar", 5), 7);
        assert_eq!(locate("xbar", "foobar", 1), 0);
        assert_eq!(locate("bar", "foobarbar", 0), 0);
        assert_eq!(locate("ü", "aüü", 3), 3);
        assert_eq!(locate("b", "ab", 10), 0);
    }
}
