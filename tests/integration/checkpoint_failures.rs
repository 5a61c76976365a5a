//! Damaged checkpoints: corrupt metadata, or a missing file, make the newest
//! checkpoint incomplete; the job warns, naming what is wrong, and restores
//! the previous complete one. The output is still exactly-once: what the
//! skipped checkpoint committed is taken back, since its rows come again.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_headwater");

fn job(dir: &Path) -> Command {
    job_with(dir, &dir.join("checkpoints"))
}

fn job_with(dir: &Path, checkpoints: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(["job", "order-metrics", "--input"])
        .arg(dir.join("orders.jsonl"))
        .arg("--output")
        .arg(dir.join("out"))
        .arg("--state-dir")
        .arg(dir.join("state"))
        .arg("--checkpoint-dir")
        .arg(checkpoints)
        .args(["--checkpoint-interval", "100ms"])
        .env("RUST_LOG", "headwater_runtime=info")
        .stdout(Stdio::null());
    cmd
}

/// Complete checkpoints (with metadata) of the job's directory, oldest first.
fn complete(dir: &Path) -> Vec<(u64, PathBuf)> {
    complete_in(&dir.join("checkpoints"))
}

/// Complete checkpoints (with metadata) in `checkpoints`, oldest first.
fn complete_in(checkpoints: &Path) -> Vec<(u64, PathBuf)> {
    common::complete_checkpoints(checkpoints)
}

/// Runs the job until at least two checkpoints are complete, then kills it.
fn run_until_two_checkpoints(dir: &Path) {
    let child = job(dir).stderr(Stdio::null()).spawn().unwrap();
    kill_after_checkpoints(child, &dir.join("checkpoints"), 2);
}

/// Waits until `checkpoints` holds `count` complete checkpoints, lets the
/// newest commit its files, and kills the job.
fn kill_after_checkpoints(mut child: std::process::Child, checkpoints: &Path, count: usize) {
    let started = Instant::now();
    while complete_in(checkpoints).len() < count {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no checkpoints"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the job ended too soon"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    child.kill().unwrap();
    child.wait().unwrap();
}

fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let status = Command::new(BIN)
        .args([
            "generate", "orders", "--orders", "600000", "--seed", "3", "--output",
        ])
        .arg(dir.path().join("orders.jsonl"))
        .status()
        .unwrap();
    assert!(status.success());
    dir
}

/// Restarts the job to its end; returns its log.
fn restart(dir: &Path) -> String {
    let output = job(dir).stderr(Stdio::piped()).output().unwrap();
    let log = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "the restarted job failed:\n{log}");
    log
}

#[test]
fn corrupt_metadata_falls_back_to_the_previous_checkpoint() {
    let dir = setup();
    run_until_two_checkpoints(dir.path());
    let checkpoints = complete(dir.path());
    let (newest, newest_dir) = checkpoints.last().unwrap().clone();
    let (previous, _) = checkpoints[checkpoints.len() - 2].clone();
    std::fs::write(newest_dir.join("_metadata"), b"{\"format\": 1, \"id\": tru").unwrap();
    let log = restart(dir.path());
    assert!(
        log.contains("corrupt metadata"),
        "no warning about chk-{newest}:\n{log}"
    );
    assert!(log.contains(&format!("chk-{newest}")), "{log}");
    assert!(
        log.contains(&format!("restoring from")) && log.contains(&format!("chk-{previous}")),
        "did not restore chk-{previous}:\n{log}"
    );
    assert_output_equals_an_uninterrupted_run(dir.path());
}

/// The committed output equals, row for row, that of a run without checkpoints.
fn assert_output_equals_an_uninterrupted_run(dir: &Path) {
    let reference = dir.join("reference");
    let status = Command::new(BIN)
        .args(["job", "order-metrics", "--input"])
        .arg(dir.join("orders.jsonl"))
        .arg("--output")
        .arg(&reference)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    for part in ["windows", "counts"] {
        let expected = common::committed_rows(&reference.join(part));
        let got = common::committed_rows(&dir.join("out").join(part));
        assert!(!expected.is_empty());
        assert_eq!(got.len(), expected.len(), "{part}: rows lost or duplicated");
        assert!(
            got == expected,
            "{part}: rows differ from the uninterrupted run"
        );
    }
}

#[test]
fn a_missing_file_makes_a_checkpoint_incomplete() {
    let dir = setup();
    run_until_two_checkpoints(dir.path());
    let checkpoints = complete(dir.path());
    let (newest, newest_dir) = checkpoints.last().unwrap().clone();
    let (previous, _) = checkpoints[checkpoints.len() - 2].clone();
    // A file only the newest checkpoint has: one of its own (a RocksDB manifest).
    let victim = walk(&newest_dir)
        .into_iter()
        .find(|p| p.to_string_lossy().contains("/store/"))
        .expect("the checkpoint has keyed state");
    std::fs::remove_file(&victim).unwrap();
    let log = restart(dir.path());
    assert!(
        log.contains("is missing"),
        "no warning about the missing file:\n{log}"
    );
    assert!(log.contains(&format!("chk-{newest}")), "{log}");
    assert!(
        log.contains(&format!("chk-{previous}")),
        "did not restore chk-{previous}:\n{log}"
    );
    assert_output_equals_an_uninterrupted_run(dir.path());
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if e.path().is_dir() {
            out.extend(walk(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out.sort();
    out
}

#[test]
fn the_same_command_with_from_savepoint_resumes_from_the_newer_checkpoint() {
    let dir = setup();
    let dir = dir.path();
    // A first run leaves a checkpoint: the "savepoint" the next runs start from.
    let child = job(dir).stderr(Stdio::null()).spawn().unwrap();
    kill_after_checkpoints(child, &dir.join("checkpoints"), 1);
    let (_, savepoint) = complete(dir).last().unwrap().clone();
    let resumed = || {
        // Its own checkpoint directory: the command a user starts again.
        let mut cmd = job_with(dir, &dir.join("checkpoints-2"));
        cmd.arg("--from-savepoint").arg(&savepoint);
        cmd
    };
    let child = resumed().stderr(Stdio::null()).spawn().unwrap();
    kill_after_checkpoints(child, &dir.join("checkpoints-2"), 1);
    let output = resumed().stderr(Stdio::piped()).output().unwrap();
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{log}");
    assert!(
        log.contains("completed after the savepoint") && log.contains("checkpoints-2"),
        "did not resume from its own newer checkpoint:\n{log}"
    );
    assert_output_equals_an_uninterrupted_run(dir);
}
