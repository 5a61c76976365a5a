//! State is restored by operator id, and an operator's id comes from what it
//! is (its statement's target and its kind), not from its place in the script.
//!
//! A job with one windowed INSERT is killed part way. The script then gets a
//! second windowed INSERT, before the first, and is restored from the newest
//! checkpoint as a savepoint: the old window gets its own state back and the
//! new one starts from its beginning, so both sinks commit exactly what a plain
//! Rust reference says. A script whose window changed kind holds no operator
//! for the stored window state: the restore is refused with that operator's
//! id, and goes ahead with `--allow-non-restored-state`.

use crate::common;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_headwater");
const T0: i64 = 1_735_689_600_000; // 2025-01-01T00:00:00Z
const ROWS: i64 = 30_000;

const TABLES: &str = "
CREATE TABLE a (k BIGINT, amount BIGINT, ts TIMESTAMP(3),
  WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
WITH ('connector' = 'filesystem', 'path' = 'a.jsonl', 'format' = 'json', 'rows-per-second' = '10000');
CREATE TABLE b (k BIGINT, amount BIGINT, ts TIMESTAMP(3),
  WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
WITH ('connector' = 'filesystem', 'path' = 'b.jsonl', 'format' = 'json', 'rows-per-second' = '10000');
CREATE TABLE out_a (k BIGINT, window_start TIMESTAMP(3), window_end TIMESTAMP(3), n BIGINT, total BIGINT)
WITH ('connector' = 'filesystem', 'path' = 'out/a', 'format' = 'json');
CREATE TABLE out_b (k BIGINT, window_start TIMESTAMP(3), window_end TIMESTAMP(3), n BIGINT, total BIGINT)
WITH ('connector' = 'filesystem', 'path' = 'out/b', 'format' = 'json');
";

const INSERT_A: &str = "
INSERT INTO out_a SELECT k, window_start, window_end, count(*), sum(amount)
FROM TUMBLE(a, ts, INTERVAL '2' SECOND) GROUP BY k, window_start, window_end;
";

const INSERT_B: &str = "
INSERT INTO out_b SELECT k, window_start, window_end, count(*), sum(amount)
FROM TUMBLE(b, ts, INTERVAL '2' SECOND) GROUP BY k, window_start, window_end;
";

const INSERT_A_HOPPING: &str = "
INSERT INTO out_a SELECT k, window_start, window_end, count(*), sum(amount)
FROM HOP(a, ts, INTERVAL '1' SECOND, INTERVAL '2' SECOND) GROUP BY k, window_start, window_end;
";

/// (k, ts, amount): event time grows 10 ms a row, up to 500 ms out of order
/// (never late under a 1 s watermark delay); small BIGINT keys.
fn events(seed: u64) -> Vec<(i64, i64, i64)> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..ROWS)
        .map(|i| {
            (
                rng.random_range(0..6),
                T0 + i * 10 + rng.random_range(0..500),
                rng.random_range(1..100),
            )
        })
        .collect()
}

