//! Exactly-once through SIGKILL and changes of parallelism, for every kind of
//! window, both deduplications (keep-first into a file, keep-last into a
//! view), a left outer interval join, a window join, a window top-N and
//! regular joins (of append-only inputs into a file, of two updating
//! aggregates into a view), a left temporal join against a view, keyed by a small BIGINT, a VARCHAR and both (the
//! interval join by an expression too).
//!
//! The real binary runs one SQL job of five queries and a materialized view
//! of an updating aggregate (keyed by a small BIGINT and a VARCHAR) over a
//! paced file, with
//! checkpoints every 200 ms. Each run is killed (SIGKILL) once it has committed
//! output, and the next run starts over the same checkpoint directory at
//! another parallelism: 1 → 3 → 2, and 3 → 2 → 1, the last run to the end.
//! Rows far behind event time are spread through the input: they are late
//! whenever they come, also as the first rows after a restore. What the
//! sinks committed, and what the view holds once the input has ended, equal a
//! plain-Rust reference over the same events, with no row lost or duplicated.
//! The job takes more than 10 checkpoints in all, and RocksDB compactions run
//! in the last run (its stores' LOGs show them).

use crate::common;
use crate::rescale_join;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use chrono::NaiveDateTime;
use rand::{Rng, SeedableRng};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_headwater");
const T0: i64 = 1_735_689_600_000; // 2025-01-01T00:00:00Z
const ROWS: usize = 60_000;
const WORDS: [&str; 5] = ["alpha", "beta", "gamma", "delta", "epsilon"];

const SCRIPT: &str = "
CREATE TABLE events (
  event_id VARCHAR, k_int BIGINT, k_str VARCHAR, amount BIGINT, ts TIMESTAMP(3),
  WATERMARK FOR ts AS ts - INTERVAL '1' SECOND
) WITH ('connector' = 'filesystem', 'path' = 'events.jsonl', 'format' = 'json',
        'rows-per-second' = '12000');

CREATE TABLE tumble_out (k_int BIGINT, window_start TIMESTAMP(3), window_end TIMESTAMP(3), n BIGINT, total BIGINT)
WITH ('connector' = 'filesystem', 'path' = 'out/tumble', 'format' = 'json');
CREATE TABLE hop_out (k_str VARCHAR, window_start TIMESTAMP(3), window_end TIMESTAMP(3), n BIGINT, total BIGINT)
WITH ('connector' = 'filesystem', 'path' = 'out/hop', 'format' = 'json');
CREATE TABLE cumulate_out (k_int BIGINT, k_str VARCHAR, window_start TIMESTAMP(3), window_end TIMESTAMP(3), n BIGINT, total BIGINT)
WITH ('connector' = 'filesystem', 'path' = 'out/cumulate', 'format' = 'json');
CREATE TABLE session_out (k_int BIGINT, window_start TIMESTAMP(3), window_end TIMESTAMP(3), n BIGINT, total BIGINT)
WITH ('connector' = 'filesystem', 'path' = 'out/session', 'format' = 'json');
CREATE TABLE dedup_out (event_id VARCHAR, k_int BIGINT, amount BIGINT)
WITH ('connector' = 'filesystem', 'path' = 'out/dedup', 'format' = 'json');
CREATE TABLE join_out (a_id VARCHAR, b_id VARCHAR, k_int BIGINT)
WITH ('connector' = 'filesystem', 'path' = 'out/join', 'format' = 'json');
CREATE TABLE window_join_out (a_id VARCHAR, b_id VARCHAR, window_start TIMESTAMP(3))
WITH ('connector' = 'filesystem', 'path' = 'out/window_join', 'format' = 'json');
CREATE TABLE top_n_out (event_id VARCHAR, k_int BIGINT, window_start TIMESTAMP(3), amount BIGINT, rn BIGINT)
WITH ('connector' = 'filesystem', 'path' = 'out/top_n', 'format' = 'json');
CREATE TABLE regular_join_out (event_id VARCHAR, k_int BIGINT, amount BIGINT)
WITH ('connector' = 'filesystem', 'path' = 'out/regular_join', 'format' = 'json');
CREATE TABLE temporal_out (event_id VARCHAR, version_id VARCHAR, k_int BIGINT)
WITH ('connector' = 'filesystem', 'path' = 'out/temporal', 'format' = 'json');
CREATE VIEW versions AS SELECT event_id, k_int, k_str, ts FROM events WHERE amount % 3 = 0;

