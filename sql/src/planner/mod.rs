//! A script, statement by statement, into one dataflow: `CREATE TABLE`
//! declares, `INSERT INTO sink SELECT ..` adds a pipeline ending in the sink,
//! a bare `SELECT ..` one ending in standard output, and `EXPLAIN ..` shows
//! the dataflow of its statement instead of running it.

mod columns;
mod dataflow;
mod dedup;
mod inserts;
mod join;
mod named_views;
mod options;
mod query;
mod temporal_join;
mod top_n;
mod windowing;

pub(crate) use named_views::create_view;
pub use options::{SqlJob, SqlOptions};

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use datafusion::common::TableReference;
use datafusion::common::config::ConfigOptions;
use datafusion::logical_expr::{DmlStatement, LogicalPlan, WriteOp};
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser;
use headwater_operators::sinks::StdoutSink;
use headwater_runtime::plan::PhysicalPlan;
use sqlparser::dialect::GenericDialect;
use sqlparser::keywords::Keyword;
use sqlparser::parser::Parser;

use crate::catalog::{DeclaredTable, Tables, WindowFunction, WindowTableFunction, downcast};
use crate::connectors;
use crate::ddl::TableDef;
use crate::error::{Position, SqlError};
use crate::script::{ScriptStatement, read_script};
use dataflow::Dataflow;

/// A DataFusion session that knows the window table functions and Flink's
/// functions, with spans collected so that errors have places. Identifiers
/// keep their case, as in Flink: `itemName` and `ITEMNAME` are two columns.
pub fn session(tables: &Tables) -> SessionContext {
    let mut config = SessionConfig::new();
    config.options_mut().sql_parser.collect_spans = true;
    config.options_mut().sql_parser.enable_ident_normalization = false;
    let ctx = SessionContext::new_with_config(config);
    crate::functions::register(&ctx);
    for function in WindowFunction::ALL {
        // DataFusion looks table functions up by the name as written.
        let name = function.name();
        for spelling in [name.to_string(), name.to_uppercase()] {
            ctx.register_udtf(
                &spelling,
                Arc::new(WindowTableFunction {
                    function,
                    tables: tables.clone(),
                }),
            );
        }
    }
    ctx
}

