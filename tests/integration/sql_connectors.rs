//! SQL connectors end to end, through the `headwater` binary: datagen, the
//! dead-letter policy of a file source, EXPLAIN, and an unbounded job stopped
//! by Ctrl-C.

use crate::common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::committed_rows;

fn headwater(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_headwater"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the headwater binary runs")
}

fn data(file: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/sql/data")
        .join(file)
        .display()
        .to_string()
}

#[test]
fn datagen_makes_the_rows_it_is_told_to() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("job.sql"),
        "CREATE TABLE gen (id BIGINT NOT NULL, score DOUBLE, name VARCHAR) WITH (
           'connector' = 'datagen', 'number-of-rows' = '5000', 'seed' = '3',
           'fields.id.kind' = 'sequence', 'fields.id.start' = '100',
           'fields.score.min' = '0', 'fields.score.max' = '1', 'fields.name.length' = '4');
         CREATE TABLE out (id BIGINT, score DOUBLE, name VARCHAR)
           WITH ('connector' = 'filesystem', 'path' = 'out', 'format' = 'json');
         INSERT INTO out SELECT id, score, name FROM gen;",
    )
    .unwrap();
    let output = headwater(&["run", "job.sql", "--parallelism", "3"], dir.path());
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut ids: Vec<i64> = Vec::new();
    for row in committed_rows(&dir.path().join("out")) {
        let v: serde_json::Value = serde_json::from_str(&row).unwrap();
        let score = v["score"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&score), "{row}");
        assert_eq!(v["name"].as_str().unwrap().chars().count(), 4, "{row}");
        ids.push(v["id"].as_i64().unwrap());
    }
    ids.sort();
    assert_eq!(ids, (100..5100).collect::<Vec<_>>(), "each id once");
}

#[test]
fn bad_lines_go_to_the_dead_letter_directory() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("job.sql"),
        format!(
            "CREATE TABLE bids (auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, date_time TIMESTAMP(3))
             WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json',
                   'decode-error' = 'dlq', 'decode-error.path' = 'bad');
             CREATE TABLE out (auction BIGINT) WITH ('connector' = 'filesystem', 'path' = 'out', 'format' = 'json');
             INSERT INTO out SELECT auction FROM bids;",
            data("bad_bids.jsonl")
        ),
    )
    .unwrap();
    let output = headwater(&["run", "job.sql", "--parallelism", "2"], dir.path());
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        committed_rows(&dir.path().join("out")).len(),
        1000,
        "every good line"
    );
    let letters = committed_rows(&dir.path().join("bad"));
    assert_eq!(letters.len(), 8, "every bad line: {letters:?}");
    for letter in &letters {
        let v: serde_json::Value = serde_json::from_str(letter).unwrap();
        assert!(
            v["source"].as_str().unwrap().contains("bad_bids.jsonl"),
            "{letter}"
        );
        assert!(v["line"].as_u64().unwrap() > 0, "{letter}");
        assert!(!v["error"].as_str().unwrap().is_empty(), "{letter}");
    }
}

#[test]
fn explain_prints_operators_parallelism_and_edges() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("job.sql"),
        format!(
            "CREATE TABLE bids (auction BIGINT, price BIGINT, date_time TIMESTAMP(3),
               WATERMARK FOR date_time AS date_time - INTERVAL '1' SECOND)
             WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');
             EXPLAIN SELECT auction, window_end, count(*) FROM TUMBLE(bids, date_time, INTERVAL '1' MINUTE)
             WHERE price > 10 GROUP BY auction, window_end;",
            data("bids.jsonl")
        ),
    )
    .unwrap();
    let output = headwater(&["run", "job.sql", "--parallelism", "3"], dir.path());
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("task 0: bids -> print:"), "{text}");
    assert!(text.contains("tumbling_window"), "{text}");
    assert!(text.contains("/filter -> print:"), "{text}");
    assert!(!dir.path().join("out").exists());
}

#[test]
fn an_unbounded_job_runs_until_ctrl_c_and_then_commits() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("job.sql"),
        "CREATE TABLE orders (event_id VARCHAR, amount DOUBLE, event_time TIMESTAMP(3),
           WATERMARK FOR event_time AS event_time - INTERVAL '2' SECOND)
         WITH ('connector' = 'orders', 'events-per-second' = '2000', 'duplicate-rate' = '0');
         CREATE TABLE out (event_id VARCHAR, amount DOUBLE)
           WITH ('connector' = 'filesystem', 'path' = 'out', 'format' = 'json');
         INSERT INTO out SELECT event_id, amount FROM orders;",
    )
    .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_headwater"))
        .args([
            "run",
            "job.sql",
            "--checkpoint-dir",
            "checkpoints",
            "--checkpoint-interval",
            "200ms",
        ])
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let rows = committed_rows(&dir.path().join("out"));
    assert!(
        rows.len() > 1000,
        "about 2000 rows a second for 1.5 s: {}",
        rows.len()
    );
    let mut ids: Vec<String> = rows.clone();
    ids.dedup(); // sorted: duplicates are neighbours
    assert_eq!(ids.len(), rows.len(), "no event twice");
}
