//! Window functions outside a window aggregate: a window function that no
//! `GROUP BY` follows is made into rows (each row once per window it is in),
//! and the columns that hold a stream's windows are tracked, so that two
//! windowed streams can be joined per window.

use std::sync::Arc;

use headwater_operators::window::{WINDOW_END, WINDOW_START, WindowAssigner, WindowKind};

use datafusion::catalog::view::ViewTable;

use super::query::{Planned, QueryPlanner};
use crate::catalog::WindowedTable;
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

    /// A window function over view `view` (its query planned as a stream,
    /// such as deduplicated events): its rows must carry their event time
    /// in the column the windows run on.
    pub(super) fn window_over_view(
        &mut self,
        windowed: &WindowedTable,
        view: &ViewTable,
    ) -> Result<Planned, SqlError> {
        let planned = self.plan(view.logical_plan())?;
        let planned = self.materialize(planned)?;
        if planned.updating {
            return Err(self.unsupported(format!(
                "a window over view `{}` is not supported: it is an updating query (an \
                 aggregate, keep-last deduplication or an upsert-kafka table), not a stream \
                 of events",
                windowed.table
            )));
        }
        if planned.time.as_deref() != Some(windowed.time_column.as_str()) {
            return Err(self.unsupported(format!(
                "windows of view `{}` run on its rows' event time: `{}` is not it (the event \
                 time is a table's WATERMARK column, selected as it is{})",
                windowed.table,
                windowed.time_column,
                match &planned.time {
                    Some(time) => format!("; here `{time}`"),
                    None => String::new(),
                }
            )));
        }
        Ok(Planned {
            window: Some(PendingWindow {
                kind: windowed.kind,
            }),
            bounds: None,
            ..planned
        })
    }
}