/// Plans every statement of `sql` into one job. Nothing runs: a statement
/// that is wrong or not supported fails here, with its place.
pub async fn plan_script(sql: &str, options: &SqlOptions) -> Result<SqlJob, SqlError> {
    let tables: Tables = Arc::new(Mutex::new(HashMap::new()));
    let ctx = session(&tables);
    for udf in &options.udfs {
        ctx.register_udf(udf.clone());
    }
    for udaf in &options.udafs {
        ctx.register_udaf(udaf.clone());
    }
    let mut dataflow = Dataflow::new(&options.name, options.parallelism);
    let mut explains = Vec::new();
    let mut pipelines = 0;
    let mut views = Vec::new();
    let mut statements = Vec::new();
    for declared in &options.prelude {
        statements.extend(read_script(declared)?);
    }
    statements.extend(read_script(sql)?);
    for statement in statements {
        let lead = statement.lead.as_str();
        if lead.starts_with("CREATE TABLE") || lead.starts_with("CREATE TEMPORARY TABLE") {
            let def = TableDef::from_statement(&statement, &ctx)?;
            let name = def.name.clone();
            if tables
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains_key(&name)
            {
                return Err(SqlError::invalid(
                    statement.start,
                    format!("table `{name}` is already declared"),
                ));
            }
            let provider = Arc::new(DeclaredTable { def });
            ctx.register_table(TableReference::bare(name.as_str()), provider.clone())
                .map_err(|e| SqlError::datafusion(e, statement.start))?;
            tables
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(name, provider);
        } else if lead.starts_with("CREATE VIEW") || lead.starts_with("CREATE TEMPORARY VIEW") {
            named_views::create_view(&ctx, &tables, &statement).await?;
        } else if lead.starts_with("CREATE MATERIALIZED VIEW") {
            let name = materialized_view(&ctx, &mut dataflow, &statement, options).await?;
            if views.contains(&name) {
                return Err(SqlError::invalid(
                    statement.start,
                    format!("view `{name}` is already declared"),
                ));
            }
            views.push(name);
            pipelines += 1;
        } else if lead.starts_with("SET") {
            set_option(&mut dataflow, &statement)?;
        } else if lead.starts_with("EXPLAIN") {
            let mut scratch = Dataflow::new(&options.name, options.parallelism);
            let inner = explained(&statement);
            pipeline(&ctx, &mut scratch, &inner).await?;
            scratch.write_inserts()?;
            explains.push(PhysicalPlan::new(&scratch.graph).to_string());
        } else if lead.starts_with("INSERT")
            || lead.starts_with("SELECT")
            || lead.starts_with("WITH")
        {
            pipeline(&ctx, &mut dataflow, &statement).await?;
            pipelines += 1;
        } else if lead.starts_with("CREATE FUNCTION")
            || lead.starts_with("CREATE TEMPORARY FUNCTION")
            || lead.starts_with("CREATE TEMPORARY SYSTEM")
        {
            return Err(SqlError::unsupported(
                statement.start,
                "CREATE FUNCTION loads a Java class, which Headwater cannot run: write the \
                 function in Rust and register it with `SqlOptions::udfs` (scalar) or \
                 `SqlOptions::udafs` (aggregate), then call it by name from SQL",
            ));
        } else {
            return Err(SqlError::unsupported(
                statement.start,
                format!(
                    "`{}` is not supported in a job script: use CREATE TABLE, INSERT INTO .. SELECT, SELECT or EXPLAIN",
                    if lead.is_empty() {
                        "this statement"
                    } else {
                        lead
                    }
                ),
            ));
        }
    }
    dataflow.write_inserts()?;
    Ok(SqlJob {
        graph: dataflow.graph,
        explains,
        pipelines,
        views,
    })
}

/// `SET 'key' = 'value'`: job options, named as in Flink.
fn set_option(dataflow: &mut Dataflow, statement: &ScriptStatement) -> Result<(), SqlError> {
    use sqlparser::tokenizer::Token;
    let values: Vec<(String, Position)> = statement
        .tokens
        .iter()
        .skip(1)
        .filter_map(|t| {
            let text = match &t.token {
                Token::SingleQuotedString(s) => s.clone(),
                Token::Word(w) => w.value.clone(),
                Token::Number(n, _) => n.clone(),
                Token::Period => ".".into(),
                _ => return None,
            };
            Some((text, t.span.start.into()))
        })
        .collect();
    let Some((key, at)) = values.first().cloned() else {
        return Err(SqlError::invalid(
            statement.start,
            "SET needs 'key' = 'value'",
        ));
    };
    let value = values.get(1).map(|(v, _)| v.clone()).unwrap_or_default();
    match key.as_str() {
        "table.exec.state.ttl" => {
            let ttl = crate::ddl::duration(&value).ok_or_else(|| {
                SqlError::invalid(
                    at,
                    format!(
                        "`{value}` is not a duration such as '1 h', '30 min', '10 s' or '500 ms'"
                    ),
                )
            })?;
            dataflow.state_ttl = (!ttl.is_zero()).then_some(ttl);
            Ok(())
        }
        other => Err(SqlError::unsupported(
            at,
            format!("unknown option `{other}`; known: 'table.exec.state.ttl'"),
        )),
    }
}

