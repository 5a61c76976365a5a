//! Headwater's operators: sources, sinks, formats and stateless transforms.
//!
//! Everything here plugs into the runtime through its two traits:
//! [`headwater_runtime::Source`] for sources and [`headwater_runtime::Operator`]
//! for transforms and sinks. Connectors are configured by typed specs
//! ([`sources::SourceSpec`], [`sinks::SinkSpec`]), never by string maps.

pub mod changelog;
pub mod decode_error;
pub mod deduplicate;
pub mod error;
pub mod formats;
pub mod join;
pub mod normalize;
pub mod sinks;
pub mod sources;
pub mod transform;
pub mod updating_aggregate;
pub mod view;
pub mod window;

pub use decode_error::{DEAD_LETTER_OUTPUT, DecodeErrorPolicy};
pub use error::OperatorError;
