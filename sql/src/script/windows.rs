//! Flink's window table functions, `TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), ..))`,
//! turned into the `TUMBLE(t, ts, ..)` form that sqlparser reads.

use datafusion::sql::sqlparser;
use sqlparser::tokenizer::{Token, TokenWithSpan};

use super::matching_paren;
use crate::error::Position;

/// `TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), ..))` → `TUMBLE(t, ts, ..)`, and
/// a `PARTITION BY ..` inside (the GROUP BY keys partition windows here).
pub(super) fn lift_window_table_functions(
    tokens: &[TokenWithSpan],
    blank: &mut Vec<(Position, Position)>,
) {
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