/// The statement an `EXPLAIN` is about.
fn explained(statement: &ScriptStatement) -> ScriptStatement {
    let mut inner = statement.clone();
    let first = &statement.tokens[0];
    let line_start: usize = inner
        .text
        .split_inclusive('\n')
        .take(first.span.start.line as usize - 1)
        .map(str::len)
        .sum();
    let from = line_start
        + inner.text[line_start..]
            .char_indices()
            .nth(first.span.start.column as usize - 1)
            .map_or(0, |(i, _)| i);
    inner
        .text
        .replace_range(from..from + "EXPLAIN".len(), "       ");
    inner.tokens.remove(0);
    inner.lead = inner
        .tokens
        .iter()
        .take(2)
        .filter_map(|t| match &t.token {
            sqlparser::tokenizer::Token::Word(w) => Some(w.value.to_uppercase()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join(" ");
    if let Some(t) = inner.tokens.first() {
        inner.start = t.span.start.into();
    }
    inner
}

/// Plans one `INSERT INTO .. SELECT` or `SELECT` into `dataflow`.
async fn pipeline(
    ctx: &SessionContext,
    dataflow: &mut Dataflow,
    statement: &ScriptStatement,
) -> Result<(), SqlError> {
    refuse_unbounded_constructs(statement)?;
    let parsed = parse(statement)?;
    // A bare query is known by its text, as the parser prints it back
    // (spacing, comments and case of keywords do not change it).
    let print_scope = format!(
        "print:{:08x}",
        xxhash_rust::xxh3::xxh3_64(parsed.to_string().as_bytes()) as u32
    );
    let plan = logical_plan(ctx, parsed, statement.start).await?;
    let at = statement.start;
    match &plan {
        LogicalPlan::Dml(DmlStatement {
            table_name,
            op: WriteOp::Insert(_),
            input,
            ..
        }) => {
            let provider = ctx
                .table_provider(table_name.clone())
                .await
                .map_err(|e| SqlError::datafusion(e, at))?;
            let Some(table) = downcast::<DeclaredTable>(&provider) else {
                return Err(SqlError::invalid(
                    at,
                    format!("`{table_name}` is not a table of this script"),
                ));
            };
            let sink = connectors::sink(&table.def)?;
            let scope = format!("insert:{}", table.def.name);
            dataflow.begin_statement(&scope);
            let query::QueryStream {
                stream, updating, ..
            } = query::plan_query(dataflow, input, at, &statement.temporal_clauses)?;
            if updating && !connectors::takes_changes(&table.def) {
                return Err(SqlError::unsupported(
                    at,
                    format!(
                        "table `{}` ({}) is append-only, and this query updates its results \
                         (a GROUP BY without a window); write it to a 'print', 'blackhole' or \
                         'upsert-kafka' table, or use a window",
                        table.def.name,
                        table.def.connector()?.value
                    ),
                ));
            }
            dataflow.insert(
                &table.def.name,
                stream,
                updating,
                sink,
                &table.def.primary_key,
                at,
            );
            Ok(())
        }
        LogicalPlan::Dml(_) => Err(SqlError::unsupported(at, "only INSERT writes to a table")),
        query_plan => {
            dataflow.begin_statement(&print_scope);
            let stream =
                query::plan_query(dataflow, query_plan, at, &statement.temporal_clauses)?.stream;
            dataflow
                .sink(stream, &StdoutSink::json())
                .map_err(|e| SqlError::plan(at, e))
        }
    }
}

/// `CREATE MATERIALIZED VIEW v AS SELECT ..`: the query into a view sink,
/// keyed by the query's GROUP BY columns. Returns the view's name.
async fn materialized_view(
    ctx: &SessionContext,
    dataflow: &mut Dataflow,
    statement: &ScriptStatement,
    options: &SqlOptions,
) -> Result<String, SqlError> {
    refuse_unbounded_constructs(statement)?;
    let at = statement.start;
    let sqlparser::ast::Statement::CreateView(create) = parse(statement)? else {
        return Err(SqlError::invalid(
            at,
            "expected CREATE MATERIALIZED VIEW name AS SELECT ..",
        ));
    };
    let name = create.name.to_string();
    let declared = declared_key(&create.options, at)?;
    let query = sqlparser::ast::Statement::Query(create.query);
    let plan = logical_plan(ctx, query, at).await?;
    dataflow.begin_statement(&format!("view:{name}"));
    let query = query::plan_query(dataflow, &plan, at, &statement.temporal_clauses)?;
    let key = match (declared, query.key) {
        (Some(declared), Some(derived)) if query.updating && declared != derived => {
            return Err(SqlError::unsupported(
                at,
                format!(
                    "view `{name}` updates its rows by its GROUP BY ({}); a declared key must be the same",
                    derived.join(", ")
                ),
            ));
        }
        (Some(declared), _) => declared,
        (None, Some(derived)) => derived,
        (None, None) => {
            return Err(SqlError::unsupported(
                at,
                format!(
                    "view `{name}` needs a key: a view is kept by the GROUP BY columns of its query \
                     (all selected), or by a declared one: CREATE MATERIALIZED VIEW {name} WITH (primary_key = 'column, ..') AS .."
                ),
            ));
        }
    };

    dataflow
        .view(
            query.stream,
            &name,
            &key,
            &options.views,
            options.max_parallelism,
        )
        .map_err(|e| SqlError::plan(at, e))?;
    Ok(name)
}

/// A view's declared key: `WITH (primary_key = 'a, b')`. Later rows of an
/// append-only query replace earlier ones with the same key (an upsert).
fn declared_key(
    options: &sqlparser::ast::CreateTableOptions,
    at: crate::error::Position,
) -> Result<Option<Vec<String>>, SqlError> {
    use sqlparser::ast::{CreateTableOptions, Expr, SqlOption, Value};
    let options = match options {
        CreateTableOptions::None => return Ok(None),
        CreateTableOptions::With(o) | CreateTableOptions::Options(o) => o,
        _ => {
            return Err(SqlError::unsupported(
                at,
                "a view takes WITH (primary_key = '..') only",
            ));
        }
    };
    let mut key = None;
    for option in options {
        let SqlOption::KeyValue { key: name, value } = option else {
            return Err(SqlError::unsupported(
                at,
                "a view takes WITH (primary_key = '..') only",
            ));
        };
        let name_at = name.span.start.into();
        if !matches!(
            name.value.to_lowercase().as_str(),
            "primary_key" | "primary-key"
        ) {
            return Err(SqlError::unsupported(
                name_at,
                format!("unknown view option `{}`; known: primary_key", name.value),
            ));
        }
        let text = match value {
            Expr::Value(v) => match &v.value {
                Value::SingleQuotedString(s) => s.clone(),
                _ => String::new(),
            },
            Expr::Identifier(i) => i.value.clone(),
            _ => String::new(),
        };
        let columns: Vec<String> = text
            .split(',')
            .map(|c| c.trim().to_string())
            .filter(|c| !c.is_empty())
            .collect();
        if columns.is_empty() {
            return Err(SqlError::invalid(
                name_at,
                "primary_key names the key columns: 'a, b'",
            ));
        }
        key = Some(columns);
    }
    Ok(key)
}

/// The statement's text, parsed by sqlparser, with Flink's calls that are
/// not DataFusion functions rewritten (see [`crate::functions`]).
pub(crate) fn parse(statement: &ScriptStatement) -> Result<sqlparser::ast::Statement, SqlError> {
    let mut parsed = Parser::new(&GenericDialect {})
        .try_with_sql(&statement.text)
        .and_then(|mut p| p.parse_statement())
        .map_err(|e| SqlError::parser(e, statement.start))?;
    crate::functions::rewrite_statement(&mut parsed, &statement.json_clauses);
    crate::group_windows::rewrite_group_windows(&mut parsed)?;
    Ok(parsed)
}

/// DataFusion's logical plan of a statement, types coerced by its analyzer.
pub(crate) async fn logical_plan(
    ctx: &SessionContext,
    statement: sqlparser::ast::Statement,
    at: crate::error::Position,
) -> Result<LogicalPlan, SqlError> {
    let state = ctx.state();
    let plan = state
        .statement_to_plan(DfStatement::Statement(Box::new(statement)))
        .await
        .map_err(|e| SqlError::datafusion(e, at))?;
    let plan = state
        .analyzer()
        .execute_and_check(plan, &ConfigOptions::default(), |_, _| {})
        .map_err(|e| SqlError::datafusion(e, at))?;
    // `IN` and `EXISTS` subqueries become semi and anti joins.
    let decorrelate = datafusion::optimizer::Optimizer::with_rules(vec![Arc::new(
        datafusion::optimizer::decorrelate_predicate_subquery::DecorrelatePredicateSubquery::new(),
    )]);
    decorrelate
        .optimize(plan, &state, |_, _| {})
        .map_err(|e| SqlError::datafusion(e, at))
}

/// Refuses, at their place, what a stream cannot do, before DataFusion
/// plans it (its plans do not keep places).
fn refuse_unbounded_constructs(statement: &ScriptStatement) -> Result<(), SqlError> {
    let checks: [(Keyword, &str); 3] = [
        (
            Keyword::OVER,
            "OVER windows are not supported; use TUMBLE, HOP, SESSION or CUMULATE with GROUP BY",
        ),
        (
            Keyword::ORDER,
            "ORDER BY on an unbounded stream is not supported; use a window or a view",
        ),
        (
            Keyword::LIMIT,
            "LIMIT on an unbounded stream is not supported; use a window or a view",
        ),
    ];
    let mut exempt = row_number_clauses(&statement.tokens);
    exempt.extend(function_arguments(&statement.tokens));
    for (keyword, message) in checks {
        let found = statement
            .tokens
            .iter()
            .enumerate()
            .find_map(|(i, t)| match &t.token {
                sqlparser::tokenizer::Token::Word(w)
                    if w.keyword == keyword && !exempt.iter().any(|r| r.contains(&i)) =>
                {
                    Some(t.span.start.into())
                }
                _ => None,
            });
        if let Some(at) = found {
            return Err(SqlError::unsupported(at, message));
        }
    }
    Ok(())
}

/// The tokens inside parentheses that do not hold a query: a function's
/// arguments, where `ORDER BY` orders an aggregate's input
/// (`last_value(status ORDER BY time)`).
fn function_arguments(
    tokens: &[sqlparser::tokenizer::TokenWithSpan],
) -> Vec<std::ops::Range<usize>> {
    use sqlparser::tokenizer::Token;
    let mut ranges = Vec::new();
    let mut open: Vec<(usize, bool)> = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        match &t.token {
            Token::LParen => {
                let query = matches!(
                    tokens.get(i + 1).map(|t| &t.token),
                    Some(Token::Word(w)) if matches!(w.keyword, Keyword::SELECT | Keyword::WITH | Keyword::VALUES)
                );
                let call = i > 0 && matches!(tokens[i - 1].token, Token::Word(_));
                open.push((i, call && !query));
            }
            Token::RParen => {
                if let Some((start, true)) = open.pop() {
                    ranges.push(start..i + 1);
                }
            }
            _ => {}
        }
    }
    ranges
}

/// The tokens of each `ROW_NUMBER() OVER (..)`: its `OVER` and `ORDER BY`
/// are the deduplication pattern's (checked when the plan is read).
fn row_number_clauses(
    tokens: &[sqlparser::tokenizer::TokenWithSpan],
) -> Vec<std::ops::Range<usize>> {
    use sqlparser::tokenizer::Token;
    let mut ranges = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        let Token::Word(w) = &t.token else { continue };
        if !w.value.eq_ignore_ascii_case("row_number") {
            continue;
        }
        let shape = [Token::LParen, Token::RParen];
        let opens = tokens
            .get(i + 1..i + 3)
            .is_some_and(|ts| ts.iter().zip(&shape).all(|(t, s)| &t.token == s))
            && matches!(tokens.get(i + 3).map(|t| &t.token), Some(Token::Word(w)) if w.keyword == Keyword::OVER)
            && matches!(tokens.get(i + 4).map(|t| &t.token), Some(Token::LParen));
        if !opens {
            continue;
        }
        let mut depth = 0usize;
        for (j, t) in tokens.iter().enumerate().skip(i + 4) {
            match t.token {
                Token::LParen => depth += 1,
                Token::RParen => {
                    depth -= 1;
                    if depth == 0 {
                        ranges.push(i..j + 1);
                        break;
                    }
                }
                _ => {}
            }
        }
    }
    ranges
}
