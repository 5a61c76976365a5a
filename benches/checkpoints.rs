//! Checkpoint figures of keyed state: how long a checkpoint of 1M and 10M keys
//! takes and how large it is, what a checkpoint after a small change adds
//! (incremental: SST files already stored are not copied again), and how long
//! recovery from a 1 GB state takes, at the same and at a doubled parallelism.
//!
//! Run with `cargo bench --bench checkpoints` (`HW_BENCH_KEYS=1000000` for a
//! quick run of the first part only). Prints one line per figure.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use headwater::runtime::checkpoint::metadata::{
    CheckpointMetadata, METADATA_FORMAT, OperatorMetadata, StoreFiles, SubtaskMetadata,
};
use headwater::runtime::checkpoint::{CheckpointStorage, RestorePlan};
use headwater::runtime::key_groups::KeyGroupRange;
use headwater::runtime::key_hash::KEY_HASH_VERSION;
use headwater::runtime::state::{
    KeyedStateStore, StateBackend, StateConfig, StateDescriptor, StateKey, ValueState,
};
use rand::{Rng, SeedableRng};

const KEY_GROUPS: u32 = 128;
const ALL: KeyGroupRange = KeyGroupRange {
    start: 0,
    end: KEY_GROUPS,
};

fn put_keys(
    store: &KeyedStateStore,
    state: &ValueState<Vec<u8>>,
    keys: impl Iterator<Item = u64>,
    value_len: usize,
    rng: &mut rand_chacha::ChaCha8Rng,
) {
    let mut batch = store.new_batch();
    let mut value = vec![0u8; value_len];
    for i in keys {
        rng.fill(&mut value[..]);
        let key = i.to_be_bytes();
        let group = (i % KEY_GROUPS as u64) as u32;
        state
            .put(store, &mut batch, StateKey::new(group, &key), &value)
            .unwrap();
        if batch.len() >= 8192 {
            store
                .write(std::mem::replace(&mut batch, store.new_batch()))
                .unwrap();
        }
    }
    store.write(batch).unwrap();
}

fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        total += if path.is_dir() {
            dir_size(&path)
        } else {
            entry.metadata().map_or(0, |m| m.len())
        };
    }
    total
}

/// One checkpoint of `store`: the synchronous part at the barrier (flush and
/// hard links), then the upload. Returns the files and prints the figures.
fn checkpoint(
    label: &str,
    store: &KeyedStateStore,
    storage: &CheckpointStorage,
    scratch: &Path,
    id: u64,
) -> StoreFiles {
    let before = dir_size(storage.root());
    let started = Instant::now();
    let local = scratch.join(format!("local-{id}"));
    store.snapshot_to(&local).unwrap();
    let sync = started.elapsed();
    let files = storage
        .upload_store(id, false, "bench", 0, store.instance(), &local)
        .unwrap();
    let total = started.elapsed();
    std::fs::remove_dir_all(&local).unwrap();
    let size: u64 = files
        .shared
        .iter()
        .chain(&files.private)
        .map(|f| f.size)
        .sum();
    let added = dir_size(storage.root()) - before;
    println!(
        "{label}: {:.2?} ({:.2?} at the barrier, the rest uploaded off the task); \
         checkpoint size {}, of which written now {}",
        total,
        sync,
        human(size),
        human(added),
    );
    files
}

fn human(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1 << 20) as f64),
        b => format!("{:.1} KiB", b as f64 / 1024.0),
    }
}

fn open(dir: &Path) -> (StateBackend, KeyedStateStore, ValueState<Vec<u8>>) {
    let backend = StateBackend::new(StateConfig::new(dir).with_memory_limit(256 << 20)).unwrap();
    let mut store = backend.open_store("bench", 0, ALL).unwrap();
    let state = ValueState::new(&mut store, StateDescriptor::new("value")).unwrap();
    (backend, store, state)
}

