//! A client's query over the views, planned under the server's limits: the
//! statement is parsed as Postgres SQL (with the rewrites that let psql's,
//! JDBC's and BI tools' catalog queries run), checked for read-only use and
//! for size, and runs in its own memory pool, without spilling to disk.

use std::sync::Arc;
use std::time::Duration;

use datafusion::error::DataFusionError;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::context::SQLOptions;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::logical_expr::{ColumnarValue, ScalarUDF, Volatility, create_udf};
use datafusion::prelude::{DataFrame, SessionContext};
use datafusion::sql::parser::Statement;
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
use datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider;
use datafusion_pg_catalog::sql::PostgresCompatibilityParser;

use super::engine::{StatementError, query_error};
use super::session::{default_setting, version_string};

/// The limits every client statement runs under.
#[derive(Debug, Clone)]
pub struct QueryLimits {
    /// Memory one query's operators may hold (sorts, aggregates, joins).
    pub memory: usize,
    /// The server's statement timeout (a session may `SET` its own).
    pub statement_timeout: Option<Duration>,
    /// Postgres connections open at once; more are refused.
    pub max_connections: usize,
    /// Operators (`+`, `AND`, `=`, ..) in one statement.
    pub max_operators: usize,
}

impl Default for QueryLimits {
    fn default() -> Self {
        QueryLimits {
            memory: 512 << 20,
            statement_timeout: Some(Duration::from_secs(300)),
            max_connections: 100,
            max_operators: 1024,
        }
    }
}

/// Plans clients' queries.
pub struct QueryPlanner {
    parser: PostgresCompatibilityParser,
    limits: QueryLimits,
}

impl std::fmt::Debug for QueryPlanner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryPlanner")
            .field("limits", &self.limits)
            .finish()
    }
}

impl QueryPlanner {
    pub fn new(limits: QueryLimits) -> Self {
        QueryPlanner {
            parser: PostgresCompatibilityParser::new(),
            limits,
        }
    }

    pub fn limits(&self) -> &QueryLimits {
        &self.limits
    }

    /// Plans one read-only statement over the views of `ctx`.
    pub async fn plan(&self, ctx: &SessionContext, sql: &str) -> Result<DataFrame, StatementError> {
        check_size(sql, self.limits.max_operators)?;
        let mut statements = self
            .parser
            .parse(sql)
            .map_err(|e| StatementError::new("42601", format!("syntax error: {e}")))?;
        let statement = match statements.len() {
            1 => statements.remove(0),
            0 => return Err(StatementError::new("42601", "an empty statement")),
            _ => {
                return Err(StatementError::new(
                    "42601",
                    "one statement at a time, please",
                ));
            }
        };
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_limit(self.limits.memory, 1.0)
            .with_disk_manager_builder(
                DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled),
            )
            .build_arc()
            .map_err(query_error)?;
        let state = SessionStateBuilder::new_from_existing(ctx.state())
            .with_runtime_env(runtime)
            .build();
        let plan = state
            .statement_to_plan(Statement::Statement(Box::new(statement)))
            .await
            .map_err(query_error)?;
        SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false)
            .verify_plan(&plan)
            .map_err(|e| StatementError::new("25006", e.strip_backtrace()))?;
        Ok(DataFrame::new(state, plan))
    }
}

/// Refuses a statement with more than `max` operators: a chain like
/// `1+1+..+1` becomes a tree as deep as it is long, and every pass over the
/// tree recurses. Counted on tokens, before anything recursive sees it.
pub fn check_size(sql: &str, max: usize) -> Result<(), StatementError> {
    let Ok(tokens) = Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize() else {
        return Ok(()); // The parser will report where.
    };
    let operators = tokens
        .iter()
        .filter(|t| match t {
            Token::Word(w) => {
                w.quote_style.is_none()
                    && matches!(
                        w.value.to_uppercase().as_str(),
                        "AND" | "OR" | "NOT" | "LIKE" | "IS" | "BETWEEN" | "CASE" | "WHEN"
                    )
            }
            Token::Plus
            | Token::Minus
            | Token::Mul
            | Token::Div
            | Token::Mod
            | Token::StringConcat
            | Token::Eq
            | Token::DoubleEq
            | Token::Neq
            | Token::Lt
            | Token::Gt
            | Token::LtEq
            | Token::GtEq
            | Token::Caret
            | Token::Ampersand
            | Token::Pipe
            | Token::DoubleColon
            | Token::LParen
            | Token::LBracket => true,
            _ => false,
        })
        .count();
    if operators > max {
        return Err(StatementError::new(
            "54001",
            format!("the statement is too complex: {operators} operators, at most {max}"),
        ));
    }
    Ok(())
}

/// Makes a session answer what Postgres clients ask on connecting:
/// `pg_catalog` (with the views in `pg_class` and `pg_attribute`),
/// `information_schema`, and the functions drivers call (`version()`,
/// `current_schema()`, `pg_get_userbyid`, `has_table_privilege`, ..).
pub fn add_postgres_catalog(ctx: &SessionContext) -> Result<(), DataFusionError> {
    let catalog = ctx
        .state()
        .config()
        .options()
        .catalog
        .default_catalog
        .clone();
    datafusion_pg_catalog::setup_pg_catalog(ctx, &catalog, EmptyContextProvider).map_err(|e| *e)?;
    ctx.register_udf(version_udf());
    ctx.register_udf(current_setting_udf());
    Ok(())
}

/// `current_setting(name)`: the server's settings as `SHOW` knows them
/// (Grafana asks `current_setting('server_version_num')`); NULL for others.
fn current_setting_udf() -> ScalarUDF {
    use arrow::array::{Array, AsArray, StringArray};
    use datafusion::scalar::ScalarValue;
    create_udf(
        "current_setting",
        vec![arrow::datatypes::DataType::Utf8],
        arrow::datatypes::DataType::Utf8,
        Volatility::Stable,
        Arc::new(|args: &[ColumnarValue]| {
            Ok(match &args[0] {
                ColumnarValue::Scalar(name) => {
                    ColumnarValue::Scalar(ScalarValue::Utf8(match name {
                        ScalarValue::Utf8(Some(n)) => default_setting(n).map(str::to_string),
                        _ => None,
                    }))
                }
                ColumnarValue::Array(names) => {
                    let names = arrow::compute::cast(names, &arrow::datatypes::DataType::Utf8)?;
                    let names = names.as_string::<i32>();
                    let values: StringArray = (0..names.len())
                        .map(|i| {
                            names
                                .is_valid(i)
                                .then(|| default_setting(names.value(i)))
                                .flatten()
                        })
                        .collect();
                    ColumnarValue::Array(Arc::new(values))
                }
            })
        }),
    )
}

fn version_udf() -> ScalarUDF {
    let version = version_string();
    create_udf(
        "version",
        vec![],
        arrow::datatypes::DataType::Utf8,
        Volatility::Stable,
        Arc::new(move |_| {
            Ok(ColumnarValue::Scalar(
                datafusion::scalar::ScalarValue::Utf8(Some(version.clone())),
            ))
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_operator_chains_are_refused_before_planning() {
        let long = format!("SELECT 1{}", "+1".repeat(20_000));
        let e = check_size(&long, 1024).unwrap_err();
        assert_eq!(e.code, "54001");
        assert!(check_size("SELECT a + 1 FROM t WHERE b = 2 AND c < 3", 1024).is_ok());
        // Operators inside strings are not operators.
        let quoted = format!("SELECT '{}'", "+".repeat(20_000));
        assert!(check_size(&quoted, 1024).is_ok());
    }
}