INSERT INTO tumble_out
SELECT k_int, window_start, window_end, count(*), sum(amount)
FROM TUMBLE(events, ts, INTERVAL '2' SECOND)
GROUP BY k_int, window_start, window_end;

INSERT INTO hop_out
SELECT k_str, window_start, window_end, count(*), sum(amount)
FROM HOP(events, ts, INTERVAL '1' SECOND, INTERVAL '3' SECOND)
GROUP BY k_str, window_start, window_end;

INSERT INTO cumulate_out
SELECT k_int, k_str, window_start, window_end, count(*), sum(amount)
FROM CUMULATE(events, ts, INTERVAL '1' SECOND, INTERVAL '4' SECOND)
GROUP BY k_int, k_str, window_start, window_end;

INSERT INTO session_out
SELECT k_int, window_start, window_end, count(*), sum(amount)
FROM SESSION(events, ts, INTERVAL '2' SECOND)
GROUP BY k_int, window_start, window_end;

INSERT INTO dedup_out
SELECT event_id, k_int, amount
FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY event_id ORDER BY ts) AS rn FROM events)
WHERE rn = 1;

INSERT INTO join_out
SELECT a.event_id, b.event_id, a.k_int
FROM events a LEFT JOIN events b
  ON a.k_int = b.k_int AND a.k_str = b.k_str AND a.amount % 50 = b.amount % 50
 AND b.ts BETWEEN a.ts AND a.ts + INTERVAL '1' SECOND
 AND a.event_id <> b.event_id;

INSERT INTO window_join_out
SELECT a.event_id, b.event_id, a.window_start
FROM TABLE(TUMBLE(TABLE events, DESCRIPTOR(ts), INTERVAL '1' SECOND)) a
JOIN TABLE(TUMBLE(TABLE events, DESCRIPTOR(ts), INTERVAL '1' SECOND)) b
  ON a.k_int = b.k_int AND a.k_str = b.k_str AND a.amount % 10 = b.amount % 10
 AND a.window_start = b.window_start AND a.window_end = b.window_end
 AND a.event_id <> b.event_id;

INSERT INTO top_n_out
SELECT event_id, k_int, window_start, amount, rn FROM (
  SELECT *, ROW_NUMBER() OVER (
      PARTITION BY window_start, window_end, k_int ORDER BY amount DESC, event_id) AS rn
  FROM TABLE(TUMBLE(TABLE events, DESCRIPTOR(ts), INTERVAL '1' SECOND)))
WHERE rn <= 3;

INSERT INTO regular_join_out
SELECT a.event_id, a.k_int, b.amount
FROM events a JOIN events b ON a.event_id = b.event_id AND a.k_int = b.k_int
WHERE a.amount % 4 = 0;

INSERT INTO temporal_out
SELECT a.event_id, v.event_id, a.k_int
FROM events a
LEFT JOIN versions FOR SYSTEM_TIME AS OF a.ts AS v ON a.k_int = v.k_int AND a.k_str = v.k_str;

CREATE MATERIALIZED VIEW joined WITH (primary_key = 'k_int, k_str') AS
SELECT t.k_int, t.k_str, t.n, m.top
FROM (SELECT k_int, k_str, count(*) AS n FROM events GROUP BY k_int, k_str) t
LEFT JOIN (SELECT k_int, max(amount) AS top FROM events GROUP BY k_int) m
  ON t.k_int = m.k_int;

CREATE MATERIALIZED VIEW totals AS
SELECT k_int, k_str, count(*) AS n, sum(amount) AS total
FROM events GROUP BY k_int, k_str;

CREATE MATERIALIZED VIEW latest AS
SELECT k_int, k_str, event_id, amount FROM (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY k_int, k_str ORDER BY ts DESC) AS rn FROM events)
WHERE rn = 1;
";

#[derive(Clone)]
pub(crate) struct Event {
    pub(crate) id: String,
    pub(crate) k_int: i64,
    pub(crate) k_str: &'static str,
    pub(crate) amount: i64,
    pub(crate) ts: i64,
}

