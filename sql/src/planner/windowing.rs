//! Window functions outside a window aggregate: a window function that no
//! `GROUP BY` follows is made into rows (each row once per window it is in),
//! and the columns that hold a stream's windows are tracked, so that two
//! windowed streams can be joined per window.

use std::sync::Arc;

use headwater_operators::window::{WINDOW_END, WINDOW_START, WindowAssigner, WindowKind};

use super::query::{Planned, QueryPlanner};
use crate::error::SqlError;

/// A window function waiting for its `GROUP BY`.
pub(super) struct PendingWindow {
    pub kind: WindowKind,
}

/// The `window_start` and `window_end` columns of a windowed stream.
#[derive(Debug, Clone)]
pub(super) struct WindowColumns {
    pub start: String,
    pub end: String,
    /// Cut by a window function (rather than a window aggregate's results).
    pub assigned: bool,
}

impl QueryPlanner<'_> {
    /// `planned` with a pending window function (one no `GROUP BY` follows)
    /// made into rows: each row once per window it is in, with the window's
    /// `window_start` and `window_end` columns.
    pub(super) fn materialize(&mut self, planned: Planned) -> Result<Planned, SqlError> {
        let Some(window) = planned.window else {
            return Ok(planned);
        };
        let assigner = WindowAssigner::try_new(window.kind, &planned.stream.schema)
            .map_err(|e| self.unsupported(e.to_string()))?;
        let schema = assigner.output_schema();
        let stream = self
            .dataflow
            .then(
                planned.stream,
                "window_function",
                schema,
                None,
                Arc::new(move |_| Ok(assigner.operator())),
            )
            .map_err(|e| self.failed(e))?;
        Ok(Planned {
            stream,
            window: None,
            bounds: Some(WindowColumns {
                start: WINDOW_START.to_string(),
                end: WINDOW_END.to_string(),
                assigned: true,
            }),
            ..planned
        })
    }
}
