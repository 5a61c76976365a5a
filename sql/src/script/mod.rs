//! Reading a SQL script: statements split at top-level semicolons, and the
//! parts of Flink's dialect that sqlparser does not know lifted out before it
//! parses: a table's `WITH (..)` options and its `WATERMARK FOR` clause, and
//! the `TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), ..))` form of window functions,
//! the clauses of `JSON_VALUE` and `JSON_QUERY`, and a temporal join's
//! `FOR SYSTEM_TIME AS OF`.
//!
//! Lifted text is replaced by spaces, never removed, so every line and column
//! sqlparser and DataFusion report is still the place in the user's file.

use std::collections::BTreeMap;

use datafusion::sql::sqlparser;
use sqlparser::dialect::GenericDialect;
use sqlparser::keywords::Keyword;
use sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};

use crate::error::{Position, SqlError};

mod json;
mod table;
mod temporal;
mod windows;

use json::lift_json_clauses;
use table::{TableClauses, lift_table_clauses};
use temporal::lift_temporal_clauses;
use windows::lift_window_table_functions;

/// One statement of a script.
#[derive(Debug, Clone)]
pub struct ScriptStatement {
    /// The whole script with everything but this statement (and its lifted
    /// parts) blanked out, so that parser positions are positions in the file.
    pub text: String,
    /// Where the statement begins.
    pub start: Position,
    /// Its first keywords, upper case (`CREATE TABLE`, `INSERT`, `EXPLAIN`, ...).
    pub lead: String,
    /// `WITH (..)` options of a `CREATE TABLE`, keys lower case.
    pub options: BTreeMap<String, OptionValue>,
    /// `WATERMARK FOR column AS expression` of a `CREATE TABLE`.
    pub watermark: Option<WatermarkClause>,
    /// Columns declared `METADATA [FROM 'name'] [VIRTUAL]`.
    pub metadata: Vec<MetadataClause>,
    /// Lifted clauses of `JSON_VALUE`/`JSON_QUERY` calls.
    pub json_clauses: Vec<JsonClauses>,
    /// `FOR SYSTEM_TIME AS OF` clauses of temporal joins.
    pub temporal_clauses: Vec<TemporalClause>,
    /// Tokens of the statement (no whitespace), for checks that need a place.
    pub tokens: Vec<TokenWithSpan>,
}

/// The clauses of one `JSON_VALUE`/`JSON_QUERY` call, as the string
/// arguments that follow its path (see `functions::json`).
#[derive(Debug, Clone, PartialEq)]
pub struct JsonClauses {
    /// Where the function's name is.
    pub at: Position,
    pub arguments: Vec<String>,
}

/// `table FOR SYSTEM_TIME AS OF time [AS alias]`: the join of `table` (by
/// its alias, if it has one) is a temporal join at `time`.
#[derive(Debug, Clone, PartialEq)]
pub struct TemporalClause {
    pub table: String,
    pub alias: Option<String>,
    /// The time column's name parts (`o`, `order_time`).
    pub time: Vec<String>,
    pub at: Position,
}

impl TemporalClause {
    /// The name the versioned table goes by in the query.
    pub fn name(&self) -> &str {
        self.alias.as_deref().unwrap_or(&self.table)
    }
}

/// A value of a `WITH` option, and where it is.
#[derive(Debug, Clone, PartialEq)]
pub struct OptionValue {
    pub value: String,
    pub at: Position,
}

/// A column's `METADATA [FROM 'name'] [VIRTUAL]` (Flink's syntax).
#[derive(Debug, Clone, PartialEq)]
pub struct MetadataClause {
    pub column: String,
    /// The metadata's name: `FROM 'name'`, or else the column's.
    pub name: String,
    pub is_virtual: bool,
    /// Declared `MAP<..>` (read as BYTES by the parser; the DDL gives it
    /// the metadata's map type).
    pub is_map: bool,
    pub at: Position,
}

/// `WATERMARK FOR column AS expression`, with the expression as text.
#[derive(Debug, Clone, PartialEq)]
pub struct WatermarkClause {
    pub column: String,
    pub expression: String,
    pub at: Position,
}