/// The input: event time grows 10 ms a row with up to 800 ms of disorder and
/// a 5 s pause every 60 s (sessions end there); 2% of events are delivered
/// twice. Every 397th row is a day behind, except near the starts of the
/// byte ranges that subtasks read first (0, 1/3, 1/2, 2/3 of the file), where
/// no watermark exists yet in a fresh run.
fn events() -> (Vec<Event>, HashSet<String>) {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(14);
    let mut out: Vec<Event> = Vec::with_capacity(ROWS);
    let mut late = HashSet::new();
    let fresh_starts = [0.0, 1.0 / 3.0, 0.5, 2.0 / 3.0];
    let mut i = 0usize;
    while out.len() < ROWS {
        let position = out.len() as f64 / ROWS as f64;
        let near_start = fresh_starts
            .iter()
            .any(|&f| position > f - 0.01 && position < f + 0.06);
        let base = T0 + i as i64 * 10 + (i as i64 * 10 / 60_000) * 5_000;
        let mut event = Event {
            id: format!("e{i}"),
            k_int: rng.random_range(0..8),
            k_str: WORDS[rng.random_range(0..WORDS.len())],
            amount: rng.random_range(1..1000),
            ts: base + rng.random_range(0..800),
        };
        if i % 397 == 0 && !near_start {
            event.id = format!("late{i}");
            event.ts = T0 - 86_400_000 + i as i64;
            late.insert(event.id.clone());
        }
        out.push(event.clone());
        if rng.random_bool(0.02) {
            out.push(event);
        }
        i += 1;
    }
    (out, late)
}

fn write_events(path: &Path, events: &[Event]) {
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for e in events {
        let ts = chrono::DateTime::from_timestamp_millis(e.ts)
            .unwrap()
            .naive_utc()
            .format("%Y-%m-%d %H:%M:%S%.3f");
        writeln!(
            file,
            r#"{{"event_id":"{}","k_int":{},"k_str":"{}","amount":{},"ts":"{ts}"}}"#,
            e.id, e.k_int, e.k_str, e.amount
        )
        .unwrap();
    }
}

/// (key, window start, window end) → (count, sum).
type Windows = BTreeMap<(String, i64, i64), (i64, i64)>;

fn add(windows: &mut Windows, key: String, start: i64, end: i64, amount: i64) {
    let w = windows.entry((key, start, end)).or_default();
    w.0 += 1;
    w.1 += amount;
}

/// The reference: every window of the on-time events (redeliveries counted,
/// as the window queries read the table itself), and each event once.
fn reference(events: &[Event], late: &HashSet<String>) -> BTreeMap<&'static str, Windows> {
    let on_time: Vec<&Event> = events.iter().filter(|e| !late.contains(&e.id)).collect();
    let mut tumble = Windows::new();
    let mut hop = Windows::new();
    let mut cumulate = Windows::new();
    for e in &on_time {
        let start = e.ts.div_euclid(2000) * 2000;
        add(
            &mut tumble,
            e.k_int.to_string(),
            start,
            start + 2000,
            e.amount,
        );
        let mut start = e.ts.div_euclid(1000) * 1000;
        while start + 3000 > e.ts {
            add(&mut hop, e.k_str.to_string(), start, start + 3000, e.amount);
            start -= 1000;
        }
        let start = e.ts.div_euclid(4000) * 4000;
        let mut end = e.ts.div_euclid(1000) * 1000 + 1000;
        while end <= start + 4000 {
            let key = format!("{}|{}", e.k_int, e.k_str);
            add(&mut cumulate, key, start, end, e.amount);
            end += 1000;
        }
    }
    let mut sessions = Windows::new();
    let mut by_key: BTreeMap<i64, Vec<(i64, i64)>> = BTreeMap::new();
    for e in &on_time {
        by_key.entry(e.k_int).or_default().push((e.ts, e.amount));
    }
    for (key, mut rows) in by_key {
        rows.sort_unstable();
        let mut current: Option<(i64, i64, i64, i64)> = None; // start, last, n, sum
        for (ts, amount) in rows {
            current = match current {
                Some((start, last, n, sum)) if ts < last + 2000 => {
                    Some((start, ts.max(last), n + 1, sum + amount))
                }
                other => {
                    if let Some((start, last, n, sum)) = other {
                        sessions.insert((key.to_string(), start, last + 2000), (n, sum));
                    }
                    Some((ts, ts, 1, amount))
                }
            };
        }
        if let Some((start, last, n, sum)) = current {
            sessions.insert((key.to_string(), start, last + 2000), (n, sum));
        }
    }
    BTreeMap::from([
        ("tumble", tumble),
        ("hop", hop),
        ("cumulate", cumulate),
        ("session", sessions),
    ])
}

pub(crate) fn millis(v: &Value) -> i64 {
    let s = v.as_str().expect("a timestamp string");
    s.parse::<NaiveDateTime>()
        .unwrap_or_else(|e| panic!("{s}: {e}"))
        .and_utc()
        .timestamp_millis()
}

