//! INSERTs wait until the whole script is planned: a table written by
//! several INSERTs (a Flink statement set) gets one sink that reads their
//! union, so that one file directory or one transactional producer has one
//! writer.

use datafusion::logical_expr::Expr;
use datafusion::prelude::{Column, lit};
use headwater_operators::changelog::{CHANGE_COLUMN, Change};
use headwater_operators::sinks::SinkSpec;
use headwater_runtime::Partitioning;
use headwater_runtime::time::EVENT_TIME_FIELD;

use super::dataflow::{Dataflow, Stream};
use crate::error::{Position, SqlError};

/// What the INSERTs into one table bring its sink.
pub(super) struct PendingInsert {
    table: String,
    /// The first INSERT's statement scope: the sink's operator id is under
    /// it, as it was when a table had one INSERT.
    scope: String,
    sink: Box<dyn SinkSpec>,
    /// The table's primary key: every change of a key goes through one sink
    /// subtask, in order.
    primary_key: Vec<String>,
    /// Each INSERT's rows, and whether they are a changelog.
    inputs: Vec<(Stream, bool)>,
    /// Where the first INSERT is.
    at: Position,
}

impl Dataflow {
    /// Adds an INSERT's rows for `table`; its sink is added by
    /// [`Dataflow::write_inserts`].
    pub(super) fn insert(
        &mut self,
        table: &str,
        stream: Stream,
        updating: bool,
        sink: Box<dyn SinkSpec>,
        primary_key: &[String],
        at: Position,
    ) {
        match self.inserts.iter_mut().find(|i| i.table == table) {
            Some(pending) => pending.inputs.push((stream, updating)),
            None => {
                let scope = self.scope().to_string();
                self.inserts.push(PendingInsert {
                    table: table.to_string(),
                    scope,
                    sink,
                    primary_key: primary_key.to_vec(),
                    inputs: vec![(stream, updating)],
                    at,
                });
            }
        }
    }

    /// Adds the sink of each table that INSERTs wrote, in the order of the
    /// first INSERT into each: over the one INSERT's rows, or over the union
    /// of several (a changelog if any of them is one).
    pub(super) fn write_inserts(&mut self) -> Result<(), SqlError> {
        for pending in std::mem::take(&mut self.inserts) {
            let at = pending.at;
            self.write_insert(pending)
                .map_err(|e| SqlError::plan(at, e))?;
        }
        Ok(())
    }

    /// The sink of one table.
    fn write_insert(&mut self, pending: PendingInsert) -> Result<(), String> {
        self.resume_statement(&pending.scope);
        let hashed = |mut stream: Stream| {
            if !pending.primary_key.is_empty() {
                stream.partitioning = Partitioning::Hash(pending.primary_key.clone());
            }
            stream
        };
        let stream = if pending.inputs.len() == 1 {
            let (stream, _) = pending.inputs.into_iter().next().ok_or("no INSERT")?;
            hashed(stream)
        } else {
            let updating = pending.inputs.iter().any(|(_, updating)| *updating);
            let mut inputs = Vec::with_capacity(pending.inputs.len());
            for (stream, changes) in pending.inputs {
                let stream = if updating && !changes {
                    // An append-only INSERT's rows are inserts of the changelog.
                    let mut exprs: Vec<Expr> = stream
                        .schema
                        .fields()
                        .iter()
                        .filter(|f| f.name() != EVENT_TIME_FIELD)
                        .map(|f| Expr::Column(Column::new_unqualified(f.name())))
                        .collect();
                    exprs.push(lit(Change::Insert.as_str()).alias(CHANGE_COLUMN));
                    self.project(stream, &exprs)?
                } else {
                    stream
                };
                inputs.push(hashed(stream));
            }
            self.union(inputs)?
        };
        self.sink(stream, pending.sink.as_ref())?;
        Ok(())
    }
}
