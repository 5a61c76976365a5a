//! Stateless transforms, evaluated on whole batches.

pub mod expr;
mod filter;
mod project;
mod union;

pub use filter::Filter;
pub use project::Project;
pub use union::Union;
