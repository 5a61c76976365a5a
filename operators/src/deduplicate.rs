//! Deduplication: the first row of each key goes on, every later row of the
//! key is dropped. For events delivered more than once (the same event id
//! again), this is exactly-once processing of each event.
//!
//! Per batch: the rows' keys are interned (vectorized row format), one
//! multi-get asks which keys were seen before, the first row of each new key
//! is kept (one `filter` kernel), and the new keys are written in one write
//! batch. The seen keys live in keyed state, so they are part of every
//! checkpoint; with a TTL a key is forgotten that long after it was seen.

use std::time::Duration;

use arrow::array::{BooleanArray, RecordBatch};
use arrow::compute::filter_record_batch;
use arrow::datatypes::{FieldRef, SchemaRef};
use async_trait::async_trait;
use headwater_runtime::state::{StateDescriptor, StateKey, ValueState};
use headwater_runtime::{BoxError, Collector, Operator, OperatorContext, SubtaskInfo};

use crate::error::{OperatorError, Result};
use crate::window::keys::{GroupKeys, KeyCodec, key_columns_of};

/// Keeps the first row per value of some columns; run it behind a hash
/// exchange on those columns.
#[derive(Clone)]
pub struct Deduplicate {
    key_columns: Vec<usize>,
    key_fields: Vec<FieldRef>,
    ttl: Option<Duration>,
}

impl Deduplicate {
    /// Deduplicates by `key_columns` of `input`; with a `ttl`, a key seen
    /// longer ago than that counts as new again (bounded state).
    pub fn try_new(
        key_columns: &[String],
        input: &SchemaRef,
        ttl: Option<Duration>,
    ) -> Result<Self> {
        if key_columns.is_empty() {
            return Err(OperatorError::Config(
                "deduplication needs at least one key column".into(),
            ));
        }
        let (indices, fields) = key_columns_of(key_columns, input)?;
        Ok(Deduplicate {
            key_columns: indices,
            key_fields: fields,
            ttl,
        })
    }

    /// The operator of one subtask.
    pub fn operator(
        &self,
        subtask: &SubtaskInfo,
    ) -> std::result::Result<Box<dyn Operator>, BoxError> {
        let mut descriptor = StateDescriptor::new("deduplicate-seen");
        if let Some(ttl) = self.ttl {
            descriptor = descriptor.with_ttl(ttl);
        }
        Ok(Box::new(DeduplicateOperator {
            keys: KeyCodec::new(
                self.key_columns.clone(),
                self.key_fields.clone(),
                subtask.max_parallelism,
            )?,
            seen: ValueState::unregistered(descriptor),
        }))
    }
}

struct DeduplicateOperator {
    keys: KeyCodec,
    /// Present for every key already let through.
    seen: ValueState<bool>,
}

impl DeduplicateOperator {
    /// The rows of `batch` whose key is new: the first of each.
    fn first_rows(
        &mut self,
        batch: &RecordBatch,
        ctx: &mut OperatorContext,
    ) -> Result<RecordBatch> {
        let keys = self.keys.keys(batch)?;
        let mut groups = GroupKeys::new();
        let mut group_of_row = Vec::with_capacity(batch.num_rows());
        groups.intern_rows(&keys, 0..batch.num_rows(), &mut group_of_row);
        let store = ctx.keyed_state()?;
        let state_keys: Vec<StateKey> = (0..groups.len())
            .map(|g| StateKey::new(groups.key_group(g), groups.key(g)))
            .collect();
        let seen = self.seen.multi_get(store, &state_keys)?;
        // A group is taken by its first row, if it was not seen before.
        let mut open: Vec<bool> = seen.iter().map(Option::is_none).collect();
        let keep: BooleanArray = group_of_row
            .iter()
            .map(|&g| Some(std::mem::replace(&mut open[g], false)))
            .collect();
        let mut write = store.new_batch();
        for (g, key) in state_keys.iter().enumerate() {
            if seen[g].is_none() {
                self.seen.put(store, &mut write, *key, &true)?;
            }
        }
        store.write(write)?;
        Ok(filter_record_batch(batch, &keep)?)
    }
}

#[async_trait]
impl Operator for DeduplicateOperator {
    async fn process_batch(
        &mut self,
        batch: RecordBatch,
        ctx: &mut OperatorContext,
        out: &mut dyn Collector,
    ) -> std::result::Result<(), BoxError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let kept = self.first_rows(&batch, ctx)?;
        if kept.num_rows() > 0 {
            out.collect(kept).await?;
        }
        Ok(())
    }
}
