//! Materialized views: a sink that keeps a query's rows by key in keyed
//! state ([`sink`]), and the registry where each completed checkpoint's copy
//! of them is published for readers ([`registry`]).

pub mod registry;
pub mod sink;

pub use registry::{SnapshotPart, ViewInfo, ViewRegistry};
pub use sink::{ViewCodec, ViewSink, rows_state};
