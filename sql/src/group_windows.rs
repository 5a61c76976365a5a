//! Flink's legacy group windows, which Flink users still write:
//!
//! ```sql
//! SELECT auction, TUMBLE_START(ts, INTERVAL '10' SECOND), count(*)
//! FROM bids GROUP BY auction, TUMBLE(ts, INTERVAL '10' SECOND)
//! ```
//!
//! rewritten in the parsed statement into the window table function that
//! plans it: `FROM TUMBLE(bids, ts, INTERVAL '10' SECOND)` and `GROUP BY
//! auction, window_start, window_end`, with `TUMBLE_START` as `window_start`,
//! `TUMBLE_END` as `window_end` and `TUMBLE_ROWTIME` as `window_end` less a
//! millisecond. The same for `HOP(ts, slide, size)` and `SESSION(ts, gap)`.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser;
use sqlparser::ast::{
    BinaryOperator, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, GroupByExpr, Ident,
    ObjectName, ObjectNamePart, Query, Select, SetExpr, Statement, TableFactor, TableFunctionArgs,
    Value, VisitMut, VisitorMut, visit_expressions_mut,
};

use crate::error::{Position, SqlError};

/// Rewrites every query of `statement` that groups by a legacy window.
pub fn rewrite_group_windows(statement: &mut Statement) -> Result<(), SqlError> {
    struct Rewriter;
    impl VisitorMut for Rewriter {
        type Break = SqlError;
        fn post_visit_query(&mut self, query: &mut Query) -> ControlFlow<SqlError> {
            match rewrite_set(&mut query.body) {
                Ok(()) => ControlFlow::Continue(()),
                Err(e) => ControlFlow::Break(e),
            }
        }
    }
    match statement.visit(&mut Rewriter) {
        ControlFlow::Break(e) => Err(e),
        ControlFlow::Continue(()) => Ok(()),
    }
}

fn rewrite_set(body: &mut SetExpr) -> Result<(), SqlError> {
    match body {
        SetExpr::Select(select) => rewrite_select(select),
        SetExpr::SetOperation { left, right, .. } => {
            rewrite_set(left)?;
            rewrite_set(right)
        }
        _ => Ok(()),
    }
}

/// A legacy window call: its kind, its arguments, and where it is.
struct GroupWindow {
    kind: &'static str,
    args: Vec<Expr>,
    at: Position,
}

fn group_window(expr: &Expr) -> Option<GroupWindow> {
    let Expr::Function(f) = expr else {
        return None;
    };
    let name = f.name.to_string().to_ascii_uppercase();
    let kind = ["TUMBLE", "HOP", "SESSION"]
        .into_iter()
        .find(|k| *k == name)?;
    let FunctionArguments::List(list) = &f.args else {
        return None;
    };
    let args = list
        .args
        .iter()
        .map(|a| match a {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e.clone()),
            _ => None,
        })
        .collect::<Option<Vec<_>>>()?;
    let at = f
        .name
        .0
        .first()
        .and_then(|p| p.as_ident())
        .map_or(Position { line: 1, column: 1 }, |i| i.span.start.into());
    Some(GroupWindow { kind, args, at })
}

fn rewrite_select(select: &mut Select) -> Result<(), SqlError> {
    let GroupByExpr::Expressions(keys, _) = &mut select.group_by else {
        return Ok(());
    };
    let windows: Vec<(usize, GroupWindow)> = keys
        .iter()
        .enumerate()
        .filter_map(|(i, e)| group_window(e).map(|w| (i, w)))
        .collect();
    let (index, window) = match windows.as_slice() {
        [] => return Ok(()),
        [_] => windows.into_iter().next().expect("one"),
        [_, (_, second), ..] => {
            return Err(SqlError::unsupported(
                second.at,
                "a query groups by one window, not several",
            ));
        }
    };
    let usage = match window.kind {
        "TUMBLE" => "TUMBLE(time_column, size)",
        "HOP" => "HOP(time_column, slide, size)",
        _ => "SESSION(time_column, gap)",
    };
    let want = if window.kind == "HOP" { 3 } else { 2 };
    if window.args.len() != want {
        return Err(SqlError::invalid(
            window.at,
            format!(
                "GROUP BY {usage} takes {want} arguments, not {}",
                window.args.len()
            ),
        ));
    }
    let time = match &window.args[0] {
        Expr::Identifier(ident) => ident.clone(),
        Expr::CompoundIdentifier(parts) => parts.last().cloned().expect("not empty"),
        other => {
            return Err(SqlError::invalid(
                window.at,
                format!("GROUP BY {usage}: `{other}` is not a time column"),
            ));
        }
    };
    // The one table read becomes the window function's input.
    let relation = match select.from.as_mut_slice() {
        [from] if from.joins.is_empty() => &mut from.relation,
        _ => {
            return Err(SqlError::unsupported(
                window.at,
                format!(
                    "GROUP BY {usage} over a join or several tables is not supported: \
                     window one table, then join"
                ),
            ));
        }
    };
    let TableFactor::Table {
        name, args: None, ..
    } = relation
    else {
        return Err(SqlError::unsupported(
            window.at,
            format!("GROUP BY {usage} reads a table by name, not a subquery or a function"),
        ));
    };
    let table = name
        .0
        .last()
        .and_then(|p| p.as_ident())
        .cloned()
        .ok_or_else(|| {
            SqlError::invalid(
                window.at,
                format!("GROUP BY {usage}: the table has no name"),
            )
        })?;
    let mut tvf_args = vec![Expr::Identifier(table), Expr::Identifier(time)];
    tvf_args.extend(window.args[1..].iter().cloned());
    *name = ObjectName(vec![ObjectNamePart::Identifier(Ident::new(window.kind))]);
    if let TableFactor::Table { args, .. } = relation {
        *args = Some(TableFunctionArgs {
            args: tvf_args
                .into_iter()
                .map(|e| FunctionArg::Unnamed(FunctionArgExpr::Expr(e)))
                .collect(),
            settings: None,
        });
    }
    keys.splice(
        index..=index,
        [
            Expr::Identifier(Ident::new("window_start")),
            Expr::Identifier(Ident::new("window_end")),
        ],
    );
    // TUMBLE_START(..) and the like, wherever the query uses them.
    let kind = window.kind;
    let _ = visit_expressions_mut(&mut select.projection, |e| window_property(e, kind));
    if let Some(having) = &mut select.having {
        let _ = visit_expressions_mut(having, |e| window_property(e, kind));
    }
    Ok(())
}

fn window_property(expr: &mut Expr, kind: &str) -> ControlFlow<()> {
    let Expr::Function(f) = expr else {
        return ControlFlow::Continue(());
    };
    let name = f.name.to_string().to_ascii_uppercase();
    let Some(property) = name.strip_prefix(kind).and_then(|p| p.strip_prefix('_')) else {
        return ControlFlow::Continue(());
    };
    let column = |n: &str| Expr::Identifier(Ident::new(n));
    match property {
        "START" => *expr = column("window_start"),
        "END" => *expr = column("window_end"),
        "ROWTIME" => {
            *expr = Expr::Nested(Box::new(Expr::BinaryOp {
                left: Box::new(column("window_end")),
                op: BinaryOperator::Minus,
                right: Box::new(Expr::Interval(sqlparser::ast::Interval {
                    value: Box::new(Expr::value(Value::SingleQuotedString("0.001".into()))),
                    leading_field: Some(sqlparser::ast::DateTimeField::Second),
                    leading_precision: None,
                    last_field: None,
                    fractional_seconds_precision: None,
                })),
            }))
        }
        _ => {}
    }
    ControlFlow::Continue(())
}
