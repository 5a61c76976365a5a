//! Helpers shared by the end-to-end tests.
#![allow(dead_code)]

pub mod broker;

use std::sync::Arc;
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use headwater::operators::sources::SourceSpec;
use headwater::runtime::graph::SourceFactory;
use headwater::runtime::{BoxError, EventTimeSpec, OperatorContext, Source, SourcePoll};

/// Every row of the batches as a JSON line, sorted: a multiset to compare.
pub fn sorted_json_rows(batches: &[RecordBatch]) -> Vec<String> {
    let mut out = Vec::new();
    {
        let mut writer = arrow::json::LineDelimitedWriter::new(&mut out);
        for b in batches {
            writer.write(b).unwrap();
        }
        writer.finish().unwrap();
    }
    let mut rows: Vec<String> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    rows.sort();
    rows
}

/// A source that sends fixed batches, then either ends or goes quiet for good.
#[derive(Clone)]
pub struct VecSource {
    pub schema: SchemaRef,
    /// The batches of each subtask.
    pub batches: Vec<Vec<RecordBatch>>,
    pub event_time: EventTimeSpec,
    /// After the batches: end (`false`) or wait until stopped (`true`).
    pub then_wait: bool,
    pub name: String,
}

impl SourceSpec for VecSource {
    fn default_name(&self) -> String {
        self.name.clone()
    }

    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn event_time(&self) -> EventTimeSpec {
        self.event_time.clone()
    }

    fn factory(&self) -> SourceFactory {
        let spec = self.clone();
        Arc::new(move |subtask| {
            let batches = spec.batches.get(subtask.index).cloned().unwrap_or_default();
            Ok(Box::new(VecSubtask {
                schema: spec.schema.clone(),
                batches: batches.into(),
                then_wait: spec.then_wait,
            }) as Box<dyn Source>)
        })
    }
}

struct VecSubtask {
    schema: SchemaRef,
    batches: std::collections::VecDeque<RecordBatch>,
    then_wait: bool,
}

#[async_trait]
impl Source for VecSubtask {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    async fn next(&mut self, _: &mut OperatorContext) -> Result<SourcePoll, BoxError> {
        if let Some(b) = self.batches.pop_front() {
            // A little pause, so that watermarks and idleness interleave as in life.
            tokio::time::sleep(Duration::from_millis(5)).await;
            return Ok(SourcePoll::Batch(b));
        }
        if self.then_wait {
            std::future::pending::<()>().await;
        }
        Ok(SourcePoll::Finished)
    }
}

/// Runs a future with a deadline, so that a hang fails the test instead of stalling it.
pub async fn within<T>(seconds: u64, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(seconds), f)
        .await
        .expect("the job hung")
}

/// Every row of the committed result files under `dir` (hidden in-progress
/// and pending files are not results), sorted.
pub fn committed_rows(dir: &std::path::Path) -> Vec<String> {
    let mut rows = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('_') || !name.ends_with(".jsonl") {
            continue;
        }
        rows.extend(
            std::fs::read_to_string(entry.path())
                .unwrap()
                .lines()
                .map(String::from),
        );
    }
    rows.sort();
    rows
}

/// A Postgres client of the server at `addr` (`host:port`), as user `headwater`.
pub async fn pg_connect(addr: &str) -> tokio_postgres::Client {
    let (host, port) = addr.rsplit_once(':').unwrap();
    let (client, connection) = tokio_postgres::Config::new()
        .host(host)
        .port(port.parse().unwrap())
        .user("headwater")
        .dbname("headwater")
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
}

/// Complete checkpoints (with metadata) in `checkpoints`, oldest first.
pub fn complete_checkpoints(checkpoints: &std::path::Path) -> Vec<(u64, std::path::PathBuf)> {
    let mut found: Vec<(u64, std::path::PathBuf)> = std::fs::read_dir(checkpoints)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let id = e
                .file_name()
                .to_string_lossy()
                .strip_prefix("chk-")?
                .parse()
                .ok()?;
            e.path().join("_metadata").exists().then(|| (id, e.path()))
        })
        .collect();
    found.sort();
    found
}

/// A running `headwater` that serves clients; killed when dropped.
pub struct Server {
    pub child: std::process::Child,
    /// The Postgres address, `host:port`.
    pub pg: String,
    /// The HTTP address, `host:port`.
    pub http: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `command` (a `headwater` that serves) and reads the addresses it
/// prints; its log is dropped.
pub fn spawn_server(mut command: std::process::Command) -> Server {
    use std::io::BufRead;
    use std::process::Stdio;
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut pg, mut http) = (None, None);
    while pg.is_none() || http.is_none() {
        let line = lines.next().expect("the addresses").unwrap();
        if let Some(a) = line.strip_prefix("postgres: ") {
            pg = Some(a.to_string());
        }
        if let Some(a) = line.strip_prefix("http: http://") {
            http = Some(a.to_string());
        }
    }
    std::thread::spawn(move || for _ in lines {});
    Server {
        child,
        pg: pg.unwrap(),
        http: http.unwrap(),
    }
}
