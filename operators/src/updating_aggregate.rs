//! A `GROUP BY` without a window: for every key, the aggregates of all its
//! rows so far, sent as changes. The first row of a key inserts its result
//! (`+I`); each later batch with rows of the key retracts the old result
//! (`-U`) and sends the new one (`+U`).
//!
//! Per batch, the rows are aggregated by key in memory (vectorized, through
//! DataFusion's groups accumulators), the stored partial aggregates of the
//! batch's keys are read with one multi-get, merged in, and written back in
//! one write batch. Partials are stored in Arrow's row format in keyed state,
//! so they are part of every checkpoint and restore at any parallelism.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringArray, TimestampMillisecondArray};
use arrow::compute::kernels::aggregate::max;
use arrow::datatypes::{FieldRef, SchemaRef};
use async_trait::async_trait;
use datafusion::logical_expr::Expr;
use headwater_runtime::state::{StateDescriptor, StateKey, ValueState};
use headwater_runtime::time::{event_time_column, schema_with_event_time};
use headwater_runtime::{BoxError, Collector, Operator, OperatorContext, SubtaskInfo};

use crate::changelog::{Change, changelog_schema};
use crate::error::Result;
use crate::window::keys::{GroupKeys, KeyCodec, key_columns_of};
use crate::window::{AggregatePlan, StateRowCodec};

struct Shared {
    key_columns: Vec<usize>,
    key_fields: Vec<FieldRef>,
    plan: AggregatePlan,
    /// Key columns, aggregates, `_change`, event time.
    output_schema: SchemaRef,
}

/// An updating aggregation of a keyed stream, planned against its input.
#[derive(Clone)]
pub struct UpdatingAggregate {
    shared: Arc<Shared>,
}

impl UpdatingAggregate {
    /// Plans `aggregates` per value of `key_columns`; with none, one result
    /// for all rows (run it at parallelism 1).
    pub fn try_new(key_columns: &[String], aggregates: &[Expr], input: &SchemaRef) -> Result<Self> {
        let (indices, key_fields) = key_columns_of(key_columns, input)?;
        let plan = AggregatePlan::try_new(aggregates, input)?;
        plan.state_codec()?;
        let fields = key_fields.iter().chain(plan.output_fields()).cloned();
        let output_schema = schema_with_event_time(&changelog_schema(fields));
        Ok(UpdatingAggregate {
            shared: Arc::new(Shared {
                key_columns: indices,
                key_fields,
                plan,
                output_schema,
            }),
        })
    }

    /// Key columns, aggregates, `_change` and the event-time column.
    pub fn output_schema(&self) -> SchemaRef {
        self.shared.output_schema.clone()
    }

    /// The operator of one subtask.
    pub fn operator(
        &self,
        subtask: &SubtaskInfo,
    ) -> std::result::Result<Box<dyn Operator>, BoxError> {
        Ok(Box::new(UpdatingAggregateOperator {
            keys: KeyCodec::new(
                self.shared.key_columns.clone(),
                self.shared.key_fields.clone(),
                subtask.max_parallelism,
            )?,
            codec: self.shared.plan.state_codec()?,
            state: ValueState::unregistered(StateDescriptor::new("updating-aggregate")),
            shared: self.shared.clone(),
        }))
    }
}

struct UpdatingAggregateOperator {
    shared: Arc<Shared>,
    keys: KeyCodec,
    codec: StateRowCodec,
    /// A key's partial aggregates, one row of the state codec.
    state: ValueState<Vec<u8>>,
}

