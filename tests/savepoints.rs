//! A savepoint taken at parallelism 2 restores at 1 and at 4: key groups and
//! the file source's remaining ranges are redistributed, and the committed
//! results equal those of an uninterrupted run.

mod common;

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
