//! What a script is planned with, and what planning gives.

use datafusion::logical_expr::{AggregateUDF, ScalarUDF};
use headwater_operators::view::ViewRegistry;
use headwater_runtime::JobGraph;

/// How a script's job runs.
#[derive(Debug, Clone)]
pub struct SqlOptions {
    /// The job's name, in logs and metrics.
    pub name: String,
    /// The parallelism of sources and keyed operators.
    pub parallelism: usize,
    /// Where the script's materialized views are published for readers.
    pub views: ViewRegistry,
    /// The number of key groups (the job's max parallelism).
    pub max_parallelism: u32,
    /// `CREATE TABLE` statements declared before the script (by a server's
    /// earlier requests); the script's own positions are unaffected.
    pub prelude: Vec<String>,
    /// Rust scalar functions that SQL calls by name (Flink's `CREATE
    /// FUNCTION` loads Java, which Headwater cannot run).
    pub udfs: Vec<ScalarUDF>,
    /// Rust aggregate functions that SQL calls by name.
    pub udafs: Vec<AggregateUDF>,
}

impl Default for SqlOptions {
    fn default() -> Self {
        SqlOptions {
            name: "sql-job".into(),
            parallelism: 1,
            views: ViewRegistry::new(),
            max_parallelism: headwater_runtime::key_groups::DEFAULT_MAX_PARALLELISM,
            prelude: Vec::new(),
            udfs: Vec::new(),
            udafs: Vec::new(),
        }
    }
}

/// A planned script: the job to run, and what its `EXPLAIN`s print.
#[derive(Debug)]
pub struct SqlJob {
    pub graph: JobGraph,
    /// One text per `EXPLAIN`, in order.
    pub explains: Vec<String>,
    /// Pipelines the job runs (each `INSERT`, bare `SELECT` and view).
    pub pipelines: usize,
    /// The materialized views it keeps, by name.
    pub views: Vec<String>,
}
