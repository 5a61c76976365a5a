//! The parts of a `CREATE TABLE` that sqlparser does not read: the
//! `WATERMARK FOR` clause, `METADATA` columns and the `WITH (..)` options.

use std::collections::BTreeMap;

use datafusion::sql::sqlparser;
use sqlparser::keywords::Keyword;
use sqlparser::tokenizer::{Token, TokenWithSpan};

use super::{MetadataClause, OptionValue, WatermarkClause, matching_paren, token_text};
use crate::error::{Position, SqlError};

/// What a `CREATE TABLE` holds that the SQL parser does not read.
#[derive(Default)]
pub(super) struct TableClauses {
    pub options: BTreeMap<String, OptionValue>,
    pub watermark: Option<WatermarkClause>,
    pub metadata: Vec<MetadataClause>,
}

/// Finds `WATERMARK FOR c AS expr` and `METADATA ..` inside the column list
/// and `WITH (..)` after it; records them and marks them (and the comma
/// before the watermark) to be blanked; a metadata column's `MAP<..>` type
/// is marked to be read as BYTES.
pub(super) fn lift_table_clauses(
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