fn size_and_increment(keys: u64) {
    let dir = tempfile::tempdir_in(bench_dir()).unwrap();
    let (_backend, store, state) = open(&dir.path().join("state"));
    let storage = CheckpointStorage::new(dir.path().join("checkpoints")).unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let started = Instant::now();
    put_keys(&store, &state, 0..keys, 16, &mut rng);
    println!(
        "{keys} keys (16-byte values) written in {:.2?}",
        started.elapsed()
    );
    checkpoint(
        &format!("first checkpoint, {keys} keys"),
        &store,
        &storage,
        dir.path(),
        1,
    );
    let changed = keys / 1000;
    let step = keys / changed;
    put_keys(&store, &state, (0..changed).map(|i| i * step), 16, &mut rng);
    checkpoint(
        &format!("next checkpoint after {changed} of {keys} keys changed"),
        &store,
        &storage,
        dir.path(),
        2,
    );
}

fn recovery(bytes: u64) {
    let dir = tempfile::tempdir_in(bench_dir()).unwrap();
    let value_len = 120;
    let keys = bytes / (value_len as u64 + 20);
    let files = {
        let (_backend, store, state) = open(&dir.path().join("state"));
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2);
        put_keys(&store, &state, 0..keys, value_len, &mut rng);
        let storage = CheckpointStorage::new(dir.path().join("checkpoints")).unwrap();
        checkpoint(
            &format!("checkpoint of {keys} keys with {value_len}-byte values"),
            &store,
            &storage,
            dir.path(),
            1,
        )
    };
    let storage = CheckpointStorage::new(dir.path().join("checkpoints")).unwrap();
    let metadata = CheckpointMetadata {
        format: METADATA_FORMAT,
        id: 1,
        savepoint: false,
        completed_ms: 0,
        key_hash_version: KEY_HASH_VERSION,
        max_parallelism: KEY_GROUPS,
        operators: BTreeMap::from([(
            "bench".to_string(),
            OperatorMetadata {
                parallelism: 1,
                subtasks: vec![SubtaskMetadata {
                    index: 0,
                    key_groups: (0, KEY_GROUPS),
                    operator_state: None,
                    keyed_state: Some(files),
                    watermark: None,
                }],
            },
        )]),
    };
    let checkpoint_dir = storage.complete(&metadata).unwrap();
    for (label, parts) in [("the same parallelism", 1u32), ("twice the parallelism", 2)] {
        let restored = dir.path().join(format!("restored-{parts}"));
        let backend =
            StateBackend::new(StateConfig::new(&restored).with_memory_limit(256 << 20)).unwrap();
        let started = Instant::now();
        let plan = RestorePlan::load(&checkpoint_dir).unwrap();
        let range = KeyGroupRange {
            start: 0,
            end: KEY_GROUPS / parts,
        };
        let mut store = backend
            .restore_store("bench", 0, range, Some(&plan))
            .unwrap();
        let state = ValueState::<Vec<u8>>::new(&mut store, StateDescriptor::new("value")).unwrap();
        let value = state
            .get(&store, StateKey::new(0, &0u64.to_be_bytes()))
            .unwrap();
        let elapsed = started.elapsed();
        assert_eq!(
            value.map(|v| v.len()),
            Some(value_len),
            "the state is restored"
        );
        println!(
            "recovery of {:.2} GB of state at {label}: {elapsed:.2?} (until the first read)",
            dir_size(&checkpoint_dir.parent().unwrap().join("shared")) as f64 / 1e9
        );
    }
}

/// Benchmarks write large files: under the target directory, not in /tmp
/// (which may be a small tmpfs).
fn bench_dir() -> std::path::PathBuf {
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir())
        .join("bench-checkpoints");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument is not supported here.
    let only: Option<u64> = std::env::var("HW_BENCH_KEYS")
        .ok()
        .and_then(|k| k.parse().ok());
    match only {
        Some(keys) => size_and_increment(keys),
        None => {
            size_and_increment(1_000_000);
            size_and_increment(10_000_000);
            recovery(1 << 30);
        }
    }
}
