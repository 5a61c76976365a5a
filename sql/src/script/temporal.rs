//! `FOR SYSTEM_TIME AS OF left.time` after a table of a join (Flink's
//! temporal join), which sqlparser reads only in other dialects. The clause
//! is blanked and recorded with the table it follows, and the planner makes
//! that table's join a temporal join.

use datafusion::sql::sqlparser;
use sqlparser::keywords::Keyword;
use sqlparser::tokenizer::{Token, TokenWithSpan};

use super::TemporalClause;
use crate::error::{Position, SqlError};

pub(super) fn lift_temporal_clauses(
    tokens: &[TokenWithSpan],
    blank: &mut Vec<(Position, Position)>,
) -> Result<Vec<TemporalClause>, SqlError> {
    let keyword = |i: usize| match tokens.get(i).map(|t| &t.token) {
        Some(Token::Word(w)) if w.quote_style.is_none() => w.keyword,
        _ => Keyword::NoKeyword,
    };
    let word = |i: usize| match tokens.get(i).map(|t| &t.token) {
        Some(Token::Word(w)) => Some(w.value.clone()),
        _ => None,
    };
    let mut found = Vec::new();
    for i in 0..tokens.len() {
        if keyword(i) != Keyword::FOR
            || keyword(i + 1) != Keyword::SYSTEM_TIME
            || keyword(i + 2) != Keyword::AS
            || keyword(i + 3) != Keyword::OF
        {
            continue;
        }
        let at: Position = tokens[i].span.start.into();
        let table = match i.checked_sub(1).and_then(word) {
            Some(table) => table,
            None => {
                return Err(SqlError::Syntax {
                    at,
                    message: "FOR SYSTEM_TIME AS OF follows the name of the versioned table".into(),
                });
            }
        };
        // The time: a column, maybe qualified (`o.order_time`).
        let mut end = i + 4;
        let mut time = Vec::new();
        while let Some(part) = word(end) {
            time.push(part);
            if tokens.get(end + 1).map(|t| &t.token) == Some(&Token::Period) {
                end += 2;
            } else {
                break;
            }
        }
        if time.is_empty() {
            return Err(SqlError::Syntax {
                at,
                message: "FOR SYSTEM_TIME AS OF takes the left table's time column \
                          (`FOR SYSTEM_TIME AS OF o.order_time`)"
                    .into(),
            });
        }
        if tokens
            .get(end + 1)
            .is_some_and(|t| !matches!(&t.token, Token::Word(_) | Token::RParen | Token::Comma))
        {
            return Err(SqlError::Unsupported {
                at,
                message: "FOR SYSTEM_TIME AS OF takes a time column of the left table, \
                          not an expression"
                    .into(),
            });
        }
        let alias = match keyword(end + 1) {
            Keyword::AS => word(end + 2),
            Keyword::NoKeyword => word(end + 1),
            _ => None,
        };
        blank.push((at, tokens[end].span.end.into()));
        found.push(TemporalClause {
            table,
            alias,
            time,
            at,
        });
    }
    Ok(found)
}
