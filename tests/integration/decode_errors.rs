//! Malformed JSON lines under each decode-error policy: `fail` names the file
//! and line, `skip` counts, `dlq` keeps the raw line, the error and the position.
//! The file is large enough to be read in several byte ranges at once.

use crate::common;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef, TimeUnit, UInt64Type};
use common::within;
use headwater::operators::decode_error::DECODE_ERRORS_COUNTER;
use headwater::prelude::*;

const LINES: u64 = 60_000;

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
        Field::new("price", DataType::Float64, false),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            false,
        ),
    ]))
}

/// Writes the file; returns the bad lines (1-based) and their text.
fn write_file(path: &Path, bad_every: Option<u64>) -> BTreeMap<u64, String> {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut bad = BTreeMap::new();
    for line in 1..=LINES {
        let text = match bad_every {
            Some(n) if line % n == 0 => {
                let text = match (line / n - 1) % 3 {
                    // (arrow-json takes commas as optional, so a missing comma is not an error)
                    0 => format!("{{\"id\": {line}, \"name\": broken, \"price\": 1.0, \"ts\": 0}}"),
                    1 => format!(
                        "{{\"id\": {line}, \"name\": \"typed\", \"price\": \"cheap\", \"ts\": 0}}"
                    ),
                    _ => format!("{{\"id\": {line}, \"name\": \"cut"),
                };
                bad.insert(line, text.clone());
                text
            }
            // Timestamps as epoch ms and as RFC 3339 strings, both accepted.
            _ if line % 2 == 0 => format!(
                "{{\"id\": {line}, \"name\": \"item-{line}\", \"price\": {}.5, \"ts\": {}}}",
                line % 100,
                1_700_000_000_000u64 + line
            ),
            _ => format!(
                "{{\"id\": {line}, \"name\": null, \"price\": 2, \"ts\": \"2024-05-01T10:00:00.{:03}Z\"}}",
                line % 1000
            ),
        };
        writeln!(f, "{text}").unwrap();
    }
    bad
}

fn source(path: &Path, policy: DecodeErrorPolicy) -> FileSource {
    FileSource::json(path, schema())
        .on_decode_error(policy)
        .with_event_time(EventTimeSpec::column("ts", Duration::from_secs(1)))
}

async fn ids_of(batches: Vec<RecordBatch>) -> Vec<i64> {
    let mut ids: Vec<i64> = batches
        .iter()
        .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
        .collect();
    ids.sort();
    ids
}

/// Compares sorted ids, naming the first few that are missing or extra.
fn assert_same_ids(got: &[i64], expected: &[i64]) {
    let got_set: std::collections::BTreeSet<_> = got.iter().collect();
    let expected_set: std::collections::BTreeSet<_> = expected.iter().collect();
    let missing: Vec<_> = expected_set.difference(&got_set).take(10).collect();
    let extra: Vec<_> = got_set.difference(&expected_set).take(10).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing ids {missing:?}, unexpected ids {extra:?}"
    );
    assert_eq!(got.len(), expected.len(), "no row twice");
}

fn file(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("events.jsonl")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_names_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = file(&dir);
    write_file(&path, Some(37_123)); // one bad line: line 37123
    let env = StreamEnvironment::new().with_parallelism(3);
    env.source(source(&path, DecodeErrorPolicy::Fail))
        .sink(BlackholeSink)
        .unwrap();
    let error = within(60, env.execute().unwrap().wait())
        .await
        .expect_err("a bad line fails the job");
    let message = error.to_string();
    assert!(
        message.contains(&format!("{}:37123", path.display())),
        "{message}"
    );
    assert!(
        message.contains("column"),
        "a syntax error gives its column: {message}"
    );
    assert_eq!(error.operator(), Some("filesystem"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skip_counts_bad_lines_and_keeps_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let path = file(&dir);
    let bad = write_file(&path, Some(997));
    let env = StreamEnvironment::new().with_parallelism(3);
    let rows = env
        .source(source(&path, DecodeErrorPolicy::Skip))
        .collect()
        .unwrap();
    let job = env.execute().unwrap();
    let ids = ids_of(within(60, rows.collect_all()).await).await;
    let result = within(10, job.wait()).await.unwrap();
    let expected: Vec<i64> = (1..=LINES)
        .filter(|l| !bad.contains_key(l))
        .map(|l| l as i64)
        .collect();
    assert_same_ids(&ids, &expected);
    assert_eq!(
        result.metrics.counter("filesystem", DECODE_ERRORS_COUNTER),
        bad.len() as u64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dlq_writes_the_raw_line_the_error_and_the_position() {
    let dir = tempfile::tempdir().unwrap();
    let path = file(&dir);
    let bad = write_file(&path, Some(1_201));
    let env = StreamEnvironment::new().with_parallelism(3);
    let events = env.source(source(&path, DecodeErrorPolicy::DeadLetter));
    let dead = events.dead_letters().collect().unwrap();
    let good = events.collect().unwrap();
    let job = env.execute().unwrap();
    let (dead, good) = within(60, async {
        tokio::join!(dead.collect_all(), good.collect_all())
    })
    .await;
    let result = within(10, job.wait()).await.unwrap();

    let expected: Vec<i64> = (1..=LINES)
        .filter(|l| !bad.contains_key(l))
        .map(|l| l as i64)
        .collect();
    assert_same_ids(&ids_of(good).await, &expected);
    let mut letters = BTreeMap::new();
    for b in &dead {
        let source = b.column_by_name("source").unwrap().as_string::<i32>();
        let line = b
            .column_by_name("line")
            .unwrap()
            .as_primitive::<UInt64Type>();
        let error = b.column_by_name("error").unwrap().as_string::<i32>();
        let raw = b.column_by_name("raw").unwrap().as_string::<i32>();
        for i in 0..b.num_rows() {
            assert_eq!(source.value(i), path.display().to_string());
            assert!(!error.value(i).is_empty());
            letters.insert(
                line.value(i),
                (raw.value(i).to_string(), error.value(i).to_string()),
            );
        }
    }
    let lines: Vec<u64> = letters.keys().copied().collect();
    assert_eq!(
        lines,
        bad.keys().copied().collect::<Vec<_>>(),
        "one dead letter per bad line, at its line"
    );
    for (line, (raw, error)) in &letters {
        assert_eq!(raw, &bad[line], "raw text of line {line}");
        if raw.contains("cheap") {
            assert!(
                error.contains("price") || error.to_lowercase().contains("float"),
                "type error names the field: {error}"
            );
        }
    }
    assert_eq!(
        result.metrics.counter("filesystem", DECODE_ERRORS_COUNTER),
        bad.len() as u64
    );
}

#[tokio::test]
async fn dlq_without_a_reader_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = file(&dir);
    std::fs::write(&path, "{}\n").unwrap();
    let env = StreamEnvironment::new().with_parallelism(1);
    env.source(source(&path, DecodeErrorPolicy::DeadLetter))
        .sink(BlackholeSink)
        .unwrap();
    let error = env.execute().expect_err("dead letters must go somewhere");
    assert!(error.to_string().contains("dead_letters"), "{error}");
}
