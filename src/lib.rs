//! Headwater: a stream processing runtime in Rust.
//!
//! Declare a dataflow in Rust, over typed rows or Arrow batches, and run it
//! in-process:
//!
//! ```no_run
//! use headwater::prelude::*;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! struct Order { order_id: i64, event_type: String, amount: f64 }
//!
//! # async fn run() -> headwater::Result<()> {
//! let env = StreamEnvironment::new().with_parallelism(2);
//! env.source(OrdersSource::new(42).orders(10_000))
//!     .typed::<Order>()?
//!     .filter(|o| o.event_type == "payment.processed")?
//!     .map(|o| Order { amount: o.amount * 1.2, ..o })?
//!     .sink(StdoutSink::json())?;
//! let result = env.execute()?.wait().await?;
//! println!("{:?}", result.metrics);
//! # Ok(()) }
//! ```
//!
//! The layers, each its own crate: [`headwater_runtime`] (tasks, channels,
//! partitioning, watermarks), [`headwater_operators`] (sources, sinks, formats,
//! transforms) and [`headwater_sql`].

mod data_stream;
mod dedup;
mod env;
mod error;
pub mod jobs;
mod join;
pub mod server;
pub mod typed;
mod window;

pub use data_stream::DataStream;
pub use dedup::Keep;
pub use env::StreamEnvironment;
pub use error::{HeadwaterError, Result};
pub use headwater_operators as operators;
pub use headwater_runtime as runtime;
pub use headwater_sql as sql;
pub use join::{IntervalJoinBuilder, JoinBuilder, JoinType};
pub use typed::{KeyedStream, Stream, TypedReceiver};
pub use window::WindowedStream;

/// Everything a pipeline usually needs, in one import.
pub mod prelude {
    pub use datafusion::functions_aggregate::expr_fn::{
        approx_distinct, avg, count, max, min, sum,
    };
    pub use datafusion::prelude::{col, lit};
    pub use headwater_operators::DecodeErrorPolicy;
    pub use headwater_operators::formats::LineFormat;
    pub use headwater_operators::sinks::kafka::{
        DeliveryGuarantee, KafkaSink, Partitioner, RowFormat,
    };
    pub use headwater_operators::sinks::{
        BlackholeSink, CollectSink, FileSink, SinkSpec, StdoutSink,
    };
    pub use headwater_operators::sources::SourceSpec;
    pub use headwater_operators::sources::datagen::{DatagenSource, FieldGen};
    pub use headwater_operators::sources::filesystem::FileSource;
    pub use headwater_operators::sources::kafka::{
        BoundedMode, KafkaSource, StartupMode, Topics, ValueFormat,
    };
    pub use headwater_operators::sources::orders::OrdersSource;
    pub use headwater_operators::window::{
        Cumulating, Hopping, Session, SortKey, Tumbling, WindowKind,
    };
    pub use headwater_runtime::{
        EventTimeSpec, JobConfig, JobError, JobHandle, JobResult, RestartStrategy,
    };

    pub use crate::typed::{FiredTimer, KeyedProcessFunction, ProcessContext, TimeDomain};
    pub use crate::{
        DataStream, HeadwaterError, IntervalJoinBuilder, JoinBuilder, JoinType, Keep, KeyedStream,
        Stream, StreamEnvironment, WindowedStream,
    };
    pub use headwater_runtime::EventTime;
    pub use headwater_runtime::state::{ListState, MapState, StateDescriptor, ValueState};
}
