//! `CREATE VIEW name AS query`: a named query, inlined wherever it is read,
//! as Flink's views are. It keeps no state of its own and runs nothing
//! until a statement reads it.

use std::sync::Arc;

use datafusion::catalog::TableProvider;
use datafusion::catalog::view::ViewTable;
use datafusion::common::TableReference;
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::Statement;

use crate::catalog::Tables;
use crate::error::SqlError;
use crate::script::ScriptStatement;

/// Declares the view of a `CREATE [TEMPORARY] VIEW` statement in the session
/// (and among the tables the window functions can name); returns its name.
pub async fn create_view(
    ctx: &SessionContext,
    tables: &Tables,
    statement: &ScriptStatement,
) -> Result<String, SqlError> {
    let at = statement.start;
    if let Some(clause) = statement.temporal_clauses.first() {
        return Err(SqlError::unsupported(
            clause.at,
            "a temporal join (FOR SYSTEM_TIME AS OF) in a CREATE VIEW is not supported yet; \
             write the join in the INSERT or the materialized view that reads the view",
        ));
    }
    let Statement::CreateView(create) = super::parse(statement)? else {
        return Err(SqlError::invalid(
            at,
            "expected CREATE VIEW name AS SELECT ..",
        ));
    };
    let name = match create.name.0.as_slice() {
        [part] => part
            .as_ident()
            .map(|i| i.value.clone())
            .unwrap_or_else(|| part.to_string()),
        _ => {
            return Err(SqlError::unsupported(
                at,
                format!("view `{}`: name a view by one identifier", create.name),
            ));
        }
    };
    if !create.columns.is_empty() {
        return Err(SqlError::unsupported(
            at,
            format!("view `{name}`: name its columns with AS in the query, not in a list"),
        ));
    }
    let known = |tables: &Tables| {
        tables
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(&name)
    };
    if known(tables) {
        return Err(SqlError::invalid(
            at,
            format!("`{name}` is already declared"),
        ));
    }
    let plan = super::logical_plan(ctx, Statement::Query(create.query), at).await?;
    let view: Arc<dyn TableProvider> = Arc::new(ViewTable::new(plan, None));
    ctx.register_table(TableReference::bare(name.as_str()), view.clone())
        .map_err(|e| SqlError::datafusion(e, at))?;
    tables
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(name.clone(), view);
    Ok(name)
}