impl ScriptStatement {
    /// The first token that is `keyword` outside parentheses, if any.
    pub fn top_level_keyword(&self, keyword: Keyword) -> Option<Position> {
        let mut depth = 0i32;
        for t in &self.tokens {
            match &t.token {
                Token::LParen => depth += 1,
                Token::RParen => depth -= 1,
                Token::Word(w) if depth == 0 && w.keyword == keyword => {
                    return Some(t.span.start.into());
                }
                _ => {}
            }
        }
        None
    }

    /// The first token that is `keyword`, at any depth.
    pub fn keyword(&self, keyword: Keyword) -> Option<Position> {
        self.tokens.iter().find_map(|t| match &t.token {
            Token::Word(w) if w.keyword == keyword => Some(t.span.start.into()),
            _ => None,
        })
    }
}

/// Splits `sql` into statements and lifts out the Flink-only parts.
pub fn read_script(sql: &str) -> Result<Vec<ScriptStatement>, SqlError> {
    let dialect = GenericDialect {};
    let tokens = Tokenizer::new(&dialect, sql)
        .tokenize_with_location()
        .map_err(|e| SqlError::Syntax {
            at: Position {
                line: e.location.line,
                column: e.location.column,
            },
            message: e.message,
        })?;
    let offsets = LineOffsets::new(sql);
    let mut statements = Vec::new();
    let mut current: Vec<TokenWithSpan> = Vec::new();
    let mut depth = 0i32;
    for token in tokens {
        match token.token {
            Token::Whitespace(_) => continue,
            Token::LParen => depth += 1,
            Token::RParen => depth -= 1,
            Token::SemiColon if depth <= 0 => {
                if !current.is_empty() {
                    statements.push(statement(sql, &offsets, std::mem::take(&mut current))?);
                }
                depth = 0;
                continue;
            }
            _ => {}
        }
        current.push(token);
    }
    if !current.is_empty() {
        statements.push(statement(sql, &offsets, current)?);
    }
    Ok(statements)
}