impl UpdatingAggregateOperator {
    /// The changes `batch` makes: for each key, its retraction (if it had a
    /// result) and then its new result.
    fn changes(
        &mut self,
        batch: &RecordBatch,
        ctx: &mut OperatorContext,
    ) -> Result<Vec<RecordBatch>> {
        let plan = &self.shared.plan;
        let keys = self.keys.keys(batch)?;
        let mut groups = GroupKeys::new();
        let mut group_of_row = Vec::with_capacity(batch.num_rows());
        groups.intern_rows(&keys, 0..batch.num_rows(), &mut group_of_row);
        let n = groups.len();
        let mut merged = plan.accumulators()?;
        merged.update(&plan.inputs(batch)?, &group_of_row, n)?;

        let store = ctx.keyed_state()?;
        let state_keys: Vec<StateKey> = (0..n)
            .map(|g| StateKey::new(groups.key_group(g), groups.key(g)))
            .collect();
        let stored = self.state.multi_get(store, &state_keys)?;
        let known: Vec<usize> = (0..n).filter(|&g| stored[g].is_some()).collect();
        let mut out = Vec::with_capacity(2);
        let time = max(event_time_column(batch)?).unwrap_or(i64::MIN);
        if !known.is_empty() {
            let old_states = self
                .codec
                .decode(known.iter().map(|&g| stored[g].as_deref().expect("known")))?;
            let mut old = plan.accumulators()?;
            let identity: Vec<usize> = (0..known.len()).collect();
            old.merge(&old_states, &identity, known.len())?;
            let before = old.evaluate()?;
            let key_columns = self.keys.decode(known.iter().map(|&g| groups.key(g)))?;
            out.push(self.result_batch(
                key_columns,
                before,
                vec![Change::UpdateBefore; known.len()],
                time,
            )?);
            merged.merge(&old_states, &known, n)?;
        }
        let states = merged.state()?;
        let mut write = store.new_batch();
        let rows = self.codec.encode(&states)?;
        for (g, key) in state_keys.iter().enumerate() {
            self.state
                .put(store, &mut write, *key, &rows.row(g).as_ref().to_vec())?;
        }
        store.write(write)?;
        let mut after = plan.accumulators()?;
        let identity: Vec<usize> = (0..n).collect();
        after.merge(&states, &identity, n)?;
        let values = after.evaluate()?;
        let changes = (0..n)
            .map(|g| match stored[g] {
                Some(_) => Change::UpdateAfter,
                None => Change::Insert,
            })
            .collect();
        let key_columns = self.keys.decode(groups.keys())?;
        out.push(self.result_batch(key_columns, values, changes, time)?);
        if known.is_empty() {
            return Ok(out);
        }
        // Each update as a `-U` row followed at once by its `+U` row, as a
        // filter downstream expects.
        let mut order: Vec<u32> = Vec::with_capacity(known.len() + n);
        let mut before = known.iter().enumerate().peekable();
        for g in 0..n {
            if let Some((k, _)) = before.next_if(|(_, known_g)| **known_g == g) {
                order.push(k as u32);
            }
            order.push((known.len() + g) as u32);
        }
        let all = arrow::compute::concat_batches(&self.shared.output_schema, &out)?;
        let order = arrow::array::UInt32Array::from(order);
        Ok(vec![arrow::compute::take_record_batch(&all, &order)?])
    }

    fn result_batch(
        &self,
        keys: Vec<ArrayRef>,
        values: Vec<ArrayRef>,
        changes: Vec<Change>,
        time: i64,
    ) -> Result<RecordBatch> {
        let rows = changes.len();
        let mut columns = keys;
        columns.extend(values);
        columns.push(Arc::new(StringArray::from_iter_values(
            changes.iter().map(|c| c.as_str()),
        )));
        columns.push(Arc::new(TimestampMillisecondArray::from(vec![time; rows])));
        Ok(RecordBatch::try_new(
            self.shared.output_schema.clone(),
            columns,
        )?)
    }
}

#[async_trait]
impl Operator for UpdatingAggregateOperator {
    async fn process_batch(
        &mut self,
        batch: RecordBatch,
        ctx: &mut OperatorContext,
        out: &mut dyn Collector,
    ) -> std::result::Result<(), BoxError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        for changes in self.changes(&batch, ctx)? {
            out.collect(changes).await?;
        }
        Ok(())
    }
}
