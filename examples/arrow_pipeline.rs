//! The Arrow-level API: DataFusion expressions over a `datagen` stream, a hash
//! exchange by column, and JSON output.
//!
//!     cargo run --release --example arrow_pipeline

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::functions::expr_fn::{concat, upper};
use headwater::prelude::*;

#[tokio::main]
async fn main() -> headwater::Result<()> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("sensor", DataType::Int64, false),
        Field::new("site", DataType::Utf8, false),
        Field::new("celsius", DataType::Float64, false),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            false,
        ),
    ]));
    let readings = DatagenSource::new(schema)
        .field(
            "sensor",
            FieldGen::Random {
                min: Some(1.0),
                max: Some(20.0),
                length: 0,
            },
        )
        .field(
            "site",
            FieldGen::OneOf(vec!["north".into(), "south".into(), "harbour".into()]),
        )
        .field(
            "celsius",
            FieldGen::Random {
                min: Some(-5.0),
                max: Some(45.0),
                length: 0,
            },
        )
        .field(
            "ts",
            FieldGen::Sequence {
                start: 0,
                step: 100,
            },
        )
        .event_time_field("ts", std::time::Duration::from_secs(1))
        .row_count(5_000)
        .seed(7);

    let env = StreamEnvironment::new().with_parallelism(2);
    env.source(readings)
        .filter(col("celsius").gt(lit(40.0)))?
        .select(vec![
            col("sensor"),
            concat(vec![upper(col("site")), lit("/"), col("sensor")]).alias("where"),
            (col("celsius") * lit(9.0) / lit(5.0) + lit(32.0)).alias("fahrenheit"),
            col("ts"),
        ])?
        .key_by(&["sensor"])?
        .sink(StdoutSink::json())?;
    let result = env.execute()?.wait().await?;
    eprintln!(
        "{} hot readings of {}",
        result.metrics.operator("stdout").rows_in,
        result.metrics.operator("datagen").rows_out
    );
    Ok(())
}
