//! Exactly-once through crashes: the real binary runs a keyed window and a
//! keyed running count over 1M+ events into the exactly-once file sink, is
//! killed with SIGKILL at random moments and restarted; what it committed
//! equals, row for row, what an uninterrupted run commits. The same holds when
//! each restart changes the parallelism (1 → 3 → 2 and 3 → 2 → 1).

use crate::common;

use common::committed_rows;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};

const BIN: &str = env!("CARGO_BIN_EXE_headwater");

/// How many result files have been committed so far.
fn committed_files(output: &Path) -> usize {
    ["windows", "counts"]
        .iter()
        .flat_map(|part| {
            std::fs::read_dir(output.join(part))
                .into_iter()
                .flatten()
                .flatten()
        })
        .filter(|e| !e.file_name().to_string_lossy().starts_with('_'))
        .count()
}

fn job(input: &Path, output: &Path, checkpoints: Option<&Path>) -> Command {
    job_at(2, input, output, checkpoints)
}

fn job_at(parallelism: usize, input: &Path, output: &Path, checkpoints: Option<&Path>) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args([
        "job",
        "order-metrics",
        "--parallelism",
        &parallelism.to_string(),
        "--input",
    ])
    .arg(input)
    .arg("--output")
    .arg(output)
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    // Keyed state inside the test's directory: a killed process leaves it behind.
    cmd.arg("--state-dir").arg(output.with_extension("state"));
    if let Some(dir) = checkpoints {
        cmd.arg("--checkpoint-dir")
            .arg(dir)
            .args(["--checkpoint-interval", "100ms"]);
    }
    cmd
}

#[test]
fn killed_and_restarted_runs_commit_exactly_what_an_uninterrupted_run_does() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("orders.jsonl");
    let status = Command::new(BIN)
        .args([
            "generate", "orders", "--orders", "600000", "--seed", "5", "--output",
        ])
        .arg(&input)
        .status()
        .unwrap();
    assert!(status.success());
    let events = std::fs::read_to_string(&input).unwrap().lines().count();
    assert!(events >= 2_000_000, "{events} events");

    let reference = dir.path().join("reference");
    assert!(job(&input, &reference, None).status().unwrap().success());

    let output = dir.path().join("output");
    let checkpoints = dir.path().join("checkpoints");
    let mut rng = rand::rngs::StdRng::seed_from_u64(std::process::id() as u64);
    let mut kills = 0;
    let mut runs = 0;
    // Kills that came after a checkpoint had completed and committed rows.
    let mut kills_after_commits = 0;
    loop {
        runs += 1;
        assert!(runs < 40, "the job never finished");
        let mut child = job(&input, &output, Some(&checkpoints)).spawn().unwrap();
        if kills < 5 {
            // Every other kill waits for this run to commit something first, so
            // some kills surely fall between checkpoints of a run that restored.
            let after_commit = kills % 2 == 1;
            let baseline = committed_files(&output);
            let delay = Duration::from_millis(rng.random_range(200..1200));
            let mut clock = (!after_commit).then(Instant::now);
            let spawned = Instant::now();
            while child.try_wait().unwrap().is_none() {
                if clock.is_none() && committed_files(&output) > baseline {
                    clock = Some(Instant::now());
                }
                if clock.is_some_and(|c| c.elapsed() >= delay)
                    || spawned.elapsed() > Duration::from_secs(30)
                {
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            if child.try_wait().unwrap().is_none() {
                let committed = committed_files(&output) > 0;
                child.kill().unwrap(); // SIGKILL
                child.wait().unwrap();
                kills += 1;
                if committed {
                    kills_after_commits += 1;
                }
                println!(
                    "killed after {:?}; rows committed before: {committed}",
                    spawned.elapsed()
                );
                continue;
            }
        }
        let status = child.wait().unwrap();
        assert!(status.success(), "the last run failed: {status}");
        // A run that finishes commits everything; with fewer than 5 kills, start over.
        if kills >= 5 {
            break;
        }
        std::fs::remove_dir_all(&output).unwrap();
        std::fs::remove_dir_all(&checkpoints).unwrap();
        kills_after_commits = 0;
    }
    println!("{kills} kills in {runs} runs, {kills_after_commits} after rows were committed");
    assert!(
        kills_after_commits >= 2,
        "too few kills came after a checkpoint: the test proved little"
    );
    for part in ["windows", "counts"] {
        let expected = committed_rows(&reference.join(part));
        let got = committed_rows(&output.join(part));
        assert!(!expected.is_empty());
        assert_eq!(got.len(), expected.len(), "{part}: rows lost or duplicated");
        assert!(
            got == expected,
            "{part}: committed rows differ from the uninterrupted run"
        );
    }
}

/// The keyed process function (a running count per customer in a
/// `ValueState`) and the keyed window, killed and restored at another
/// parallelism each time: the key groups move between subtasks, and what is
/// committed equals an uninterrupted run.
#[test]
fn killed_and_rescaled_runs_commit_exactly_what_an_uninterrupted_run_does() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("orders.jsonl");
    let status = Command::new(BIN)
        .args([
            "generate", "orders", "--orders", "250000", "--seed", "8", "--output",
        ])
        .arg(&input)
        .status()
        .unwrap();
    assert!(status.success());
    let reference = dir.path().join("reference");
    assert!(job(&input, &reference, None).status().unwrap().success());
    let mut rng = rand::rngs::StdRng::seed_from_u64(std::process::id() as u64);
    for scenario in [[1, 3, 2], [3, 2, 1]] {
        let output = dir.path().join(format!("output-{scenario:?}"));
        let checkpoints = dir.path().join(format!("checkpoints-{scenario:?}"));
        for (run, &p) in scenario.iter().enumerate() {
            let mut child = job_at(p, &input, &output, Some(&checkpoints))
                .spawn()
                .unwrap();
            if run + 1 == scenario.len() {
                let status = child.wait().unwrap();
                assert!(
                    status.success(),
                    "{scenario:?}: the last run failed: {status}"
                );
                break;
            }
            // Killed once this run has committed something, a random time later.
            let baseline = committed_files(&output);
            let spawned = Instant::now();
            let delay = Duration::from_millis(rng.random_range(100..600));
            let mut committed_at = None;
            loop {
                assert!(
                    child.try_wait().unwrap().is_none(),
                    "{scenario:?}: run {run} at p={p} ended before it was killed"
                );
                if committed_at.is_none() && committed_files(&output) > baseline {
                    committed_at = Some(Instant::now());
                }
                if committed_at.is_some_and(|c: Instant| c.elapsed() >= delay) {
                    break;
                }
                assert!(
                    spawned.elapsed() < Duration::from_secs(60),
                    "nothing committed"
                );
                std::thread::sleep(Duration::from_millis(5));
            }
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
        }
        for part in ["windows", "counts"] {
            let expected = committed_rows(&reference.join(part));
            let got = committed_rows(&output.join(part));
            assert!(!expected.is_empty());
            assert_eq!(
                got.len(),
                expected.len(),
                "{scenario:?} {part}: rows lost or duplicated"
            );
            assert!(
                got == expected,
                "{scenario:?} {part}: committed rows differ from the uninterrupted run"
            );
        }
    }
}