fn statement(
    sql: &str,
    offsets: &LineOffsets,
    tokens: Vec<TokenWithSpan>,
) -> Result<ScriptStatement, SqlError> {
    let start: Position = tokens[0].span.start.into();
    let end = tokens.last().expect("not empty").span.end;
    let mut text = blank_outside(sql, offsets.offset(start), offsets.offset(end.into()));
    let lead = tokens
        .iter()
        .take(3)
        .map_while(|t| match &t.token {
            Token::Word(w) if w.quote_style.is_none() => Some(w.value.to_uppercase()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join(" ");
    let mut clauses = TableClauses::default();
    let mut blank: Vec<(Position, Position)> = Vec::new();
    let mut as_bytes: Vec<Position> = Vec::new();
    if lead.starts_with("CREATE TABLE") || lead.starts_with("CREATE TEMPORARY TABLE") {
        clauses = lift_table_clauses(&tokens, &mut blank, &mut as_bytes)?;
    }
    lift_window_table_functions(&tokens, &mut blank);
    let json_clauses = lift_json_clauses(&tokens, &mut blank)?;
    let temporal_clauses = lift_temporal_clauses(&tokens, &mut blank)?;
    // Blanking keeps every (line, column) but not byte offsets (a multi-byte
    // character becomes one space): offsets are taken in the text as it is.
    for (from, to) in blank {
        let current = LineOffsets::new(&text);
        let (a, b) = (current.offset(from), current.offset(to));
        blank_range(&mut text, a, b);
    }
    // A `MAP<..>` type, blanked, reads as BYTES.
    for at in as_bytes {
        let a = LineOffsets::new(&text).offset(at);
        if text.get(a..a + 5) == Some("     ") {
            text.replace_range(a..a + 5, "BYTES");
        }
    }
    Ok(ScriptStatement {
        text,
        start,
        lead,
        options: clauses.options,
        watermark: clauses.watermark,
        metadata: clauses.metadata,
        json_clauses,
        temporal_clauses,
        tokens,
    })
}

fn token_text(token: &Token) -> String {
    match token {
        Token::SingleQuotedString(s) | Token::DoubleQuotedString(s) => s.clone(),
        Token::Word(w) => w.value.clone(),
        other => other.to_string(),
    }
}

fn matching_paren(tokens: &[TokenWithSpan], open: usize) -> Option<usize> {
    let mut depth = 0;
    for (i, t) in tokens.iter().enumerate().skip(open) {
        match t.token {
            Token::LParen => depth += 1,
            Token::RParen => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

/// Byte offsets of line starts, to turn a (line, column) into an offset.
struct LineOffsets<'a> {
    sql: &'a str,
    starts: Vec<usize>,
}

impl<'a> LineOffsets<'a> {
    fn new(sql: &'a str) -> Self {
        let mut starts = vec![0];
        starts.extend(sql.match_indices('\n').map(|(i, _)| i + 1));
        LineOffsets { sql, starts }
    }

    /// The byte offset of a position (columns count characters).
    fn offset(&self, p: Position) -> usize {
        let Some(&line_start) = self.starts.get((p.line as usize).saturating_sub(1)) else {
            return self.sql.len();
        };
        self.sql[line_start..]
            .char_indices()
            .nth((p.column as usize).saturating_sub(1))
            .map_or(self.sql.len(), |(i, _)| line_start + i)
    }
}

/// The script with everything before `from` and from `to` on blanked.
fn blank_outside(sql: &str, from: usize, to: usize) -> String {
    let mut text = sql.to_string();
    blank_range(&mut text, to, sql.len());
    blank_range(&mut text, 0, from);
    text
}

/// Replaces the characters of `text[from..to]` by spaces (newlines stay),
/// keeping every line and column in place (a span's end is the position
/// just after its last character).
fn blank_range(text: &mut String, from: usize, to: usize) {
    let to = to.min(text.len());
    if from >= to || !text.is_char_boundary(from) || !text.is_char_boundary(to) {
        return;
    }
    let replaced: String = text[from..to]
        .chars()
        .map(|c| if c == '\n' { '\n' } else { ' ' })
        .collect();
    // Columns count characters: a multi-byte character becomes one space,
    // so the line's later columns stay the same.
    text.replace_range(from..to, &replaced);
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Pieces of Flink DDL and queries, to be shuffled into scripts.
    fn piece() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("CREATE TABLE t (a INT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)".to_string()),
            Just(" WITH ('connector' = 'datagen', 'a' = 'b')".to_string()),
            Just("SELECT window_start, count(*) FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '1' MINUTE)) GROUP BY window_start".to_string()),
            Just(";".to_string()),
            Just("\n".to_string()),
            Just("-- ünïcödé ☃ ; comment\n".to_string()),
            Just("/* 注释 ; */".to_string()),
            Just("'straße'".to_string()),
            Just("\"quoted ident\"".to_string()),
            Just("(".to_string()),
            Just(")".to_string()),
            "[ -~]{0,12}",
            "\\PC{0,6}",
        ]
    }

    fn script() -> impl Strategy<Value = String> {
        prop::collection::vec(piece(), 0..12).prop_map(|p| p.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Any text: no panic; an error names a place in the text; every
        /// statement's text keeps the script's lines.
        #[test]
        fn reading_a_script_never_panics(sql in script()) {
            match read_script(&sql) {
                Ok(statements) => {
                    for s in statements {
                        prop_assert_eq!(s.text.lines().count(), sql.lines().count());
                        prop_assert!(s.start.line >= 1);
                    }
                }
                Err(e) => {
                    let at = e.position();
                    prop_assert!(at.line >= 1 && at.line as usize <= sql.lines().count().max(1) + 1, "{e}");
                }
            }
        }

        /// Arbitrary bytes as text, including multi-byte characters before DDL.
        #[test]
        fn non_ascii_before_a_create_table_keeps_its_options(prefix in "\\PC{0,20}") {
            let sql = format!(
                "-- {prefix}\nCREATE TABLE t (a INT) WITH ('connector' = 'datagen', 'number-of-rows' = '5')"
            );
            let statements = read_script(&sql).unwrap();
            prop_assert_eq!(statements.len(), 1);
            prop_assert_eq!(&statements[0].options["number-of-rows"].value, "5");
            prop_assert!(!statements[0].text.contains("WITH"), "{}", statements[0].text);
        }
    }
}
