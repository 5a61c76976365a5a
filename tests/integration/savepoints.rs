//! A savepoint taken at parallelism 2 restores at 1 and at 4: key groups and
//! the file source's remaining ranges are redistributed, and the committed
//! results equal those of an uninterrupted run.

use crate::common;

use common::committed_rows;
use std::path::Path;
use std::time::Duration;

use headwater::StreamEnvironment;
use headwater::jobs::order_metrics;

const BIN: &str = env!("CARGO_BIN_EXE_headwater");

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

async fn run_to_end(env: StreamEnvironment, input: &Path, output: &Path) {
    order_metrics(&env, input, output).unwrap();
    env.execute().unwrap().wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_savepoint_at_parallelism_2_restores_at_1_and_4() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("orders.jsonl");
    let status = std::process::Command::new(BIN)
        .args([
            "generate", "orders", "--orders", "400000", "--seed", "9", "--output",
        ])
        .arg(&input)
        .status()
        .unwrap();
    assert!(status.success());

    let reference = dir.path().join("reference");
    run_to_end(
        StreamEnvironment::new().with_parallelism(2),
        &input,
        &reference,
    )
    .await;

    // Run at parallelism 2 and stop with a savepoint part way.
    let first = dir.path().join("first");
    let env = StreamEnvironment::new()
        .with_parallelism(2)
        .with_checkpoints(dir.path().join("checkpoints"), Duration::from_secs(60));
    order_metrics(&env, &input, &first).unwrap();
    let job = env.execute().unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let savepoint = job.stop_with_savepoint().await.expect("a savepoint");
    job.wait().await.unwrap();
    assert!(savepoint.join("_metadata").exists());
    let before = committed_rows(&first.join("counts")).len();
    let all = committed_rows(&reference.join("counts")).len();
    assert!(
        before > 0 && before < all,
        "the savepoint came part way: {before} of {all}"
    );

    for p in [1, 4] {
        let output = dir.path().join(format!("restored-{p}"));
        copy_dir(&first, &output);
        let env = StreamEnvironment::new()
            .with_parallelism(p)
            .with_checkpoints(
                dir.path().join(format!("checkpoints-{p}")),
                Duration::from_secs(60),
            )
            .from_savepoint(&savepoint);
        run_to_end(env, &input, &output).await;
        for part in ["windows", "counts"] {
            let expected = committed_rows(&reference.join(part));
            let got = committed_rows(&output.join(part));
            assert_eq!(
                got.len(),
                expected.len(),
                "p={p} {part}: rows lost or duplicated"
            );
            assert!(
                got == expected,
                "p={p} {part}: results differ from the uninterrupted run"
            );
        }
    }
}

/// The newest complete checkpoint under `dir`, and its metadata.
fn newest_checkpoint(dir: &Path) -> (std::path::PathBuf, serde_json::Value) {
    let newest = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("_metadata").exists())
        .max_by_key(|p| {
            p.file_name().unwrap().to_string_lossy()["chk-".len()..]
                .parse::<u64>()
                .unwrap()
        })
        .expect("a complete checkpoint");
    let metadata =
        serde_json::from_slice(&std::fs::read(newest.join("_metadata")).unwrap()).unwrap();
    (newest, metadata)
}

/// The operators with keyed state in a checkpoint, and the bytes of SST
/// files each subtask's state names.
fn keyed_state_sizes(metadata: &serde_json::Value) -> Vec<(String, Vec<u64>)> {
    let mut out: Vec<(String, Vec<u64>)> = metadata["operators"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(name, op)| {
            let sizes = op["subtasks"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| {
                    s["keyed_state"]["shared"].as_array().map_or(0, |files| {
                        files.iter().map(|f| f["size"].as_u64().unwrap()).sum()
                    })
                })
                .collect();
            (name.clone(), sizes)
        })
        .filter(|(_, sizes): &(String, Vec<u64>)| sizes.iter().any(|&s| s > 0))
        .collect();
    out.sort();
    out
}

/// A run restored from a checkpoint whose subtasks get no row at all (its
/// input had ended) still holds the restored keyed state in the checkpoints
/// it takes. A store used to open on first use, so a subtask given no row
/// before a barrier checkpointed no state, and the next restore lost it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_run_given_no_rows_checkpoints_the_state_it_restored() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("orders.jsonl");
    let status = std::process::Command::new(BIN)
        .args([
            "generate", "orders", "--orders", "5000", "--seed", "3", "--output",
        ])
        .arg(&input)
        .status()
        .unwrap();
    assert!(status.success());
    let first = dir.path().join("checkpoints-1");
    run_to_end(
        StreamEnvironment::new()
            .with_parallelism(2)
            .with_checkpoints(&first, Duration::from_secs(60)),
        &input,
        &dir.path().join("out-1"),
    )
    .await;
    let (ended, metadata) = newest_checkpoint(&first);
    let before = keyed_state_sizes(&metadata);
    assert!(
        before.iter().any(|(_, sizes)| sizes.iter().all(|&s| s > 0)),
        "the first run left keyed state in every subtask: {before:?}"
    );
    // Restored at the same parallelism and at another: the input has ended,
    // so no row reaches any operator before the run's last checkpoint.
    for p in [2, 3] {
        let checkpoints = dir.path().join(format!("checkpoints-restored-{p}"));
        let output = dir.path().join(format!("out-restored-{p}"));
        copy_dir(&dir.path().join("out-1"), &output);
        run_to_end(
            StreamEnvironment::new()
                .with_parallelism(p)
                .with_checkpoints(&checkpoints, Duration::from_secs(60))
                .from_savepoint(&ended),
            &input,
            &output,
        )
        .await;
        let (_, metadata) = newest_checkpoint(&checkpoints);
        let after = keyed_state_sizes(&metadata);
        for (name, _) in &before {
            let sizes = after
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, sizes)| sizes.clone())
                .unwrap_or_default();
            assert!(
                sizes.len() == p && sizes.iter().all(|&s| s > 0),
                "p={p}: {name} checkpointed no state in some subtask: {sizes:?}"
            );
        }
    }
}
