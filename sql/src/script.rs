//! Reading a SQL script: statements split at top-level semicolons, and the
//! parts of Flink's dialect that sqlparser does not know lifted out before it
//! parses: a table's `WITH (..)` options and its `WATERMARK FOR` clause, and
//! the `TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), ..))` form of window functions.
//!
//! Lifted text is replaced by spaces, never removed, so every line and column
//! sqlparser and DataFusion report is still the place in the user's file.

use std::collections::BTreeMap;

use datafusion::sql::sqlparser;
use sqlparser::dialect::GenericDialect;
use sqlparser::keywords::Keyword;
use sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};

use crate::error::{Position, SqlError};

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
    /// Tokens of the statement (no whitespace), for checks that need a place.
    pub tokens: Vec<TokenWithSpan>,
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
        tokens,
    })
}

/// What a `CREATE TABLE` holds that the SQL parser does not read.
#[derive(Default)]
struct TableClauses {
    options: BTreeMap<String, OptionValue>,
    watermark: Option<WatermarkClause>,
    metadata: Vec<MetadataClause>,
}

/// Finds `WATERMARK FOR c AS expr` and `METADATA ..` inside the column list
/// and `WITH (..)` after it; records them and marks them (and the comma
/// before the watermark) to be blanked; a metadata column's `MAP<..>` type
/// is marked to be read as BYTES.
fn lift_table_clauses(
    tokens: &[TokenWithSpan],
    blank: &mut Vec<(Position, Position)>,
    as_bytes: &mut Vec<Position>,
) -> Result<TableClauses, SqlError> {
    let mut options = BTreeMap::new();
    let mut watermark = None;
    let mut metadata = Vec::new();
    let Some(open) = tokens.iter().position(|t| t.token == Token::LParen) else {
        return Ok(TableClauses::default());
    };
    let close = matching_paren(tokens, open).ok_or_else(|| SqlError::Syntax {
        at: tokens[open].span.start.into(),
        message: "this parenthesis is never closed".into(),
    })?;
    // The watermark clause: from `WATERMARK` to the next comma or the end of the list.
    let mut depth = 0;
    let mut i = open + 1;
    while i < close {
        match &tokens[i].token {
            Token::LParen => depth += 1,
            Token::RParen => depth -= 1,
            Token::Word(w) if depth == 0 && w.value.eq_ignore_ascii_case("WATERMARK") => {
                let at: Position = tokens[i].span.start.into();
                let mut j = i + 1;
                let mut d = 0;
                while j < close && !(d == 0 && tokens[j].token == Token::Comma) {
                    match tokens[j].token {
                        Token::LParen => d += 1,
                        Token::RParen => d -= 1,
                        _ => {}
                    }
                    j += 1;
                }
                let clause = &tokens[i + 1..j];
                let syntax = |message: &str| SqlError::Syntax {
                    at,
                    message: message.to_string(),
                };
                let (Some(for_kw), Some(column), Some(as_kw)) =
                    (clause.first(), clause.get(1), clause.get(2))
                else {
                    return Err(syntax("expected WATERMARK FOR <column> AS <expression>"));
                };
                let is = |t: &TokenWithSpan, k: Keyword| matches!(&t.token, Token::Word(w) if w.keyword == k);
                let column = match &column.token {
                    Token::Word(w) => w.value.clone(),
                    _ => return Err(syntax("expected a column after WATERMARK FOR")),
                };
                if !is(for_kw, Keyword::FOR) || !is(as_kw, Keyword::AS) || clause.len() < 4 {
                    return Err(syntax("expected WATERMARK FOR <column> AS <expression>"));
                }
                let expression = clause[3..]
                    .iter()
                    .map(|t| t.token.to_string())
                    .collect::<Vec<_>>()
                    .join(" ");
                watermark = Some(WatermarkClause {
                    column,
                    expression,
                    at,
                });
                // The comma before the clause goes too, or the list would end in one.
                let from = if tokens[i - 1].token == Token::Comma {
                    tokens[i - 1].span.start
                } else {
                    tokens[i].span.start
                };
                let to = if j < close && tokens[j].token == Token::Comma {
                    tokens[j].span.end
                } else {
                    tokens[j - 1].span.end
                };
                blank.push((from.into(), to.into()));
                i = j;
                continue;
            }
            Token::Word(w) if depth == 0 && w.value.eq_ignore_ascii_case("METADATA") => {
                let clause = metadata_clause(tokens, open, i, close, blank, as_bytes)?;
                metadata.push(clause.0);
                i = clause.1;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    // WITH ( key = value, ... )
    let mut k = close + 1;
    while k < tokens.len() {
        if matches!(&tokens[k].token, Token::Word(w) if w.keyword == Keyword::WITH)
            && tokens.get(k + 1).map(|t| &t.token) == Some(&Token::LParen)
        {
            let end = matching_paren(tokens, k + 1).ok_or_else(|| SqlError::Syntax {
                at: tokens[k + 1].span.start.into(),
                message: "the WITH options are never closed".into(),
            })?;
            for pair in tokens[k + 2..end].split(|t| t.token == Token::Comma) {
                if pair.is_empty() {
                    continue;
                }
                let at: Position = pair[0].span.start.into();
                let Some(eq) = pair.iter().position(|t| t.token == Token::Eq) else {
                    return Err(SqlError::Syntax {
                        at,
                        message: "expected 'key' = 'value' in WITH".into(),
                    });
                };
                let key: String = pair[..eq].iter().map(|t| token_text(&t.token)).collect();
                let value: String = pair[eq + 1..]
                    .iter()
                    .map(|t| token_text(&t.token))
                    .collect();
                if key.is_empty() || value.is_empty() {
                    return Err(SqlError::Syntax {
                        at,
                        message: "expected 'key' = 'value' in WITH".into(),
                    });
                }
                let value_at = pair.get(eq + 1).map_or(at, |t| t.span.start.into());
                if options
                    .insert(
                        key.to_lowercase(),
                        OptionValue {
                            value,
                            at: value_at,
                        },
                    )
                    .is_some()
                {
                    return Err(SqlError::invalid(
                        at,
                        format!("option '{key}' is given twice"),
                    ));
                }
            }
            blank.push((tokens[k].span.start.into(), tokens[end].span.end.into()));
            break;
        }
        k += 1;
    }
    Ok(TableClauses {
        options,
        watermark,
        metadata,
    })
}

/// `name TYPE METADATA [FROM 'key'] [VIRTUAL]`, with `METADATA` at
/// `tokens[at]`: the clause and the index after it.
fn metadata_clause(
    tokens: &[TokenWithSpan],
    open: usize,
    at: usize,
    close: usize,
    blank: &mut Vec<(Position, Position)>,
    as_bytes: &mut Vec<Position>,
) -> Result<(MetadataClause, usize), SqlError> {
    let position: Position = tokens[at].span.start.into();
    let syntax = |message: &str| SqlError::Syntax {
        at: position,
        message: message.to_string(),
    };
    // The column's first token follows the comma (or parenthesis) before.
    let mut first = at;
    let mut d = 0;
    while first > open + 1 {
        match tokens[first - 1].token {
            Token::RParen | Token::Gt | Token::ShiftRight => d += 1,
            Token::LParen | Token::Lt => d -= 1,
            Token::Comma if d == 0 => break,
            _ => {}
        }
        first -= 1;
    }
    let column = match tokens.get(first).map(|t| &t.token) {
        Some(Token::Word(w)) if first + 1 < at => w.value.clone(),
        _ => {
            return Err(syntax(
                "expected `column TYPE METADATA [FROM 'name'] [VIRTUAL]`",
            ));
        }
    };
    let is_map =
        matches!(&tokens[first + 1].token, Token::Word(w) if w.value.eq_ignore_ascii_case("MAP"));
    if is_map {
        blank.push((
            tokens[first + 1].span.start.into(),
            tokens[at - 1].span.end.into(),
        ));
        as_bytes.push(tokens[first + 1].span.start.into());
    }
    let mut end = at + 1;
    let mut name = column.clone();
    if matches!(&tokens.get(end).map(|t| &t.token), Some(Token::Word(w)) if w.keyword == Keyword::FROM)
    {
        match tokens.get(end + 1).map(|t| &t.token) {
            Some(Token::SingleQuotedString(key)) if end + 1 < close => name = key.clone(),
            _ => return Err(syntax("expected METADATA FROM 'name'")),
        }
        end += 2;
    }
    let mut is_virtual = false;
    if end < close
        && matches!(&tokens[end].token, Token::Word(w) if w.value.eq_ignore_ascii_case("VIRTUAL"))
    {
        is_virtual = true;
        end += 1;
    }
    if end < close && tokens[end].token != Token::Comma {
        return Err(SqlError::Syntax {
            at: tokens[end].span.start.into(),
            message: "expected a comma after METADATA [FROM 'name'] [VIRTUAL]".into(),
        });
    }
    blank.push((
        tokens[at].span.start.into(),
        tokens[end - 1].span.end.into(),
    ));
    Ok((
        MetadataClause {
            column,
            name,
            is_virtual,
            is_map,
            at: position,
        },
        end,
    ))
}

/// `TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), ..))` → `TUMBLE(t, ts, ..)`, and
/// a `PARTITION BY ..` inside (the GROUP BY keys partition windows here).
fn lift_window_table_functions(tokens: &[TokenWithSpan], blank: &mut Vec<(Position, Position)>) {
    let is_word = |t: &TokenWithSpan, names: &[&str]| matches!(&t.token, Token::Word(w) if names.iter().any(|n| w.value.eq_ignore_ascii_case(n)));
    const WINDOWS: [&str; 4] = ["TUMBLE", "HOP", "SESSION", "CUMULATE"];
    let mut i = 0;
    while i + 3 < tokens.len() {
        if is_word(&tokens[i], &["TABLE"])
            && tokens[i + 1].token == Token::LParen
            && is_word(&tokens[i + 2], &WINDOWS)
            && tokens[i + 3].token == Token::LParen
            && let Some(outer_close) = matching_paren(tokens, i + 1)
            && let Some(inner_close) = matching_paren(tokens, i + 3)
        {
            blank.push((tokens[i].span.start.into(), tokens[i + 1].span.end.into()));
            blank.push((
                tokens[outer_close].span.start.into(),
                tokens[outer_close].span.end.into(),
            ));
            let mut j = i + 4;
            while j < inner_close {
                if is_word(&tokens[j], &["TABLE"]) {
                    blank.push((tokens[j].span.start.into(), tokens[j].span.end.into()));
                } else if is_word(&tokens[j], &["DESCRIPTOR"])
                    && tokens.get(j + 1).map(|t| &t.token) == Some(&Token::LParen)
                    && let Some(close) = matching_paren(tokens, j + 1)
                {
                    blank.push((tokens[j].span.start.into(), tokens[j + 1].span.end.into()));
                    blank.push((
                        tokens[close].span.start.into(),
                        tokens[close].span.end.into(),
                    ));
                } else if is_word(&tokens[j], &["PARTITION"]) {
                    let mut k = j;
                    while k < inner_close && tokens[k].token != Token::Comma {
                        k += 1;
                    }
                    blank.push((tokens[j].span.start.into(), tokens[k - 1].span.end.into()));
                    j = k;
                    continue;
                }
                j += 1;
            }
            i += 4;
            continue;
        }
        i += 1;
    }
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
