//! Headwater's SQL layer: a script of `CREATE TABLE`, `INSERT INTO .. SELECT`,
//! `SELECT` and `EXPLAIN` statements, planned by DataFusion and rewritten
//! into a Headwater dataflow through DataFusion's extension points (table
//! providers, table functions, the logical plan), with no fork.
//!
//! A row's way: [`script`] splits the text and lifts Flink-only syntax out,
//! [`ddl`] reads tables, [`connectors`] makes their sources and sinks,
//! [`planner`] turns each query's logical plan into operators.

pub mod batch;
pub mod catalog;
pub mod connectors;
pub mod ddl;
pub mod error;
pub mod functions;
pub mod group_windows;
pub mod kafka;
pub mod planner;
pub mod script;
pub mod view_scan;
pub mod views;

pub use error::{Position, SqlError};
pub use planner::{SqlJob, SqlOptions, plan_script};

pub use headwater_operators as operators;
pub use headwater_runtime as runtime;
