//! The sink of a materialized view: the view's rows in keyed state, by key.
//!
//! An append stream upserts each row by its key; a changelog inserts and
//! updates (`+I`, `+U`) and deletes (`-U`, `-D`). At each checkpoint barrier
//! the subtask freezes a copy of its rows (a RocksDB checkpoint: hard links)
//! and, once the checkpoint is complete, publishes it to the
//! [`ViewRegistry`]. Readers only ever see published copies: rows of a
//! checkpoint that completed, never rolled back.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::SchemaRef;
use arrow::row::{RowConverter, SortField};
use async_trait::async_trait;
use headwater_runtime::key_groups::key_group_of;
use headwater_runtime::key_hash::hash_columns;
use headwater_runtime::state::{SortedState, StoreSnapshot};
use headwater_runtime::{BoxError, Collector, Operator, OperatorContext};

use super::registry::ViewRegistry;
use crate::changelog::{CHANGE_COLUMN, Change};
use crate::error::{OperatorError, Result};

/// The sorted state that holds a view's rows: key bytes → row bytes.
pub fn rows_state(view: &str) -> SortedState {
    SortedState::unregistered(&format!("view:{view}"))
}

/// Encoders of a view's keys and rows (Arrow's row format: keys sort as
/// their values do, so a key range is a byte range).
pub struct ViewCodec {
    pub keys: RowConverter,
    pub rows: RowConverter,
}

impl ViewCodec {
    /// With no key columns (a view of one row) a constant stands in for the key.
    pub fn new(schema: &SchemaRef, key: &[usize]) -> Result<Self> {
        let field = |i: usize| SortField::new(schema.field(i).data_type().clone());
        let mut key_fields: Vec<SortField> = key.iter().map(|&i| field(i)).collect();
        if key_fields.is_empty() {
            key_fields.push(SortField::new(arrow::datatypes::DataType::Boolean));
        }
        Ok(ViewCodec {
            keys: RowConverter::new(key_fields)?,
            rows: RowConverter::new((0..schema.fields().len()).map(field).collect())?,
        })
    }
}

/// Builds the sink of each subtask of view `name`.
#[derive(Clone)]
pub struct ViewSink {
    pub name: String,
    /// The job that keeps the view: only its copies are published, never a
    /// stopped job's under a view of the same name declared since.
    pub job: String,
    /// The view's columns (without `_change` and event time).
    pub schema: SchemaRef,
    pub key: Vec<usize>,
    pub registry: ViewRegistry,
}

impl ViewSink {
    pub fn operator(&self) -> Result<Box<dyn Operator>> {
        Ok(Box::new(ViewWriter {
            view: self.clone(),
            codec: ViewCodec::new(&self.schema, &self.key)?,
            state: rows_state(&self.name),
            frozen: BTreeMap::new(),
        }))
    }
}

struct ViewWriter {
    view: ViewSink,
    codec: ViewCodec,
    state: SortedState,
    /// Copies taken at barriers, published when their checkpoint completes.
    frozen: BTreeMap<u64, StoreSnapshot>,
}

impl ViewWriter {
    fn apply(&mut self, batch: &RecordBatch, ctx: &mut OperatorContext) -> Result<()> {
        let columns: Vec<ArrayRef> = self
            .view
            .schema
            .fields()
            .iter()
            .map(|f| {
                batch.column_by_name(f.name()).cloned().ok_or_else(|| {
                    OperatorError::Config(format!(
                        "view `{}`: no column `{}`",
                        self.view.name,
                        f.name()
                    ))
                })
            })
            .collect::<Result<_>>()?;
        let mut keys: Vec<ArrayRef> = self.view.key.iter().map(|&i| columns[i].clone()).collect();
        if keys.is_empty() {
            keys.push(Arc::new(arrow::array::BooleanArray::from(vec![
                true;
                batch
                    .num_rows(
                    )
            ])));
        }
        let key_rows = self.codec.keys.convert_columns(&keys)?;
        let rows = self.codec.rows.convert_columns(&columns)?;
        let mut hashes = Vec::new();
        hash_columns(&keys, batch.num_rows(), &mut hashes)?;
        let changes = batch
            .column_by_name(CHANGE_COLUMN)
            .map(|c| c.as_string::<i32>().clone());
        let max_parallelism = ctx.subtask.max_parallelism;
        let store = ctx.keyed_state()?;
        let mut write = store.new_batch();
        for (i, hash) in hashes.iter().enumerate() {
            let key_group = key_group_of(*hash, max_parallelism);
            let keep = match &changes {
                Some(c) if c.is_valid(i) => {
                    Change::parse(c.value(i)).is_none_or(|c| c.is_addition())
                }
                _ => true,
            };
            if keep {
                self.state.put(
                    store,
                    &mut write,
                    key_group,
                    key_rows.row(i).as_ref(),
                    rows.row(i).as_ref(),
                )?;
            } else {
                self.state
                    .delete(store, &mut write, key_group, key_rows.row(i).as_ref())?;
            }
        }
        store.write(write)?;
        Ok(())
    }

    fn freeze(&mut self, checkpoint: u64, ctx: &mut OperatorContext) -> Result<()> {
        let store = ctx.keyed_state()?;
        let dir = store.path().with_extension(format!("view-{checkpoint}"));
        // One checkpoint is in flight at a time: when barrier `n` arrives,
        // every checkpoint before `n - 1` has completed (and been published)
        // or failed. Copies of those are dropped, so failing checkpoints do
        // not pile copies up.
        self.frozen = self.frozen.split_off(&checkpoint.saturating_sub(1));
        self.frozen
            .insert(checkpoint, StoreSnapshot::take(store, &dir)?);
        Ok(())
    }

    fn publish(&mut self, checkpoint: u64, ctx: &OperatorContext) {
        // Copies of this and earlier checkpoints: the newest is published,
        // older ones (whose completion was never announced) are dropped.
        let later = self.frozen.split_off(&(checkpoint + 1));
        let done = std::mem::replace(&mut self.frozen, later);
        if let Some((id, snapshot)) = done.into_iter().next_back() {
            self.view.registry.publish(
                &self.view.name,
                &self.view.job,
                ctx.subtask.index,
                ctx.subtask.key_groups,
                id,
                snapshot,
            );
        }
    }
}

#[async_trait]
impl Operator for ViewWriter {
    async fn open(&mut self, ctx: &mut OperatorContext) -> std::result::Result<(), BoxError> {
        // Restored from a completed checkpoint: readable at once.
        if let Some(id) = ctx.restored_checkpoint() {
            self.freeze(id, ctx)?;
            self.publish(id, ctx);
        }
        Ok(())
    }

    async fn process_batch(
        &mut self,
        batch: RecordBatch,
        ctx: &mut OperatorContext,
        _out: &mut dyn Collector,
    ) -> std::result::Result<(), BoxError> {
        if batch.num_rows() > 0 {
            self.apply(&batch, ctx)?;
        }
        Ok(())
    }

    async fn snapshot_state(
        &mut self,
        checkpoint: u64,
        ctx: &mut OperatorContext,
    ) -> std::result::Result<Option<Vec<u8>>, BoxError> {
        self.freeze(checkpoint, ctx)?;
        Ok(None)
    }

    async fn notify_checkpoint_complete(
        &mut self,
        checkpoint: u64,
        ctx: &mut OperatorContext,
    ) -> std::result::Result<(), BoxError> {
        self.publish(checkpoint, ctx);
        Ok(())
    }
}
