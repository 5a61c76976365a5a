//! How a plan's columns are named in a stream. DataFusion qualifies a
//! column by its table (`a.id`); a stream's columns have plain names. A
//! field keeps its own name unless another field of the same plan node has
//! it too (both sides of a join have an `id`): then it is `a.id`.

use std::collections::HashMap;

use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, DFSchema};
use datafusion::logical_expr::{Aggregate, Expr};
use headwater_operators::changelog::CHANGE_COLUMN;

/// The stream name of each field of `schema`.
pub(super) fn stream_names(schema: &DFSchema) -> Vec<String> {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for field in schema.fields() {
        *counts.entry(field.name().as_str()).or_default() += 1;
    }
    schema
        .iter()
        .map(|(qualifier, field)| match qualifier {
            Some(q) if counts[field.name().as_str()] > 1 => format!("{q}.{}", field.name()),
            _ => field.name().clone(),
        })
        .collect()
}

/// `e` over a stream of `input`: each column named as the stream names it.
pub(super) fn stream_expr(e: &Expr, input: &DFSchema) -> Expr {
    let names = stream_names(input);
    e.clone()
        .transform_up(|e| {
            Ok(match e {
                Expr::Column(c) => {
                    let name = input
                        .maybe_index_of_column(&c)
                        .map_or_else(|| c.name.clone(), |i| names[i].clone());
                    if c.relation.is_none() && name == c.name {
                        Transformed::no(Expr::Column(c))
                    } else {
                        Transformed::yes(Expr::Column(Column::new_unqualified(name)))
                    }
                }
                other => Transformed::no(other),
            })
        })
        .map(|t| t.data)
        .unwrap_or_else(|_| e.clone())
}

/// `exprs` over a stream of `input`, each named `names[i]`.
pub(super) fn named(exprs: &[Expr], input: &DFSchema, names: &[String]) -> Vec<Expr> {
    exprs
        .iter()
        .zip(names)
        .map(|(e, name)| {
            let e = stream_expr(e, input).unalias();
            match &e {
                Expr::Column(c) if c.name == *name => e,
                _ => e.alias(name),
            }
        })
        .collect()
}

/// The output columns of an aggregate, in the order and with the names the
/// plan above it expects.
pub(super) fn plan_columns(a: &Aggregate) -> Vec<Expr> {
    stream_names(&a.schema)
        .into_iter()
        .map(|name| Expr::Column(Column::new_unqualified(name)))
        .collect()
}

pub(super) fn change_column() -> Expr {
    Expr::Column(Column::new_unqualified(CHANGE_COLUMN))
}

/// Whether `e` reads `window_start` or `window_end`.
pub(super) fn mentions_window_bounds(e: &Expr) -> bool {
    e.column_refs()
        .iter()
        .any(|c| c.name == "window_start" || c.name == "window_end")
}
