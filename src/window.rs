//! Windowed aggregation in the Rust API:
//! `stream.key_by(..)?.window(Tumbling::of(..))?.aggregate(..)`.

use std::time::Duration;

use datafusion::logical_expr::Expr;
use headwater_operators::window::{
    LATE_OUTPUT, SortKey, WINDOW_END, WINDOW_START, WindowAggregate, WindowKind, WindowTopN,
};
use std::sync::Arc;

use crate::data_stream::DataStream;
use crate::error::{HeadwaterError, Result};
use headwater_runtime::Partitioning;

/// A keyed stream cut into event-time windows, waiting for its aggregates.
pub struct WindowedStream {
    stream: DataStream,
    keys: Vec<String>,
    kind: WindowKind,
    allowed_lateness: Duration,
    memory_limit: Option<usize>,
    /// A typed stream's key column `_key` becomes `key` in the results.
    rename_key: bool,
}

impl DataStream {
    /// Cuts a keyed stream (after [`DataStream::key_by`]) into windows of `kind`.
    pub fn window(self, kind: WindowKind) -> Result<WindowedStream> {
        let Partitioning::Hash(keys) = &self.partitioning else {
            return Err(HeadwaterError::Pipeline(
                "window() needs a keyed stream: call key_by(..) first".into(),
            ));
        };
        kind.validate()?;
        Ok(WindowedStream {
            keys: keys.clone(),
            stream: self,
            kind,
            allowed_lateness: Duration::ZERO,
            memory_limit: None,
            rename_key: false,
        })
    }

    /// The rows a window operator found later than its allowed lateness. Only
    /// on the results of [`WindowedStream::aggregate`].
    pub fn late_rows(&self) -> Result<DataStream> {
        let (node, schema) = self.late_schema.clone().ok_or_else(|| {
            HeadwaterError::Pipeline("late_rows() is only for the results of a window".into())
        })?;
        Ok(DataStream::new(
            self.env.clone(),
            node,
            Some(LATE_OUTPUT.to_string()),
            schema,
        ))
    }
}

impl DataStream {
    /// Flink's window top-N, on the results of a window
    /// ([`WindowedStream::aggregate`]): the first `n` rows of each window
    /// and each value of `partition_by` (none: of each window), by
    /// `order_by`, once the window has closed. Append-only; the rows get a
    /// `rownum` column (1 to `n`). A row whose window has closed is late,
    /// dropped and counted.
    pub fn window_top_n(
        mut self,
        n: usize,
        partition_by: &[&str],
        order_by: &[SortKey],
    ) -> Result<DataStream> {
        if order_by.is_empty() {
            return Err(HeadwaterError::Pipeline(
                "window_top_n() needs an order (order_by)".into(),
            ));
        }
        if [WINDOW_START, WINDOW_END]
            .iter()
            .any(|c| self.schema.index_of(c).is_err())
        {
            return Err(HeadwaterError::Pipeline(format!(
                "window_top_n() ranks the results of a window: the stream has no \
                 `{WINDOW_START}` and `{WINDOW_END}` columns (call it after \
                 window(..)?.aggregate(..))"
            )));
        }
        let mut partition = vec![WINDOW_START.to_string(), WINDOW_END.to_string()];
        partition.extend(partition_by.iter().map(|c| c.to_string()));
        let top = WindowTopN::try_new(&self.schema, &partition, WINDOW_END, order_by, n, "rownum")?;
        self.partitioning = Partitioning::Hash(partition);
        let schema = top.output_schema();
        self.then(
            "window_top_n",
            schema,
            Arc::new(move |subtask| top.operator(subtask)),
        )
    }
}

impl WindowedStream {
    /// Keeps each window for `lateness` after it fires: a late row within it
    /// sends the window's updated result again; later rows go to [`DataStream::late_rows`].
    pub fn allowed_lateness(mut self, lateness: Duration) -> Self {
        self.allowed_lateness = lateness;
        self
    }

    /// The memory each subtask pre-aggregates in before moving partials to RocksDB.
    pub fn memory_limit(mut self, bytes: usize) -> Self {
        self.memory_limit = Some(bytes);
        self
    }

    /// Aggregates each key's rows per window: any DataFusion aggregate function
    /// (`count`, `sum`, `avg`, `min`, `max`, `approx_distinct`, ...), aliased or not.
    /// The result has the key columns, `window_start`, `window_end` and one
    /// column per aggregate.
    pub fn aggregate(self, aggregates: Vec<Expr>) -> Result<DataStream> {
        let mut window =
            WindowAggregate::try_new(self.kind, &self.keys, &aggregates, &self.stream.schema)?
                .with_allowed_lateness(self.allowed_lateness);
        if let Some(bytes) = self.memory_limit {
            window = window.with_memory_limit(bytes);
        }
        let name = match self.kind {
            WindowKind::Tumbling { .. } => "tumbling_window",
            WindowKind::Hopping { .. } => "hopping_window",
            WindowKind::Cumulating { .. } => "cumulating_window",
            WindowKind::Session { .. } => "session_window",
        };
        let schema = window.output_schema();
        let late = window.late_schema();
        let mut results = self.stream.then(
            name,
            schema,
            Arc::new(move |subtask| window.operator(subtask)),
        )?;
        results.late_schema = Some((results.node, late));
        if self.rename_key {
            results = rename_typed_key(results)?;
        }
        Ok(results)
    }
}

impl WindowedStream {
    pub(crate) fn typed_key(mut self) -> Self {
        self.rename_key = true;
        self
    }
}

/// Renames the typed API's key column `_key` to `key` in window results.
fn rename_typed_key(results: DataStream) -> Result<DataStream> {
    let late = results.late_schema.clone();
    let columns = results
        .schema()
        .fields()
        .iter()
        .map(|f| {
            let c = datafusion::prelude::col(format!("\"{}\"", f.name()));
            if f.name() == crate::typed::KEY_FIELD {
                c.alias("key")
            } else {
                c
            }
        })
        .collect();
    let mut renamed = results.select(columns)?;
    renamed.late_schema = late;
    Ok(renamed)
}
