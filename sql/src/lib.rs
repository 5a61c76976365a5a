//! Headwater's SQL layer: DDL, and a streaming planner that rewrites DataFusion
//! logical plans into Headwater dataflows through DataFusion's extension points.
//!
//! The planner arrives with the SQL issue. Until then, the layer only fixes its
//! place in the dependency order (`headwater` -> `sql` -> `operators` -> `runtime`)
//! and re-exports the pieces it will plan into.

pub use headwater_operators as operators;
pub use headwater_runtime as runtime;
