//! Tests of the state backend against plain Rust maps.

use std::collections::BTreeMap;
use std::time::Duration;

use super::*;
use crate::key_groups::KeyGroupRange;

fn backend(dir: &tempfile::TempDir, memory: usize) -> StateBackend {
    StateBackend::new(StateConfig::new(dir.path()).with_memory_limit(memory)).unwrap()
}

fn all_groups() -> KeyGroupRange {
    KeyGroupRange { start: 0, end: 128 }
}

#[test]
fn value_state_matches_a_map_with_batches_and_multi_get() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = backend(&dir, 32 << 20)
        .open_store("op", 0, all_groups())
        .unwrap();
    let counts = ValueState::<u64>::new(&mut store, StateDescriptor::new("count")).unwrap();
    let mut reference: BTreeMap<(u32, String, u8), u64> = BTreeMap::new();
    for round in 0..5u64 {
        let mut batch = store.new_batch();
        for i in 0..2_000u64 {
            let (kg, key, ns) = ((i % 128) as u32, format!("k{}", i % 700), (i % 3) as u8);
            let value = round * 10_000 + i;
            counts
                .put(
                    &store,
                    &mut batch,
                    StateKey::new(kg, key.as_bytes()).with_namespace(&[ns]),
                    &value,
                )
                .unwrap();
            reference.insert((kg, key, ns), value);
        }
        if round == 3 {
            counts
                .delete(
                    &store,
                    &mut batch,
                    StateKey::new(5, b"k5").with_namespace(&[2]),
                )
                .unwrap();
            reference.remove(&(5, "k5".to_string(), 2));
        }
        store.write(batch).unwrap();
    }
    let keys: Vec<(u32, String, u8)> = reference
        .keys()
        .cloned()
        .chain([(5, "k5".to_string(), 2), (1, "nope".into(), 0)])
        .collect();
    let state_keys: Vec<StateKey<'_>> = keys
        .iter()
        .map(|(kg, k, ns)| {
            StateKey::new(*kg, k.as_bytes()).with_namespace(std::slice::from_ref(ns))
        })
        .collect();
    let got = counts.multi_get(&store, &state_keys).unwrap();
    for (key, value) in keys.iter().zip(got) {
        assert_eq!(value, reference.get(key).copied(), "{key:?}");
    }
    assert_eq!(
        counts
            .get(&store, StateKey::new(7, b"k7").with_namespace(&[1]))
            .unwrap(),
        reference.get(&(7, "k7".into(), 1)).copied()
    );
}

#[test]
fn list_and_map_state() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = backend(&dir, 16 << 20)
        .open_store("op", 0, all_groups())
        .unwrap();
    let events = ListState::<String>::new(&mut store, StateDescriptor::new("events")).unwrap();
    let totals = MapState::<String, f64>::new(&mut store, StateDescriptor::new("totals")).unwrap();
    let key = StateKey::new(9, b"customer-1");
    let other = StateKey::new(9, b"customer-10");
    let mut batch = store.new_batch();
    for i in 0..5 {
        events
            .add(&store, &mut batch, key, &format!("e{i}"))
            .unwrap();
    }
    events
        .add(&store, &mut batch, other, &"x".to_string())
        .unwrap();
    totals
        .put(&store, &mut batch, key, &"books".into(), &12.5)
        .unwrap();
    totals
        .put(&store, &mut batch, key, &"games".into(), &3.0)
        .unwrap();
    totals
        .put(&store, &mut batch, other, &"books".into(), &1.0)
        .unwrap();
    store.write(batch).unwrap();

    assert_eq!(
        events.get(&store, key).unwrap(),
        vec!["e0", "e1", "e2", "e3", "e4"]
    );
    assert_eq!(events.get(&store, other).unwrap(), vec!["x"]);
    assert_eq!(totals.get(&store, key, &"games".into()).unwrap(), Some(3.0));
    let mut entries = totals.entries(&store, key).unwrap();
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        entries,
        vec![("books".to_string(), 12.5), ("games".to_string(), 3.0)]
    );

    let mut batch = store.new_batch();
    events.clear(&store, &mut batch, key).unwrap();
    totals
        .remove(&store, &mut batch, key, &"books".into())
        .unwrap();
    store.write(batch).unwrap();
    assert!(events.get(&store, key).unwrap().is_empty());
    assert_eq!(events.get(&store, other).unwrap(), vec!["x"]);
    assert_eq!(
        totals.entries(&store, key).unwrap(),
        vec![("games".to_string(), 3.0)]
    );
}

