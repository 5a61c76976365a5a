//! The hash exchange sends every key to exactly one subtask, the one that owns
//! its key group, and keeps it there for every batch.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, RecordBatch, UInt32Array};
use arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef, UInt32Type};
use async_trait::async_trait;
use common::within;
use headwater::prelude::*;
use headwater::runtime::key_groups::{key_group_of, subtask_of};
use headwater::runtime::key_hash::hash_columns;
use headwater::runtime::time::EVENT_TIME_FIELD;
use headwater::runtime::{BoxError, Collector, Operator, OperatorContext};

/// Appends the index of the subtask that saw each row.
struct TagSubtask {
    schema: SchemaRef,
}

#[async_trait]
impl Operator for TagSubtask {
    async fn process_batch(
        &mut self,
        batch: RecordBatch,
        ctx: &mut OperatorContext,
        out: &mut dyn Collector,
    ) -> Result<(), BoxError> {
        let tag: ArrayRef = Arc::new(UInt32Array::from_value(
            ctx.subtask.index as u32,
            batch.num_rows(),
        ));
        let mut columns = batch.columns().to_vec();
        let at = columns.len() - 1; // keep the event-time column last
        columns.insert(at, tag);
        out.collect(RecordBatch::try_new(self.schema.clone(), columns)?)
            .await
    }
}

fn tagged(stream: DataStream) -> DataStream {
    let input = stream.schema_with_event_time();
    let mut fields: Vec<_> = input.fields().iter().cloned().collect();
    fields.insert(
        fields.len() - 1,
        Arc::new(Field::new("subtask", DataType::UInt32, false)),
    );
    let schema = Arc::new(Schema::new(fields));
    assert_eq!(
        schema.field(schema.fields().len() - 1).name(),
        EVENT_TIME_FIELD
    );
    let op_schema = schema.clone();
    stream
        .apply(
            "tag",
            schema,
            Arc::new(move |_| {
                Ok(Box::new(TagSubtask {
                    schema: op_schema.clone(),
                }) as Box<dyn Operator>)
            }),
        )
        .unwrap()
}

const PARALLELISM: usize = 4;

fn datagen() -> DatagenSource {
    let schema = Arc::new(Schema::new(vec![
        Field::new("k", DataType::Int64, false),
        Field::new("v", DataType::Int64, false),
    ]));
    DatagenSource::new(schema)
        .field(
            "k",
            FieldGen::Random {
                min: Some(0.0),
                max: Some(999.0),
                length: 0,
            },
        )
        .field("v", FieldGen::Sequence { start: 0, step: 1 })
        .row_count(60_000)
        .seed(3)
}

/// key -> the subtasks that saw it; rows seen.
async fn placements(keyed_by_closure: bool) -> (BTreeMap<i64, BTreeSet<u32>>, usize) {
    let env = StreamEnvironment::new().with_parallelism(PARALLELISM);
    let source = env.source(datagen()).with_parallelism(2).unwrap();
    let keyed = if keyed_by_closure {
        #[derive(serde::Serialize, serde::Deserialize)]
        struct Row {
            k: i64,
            v: i64,
        }
        // The typed key goes into a `_key` column; the exchange hashes that.
        let typed = source
            .typed::<Row>()
            .unwrap()
            .key_by(|r| r.k)
            .unwrap()
            .map(|r| Row { k: r.k, v: r.v })
            .unwrap();
        typed.into_data_stream()
    } else {
        source.key_by(&["k"]).unwrap()
    };
    let rx = tagged(keyed).collect().unwrap();
    let job = env.execute().unwrap();
    let batches = within(60, rx.collect_all()).await;
    within(10, job.wait()).await.unwrap();
    let mut seen: BTreeMap<i64, BTreeSet<u32>> = BTreeMap::new();
    let mut rows = 0;
    for b in &batches {
        let k = b.column_by_name("k").unwrap().as_primitive::<Int64Type>();
        let s = b
            .column_by_name("subtask")
            .unwrap()
            .as_primitive::<UInt32Type>();
        for i in 0..b.num_rows() {
            seen.entry(k.value(i)).or_default().insert(s.value(i));
        }
        rows += b.num_rows();
    }
    (seen, rows)
}

fn expected_subtask(key: i64) -> u32 {
    let column: ArrayRef = Arc::new(arrow::array::Int64Array::from(vec![key]));
    let mut hashes = Vec::new();
    hash_columns(&[column], 1, &mut hashes).unwrap();
    subtask_of(key_group_of(hashes[0], 128), 128, PARALLELISM as u32)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_key_goes_to_exactly_its_owner() {
    for by_closure in [false, true] {
        let (seen, rows) = placements(by_closure).await;
        assert_eq!(
            rows, 60_000,
            "no row lost or duplicated (closure key: {by_closure})"
        );
        assert_eq!(seen.len(), 1000);
        let mut load = [0usize; PARALLELISM];
        for (key, subtasks) in &seen {
            assert_eq!(subtasks.len(), 1, "key {key} reached subtasks {subtasks:?}");
            let got = *subtasks.iter().next().unwrap();
            assert_eq!(
                got,
                expected_subtask(*key),
                "key {key} is not at its key group's owner"
            );
            load[got as usize] += 1;
        }
        // Every subtask gets a fair share of the keys.
        assert!(load.iter().all(|n| *n > 150), "key spread {load:?}");
    }
}
