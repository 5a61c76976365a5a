//! The clauses of `JSON_VALUE(json, path ..)` and `JSON_QUERY(json, path ..)`
//! that sqlparser cannot read: `RETURNING type`, `WITH|WITHOUT .. WRAPPER`,
//! `.. ON EMPTY` and `.. ON ERROR`. They are blanked and recorded, and the
//! planner passes them to the function as string arguments.

use datafusion::sql::sqlparser;
use sqlparser::tokenizer::{Token, TokenWithSpan};

use super::{JsonClauses, matching_paren};
use crate::error::{Position, SqlError};

pub(super) fn lift_json_clauses(
    tokens: &[TokenWithSpan],
    blank: &mut Vec<(Position, Position)>,
) -> Result<Vec<JsonClauses>, SqlError> {
    let mut found = Vec::new();
    for (i, token) in tokens.iter().enumerate() {
        let Token::Word(w) = &token.token else {
            continue;
        };
        let is_query = w.value.eq_ignore_ascii_case("JSON_QUERY");
        if !(is_query || w.value.eq_ignore_ascii_case("JSON_VALUE"))
            || tokens.get(i + 1).map(|t| &t.token) != Some(&Token::LParen)
        {
            continue;
        }
        let Some(close) = matching_paren(tokens, i + 1) else {
            continue;
        };
        // The path is the argument after the first comma at this depth.
        let mut depth = 0;
        let mut comma = None;
        for (j, t) in tokens.iter().enumerate().take(close).skip(i + 2) {
            match t.token {
                Token::LParen => depth += 1,
                Token::RParen => depth -= 1,
                Token::Comma if depth == 0 => {
                    comma = Some(j);
                    break;
                }
                _ => {}
            }
        }
        let Some(comma) = comma else { continue };
        let clause = &tokens[(comma + 2).min(close)..close];
        if clause.is_empty() {
            continue;
        }
        let at: Position = token.span.start.into();
        let parsed = read_clauses(clause, is_query, at)?;
        blank.push((
            clause[0].span.start.into(),
            clause[clause.len() - 1].span.end.into(),
        ));
        found.push(JsonClauses {
            at,
            arguments: parsed,
        });
    }
    Ok(found)
}

fn text(t: &TokenWithSpan) -> String {
    match &t.token {
        Token::SingleQuotedString(s) => format!("'{}'", s.replace('\'', "''")),
        other => other.to_string(),
    }
}

fn is(t: Option<&TokenWithSpan>, word: &str) -> bool {
    matches!(t.map(|t| &t.token), Some(Token::Word(w)) if w.value.eq_ignore_ascii_case(word))
}

/// `[returning, (wrapper,) on_empty, on_error]`, each `''` when absent.
fn read_clauses(
    clause: &[TokenWithSpan],
    is_query: bool,
    at: Position,
) -> Result<Vec<String>, SqlError> {
    let (mut returning, mut wrapper, mut on_empty, mut on_error) =
        (String::new(), String::new(), String::new(), String::new());
    let mut i = 0;
    let bad = |i: usize| SqlError::Syntax {
        at: clause.get(i).map_or(at, |t| t.span.start.into()),
        message: if is_query {
            "expected JSON_QUERY(json, path [RETURNING type] [WITH|WITHOUT [CONDITIONAL|UNCONDITIONAL] [ARRAY] WRAPPER] [.. ON EMPTY] [.. ON ERROR])".into()
        } else {
            "expected JSON_VALUE(json, path [RETURNING type] [NULL|ERROR|DEFAULT value ON EMPTY] [NULL|ERROR|DEFAULT value ON ERROR])".into()
        },
    };
    const STOP: [&str; 6] = ["WITH", "WITHOUT", "NULL", "ERROR", "EMPTY", "DEFAULT"];
    while i < clause.len() {
        if is(clause.get(i), "RETURNING") {
            let start = i + 1;
            i = start;
            while i < clause.len() && !STOP.iter().any(|s| is(clause.get(i), s)) {
                i += 1;
            }
            returning = clause[start..i]
                .iter()
                .map(text)
                .collect::<Vec<_>>()
                .join("");
            if returning.is_empty() {
                return Err(bad(start));
            }
        } else if is_query && (is(clause.get(i), "WITH") || is(clause.get(i), "WITHOUT")) {
            let start = i;
            while i < clause.len() && !is(clause.get(i), "WRAPPER") {
                i += 1;
            }
            if i == clause.len() {
                return Err(bad(start));
            }
            i += 1;
            wrapper = clause[start..i]
                .iter()
                .map(text)
                .collect::<Vec<_>>()
                .join(" ");
        } else {
            // A behavior, then ON EMPTY or ON ERROR.
            let start = i;
            while i < clause.len() && !is(clause.get(i), "ON") {
                i += 1;
            }
            let behavior = clause[start..i]
                .iter()
                .map(text)
                .collect::<Vec<_>>()
                .join(" ");
            let target = clause.get(i + 1);
            if behavior.is_empty() || !(is(target, "EMPTY") || is(target, "ERROR")) {
                return Err(bad(start));
            }
            if is(target, "EMPTY") {
                on_empty = behavior;
            } else {
                on_error = behavior;
            }
            i += 2;
        }
    }
    Ok(if is_query {
        vec![returning, wrapper, on_empty, on_error]
    } else {
        vec![returning, on_empty, on_error]
    })
}