fn write_events(path: &Path, events: &[(i64, i64, i64)]) {
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for (k, ts, amount) in events {
        let ts = chrono::DateTime::from_timestamp_millis(*ts)
            .unwrap()
            .naive_utc()
            .format("%Y-%m-%d %H:%M:%S%.3f");
        writeln!(file, r#"{{"k":{k},"amount":{amount},"ts":"{ts}"}}"#).unwrap();
    }
}

/// (k, window start) → (count, sum) of 2 s tumbling windows.
type Windows = BTreeMap<(i64, i64), (i64, i64)>;

fn reference(events: &[(i64, i64, i64)]) -> Windows {
    let mut windows = Windows::new();
    for (k, ts, amount) in events {
        let w = windows.entry((*k, ts.div_euclid(2000) * 2000)).or_default();
        w.0 += 1;
        w.1 += amount;
    }
    windows
}

/// What a sink committed; panics on a window committed twice.
fn committed(dir: &Path) -> Windows {
    let mut windows = Windows::new();
    for line in common::committed_rows(dir) {
        let row: Value = serde_json::from_str(&line).unwrap();
        let at = (row["k"].as_i64().unwrap(), window_start(&row));
        let value = (row["n"].as_i64().unwrap(), row["total"].as_i64().unwrap());
        if let Some(before) = windows.insert(at, value) {
            panic!("window {at:?} committed twice: {before:?} and {value:?}");
        }
    }
    windows
}

fn run(dir: &Path, script: &str, args: &[&str]) -> Command {
    std::fs::write(dir.join("job.sql"), format!("{TABLES}{script}")).unwrap();
    let mut command = Command::new(BIN);
    command
        .args(["run", "job.sql", "--pg-port", "0", "--http-port", "0"])
        .args(["--checkpoint-interval", "200ms"])
        .args(args)
        .current_dir(dir);
    command
}

/// The newest complete checkpoint under `checkpoints`.
fn newest_checkpoint(checkpoints: &Path) -> Option<PathBuf> {
    common::complete_checkpoints(checkpoints)
        .pop()
        .map(|(_, path)| path)
}

/// A `window_start` as written by the JSON sink, in ms since the epoch.
fn window_start(row: &Value) -> i64 {
    row["window_start"]
        .as_str()
        .unwrap()
        .parse::<chrono::NaiveDateTime>()
        .unwrap()
        .and_utc()
        .timestamp_millis()
}

/// Runs the first script (reading `a` only) and kills it (SIGKILL) once it has
/// committed windows and taken more checkpoints; returns the newest one.
fn first_run_killed(dir: &Path) -> PathBuf {
    let mut child = run(dir, INSERT_A, &["--checkpoint-dir", "checkpoints"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while common::committed_rows(&dir.join("out/a")).is_empty() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the job ended too soon"
        );
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "nothing committed"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(400));
    child.kill().unwrap();
    child.wait().unwrap();
    newest_checkpoint(&dir.join("checkpoints")).expect("a complete checkpoint")
}

fn setup() -> (
    tempfile::TempDir,
    Vec<(i64, i64, i64)>,
    Vec<(i64, i64, i64)>,
) {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (events(1), events(2));
    write_events(&dir.path().join("a.jsonl"), &a);
    write_events(&dir.path().join("b.jsonl"), &b);
    (dir, a, b)
}

#[test]
fn a_statement_added_before_restores_the_old_window_and_starts_the_new_one_fresh() {
    let (dir, a, b) = setup();
    let dir = dir.path();
    let savepoint = first_run_killed(dir);
    let expected_a = reference(&a);
    let partial = committed(&dir.join("out/a"));
    assert!(
        !partial.is_empty() && partial.len() < expected_a.len(),
        "the first run was killed part way: {} of {} windows",
        partial.len(),
        expected_a.len()
    );

    let output = run(
        dir,
        &format!("{INSERT_B}{INSERT_A}"),
        &["--checkpoint-dir", "checkpoints-2", "--from-savepoint"],
    )
    .arg(&savepoint)
    .output()
    .unwrap();
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{log}");
    assert!(
        log.contains("`b` has no state")
            && log.contains("`insert:out_b/tumbling_window` has no state"),
        "the new operators are said to start from their beginning: {log}"
    );
    assert_eq!(
        committed(&dir.join("out/a")),
        expected_a,
        "out_a after the restore"
    );
    assert_eq!(committed(&dir.join("out/b")), reference(&b), "out_b, new");
}

#[test]
fn state_that_matches_no_operator_is_refused_unless_allowed() {
    let (dir, _, _) = setup();
    let dir = dir.path();
    let savepoint = first_run_killed(dir);
    let before = committed(&dir.join("out/a"));

    let refused = run(dir, INSERT_A_HOPPING, &["--from-savepoint"])
        .arg(&savepoint)
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{log}");
    assert!(
        log.contains("`insert:out_a/tumbling_window`")
            && log.contains("--allow-non-restored-state"),
        "the error names the operator whose state has no home: {log}"
    );
    assert_eq!(
        committed(&dir.join("out/a")),
        before,
        "a refused job writes nothing"
    );

    let files_before: std::collections::HashSet<_> = std::fs::read_dir(dir.join("out/a"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    let allowed = run(
        dir,
        INSERT_A_HOPPING,
        &["--allow-non-restored-state", "--from-savepoint"],
    )
    .arg(&savepoint)
    .output()
    .unwrap();
    let log = String::from_utf8_lossy(&allowed.stderr);
    assert!(allowed.status.success(), "{log}");
    assert!(
        log.contains("dropping the state of `insert:out_a/tumbling_window`"),
        "{log}"
    );
    // The source kept its position: the new windows begin where the killed
    // run stopped reading, not at the start of the input.
    let first_new_window = std::fs::read_dir(dir.join("out/a"))
        .unwrap()
        .flatten()
        .filter(|e| !files_before.contains(&e.file_name()))
        .flat_map(|e| {
            std::fs::read_to_string(e.path())
                .unwrap()
                .lines()
                .map(|l| window_start(&serde_json::from_str(l).unwrap()))
                .collect::<Vec<_>>()
        })
        .min()
        .expect("the allowed run committed windows");
    let read_before = before.keys().map(|(_, start)| *start).max().unwrap();
    assert!(
        first_new_window >= read_before,
        "the source restarted from the beginning: a window at {first_new_window}, \
         the killed run had reached {read_before}"
    );
}
