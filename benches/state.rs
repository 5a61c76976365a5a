//! Raw keyed-state throughput through the batch API: puts in write batches and
//! multi-gets, on 1M keys in RocksDB with a 64 MiB memory limit.
//!
//! Run with `cargo bench --bench state`; elements/s are values/s on one core.

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use headwater::runtime::key_groups::KeyGroupRange;
use headwater::runtime::state::{
    KeyedStateStore, StateBackend, StateConfig, StateDescriptor, StateKey, ValueState,
};

const KEYS: u64 = 1_000_000;
const BATCH: u64 = 8192;

fn fill(store: &KeyedStateStore, state: &ValueState<(u64, f64)>, round: u64) {
    for start in (0..KEYS).step_by(BATCH as usize) {
        let mut batch = store.new_batch();
        for i in start..(start + BATCH).min(KEYS) {
            let key = i.to_be_bytes();
            state
                .put(
                    store,
                    &mut batch,
                    StateKey::new((i % 128) as u32, &key),
                    &(i + round, i as f64),
                )
                .unwrap();
        }
        store.write(batch).unwrap();
    }
}

fn state_batches(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let backend =
        StateBackend::new(StateConfig::new(dir.path()).with_memory_limit(64 << 20)).unwrap();
    let mut store = backend
        .open_store("bench", 0, KeyGroupRange { start: 0, end: 128 })
        .unwrap();
    let state = ValueState::<(u64, f64)>::new(&mut store, StateDescriptor::new("sum")).unwrap();
    fill(&store, &state, 0);

    let mut group = c.benchmark_group("state");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    group.throughput(Throughput::Elements(KEYS));
    let mut round = 0;
    group.bench_function("put_1m_keys_in_write_batches", |b| {
        b.iter(|| {
            round += 1;
            fill(&store, &state, round);
        })
    });
    group.bench_function("multi_get_1m_keys", |b| {
        let keys: Vec<[u8; 8]> = (0..KEYS).map(|i| i.to_be_bytes()).collect();
        b.iter(|| {
            for chunk in keys.chunks(BATCH as usize) {
                let state_keys: Vec<StateKey<'_>> = chunk
                    .iter()
                    .map(|k| StateKey::new((u64::from_be_bytes(*k) % 128) as u32, k))
                    .collect();
                let values = state.multi_get(&store, &state_keys).unwrap();
                assert!(values.iter().all(Option::is_some));
            }
        })
    });
    group.finish();
}

criterion_group!(benches, state_batches);
criterion_main!(benches);