/// What a window sink committed; panics on a window committed twice.
fn committed_windows(dir: &Path, keys: &[&str]) -> Windows {
    let mut windows = Windows::new();
    for line in common::committed_rows(dir) {
        let row: Value = serde_json::from_str(&line).unwrap();
        let key: Vec<String> = keys
            .iter()
            .map(|k| match &row[*k] {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect();
        let at = (
            key.join("|"),
            millis(&row["window_start"]),
            millis(&row["window_end"]),
        );
        let value = (row["n"].as_i64().unwrap(), row["total"].as_i64().unwrap());
        if let Some(before) = windows.insert(at.clone(), value) {
            panic!(
                "{}: window {at:?} committed twice: {before:?} and {value:?}",
                dir.display()
            );
        }
    }
    windows
}

/// A job process, killed when the test ends (passed or not).
struct Job(Child);

impl Drop for Job {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(dir: &Path, parallelism: usize, run: usize) -> Job {
    let log = std::fs::File::create(dir.join(format!("run-{run}-p{parallelism}.log"))).unwrap();
    Job(Command::new(BIN)
        .args(["run", "job.sql", "--pg-port", "0", "--http-port", "0"])
        .args(["--parallelism", &parallelism.to_string()])
        .args([
            "--checkpoint-dir",
            "checkpoints",
            "--checkpoint-interval",
            "200ms",
        ])
        .args(["--state-dir", "state"])
        .current_dir(dir)
        .stdout(std::fs::File::create(dir.join(format!("run-{run}-p{parallelism}.out"))).unwrap())
        .stderr(log)
        .spawn()
        .unwrap())
}

fn committed_files(dir: &Path) -> usize {
    [
        "tumble",
        "hop",
        "cumulate",
        "session",
        "dedup",
        "join",
        "window_join",
        "top_n",
        "regular_join",
        "temporal",
    ]
    .iter()
    .flat_map(|p| {
        std::fs::read_dir(dir.join("out").join(p))
            .into_iter()
            .flatten()
            .flatten()
    })
    .filter(|e| !e.file_name().to_string_lossy().starts_with('_'))
    .count()
}

/// Runs the job at each parallelism in turn, killing every run but the last
/// once it has committed something and a random time more has passed.
/// Returns the last run, still serving its views, and their address.
fn run_scenario(dir: &Path, parallelisms: &[usize], rng: &mut impl Rng) -> Option<(Job, String)> {
    for (run, &p) in parallelisms.iter().enumerate() {
        let mut job = start(dir, p, run);
        let last = run + 1 == parallelisms.len();
        if last {
            // A job with a view serves it after its input ends.
            let log = dir.join(format!("run-{run}-p{p}.log"));
            let spawned = Instant::now();
            while !std::fs::read_to_string(&log)
                .unwrap()
                .contains("input ended")
            {
                if let Some(status) = job.0.try_wait().unwrap() {
                    panic!(
                        "the last run failed: {status}\n{}",
                        std::fs::read_to_string(&log).unwrap()
                    );
                }
                assert!(
                    spawned.elapsed() < Duration::from_secs(120),
                    "the last run never ended"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
            let out = std::fs::read_to_string(dir.join(format!("run-{run}-p{p}.out"))).unwrap();
            let address = out
                .lines()
                .find_map(|l| l.strip_prefix("postgres: "))
                .expect("the address of the views")
                .to_string();
            return Some((job, address));
        }
        let baseline = committed_files(dir);
        let spawned = Instant::now();
        let mut committed_at = None;
        let delay = Duration::from_millis(rng.random_range(100..900));
        loop {
            if let Some(status) = job.0.try_wait().unwrap() {
                panic!("run {run} at p={p} ended before it was killed: {status}");
            }
            if committed_at.is_none() && committed_files(dir) > baseline {
                committed_at = Some(Instant::now());
            }
            if committed_at.is_some_and(|c| c.elapsed() >= delay) {
                break;
            }
            assert!(
                spawned.elapsed() < Duration::from_secs(60),
                "run {run} at p={p} committed nothing in 60 s"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        job.0.kill().unwrap(); // SIGKILL
        job.0.wait().unwrap();
        println!("run {run} at p={p} killed after {:?}", spawned.elapsed());
    }
    None
}

fn check(dir: &Path, events: &[Event], late: &HashSet<String>, scenario: &str) {
    let expected = reference(events, late);
    let keys: HashMap<&str, Vec<&str>> = HashMap::from([
        ("tumble", vec!["k_int"]),
        ("hop", vec!["k_str"]),
        ("cumulate", vec!["k_int", "k_str"]),
        ("session", vec!["k_int"]),
    ]);
    for (query, expected) in &expected {
        let got = committed_windows(&dir.join("out").join(query), &keys[query]);
        let missing: Vec<_> = expected
            .iter()
            .filter(|(k, v)| got.get(k) != Some(v))
            .take(5)
            .collect();
        let extra: Vec<_> = got
            .iter()
            .filter(|(k, _)| !expected.contains_key(k))
            .take(5)
            .collect();
        assert!(
            missing.is_empty() && extra.is_empty() && got.len() == expected.len(),
            "{scenario} {query}: {} windows, {} expected; wrong or missing: {missing:?}; unexpected: {extra:?}",
            got.len(),
            expected.len()
        );
    }
    let mut expected: Vec<String> = Vec::new();
    let mut seen = HashSet::new();
    for e in events {
        if seen.insert(e.id.clone()) {
            expected.push(format!("{}|{}|{}", e.id, e.k_int, e.amount));
        }
    }
    expected.sort();
    let mut got: Vec<String> = common::committed_rows(&dir.join("out/dedup"))
        .iter()
        .map(|line| {
            let row: Value = serde_json::from_str(line).unwrap();
            format!(
                "{}|{}|{}",
                row["event_id"].as_str().unwrap(),
                row["k_int"],
                row["amount"]
            )
        })
        .collect();
    got.sort();
    assert_eq!(
        got.len(),
        expected.len(),
        "{scenario} dedup: rows lost or duplicated"
    );
    assert!(
        got == expected,
        "{scenario} dedup: rows differ from the reference"
    );
    rescale_join::check_join(dir, events, late, scenario);
    rescale_join::check_window_join(dir, events, late, scenario);
    rescale_join::check_top_n(dir, events, late, scenario);
    rescale_join::check_regular_join(dir, events, scenario);
    rescale_join::check_temporal_join(dir, events, late, scenario);
}

#[test]
fn killed_and_rescaled_runs_commit_what_the_reference_says() {
    let (events, late) = events();
    let mut rng = rand::rngs::StdRng::seed_from_u64(std::process::id() as u64);
    for scenario in [[1, 3, 2], [3, 2, 1]] {
        let dir = tempfile::tempdir().unwrap();
        if std::env::var_os("HW_KEEP_TEST_DIRS").is_some() {
            println!("{scenario:?} in {}", dir.path().display());
        }
        let dir = KeptOnFailure(Some(dir));
        write_events(&dir.path().join("events.jsonl"), &events);
        std::fs::write(dir.path().join("job.sql"), SCRIPT).unwrap();
        let name = format!("{scenario:?}");
        let (job, address) = run_scenario(dir.path(), &scenario, &mut rng).expect("a last run");
        check(dir.path(), &events, &late, &name);
        rescale_join::check_view(&address, &events, &name);
        rescale_join::check_latest(&address, &events, &name);
        rescale_join::check_joined(&address, &events, &name);
        drop(job);
        check_checkpoints_and_compactions(dir.path(), &name);
    }
}

/// A test directory, kept for a look when the test fails and
/// `HW_KEEP_TEST_DIRS` is set.
struct KeptOnFailure(Option<tempfile::TempDir>);

impl KeptOnFailure {
    fn path(&self) -> &Path {
        self.0.as_ref().unwrap().path()
    }
}

impl Drop for KeptOnFailure {
    fn drop(&mut self) {
        if std::thread::panicking() && std::env::var_os("HW_KEEP_TEST_DIRS").is_some() {
            let _ = self.0.take().map(tempfile::TempDir::keep);
        }
    }
}

/// More than 10 checkpoints were taken, and RocksDB compacted the stores of
/// the last run (the event in their LOGs).
fn check_checkpoints_and_compactions(dir: &Path, scenario: &str) {
    let newest = std::fs::read_dir(dir.join("checkpoints"))
        .unwrap()
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_prefix("chk-")?
                .parse::<u64>()
                .ok()
        })
        .max()
        .unwrap_or(0);
    assert!(newest >= 10, "{scenario}: only {newest} checkpoints");
    fn logs(dir: &Path, found: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                logs(&path, found);
            } else if entry.file_name().to_string_lossy().starts_with("LOG") {
                found.push(path);
            }
        }
    }
    let mut found = Vec::new();
    logs(&dir.join("state"), &mut found);
    let compacted = found
        .iter()
        .filter(|p| {
            std::fs::read_to_string(p)
                .unwrap_or_default()
                .contains("\"event\": \"compaction_finished\"")
        })
        .count();
    assert!(
        compacted > 0,
        "{scenario}: no store of the last run compacted ({} LOG files)",
        found.len()
    );
}
