//! What a client's statement does, whichever protocol brought it: a query
//! reads the views (all of a job's views as of one completed checkpoint);
//! under `headwater serve`, `CREATE TABLE`, `CREATE MATERIALIZED VIEW`,
//! `INSERT INTO` and `DROP` change the catalog and start or stop jobs.
//! Every statement runs under the server's limits (see [`QueryLimits`]), and
//! a query's rows stream to the client batch by batch.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_plan::memory::MemoryStream;
use datafusion::prelude::DataFrame;
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
use headwater_sql::views::ViewQueries;
use tokio::time::Instant;

use super::catalog::Catalog;
use super::guard::{Deadline, guarded};
use super::jobs::Jobs;
use super::query::{QueryLimits, QueryPlanner};
use super::session::Session;

/// A query's rows, as they come.
pub struct Rows {
    pub schema: SchemaRef,
    pub stream: SendableRecordBatchStream,
}

/// The result of one statement.
pub enum Outcome {
    /// A query's rows.
    Rows(Rows),
    /// A statement without rows, with its command tag (`CREATE TABLE`, `SET`).
    Done { tag: String },
}

impl Outcome {
    /// Rows already at hand.
    pub fn batches(schema: SchemaRef, batches: Vec<RecordBatch>) -> Outcome {
        let stream = MemoryStream::try_new(batches, schema.clone(), None)
            .expect("batches of their own schema");
        Outcome::Rows(Rows {
            schema,
            stream: Box::pin(stream),
        })
    }
}

impl std::fmt::Debug for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Rows(rows) => write!(f, "Rows({:?})", rows.schema),
            Outcome::Done { tag } => write!(f, "Done({tag})"),
        }
    }
}

/// A statement that failed, with its SQLSTATE.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct StatementError {
    /// The Postgres SQLSTATE (42P01 unknown table, 42601 syntax, ...).
    pub code: &'static str,
    pub message: String,
}

impl StatementError {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        StatementError {
            code,
            message: message.into(),
        }
    }
}

/// Counts of statements served, for `/metrics`.
#[derive(Debug, Default)]
pub struct QueryCounters {
    pub queries: AtomicU64,
    pub failed: AtomicU64,
    /// Total time spent answering queries, in microseconds.
    pub micros: AtomicU64,
}

/// Runs clients' statements over the views and, when it has a catalog,
/// accepts statements that start and stop jobs.
#[derive(Clone)]
pub struct Engine {
    pub queries: ViewQueries,
    pub jobs: Arc<Jobs>,
    /// Under `headwater serve`: tables and jobs declared by clients.
    pub catalog: Option<Arc<Catalog>>,
    pub counters: Arc<QueryCounters>,
    pub planner: Arc<QueryPlanner>,
}

impl Engine {
    /// An engine that only reads the views (`headwater run`).
    pub fn read_only(queries: ViewQueries, jobs: Arc<Jobs>, limits: QueryLimits) -> Self {
        Engine {
            queries,
            jobs,
            catalog: None,
            counters: Default::default(),
            planner: Arc::new(QueryPlanner::new(limits)),
        }
    }

    pub fn limits(&self) -> &QueryLimits {
        self.planner.limits()
    }

    /// The deadline of a statement that starts now.
    pub fn deadline(&self, session: &Session) -> Deadline {
        Deadline(
            session
                .timeout(self.limits().statement_timeout)
                .map(|t| Instant::now() + t),
        )
    }

    /// Runs one statement; a query's rows stream, bounded by the deadline.
    pub async fn execute(
        &self,
        statement: &str,
        session: &mut Session,
    ) -> Result<Outcome, StatementError> {
        let started = std::time::Instant::now();
        let result = self.dispatch(statement, session).await;
        self.record(started, result.is_ok());
        result
    }

    /// Counts a statement that began at `started`.
    pub fn record(&self, started: std::time::Instant, ok: bool) {
        self.counters.queries.fetch_add(1, Ordering::Relaxed);
        self.counters
            .micros
            .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        if !ok {
            self.counters.failed.fetch_add(1, Ordering::Relaxed);
        }
    }

    async fn dispatch(
        &self,
        statement: &str,
        session: &mut Session,
    ) -> Result<Outcome, StatementError> {
        if let Some(outcome) = session.execute(statement, self.limits().statement_timeout) {
            return outcome;
        }
        let deadline = self.deadline(session);
        if let Some(catalog) = &self.catalog {
            if let Some(outcome) = deadline.run(catalog.execute(statement)).await?? {
                return Ok(outcome);
            }
        } else if changes_catalog(statement) {
            return Err(StatementError::new(
                "25006",
                "this server only reads the views of its job; `headwater serve` takes CREATE TABLE, CREATE MATERIALIZED VIEW, INSERT INTO and DROP",
            ));
        }
        let frame = deadline.run(self.plan(statement)).await??;
        self.stream(frame, deadline).await
    }

