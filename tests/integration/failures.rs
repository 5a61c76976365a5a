//! A failing operator fails the job with its name and its error, and nothing hangs.

use crate::common;

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use common::within;
use headwater::prelude::*;
use headwater::runtime::{BoxError, Collector, Operator, OperatorContext};

struct Exploding {
    after: usize,
    seen: usize,
    panic: bool,
}

#[async_trait]
impl Operator for Exploding {
    async fn process_batch(
        &mut self,
        batch: RecordBatch,
        _: &mut OperatorContext,
        out: &mut dyn Collector,
    ) -> Result<(), BoxError> {
        self.seen += 1;
        if self.seen > self.after {
            if self.panic {
                panic!("kaboom in batch {}", self.seen);
            }
            return Err(format!("boom in batch {}", self.seen).into());
        }
        out.collect(batch).await
    }
}

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]))
}

/// datagen -> select -> exploding -> sink, with `exploding` chained or behind an exchange.
async fn run(panic: bool, behind_exchange: bool, unbounded: bool) -> JobError {
    let env = StreamEnvironment::new().with_parallelism(2);
    let mut source = DatagenSource::new(schema());
    if !unbounded {
        source = source.row_count(1_000_000);
    }
    let mut stream = env
        .source(source)
        .select(vec![(col("x") % lit(10)).alias("y")])
        .unwrap();
    if behind_exchange {
        stream = stream.key_by(&["y"]).unwrap();
    }
    let schema = stream.schema_with_event_time();
    stream
        .apply(
            "exploding",
            schema,
            Arc::new(move |_| {
                Ok(Box::new(Exploding {
                    after: 3,
                    seen: 0,
                    panic,
                }) as Box<dyn Operator>)
            }),
        )
        .unwrap()
        .sink(BlackholeSink)
        .unwrap();
    let job = env.execute().unwrap();
    within(30, job.wait()).await.expect_err("the job must fail")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_operator_fails_the_job_with_its_name() {
    for behind_exchange in [false, true] {
        for unbounded in [false, true] {
            let error = run(false, behind_exchange, unbounded).await;
            assert_eq!(error.operator(), Some("exploding"), "{error}");
            let message = error.to_string();
            assert!(
                message.contains("`exploding`") && message.contains("boom in batch 4"),
                "{message}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_operator_fails_the_job_with_its_name() {
    let error = run(true, true, true).await;
    assert!(
        matches!(error, JobError::OperatorPanicked { .. }),
        "{error:?}"
    );
    assert_eq!(error.operator(), Some("exploding"));
    assert!(error.to_string().contains("kaboom in batch 4"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_that_cannot_start_names_itself() {
    let env = StreamEnvironment::new().with_parallelism(1);
    env.source(FileSource::json("/definitely/not/here.jsonl", schema()))
        .sink(BlackholeSink)
        .unwrap();
    let error = env.execute().expect_err("a missing file fails at start");
    let message = error.to_string();
    assert!(
        message.contains("`filesystem`") && message.contains("/definitely/not/here.jsonl"),
        "{message}"
    );
}
