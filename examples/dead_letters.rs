//! Bad input: a JSON-lines file with broken lines, read under the `dlq` policy.
//! Good rows are printed; each bad line goes to a dead-letter file with its
//! error, file, line and byte offset.
//!
//!     cargo run --release --example dead_letters

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema};
use headwater::prelude::*;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let input = dir.path().join("payments.jsonl");
    std::fs::write(
        &input,
        concat!(
            "{\"id\": 1, \"customer\": \"ada\", \"amount\": 12.5}\n",
            "{\"id\": 2, \"customer\": \"bob\", \"amount\": \"lots\"}\n",
            "{\"id\": 3, \"customer\": \"cy\", \"amount\": 7}\n",
            "{\"id\": 4, \"customer\": dee, \"amount\": 1}\n",
            "{\"id\": 5, \"customer\": \"eve\", \"amount\": 99.9}\n",
        ),
    )?;
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("customer", DataType::Utf8, false),
        Field::new("amount", DataType::Float64, false),
    ]));

    let env = StreamEnvironment::new().with_parallelism(1);
    let payments =
        env.source(FileSource::json(&input, schema).on_decode_error(DecodeErrorPolicy::DeadLetter));
    let dead_letters = dir.path().join("dead-letters");
    payments
        .dead_letters()
        .sink(FileSink::json(&dead_letters))?;
    payments.sink(StdoutSink::table())?;
    let result = env.execute()?.wait().await?;

    println!(
        "{} bad lines; the dead letters:",
        result.metrics.counter("filesystem", "decode_errors")
    );
    for entry in std::fs::read_dir(&dead_letters)? {
        print!("{}", std::fs::read_to_string(entry?.path())?);
    }
    Ok(())
}