#[test]
fn ttl_expires_values() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = backend(&dir, 16 << 20)
        .open_store("op", 0, all_groups())
        .unwrap();
    let seen = ValueState::<bool>::new(
        &mut store,
        StateDescriptor::new("seen").with_ttl(Duration::from_millis(100)),
    )
    .unwrap();
    let kept = ValueState::<bool>::new(&mut store, StateDescriptor::new("kept")).unwrap();
    let key = StateKey::new(1, b"event-1");
    let mut batch = store.new_batch();
    seen.put(&store, &mut batch, key, &true).unwrap();
    kept.put(&store, &mut batch, key, &true).unwrap();
    store.write(batch).unwrap();
    assert_eq!(seen.get(&store, key).unwrap(), Some(true));
    std::thread::sleep(Duration::from_millis(150));
    assert_eq!(seen.get(&store, key).unwrap(), None);
    assert_eq!(kept.get(&store, key).unwrap(), Some(true));
}

#[test]
fn key_groups_are_owned_and_can_be_cut_out() {
    let dir = tempfile::tempdir().unwrap();
    let backend = backend(&dir, 16 << 20);
    let mut store = backend.open_store("op", 0, all_groups()).unwrap();
    let v = ValueState::<u32>::new(&mut store, StateDescriptor::new("v")).unwrap();
    let mut batch = store.new_batch();
    for kg in 0..128u32 {
        v.put(&store, &mut batch, StateKey::new(kg, b"k"), &kg)
            .unwrap();
    }
    store.write(batch).unwrap();
    store
        .retain_key_groups(KeyGroupRange { start: 32, end: 64 })
        .unwrap();
    assert!(matches!(
        v.get(&store, StateKey::new(10, b"k")),
        Err(StateError::ForeignKeyGroup { .. })
    ));
    assert_eq!(v.get(&store, StateKey::new(40, b"k")).unwrap(), Some(40));
    // What was cut is gone from the store itself, not just hidden.
    store.retain_key_groups(all_groups()).unwrap();
    assert_eq!(v.get(&store, StateKey::new(10, b"k")).unwrap(), None);
    assert_eq!(v.get(&store, StateKey::new(63, b"k")).unwrap(), Some(63));
    assert_eq!(v.get(&store, StateKey::new(64, b"k")).unwrap(), None);
}

#[test]
fn state_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let backend = backend(&dir, 16 << 20);
    {
        let mut store = backend.open_store("op", 3, all_groups()).unwrap();
        let v = ValueState::<String>::new(&mut store, StateDescriptor::new("v")).unwrap();
        let mut batch = store.new_batch();
        v.put(
            &store,
            &mut batch,
            StateKey::new(2, b"a"),
            &"hello".to_string(),
        )
        .unwrap();
        store.write(batch).unwrap();
        store.flush().unwrap();
    }
    let mut store = backend.open_store("op", 3, all_groups()).unwrap();
    let v = ValueState::<String>::new(&mut store, StateDescriptor::new("v")).unwrap();
    assert_eq!(
        v.get(&store, StateKey::new(2, b"a")).unwrap().as_deref(),
        Some("hello")
    );
}

/// Far more state than the memory limit: every value comes back right.
#[test]
fn state_larger_than_the_memory_limit() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = backend(&dir, 8 << 20)
        .open_store("op", 0, all_groups())
        .unwrap();
    let v = ValueState::<(u64, Vec<u8>)>::new(&mut store, StateDescriptor::new("v")).unwrap();
    const KEYS: u64 = 400_000;
    // Incompressible payloads, so the state on disk really is larger than memory.
    let payload = |i: u64| -> Vec<u8> {
        let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..64)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    };
    for chunk in 0..(KEYS / 10_000) {
        let mut batch = store.new_batch();
        for i in chunk * 10_000..(chunk + 1) * 10_000 {
            v.put(
                &store,
                &mut batch,
                StateKey::new((i % 128) as u32, &i.to_be_bytes()),
                &(i, payload(i)),
            )
            .unwrap();
        }
        store.write(batch).unwrap();
    }
    store.flush().unwrap();
    assert!(
        store.approximate_size() > 8 << 20,
        "state is larger than memory: {}",
        store.approximate_size()
    );
    let keys: Vec<[u8; 8]> = (0..KEYS).step_by(7).map(|i| i.to_be_bytes()).collect();
    let state_keys: Vec<StateKey<'_>> = keys
        .iter()
        .map(|k| StateKey::new((u64::from_be_bytes(*k) % 128) as u32, k))
        .collect();
    for (key, value) in keys.iter().zip(v.multi_get(&store, &state_keys).unwrap()) {
        let i = u64::from_be_bytes(*key);
        assert_eq!(value, Some((i, payload(i))));
    }
}

