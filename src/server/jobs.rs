//! The jobs a server runs: what each one is, its state, and its counters,
//! for `GET /v1/jobs` and `GET /metrics`.

use std::fmt::Write;
use std::sync::Mutex;
use std::time::SystemTime;

use headwater_runtime::metrics::JobMetrics;
use headwater_runtime::{JobGraph, JobHandle};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

/// Where a job is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobState {
    Running,
    /// Its input ended and everything was committed.
    Finished,
    Stopped,
    Failed(String),
}

/// What a job is, taken from its graph before it starts.
#[derive(Debug, Clone)]
pub struct JobSpec {
    /// The statements it runs.
    pub sql: String,
    /// The views it keeps.
    pub views: Vec<String>,
    /// Its highest operator parallelism.
    pub parallelism: usize,
    /// Its source operators, whose rows out are the rows it read.
    pub sources: Vec<String>,
}

impl JobSpec {
    pub fn of(graph: &JobGraph, sql: &str, views: Vec<String>) -> Self {
        JobSpec {
            sql: sql.trim().to_string(),
            views,
            parallelism: graph
                .nodes()
                .iter()
                .map(|n| n.parallelism)
                .max()
                .unwrap_or(1),
            sources: graph
                .nodes()
                .iter()
                .filter(|n| n.is_source())
                .map(|n| n.name.clone())
                .collect(),
        }
    }
}

impl JobState {
    pub fn name(&self) -> &'static str {
        match self {
            JobState::Running => "running",
            JobState::Finished => "finished",
            JobState::Stopped => "stopped",
            JobState::Failed(_) => "failed",
        }
    }
}

struct Entry {
    id: u64,
    name: String,
    /// Unique to this instance of the job (a name can be used again).
    key: String,
    spec: JobSpec,
    started: SystemTime,
    state: JobState,
    metrics: JobMetrics,
    stop: CancellationToken,
}

/// A job as `GET /v1/jobs` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct JobInfo {
    pub id: u64,
    pub name: String,
    /// `running`, `finished`, `stopped` or `failed`.
    pub state: &'static str,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub sql: String,
    pub views: Vec<String>,
    pub parallelism: usize,
    /// Seconds since the Unix epoch.
    pub started_at: u64,
    pub checkpoints_completed: u64,
    pub last_checkpoint_id: u64,
    pub restarts: u64,
    /// Rows every source has read.
    pub rows_read: u64,
}

/// The jobs of a server.
#[derive(Default)]
pub struct Jobs {
    entries: Mutex<Vec<Entry>>,
}

