//! Keyed state from an operator: a running count per customer, kept in RocksDB
//! behind a hash exchange at parallelism 3, equals a plain Rust count.

use crate::common;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, Int64Array, RecordBatch, UInt64Array};
use arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef, UInt64Type};
use async_trait::async_trait;
use common::within;
use headwater::prelude::*;
use headwater::runtime::key_groups::key_group_of;
use headwater::runtime::key_hash::hash_columns;
use headwater::runtime::state::{StateDescriptor, StateKey, ValueState};
use headwater::runtime::time::EVENT_TIME_FIELD;
use headwater::runtime::{BoxError, Collector, Operator, OperatorContext};

/// Emits (customer_id, count so far) for every event, reading and writing the
/// counts of a whole batch at once.
struct RunningCount {
    schema: SchemaRef,
    counts: Option<ValueState<u64>>,
    hashes: Vec<u64>,
}

#[async_trait]
impl Operator for RunningCount {
    async fn open(&mut self, ctx: &mut OperatorContext) -> Result<(), BoxError> {
        let store = ctx.keyed_state()?;
        self.counts = Some(ValueState::new(store, StateDescriptor::new("count"))?);
        Ok(())
    }

    async fn process_batch(
        &mut self,
        batch: RecordBatch,
        ctx: &mut OperatorContext,
        out: &mut dyn Collector,
    ) -> Result<(), BoxError> {
        let max_parallelism = ctx.subtask.max_parallelism;
        let customers = batch.column_by_name("customer_id").unwrap().clone();
        hash_columns(
            std::slice::from_ref(&customers),
            batch.num_rows(),
            &mut self.hashes,
        )?;
        let ids = customers.as_primitive::<Int64Type>();
        // Distinct keys of the batch, read with one multi-get.
        let mut distinct: Vec<(i64, u32)> = Vec::new();
        let mut index: HashMap<i64, usize> = HashMap::new();
        for (i, id) in ids.values().iter().enumerate() {
            index.entry(*id).or_insert_with(|| {
                distinct.push((*id, key_group_of(self.hashes[i], max_parallelism)));
                distinct.len() - 1
            });
        }
        let key_bytes: Vec<[u8; 8]> = distinct.iter().map(|(id, _)| id.to_be_bytes()).collect();
        let keys: Vec<StateKey<'_>> = distinct
            .iter()
            .zip(&key_bytes)
            .map(|((_, kg), k)| StateKey::new(*kg, k))
            .collect();
        let store = ctx.keyed_state()?;
        let counts = self.counts.as_ref().unwrap();
        let mut current: Vec<u64> = counts
            .multi_get(store, &keys)?
            .into_iter()
            .map(|c| c.unwrap_or(0))
            .collect();
        let mut running = Vec::with_capacity(batch.num_rows());
        for id in ids.values() {
            let slot = index[id];
            current[slot] += 1;
            running.push(current[slot]);
        }
        let mut writes = store.new_batch();
        for (key, count) in keys.iter().zip(&current) {
            counts.put(store, &mut writes, *key, count)?;
        }
        store.write(writes)?;
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(ids.values().to_vec())),
            Arc::new(UInt64Array::from(running)),
            batch.column_by_name(EVENT_TIME_FIELD).unwrap().clone(),
        ];
        out.collect(RecordBatch::try_new(self.schema.clone(), columns)?)
            .await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_counts_in_rocksdb_match_a_plain_count() {
    let source = OrdersSource::new(4).orders(20_000);
    let env = StreamEnvironment::new().with_parallelism(3);
    let schema: SchemaRef = Arc::new(Schema::new(vec![
        Field::new("customer_id", DataType::Int64, false),
        Field::new("count", DataType::UInt64, false),
        Field::new(
            EVENT_TIME_FIELD,
            DataType::Timestamp(arrow::datatypes::TimeUnit::Millisecond, None),
            false,
        ),
    ]));
    let op_schema = schema.clone();
    let rows = env
        .source(source.clone())
        .key_by(&["customer_id"])
        .unwrap()
        .apply(
            "running_count",
            schema,
            Arc::new(move |_| {
                Ok(Box::new(RunningCount {
                    schema: op_schema.clone(),
                    counts: None,
                    hashes: Vec::new(),
                }) as Box<dyn Operator>)
            }),
        )
        .unwrap()
        .collect()
        .unwrap();
    let job = env.execute().unwrap();
    let batches = within(120, rows.collect_all()).await;
    within(10, job.wait()).await.unwrap();

    // Reference: the events per customer, counted in plain Rust.
    let env = StreamEnvironment::new().with_parallelism(1);
    let events = env.source(source).collect().unwrap();
    let job = env.execute().unwrap();
    let mut expected: BTreeMap<i64, u64> = BTreeMap::new();
    for b in within(60, events.collect_all()).await {
        for id in b
            .column_by_name("customer_id")
            .unwrap()
            .as_primitive::<Int64Type>()
            .values()
        {
            *expected.entry(*id).or_default() += 1;
        }
    }
    job.wait().await.unwrap();

    // Every customer's counts are exactly 1, 2, ..., n.
    let mut seen: BTreeMap<i64, Vec<u64>> = BTreeMap::new();
    for b in &batches {
        let ids = b.column(0).as_primitive::<Int64Type>();
        let counts = b.column(1).as_primitive::<UInt64Type>();
        for i in 0..b.num_rows() {
            seen.entry(ids.value(i)).or_default().push(counts.value(i));
        }
    }
    assert_eq!(seen.len(), expected.len());
    for (customer, mut counts) in seen {
        counts.sort();
        let n = expected[&customer];
        assert_eq!(counts, (1..=n).collect::<Vec<_>>(), "customer {customer}");
    }
}