#[test]
fn a_tiny_memory_limit_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let err = StateBackend::new(StateConfig::new(dir.path()).with_memory_limit(1000)).unwrap_err();
    assert!(err.to_string().contains("8 MiB"), "{err}");
}

#[test]
fn timers_pop_in_time_order_across_key_groups_and_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let backend = backend(&dir, 16 << 20);
    let mut store = backend.open_store("op", 0, all_groups()).unwrap();
    let mut timers = TimerService::new(&mut store, "timers").unwrap();
    assert_eq!(timers.earliest(), None);
    let mut expected = Vec::new();
    let mut batch = store.new_batch();
    for i in 0..3_000i64 {
        // Times in a scrambled order, negative ones too, some repeated.
        let time = (i * 7_919) % 2_003 - 1_000;
        let timer = Timer {
            time,
            key_group: (i % 128) as u32,
            key: format!("key{}", i % 97).into_bytes(),
            namespace: vec![(i % 3) as u8],
        };
        timers.register(&store, &mut batch, &timer).unwrap();
        expected.push(timer);
    }
    store.write(batch).unwrap();
    expected.sort();
    expected.dedup();
    assert_eq!(timers.earliest(), Some(expected[0].time));

    // A timer deleted before it is due never fires.
    let deleted = expected.remove(10);
    let mut batch = store.new_batch();
    timers.delete(&store, &mut batch, &deleted).unwrap();
    store.write(batch).unwrap();

    let mut fired = Vec::new();
    loop {
        let due = timers.pop_due(&store, 0, 37).unwrap();
        if due.is_empty() {
            break;
        }
        fired.extend(due);
    }
    let due_expected: Vec<Timer> = expected.iter().filter(|t| t.time <= 0).cloned().collect();
    assert_eq!(
        fired, due_expected,
        "every due timer once, in (time, key group, key) order"
    );
    assert!(timers.earliest().is_some_and(|e| e > 0));

    // The rest are still stored: a reopened service finds them.
    drop(timers);
    let mut timers = TimerService::new(&mut store, "timers").unwrap();
    let rest: Vec<Timer> = expected.iter().filter(|t| t.time > 0).cloned().collect();
    assert_eq!(timers.earliest(), Some(rest[0].time));
    let mut fired = Vec::new();
    loop {
        let due = timers.pop_due(&store, i64::MAX, 1_000).unwrap();
        if due.is_empty() {
            break;
        }
        fired.extend(due);
    }
    assert_eq!(fired, rest);
    assert_eq!(timers.earliest(), None);
}

/// The backend's options reach the column family that holds the data: one
/// block cache shared by every store, bloom filters, the TTL filter.
#[test]
fn every_store_gets_the_shared_cache_bloom_filters_and_the_ttl_filter() {
    let dir = tempfile::tempdir().unwrap();
    let backend = backend(&dir, 24 << 20);
    let first = backend.open_store("op", 0, all_groups()).unwrap();
    let second = backend.open_store("op", 1, all_groups()).unwrap();
    for store in [&first, &second] {
        assert_eq!(
            store.property("rocksdb.block-cache-capacity").as_deref(),
            Some("25165824"),
            "{store:?} uses the backend's cache, not a private 32 MiB one"
        );
        let options = std::fs::read_dir(store.path())
            .unwrap()
            .flatten()
            .find(|e| e.file_name().to_string_lossy().starts_with("OPTIONS-"))
            .map(|e| std::fs::read_to_string(e.path()).unwrap())
            .expect("RocksDB writes its options file");
        let family = &options[options.find("[CFOptions \"default\"]").unwrap()..];
        assert!(
            family.contains("compaction_filter=headwater-ttl"),
            "compaction filter of the column family: {family}"
        );
        let table = &options[options.find("[TableOptions/BlockBasedTable").unwrap()..];
        assert!(
            table.contains("filter_policy=bloomfilter"),
            "no bloom filter: {table}"
        );
    }
    // One cache: what one store puts in it shows in the other's usage.
    let usage = |s: &KeyedStateStore| -> u64 {
        s.property("rocksdb.block-cache-usage")
            .unwrap()
            .parse()
            .unwrap()
    };
    let before = usage(&second);
    let mut first = first;
    let v = ValueState::<Vec<u8>>::new(&mut first, StateDescriptor::new("v")).unwrap();
    let mut batch = first.new_batch();
    for i in 0u32..20_000 {
        v.put(
            &first,
            &mut batch,
            StateKey::new(i % 128, &i.to_be_bytes()),
            &vec![7; 100],
        )
        .unwrap();
    }
    first.write(batch).unwrap();
    assert!(
        usage(&second) > before,
        "memtables of one store are charged to the cache the other reads: {} -> {}",
        before,
        usage(&second)
    );
}