impl Jobs {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts tracking a running job known as `key` (unique to this instance
    /// of the job, unlike its name); returns its id.
    pub fn track(&self, handle: &JobHandle, spec: JobSpec, key: &str) -> u64 {
        let mut entries = self.lock();
        let id = entries.last().map_or(1, |e| e.id + 1);
        entries.push(Entry {
            id,
            name: handle.name().to_string(),
            key: key.to_string(),
            spec,
            started: SystemTime::now(),
            state: JobState::Running,
            metrics: handle.live_metrics(),
            stop: handle.stop_token(),
        });
        id
    }

    /// Records a kept statement that could not start again when the server
    /// restarted: it shows as failed, with why.
    pub fn failed_to_start(&self, name: &str, key: &str, sql: &str, error: String) {
        let mut entries = self.lock();
        let id = entries.last().map_or(1, |e| e.id + 1);
        entries.push(Entry {
            id,
            name: name.to_string(),
            key: key.to_string(),
            spec: JobSpec {
                sql: sql.trim().to_string(),
                views: Vec::new(),
                parallelism: 0,
                sources: Vec::new(),
            },
            started: SystemTime::now(),
            state: JobState::Failed(error),
            metrics: JobMetrics::default(),
            stop: CancellationToken::new(),
        });
    }

    /// Records how job `id` ended.
    pub fn ended(&self, id: u64, state: JobState) {
        if let Some(e) = self.lock().iter_mut().find(|e| e.id == id) {
            e.state = state;
        }
    }

    /// Stops the running job `key` gracefully; `false` if there is none.
    pub fn stop(&self, key: &str) -> bool {
        let entries = self.lock();
        let running = entries
            .iter()
            .find(|e| e.key == key && e.state == JobState::Running);
        if let Some(e) = running {
            e.stop.cancel();
        }
        running.is_some()
    }

    /// Whether job `key` is running.
    pub fn is_running(&self, key: &str) -> bool {
        self.lock()
            .iter()
            .any(|e| e.key == key && e.state == JobState::Running)
    }

    /// Stops every running job gracefully.
    pub fn stop_all(&self) {
        for e in self.lock().iter().filter(|e| e.state == JobState::Running) {
            e.stop.cancel();
        }
    }

    /// Every job, oldest first.
    pub fn list(&self) -> Vec<JobInfo> {
        self.lock()
            .iter()
            .map(|e| {
                let m = e.metrics.snapshot();
                let rows_read = e.spec.sources.iter().map(|s| m.operator(s).rows_out).sum();
                JobInfo {
                    id: e.id,
                    name: e.name.clone(),
                    state: e.state.name(),
                    error: match &e.state {
                        JobState::Failed(error) => Some(error.clone()),
                        _ => None,
                    },
                    sql: e.spec.sql.clone(),
                    views: e.spec.views.clone(),
                    parallelism: e.spec.parallelism,
                    started_at: e
                        .started
                        .duration_since(SystemTime::UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs()),
                    checkpoints_completed: m.counter("job", "checkpoints_completed"),
                    last_checkpoint_id: m.counter("job", "last_checkpoint_id"),
                    restarts: m.counter("job", "restarts"),
                    rows_read,
                }
            })
            .collect()
    }

    /// Every job's counters in the Prometheus text format.
    pub fn prometheus(&self, out: &mut String) {
        let entries = self.lock();
        let mut families: std::collections::BTreeMap<String, (&str, Vec<String>)> =
            Default::default();
        let mut sample = |name: String, kind: &'static str, labels: String, value: u64| {
            families
                .entry(name.clone())
                .or_insert_with(|| (kind, Vec::new()))
                .1
                .push(format!("{name}{{{labels}}} {value}"));
        };
        for e in entries.iter() {
            let job = escape(&e.name);
            let running = u64::from(e.state == JobState::Running);
            sample(
                "headwater_job_running".into(),
                "gauge",
                format!("job=\"{job}\""),
                running,
            );
            for (operator, m) in e.metrics.snapshot().operators {
                if operator == "job" {
                    for (counter, value) in m.counters {
                        let (name, kind) = match counter.as_str() {
                            "last_checkpoint_id" => (format!("headwater_job_{counter}"), "gauge"),
                            _ => (format!("headwater_job_{}", total(&counter)), "counter"),
                        };
                        sample(name, kind, format!("job=\"{job}\""), value);
                    }
                    continue;
                }
                let labels = format!("job=\"{job}\",operator=\"{}\"", escape(&operator));
                sample(
                    "headwater_operator_rows_in_total".into(),
                    "counter",
                    labels.clone(),
                    m.rows_in,
                );
                sample(
                    "headwater_operator_rows_out_total".into(),
                    "counter",
                    labels.clone(),
                    m.rows_out,
                );
                sample(
                    "headwater_operator_batches_in_total".into(),
                    "counter",
                    labels.clone(),
                    m.batches_in,
                );
                if let Some(w) = m.watermark_ms {
                    sample(
                        "headwater_operator_watermark_ms".into(),
                        "gauge",
                        labels.clone(),
                        w,
                    );
                }
                for (counter, value) in m.counters {
                    let name = format!("headwater_operator_{}", total(&metric_name(&counter)));
                    sample(name, "counter", labels.clone(), value);
                }
            }
        }
        for (name, (kind, samples)) in families {
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for s in samples {
                let _ = writeln!(out, "{s}");
            }
        }
    }
}

/// A counter's name with the `_total` suffix Prometheus expects.
fn total(name: &str) -> String {
    if name.ends_with("_total") {
        name.to_string()
    } else {
        format!("{name}_total")
    }
}

/// A metric name of `[a-zA-Z0-9_]` only.
fn metric_name(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// A label value with `\`, `"` and newlines escaped.
pub fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
