//! A view's rows read from its checkpoint copies batch by batch: one
//! partition per subtask copy, each a stream that reads the next batch of
//! rows only when it is asked for one. A query holds one batch per copy, not
//! the view, and a `LIMIT` stops the reads where it is reached.

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::Result as DfResult;
use datafusion::error::DataFusionError;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::PartitionStream;
use headwater_operators::view::{SnapshotPart, ViewCodec, rows_state};
use headwater_runtime::key_groups::KeyGroup;

/// The rows of one subtask's copy of a view whose sort key is in
/// `from..to`, in every key group of the copy.
#[derive(Debug, Clone)]
pub struct PartScan {
    pub view: String,
    pub schema: SchemaRef,
    pub key: Vec<usize>,
    pub part: SnapshotPart,
    pub from: Vec<u8>,
    pub to: Option<Vec<u8>>,
}

/// Where a scan goes on from: a key group, and the smallest sort key in it
/// not read yet.
struct Cursor {
    scan: PartScan,
    codec: ViewCodec,
    key_group: KeyGroup,
    from: Vec<u8>,
    batch_size: usize,
}

impl Cursor {
    /// The next batch of at most `batch_size` rows; `None` at the end.
    fn next_batch(&mut self) -> DfResult<Option<RecordBatch>> {
        let state = rows_state(&self.scan.view);
        let mut values: Vec<Box<[u8]>> = Vec::new();
        while values.len() < self.batch_size && self.key_group < self.scan.part.key_groups.end {
            let wanted = self.batch_size - values.len();
            let entries = self
                .scan
                .part
                .snapshot
                .range(
                    &state,
                    self.key_group,
                    &self.from,
                    self.scan.to.as_deref(),
                    wanted,
                )
                .map_err(|e| read_failed(&self.scan.view, &e))?;
            if entries.len() < wanted {
                // This key group is read to its end.
                self.key_group += 1;
                self.from.clone_from(&self.scan.from);
            } else if let Some((last, _)) = entries.last() {
                // The smallest key above the last one read.
                self.from.clear();
                self.from.extend_from_slice(last);
                self.from.push(0);
            }
            values.extend(entries.into_iter().map(|(_, value)| value));
        }
        if values.is_empty() {
            return Ok(None);
        }
        let parser = self.codec.rows.parser();
        let columns = self
            .codec
            .rows
            .convert_rows(values.iter().map(|v| parser.parse(v)))?;
        Ok(Some(RecordBatch::try_new(
            self.scan.schema.clone(),
            columns,
        )?))
    }
}

/// A failed read of a view's copy: the client learns which view; the
/// details, which name the server's files, go to the server's log.
pub fn read_failed(view: &str, e: &dyn std::error::Error) -> DataFusionError {
    tracing::error!("reading view `{view}` failed: {e}");
    DataFusionError::Execution(format!(
        "reading view `{view}` failed; the server's log says why"
    ))
}

impl PartitionStream for PartScan {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let schema = self.schema.clone();
        let start = ViewCodec::new(&self.schema, &self.key)
            .map_err(|e| DataFusionError::External(Box::new(e)))
            .map(|codec| Cursor {
                scan: self.clone(),
                codec,
                key_group: self.part.key_groups.start,
                from: self.from.clone(),
                batch_size: ctx.session_config().batch_size().max(1),
            });
        // RocksDB reads block: each batch is read on a blocking thread, so
        // that a slow disk never holds up the threads serving clients.
        let batches = futures::stream::try_unfold(Some(start), |cursor| async move {
            let Some(cursor) = cursor else {
                return Ok(None);
            };
            let mut cursor = cursor?;
            let (cursor, batch) = tokio::task::spawn_blocking(move || {
                let batch = cursor.next_batch();
                (cursor, batch)
            })
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
            Ok(batch?.map(|batch| (batch, Some(Ok(cursor)))))
        });
        Box::pin(RecordBatchStreamAdapter::new(schema, batches))
    }
}
