//! What a client's statement does, whichever protocol brought it: a query
//! reads the views (all of a job's views as of one completed checkpoint);
//! under `headwater serve`, `CREATE TABLE`, `CREATE MATERIALIZED VIEW`,
//! `INSERT INTO` and `DROP` change the catalog and start or stop jobs.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::error::DataFusionError;
use headwater_sql::views::ViewQueries;

use super::catalog::Catalog;
use super::jobs::Jobs;

/// The result of one statement.
#[derive(Debug)]
pub enum Outcome {
    /// A query's rows.
    Rows {
        schema: SchemaRef,
        batches: Vec<RecordBatch>,
    },
    /// A statement without rows, with its command tag (`CREATE TABLE`, `SET`).
    Done { tag: String },
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
}

impl Engine {
    /// An engine that only reads the views (`headwater run`).
    pub fn read_only(queries: ViewQueries, jobs: Arc<Jobs>) -> Self {
        Engine {
            queries,
            jobs,
            catalog: None,
            counters: Default::default(),
        }
    }

    /// Runs every statement of `sql` in order; stops at the first error.
    pub async fn execute_all(&self, sql: &str) -> Result<Vec<Outcome>, StatementError> {
        let mut outcomes = Vec::new();
        for statement in split_statements(sql) {
            outcomes.push(self.execute(&statement).await?);
        }
        Ok(outcomes)
    }

    /// Runs one statement.
    pub async fn execute(&self, statement: &str) -> Result<Outcome, StatementError> {
        let started = std::time::Instant::now();
        let result = self.dispatch(statement).await;
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

    async fn dispatch(&self, statement: &str) -> Result<Outcome, StatementError> {
        if let Some(tag) = session_statement(statement) {
            return Ok(Outcome::Done { tag });
        }
        if let Some(catalog) = &self.catalog {
            if let Some(outcome) = catalog.execute(statement).await? {
                return Ok(outcome);
            }
        } else if changes_catalog(statement) {
            return Err(StatementError::new(
                "25006",
                "this server only reads the views of its job; `headwater serve` takes CREATE TABLE, CREATE MATERIALIZED VIEW, INSERT INTO and DROP",
            ));
        }
        let (schema, batches) = self.queries.query(statement).await.map_err(query_error)?;
        Ok(Outcome::Rows { schema, batches })
    }
}

/// The first words of `sql`, upper case.
pub fn lead(sql: &str, words: usize) -> String {
    let without_comments: String = sql
        .lines()
        .map(|l| l.split("--").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join(" ");
    without_comments
        .split_whitespace()
        .take(words)
        .collect::<Vec<_>>()
        .join(" ")
        .to_uppercase()
}

/// Whether a statement declares, starts or stops something.
pub fn changes_catalog(sql: &str) -> bool {
    let lead = lead(sql, 1);
    matches!(lead.as_str(), "CREATE" | "INSERT" | "DROP")
}

/// Statements clients send on connecting (`SET ..`, transactions): accepted,
/// no effect. Returns the command tag.
pub fn session_statement(sql: &str) -> Option<String> {
    let first = lead(sql, 1);
    matches!(
        first.as_str(),
        "SET" | "BEGIN" | "COMMIT" | "ROLLBACK" | "DISCARD" | "RESET" | "START"
    )
    .then_some(first)
}

/// Splits a script at top-level semicolons (not inside quotes or comments).
pub fn split_statements(query: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut quote: Option<char> = None;
    let mut chars = query.chars().peekable();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (None, '\'' | '"') => quote = Some(c),
            (None, '-') if chars.peek() == Some(&'-') => {
                // A comment runs to the end of its line.
                current.push(c);
                for c in chars.by_ref() {
                    current.push(c);
                    if c == '\n' {
                        break;
                    }
                }
                continue;
            }
            (None, ';') => {
                if !current.trim().is_empty() && !lead(&current, 1).is_empty() {
                    out.push(std::mem::take(&mut current));
                }
                current.clear();
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    if !current.trim().is_empty() && !lead(&current, 1).is_empty() {
        out.push(current);
    }
    out
}

/// A DataFusion error with its SQLSTATE: an unknown table is 42P01, an
/// unknown column 42703, a syntax error 42601, a type error 42804, the
/// rest 42000 (or XX000 for failures while running).
pub fn query_error(e: DataFusionError) -> StatementError {
    use DataFusionError as E;
    let text = e.strip_backtrace();
    let code = match &e {
        E::SQL(..) => "42601",
        E::SchemaError(..) => "42703",
        E::Plan(m) if m.contains("table") && m.contains("not found") => "42P01",
        E::Plan(m) if m.contains("type") || m.contains("coerc") || m.contains("Cannot") => "42804",
        E::Plan(_) | E::NotImplemented(_) => "42000",
        E::ArrowError(..) => "22000",
        _ => "XX000",
    };
    // Errors may come wrapped (with context, or a diagnostic): the text decides then.
    let code = if text.contains("ParserError") || text.contains("SQL error") {
        "42601"
    } else if text.contains("table") && text.contains("not found") {
        "42P01"
    } else if text.contains("No field named") || text.contains("Schema error") {
        "42703"
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
    }

    #[test]
    fn reads_the_lead_past_comments() {
        assert_eq!(
            lead("-- hello\n  create table t (a int)", 2),
            "CREATE TABLE"
        );
        assert!(changes_catalog("drop materialized view v"));
        assert!(!changes_catalog("select 1"));
        assert_eq!(
            session_statement("set extra_float_digits = 3").as_deref(),
            Some("SET")
        );
    }
}