    /// Plans a query over the views as of their newest checkpoints.
    ///
    /// Planning is CPU work that never yields: it runs on a blocking thread,
    /// so that the statement's deadline (or a cancel) answers the client on
    /// time, and the threads that serve other clients stay free. A plan
    /// abandoned there ends by itself; the statement size limit bounds it.
    pub async fn plan(&self, statement: &str) -> Result<DataFrame, StatementError> {
        let (ctx, _) = self.queries.session().await.map_err(query_error)?;
        let planner = self.planner.clone();
        let statement = statement.to_string();
        let runtime = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || runtime.block_on(planner.plan(&ctx, &statement)))
            .await
            .unwrap_or_else(|e| {
                tracing::error!("planning a statement failed: {e}");
                Err(StatementError::new(
                    "XX000",
                    "planning the statement failed",
                ))
            })
    }

    /// Starts a planned query: its rows, as they come, until the deadline.
    pub async fn stream(
        &self,
        frame: DataFrame,
        deadline: Deadline,
    ) -> Result<Outcome, StatementError> {
        let schema: SchemaRef = Arc::new(frame.schema().as_arrow().clone());
        let stream = deadline
            .run(frame.execute_stream())
            .await?
            .map_err(query_error)?;
        Ok(Outcome::Rows(Rows {
            schema,
            stream: guarded(stream, deadline, None),
        }))
    }
}

/// The first words of `sql`, upper case, past comments.
pub fn lead(sql: &str, words: usize) -> String {
    match Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize() {
        Ok(tokens) => tokens
            .iter()
            .filter_map(|t| match t {
                Token::Word(w) => Some(w.value.to_uppercase()),
                Token::Whitespace(_) => None,
                other => Some(other.to_string()),
            })
            .take(words)
            .collect::<Vec<_>>()
            .join(" "),
        Err(_) => sql
            .split_whitespace()
            .take(words)
            .collect::<Vec<_>>()
            .join(" ")
            .to_uppercase(),
    }
}

/// Whether a statement declares, starts or stops something.
pub fn changes_catalog(sql: &str) -> bool {
    let lead = lead(sql, 1);
    matches!(lead.as_str(), "CREATE" | "INSERT" | "DROP" | "STOP")
}

/// Splits a script at top-level semicolons: not inside quotes, dollar
/// quotes or comments (a `-- ;` or `/* ; */` never splits). Text that does
/// not tokenize is one statement, for the parser to report.
pub fn split_statements(query: &str) -> Vec<String> {
    let whole = || {
        if query.trim().is_empty() {
            Vec::new()
        } else {
            vec![query.to_string()]
        }
    };
    let Ok(tokens) = Tokenizer::new(&PostgreSqlDialect {}, query).tokenize_with_location() else {
        return whole();
    };
    let line_starts: Vec<usize> = std::iter::once(0)
        .chain(query.match_indices('\n').map(|(i, _)| i + 1))
        .collect();
    // A location (line and column, in characters, from 1) as a byte offset.
    let offset = |line: u64, column: u64| -> Option<usize> {
        let start = *line_starts.get((line as usize).checked_sub(1)?)?;
        query[start..]
            .char_indices()
            .nth((column as usize).checked_sub(1)?)
            .map(|(i, _)| start + i)
    };
    let mut out = Vec::new();
    let (mut from, mut meaningful) = (0, false);
    for token in tokens {
        match token.token {
            Token::SemiColon => {
                let Some(at) = offset(token.span.start.line, token.span.start.column) else {
                    return whole();
                };
                if meaningful {
                    out.push(query[from..at].to_string());
                }
                (from, meaningful) = (at + 1, false);
            }
            Token::Whitespace(_) => {}
            _ => meaningful = true,
        }
    }
    if meaningful {
        out.push(query[from..].to_string());
    }
    out
}

/// A DataFusion error with its SQLSTATE: an unknown table is 42P01, an
/// unknown column 42703, a syntax error 42601, a type error 42804, too
/// much memory 53200, the rest 42000 (or XX000 for failures while running).
pub fn query_error(e: DataFusionError) -> StatementError {
    use DataFusionError as E;
    if let Some(stopped) = super::guard::stopped_error(&e) {
        return stopped;
    }
    let text = e.strip_backtrace();
    let code = match e.find_root() {
        E::SQL(..) => "42601",
        E::SchemaError(..) => "42703",
        E::ResourcesExhausted(_) => "53200",
        E::Plan(m) if m.contains("table") && m.contains("not found") => "42P01",
        E::Plan(m) if m.contains("type") || m.contains("coerc") || m.contains("Cannot") => "42804",
        E::Plan(_) | E::NotImplemented(_) => "42000",
        E::ArrowError(..) => "22000",
        _ => "XX000",
    };
    // Errors may come wrapped (with context, or a diagnostic): the text decides then.
    let code = if code == "53200" {
        code
    } else if text.contains("ParserError") || text.contains("SQL error") {
        "42601"
    } else if text.contains("table") && text.contains("not found") {
        "42P01"
    } else if text.contains("No field named") || text.contains("Schema error") {
        "42703"
    } else if text.contains("Resources exhausted") {
        "53200"
    } else {
        code
    };
    StatementError::new(code, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_at_top_level_semicolons_only() {
        let parts = split_statements(
            "SELECT ';' AS a; -- a comment; with a semicolon\nSELECT \"x;y\" FROM t;  ;\n-- only a comment",
        );
        assert_eq!(parts.len(), 2, "{parts:?}");
        assert!(parts[1].contains("\"x;y\""));
        let parts = split_statements("SELECT 1 /* ; */ + 1; SELECT $$a;b$$; SELECT 'it''s;'");
        assert_eq!(parts.len(), 3, "{parts:?}");
        assert!(parts[1].contains("$$a;b$$"), "{parts:?}");
        assert!(parts[2].contains("'it''s;'"), "{parts:?}");
    }

    #[test]
    fn reads_the_lead_past_comments() {
        assert_eq!(
            lead("-- hello\n /* and */ create table t (a int)", 2),
            "CREATE TABLE"
        );
        assert!(changes_catalog("drop materialized view v"));
        assert!(!changes_catalog("select 1"));
    }
}
