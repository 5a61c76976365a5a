//! The stream environment: where a pipeline is declared, and from where it runs.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};

use headwater_operators::decode_error::{DEAD_LETTER_OUTPUT, DecodeErrorPolicy};
use headwater_operators::sources::SourceSpec;
use headwater_runtime::time::schema_with_event_time;
use headwater_runtime::{JobConfig, JobGraph, JobHandle, NodeId};

use crate::data_stream::DataStream;
use crate::error::{HeadwaterError, Result};

/// Declares a dataflow, then runs it with [`StreamEnvironment::execute`].
///
/// ```no_run
/// use headwater::prelude::*;
///
/// # async fn run() -> headwater::Result<()> {
/// let env = StreamEnvironment::new().with_parallelism(2);
/// env.source(OrdersSource::new(7).orders(1_000))
///     .filter(col("event_type").eq(lit("order.shipped")))?
///     .select(vec![col("order_id"), col("amount")])?
///     .sink(StdoutSink::table())?;
/// env.execute()?.wait().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct StreamEnvironment {
    inner: Arc<Mutex<Builder>>,
}

pub(crate) struct Builder {
    pub graph: JobGraph,
    pub config: JobConfig,
    /// Sources whose bad rows go to a dead-letter output, which must be read.
    pub dead_letter_sources: Vec<NodeId>,
    pub executed: bool,
}

impl Default for StreamEnvironment {
    fn default() -> Self {
        Self::new()
    }
}

impl StreamEnvironment {
    pub fn new() -> Self {
        Self::with_config(JobConfig::default())
    }

    pub fn with_config(mut config: JobConfig) -> Self {
        config.default_parallelism = config.default_parallelism.max(1);
        StreamEnvironment {
            inner: Arc::new(Mutex::new(Builder {
                graph: JobGraph::new("headwater-job"),
                config,
                dead_letter_sources: Vec::new(),
                executed: false,
            })),
        }
    }

    /// The parallelism of every operator that does not set its own.
    pub fn with_parallelism(self, parallelism: usize) -> Self {
        self.builder().config.default_parallelism = parallelism.max(1);
        self
    }

    /// Takes a checkpoint every `interval` into `dir`, for exactly-once
    /// results; a job started over a directory with a complete checkpoint
    /// resumes from the newest one.
    pub fn with_checkpoints(
        self,
        dir: impl Into<std::path::PathBuf>,
        interval: std::time::Duration,
    ) -> Self {
        self.builder().config.checkpoint = Some(
            headwater_runtime::checkpoint::CheckpointConfig::new(dir, interval),
        );
        self
    }

    /// How a job with checkpoints restarts after a task fails (by default up
    /// to 3 times in a row, 1 s apart, from the latest checkpoint).
    pub fn with_restart_strategy(self, strategy: headwater_runtime::RestartStrategy) -> Self {
        self.builder().config.restart = strategy;
        self
    }

    /// Starts from a savepoint (or checkpoint) directory.
    pub fn from_savepoint(self, dir: impl Into<std::path::PathBuf>) -> Self {
        self.builder().config.restore_from = Some(dir.into());
        self
    }

    /// Starts even if the restored checkpoint holds state of operators this
    /// job no longer has; that state is dropped. Without it such a restore
    /// fails, naming the operator.
    pub fn allow_non_restored_state(self) -> Self {
        self.builder().config.allow_non_restored_state = true;
        self
    }

    /// Names the job (in logs and metrics).
    pub fn with_name(self, name: &str) -> Self {
        self.builder().graph.name = name.to_string();
        self
    }

    pub fn config(&self) -> JobConfig {
        self.builder().config.clone()
    }

    pub(crate) fn builder(&self) -> MutexGuard<'_, Builder> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a source. Its operator is named after the connector (`orders`,
    /// `filesystem`, ...), with a number if the name is taken.
    pub fn source(&self, spec: impl SourceSpec + 'static) -> DataStream {
        let name = self.unique_name(&spec.default_name());
        self.source_named(&name, spec)
            .expect("a unique name was chosen")
    }

    /// Adds a source under a name of your own.
    pub fn source_named(&self, name: &str, spec: impl SourceSpec + 'static) -> Result<DataStream> {
        let mut b = self.builder();
        let parallelism = b.config.default_parallelism;
        let node = b
            .graph
            .add_source(name, parallelism, spec.event_time(), spec.factory())?;
        if let Some(timeout) = spec.idle_timeout() {
            b.graph.set_idle_timeout(node, timeout);
        }
        if spec.decode_error_policy() == Some(DecodeErrorPolicy::DeadLetter) {
            b.dead_letter_sources.push(node);
        }
        drop(b);
        Ok(DataStream::new(
            self.clone(),
            node,
            None,
            schema_with_event_time(&spec.schema()),
        ))
    }

    /// `base`, or `base_2`, `base_3`, ... if taken.
    pub(crate) fn unique_name(&self, base: &str) -> String {
        let b = self.builder();
        if !b.graph.has_node(base) {
            return base.to_string();
        }
        (2..)
            .map(|i| format!("{base}_{i}"))
            .find(|n| !b.graph.has_node(n))
            .expect("an unused name")
    }

    /// The tasks and edges the job would run, as text.
    pub fn explain(&self) -> String {
        headwater_runtime::plan::PhysicalPlan::new(&self.builder().graph).to_string()
    }

    /// Starts the job on the current tokio runtime and returns its handle.
    pub fn execute(&self) -> Result<JobHandle> {
        let mut b = self.builder();
        if b.executed {
            return Err(HeadwaterError::Pipeline(
                "this environment's job has already been executed".into(),
            ));
        }
        let read: HashSet<NodeId> = b
            .graph
            .edges()
            .iter()
            .filter(|e| e.side_output.as_deref() == Some(DEAD_LETTER_OUTPUT))
            .map(|e| e.from)
            .collect();
        if let Some(unread) = b.dead_letter_sources.iter().find(|n| !read.contains(n)) {
            return Err(HeadwaterError::Pipeline(format!(
                "source `{}` sends bad rows to its dead-letter output, but nothing reads it; \
                 sink `.dead_letters()` of that source",
                b.graph.node(*unread).name
            )));
        }
        b.executed = true;
        let graph = std::mem::take(&mut b.graph);
        Ok(headwater_runtime::start(graph, b.config.clone())?)
    }
}