/// View rows and window partials are raw Arrow rows. A row keyed by a small
/// BIGINT starts with 0x01 and reads as an expired envelope; compaction must
/// keep it, and remove only expired values of states with a TTL.
#[test]
fn compaction_removes_expired_ttl_values_and_keeps_raw_rows() {
    use arrow::array::{ArrayRef, Int64Array};
    use arrow::datatypes::DataType;
    use arrow::row::{RowConverter, SortField};

    let dir = tempfile::tempdir().unwrap();
    let mut store = backend(&dir, 16 << 20)
        .open_store("op", 0, all_groups())
        .unwrap();
    let rows = SortedState::new(&mut store, "view:customers").unwrap();
    let converter = RowConverter::new(vec![
        SortField::new(DataType::Int64),
        SortField::new(DataType::Int64),
    ])
    .unwrap();
    let ids: ArrayRef = std::sync::Arc::new(Int64Array::from_iter_values(0..500));
    let counts: ArrayRef =
        std::sync::Arc::new(Int64Array::from_iter_values((0..500).map(|i| i % 3)));
    let encoded = converter.convert_columns(&[ids, counts]).unwrap();
    let ttl = Duration::from_millis(50);
    // Registered, and made before the store was open (as deduplication does).
    let seen =
        ValueState::<bool>::new(&mut store, StateDescriptor::new("seen").with_ttl(ttl)).unwrap();
    let first_seen =
        ValueState::<u64>::unregistered(StateDescriptor::new("first-seen").with_ttl(ttl));
    let kept = ValueState::<u64>::new(&mut store, StateDescriptor::new("kept")).unwrap();
    let mut stored_keys = Vec::new();
    for round in 0..3u64 {
        let mut batch = store.new_batch();
        for (i, row) in encoded.iter().enumerate() {
            let kg = (i % 128) as u32;
            let key = (i as u64 + round * 1000).to_be_bytes();
            rows.put(&store, &mut batch, kg, &key, row.as_ref())
                .unwrap();
            let key = StateKey::new(kg, &key);
            seen.put(&store, &mut batch, key, &true).unwrap();
            first_seen.put(&store, &mut batch, key, &round).unwrap();
            kept.put(&store, &mut batch, key, &round).unwrap();
        }
        store.write(batch).unwrap();
        // Several SST files, so compaction really merges.
        store.flush().unwrap();
    }
    assert!(store.has_ttl(layout::state_id("first-seen")));
    for i in 0..500u64 {
        for round in 0..3u64 {
            let key = (i + round * 1000).to_be_bytes();
            for state in ["seen", "first-seen"] {
                let mut k = Vec::new();
                StateKey::new((i % 128) as u32, &key).encode(layout::state_id(state), &mut k);
                stored_keys.push(k);
            }
        }
    }
    std::thread::sleep(Duration::from_millis(100));
    store.compact().unwrap();
    for key in &stored_keys {
        assert!(
            store.get_raw(key).unwrap().is_none(),
            "an expired value of a TTL state survived compaction"
        );
    }
    for round in 0..3u64 {
        for (i, row) in encoded.iter().enumerate() {
            let kg = (i % 128) as u32;
            let key = (i as u64 + round * 1000).to_be_bytes();
            let got: Vec<_> = rows.scan(&store, kg, &key).map(|r| r.unwrap()).collect();
            assert_eq!(got.len(), 1, "view row {i} of round {round} was removed");
            assert_eq!(&*got[0].1, row.as_ref());
            assert_eq!(
                kept.get(&store, StateKey::new(kg, &key)).unwrap(),
                Some(round)
            );
        }
    }
}
