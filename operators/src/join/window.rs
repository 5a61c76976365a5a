//! The window join, as Flink's: two streams cut into the same windows (by a
//! window table function, or the results of window aggregates) joined per
//! window and key. Rows wait in keyed state until the watermark passes
//! their window's end; then the window's rows of both sides are joined,
//! emitted once (the output is append-only), and deleted. An outer join
//! emits then the rows of its side that matched nothing, padded with NULLs.
//!
//! The keys include each side's `window_start`; a side's rows are stored by
//! key and `window_end` ([`super::side`]), with one timer per key and
//! window. A row whose window has closed already (its end at or behind the
//! watermark) is late: it is dropped and counted in `late_rows`, as Flink
//! drops it.

use std::collections::HashSet;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, TimestampMillisecondArray, UInt32Array};
use arrow::buffer::NullBuffer;
use arrow::compute::{filter_record_batch, take};
use arrow::datatypes::{DataType, SchemaRef, TimeUnit, TimestampMillisecondType};
use async_trait::async_trait;
use datafusion::logical_expr::Expr;
use headwater_runtime::state::{Timer, TimerService};
use headwater_runtime::{BoxError, Collector, EventTime, Operator, OperatorContext, SubtaskInfo};

use super::output::JoinOutput;
use super::side::{SideRows, StoredRow};
use super::{JoinInput, JoinType, ResolvedInput, input_side};
use crate::error::{OperatorError, Result};
use crate::window::keys::{GroupKeys, KeyCodec};

/// Pairs joined and filtered at a time when a window fires.
const PAIRS_PER_BATCH: usize = 8192;

/// A window join of two keyed streams; run it behind a hash exchange of
/// each input on its key (which includes the side's `window_start`).
#[derive(Clone)]
pub struct WindowJoin {
    output: JoinOutput,
    /// Each side's `window_end` column.
    ends: [usize; 2],
}

impl WindowJoin {
    /// Joins `left` and `right` per window and key; `window_end` names each
    /// side's window end column (its keys hold the window start). The
    /// output columns are the left's output columns then the right's, named
    /// `names`, then the event time (the window's last millisecond).
    /// `residual` filters joined rows.
    pub fn try_new(
        join_type: JoinType,
        left: &JoinInput,
        right: &JoinInput,
        window_end: [&str; 2],
        names: &[String],
        residual: Option<&Expr>,
    ) -> Result<Self> {
        let output = JoinOutput::try_new("a window join", join_type, left, right, names, residual)?;
        let mut ends = [0; 2];
        for (side, input) in [left, right].into_iter().enumerate() {
            let index = input.schema.index_of(window_end[side]).map_err(|_| {
                OperatorError::Config(format!(
                    "the window join's input has no window end column `{}`",
                    window_end[side]
                ))
            })?;
            let field = input.schema.field(index);
            if field.data_type() != &DataType::Timestamp(TimeUnit::Millisecond, None) {
                return Err(OperatorError::Config(format!(
                    "window end `{}` is a {}, not a TIMESTAMP(3)",
                    field.name(),
                    field.data_type()
                )));
            }
            ends[side] = index;
        }
        Ok(WindowJoin { output, ends })
    }

    /// The joined rows' columns and the event time.
    pub fn output_schema(&self) -> SchemaRef {
        self.output.schema.clone()
    }

    /// The operator of one subtask.
    pub fn operator(
        &self,
        subtask: &SubtaskInfo,
    ) -> std::result::Result<Box<dyn Operator>, BoxError> {
        let inputs = &self.output.inputs;
        let codec = |input: &ResolvedInput| input.key_codec(subtask.max_parallelism);
        Ok(Box::new(WindowJoinOperator {
            keys: [codec(&inputs[0])?, codec(&inputs[1])?],
            sides: [
                SideRows::new("window-join.left", &inputs[0].output_fields)?,
                SideRows::new("window-join.right", &inputs[1].output_fields)?,
            ],
            timers: None,
            spec: self.clone(),
        }))
    }
}

struct WindowJoinOperator {
    spec: WindowJoin,
    keys: [KeyCodec; 2],
    sides: [SideRows; 2],
    /// When each key's window closes (at its last millisecond).
    timers: Option<TimerService>,
}

impl WindowJoinOperator {
    /// Stores a batch of input `side` until its windows close; returns the
    /// rows of an outer side that can match nothing (a NULL key), padded.
    fn process(
        &mut self,
        side: usize,
        batch: &RecordBatch,
        ctx: &mut OperatorContext,
    ) -> Result<Option<RecordBatch>> {
        let n = batch.num_rows();
        let watermark = ctx.current_watermark.map_or(i64::MIN, |w| w.0);
        let output = &self.spec.output;
        let input = &output.inputs[side];
        let keys = self.keys[side].keys(batch)?;
        let ends = batch
            .column(self.spec.ends[side])
            .as_primitive::<TimestampMillisecondType>();
        let key_nulls = input.key_columns.iter().fold(None, |nulls, &c| {
            NullBuffer::union(nulls.as_ref(), batch.column(c).nulls())
        });
        let own: Vec<ArrayRef> = input
            .output_columns
            .iter()
            .map(|&c| batch.column(c).clone())
            .collect();
        let rows = self.sides[side].encode(&own)?;
        let keep_unmatched = output.join_type.keeps_unmatched(side);
        let store = ctx.keyed_state()?;
        let mut write = store.new_batch();
        let timer_service = self.timers.as_mut().expect("opened");
        let mut timer_keys = GroupKeys::new();
        let mut timers: HashSet<(usize, i64)> = HashSet::new();
        let (mut late, mut unmatched) = (0u64, Vec::new());
        for i in 0..n {
            let Some(end) = ends.is_valid(i).then(|| ends.value(i)) else {
                late += 1;
                continue;
            };
            let last = end.saturating_sub(1);
            if last <= watermark {
                late += 1;
                continue;
            }
            if key_nulls.as_ref().is_some_and(|k| k.is_null(i)) {
                // A NULL key matches nothing: an outer side's row is out now.
                if keep_unmatched {
                    unmatched.push(i as u32);
                }
                continue;
            }
            let key = keys.rows.row(i);
            self.sides[side].put(
                store,
                &mut write,
                keys.key_groups[i],
                key.data(),
                end,
                false,
                rows.row(i).data(),
            )?;
            let group = timer_keys.intern(key.data(), keys.hashes[i], keys.key_groups[i]);
            if timers.insert((group, last)) {
                timer_service.register(
                    store,
                    &mut write,
                    &Timer {
                        time: last,
                        key_group: keys.key_groups[i],
                        key: key.data().to_vec(),
                        namespace: Vec::new(),
                    },
                )?;
            }
        }
        store.write(write)?;
        if late > 0 {
            ctx.metrics.counter("late_rows").add(late);
        }
        if unmatched.is_empty() {
            return Ok(None);
        }
        let indices = UInt32Array::from(unmatched);
        let own = own
            .iter()
            .map(|c| take(c, &indices, None))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        // The row's window's last millisecond, as its joined rows would have.
        let last: TimestampMillisecondArray = indices
            .values()
            .iter()
            .map(|&i| Some(ends.value(i as usize).saturating_sub(1)))
            .collect();
        Ok(Some(output.padded(side, own, Arc::new(last))?))
    }

    /// Joins and deletes the rows of every window the watermark has closed.
    fn fire(&mut self, watermark: i64, ctx: &mut OperatorContext) -> Result<Vec<RecordBatch>> {
        let store = ctx.keyed_state()?;
        let mut out = Vec::new();
        loop {
            let due = self
                .timers
                .as_mut()
                .expect("opened")
                .pop_due(store, watermark, 4096)?;
            if due.is_empty() {
                return Ok(out);
            }
            let mut write = store.new_batch();
            let mut rows: [Vec<StoredRow>; 2] = [Vec::new(), Vec::new()];
            let mut pairs: Vec<(u32, u32)> = Vec::new();
            for timer in &due {
                let end = timer.time.saturating_add(1);
                let starts = [rows[0].len(), rows[1].len()];
                for (side, found) in rows.iter_mut().enumerate() {
                    found.extend(self.sides[side].expire(
                        store,
                        &mut write,
                        timer.key_group,
                        &timer.key,
                        end,
                    )?);
                }
                for l in starts[0]..rows[0].len() {
                    for r in starts[1]..rows[1].len() {
                        pairs.push((l as u32, r as u32));
                    }
                }
            }
            store.write(write)?;
            let columns = [
                self.sides[0].decode(rows[0].iter().map(StoredRow::row))?,
                self.sides[1].decode(rows[1].iter().map(StoredRow::row))?,
            ];
            let mut matched = [vec![false; rows[0].len()], vec![false; rows[1].len()]];
            for chunk in pairs.chunks(PAIRS_PER_BATCH) {
                let take_side = |side: usize| -> Result<Vec<ArrayRef>> {
                    let indices: UInt32Array = chunk
                        .iter()
                        .map(|p| Some(if side == 0 { p.0 } else { p.1 }))
                        .collect();
                    Ok(columns[side]
                        .iter()
                        .map(|c| take(c, &indices, None))
                        .collect::<std::result::Result<Vec<_>, _>>()?)
                };
                let times: TimestampMillisecondArray = chunk
                    .iter()
                    .map(|&(l, _)| Some(rows[0][l as usize].time.saturating_sub(1)))
                    .collect();
                let joined =
                    self.spec
                        .output
                        .joined(take_side(0)?, take_side(1)?, Arc::new(times))?;
                let passed = self.spec.output.residual(&joined)?;
                for (j, &(l, r)) in chunk.iter().enumerate() {
                    if passed.value(j) {
                        matched[0][l as usize] = true;
                        matched[1][r as usize] = true;
                    }
                }
                let joined = filter_record_batch(&joined, &passed)?;
                if joined.num_rows() > 0 {
                    out.push(joined);
                }
            }
            for side in 0..2 {
                if !self.spec.output.join_type.keeps_unmatched(side) {
                    continue;
                }
                let alone: UInt32Array = (0..rows[side].len() as u32)
                    .filter(|&i| !matched[side][i as usize])
                    .map(Some)
                    .collect();
                if alone.is_empty() {
                    continue;
                }
                let own = columns[side]
                    .iter()
                    .map(|c| take(c, &alone, None))
                    .collect::<std::result::Result<Vec<_>, _>>()?;
                let times: TimestampMillisecondArray = alone
                    .values()
                    .iter()
                    .map(|&i| Some(rows[side][i as usize].time.saturating_sub(1)))
                    .collect();
                out.push(self.spec.output.padded(side, own, Arc::new(times))?);
            }
        }
    }
}

#[async_trait]
impl Operator for WindowJoinOperator {
    async fn open(&mut self, ctx: &mut OperatorContext) -> std::result::Result<(), BoxError> {
        let store = ctx.keyed_state()?;
        self.timers = Some(TimerService::new(store, "window-join.close")?);
        Ok(())
    }

    async fn process_batch(
        &mut self,
        batch: RecordBatch,
        ctx: &mut OperatorContext,
        out: &mut dyn Collector,
    ) -> std::result::Result<(), BoxError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let side = input_side(ctx)?;
        if let Some(padded) = self.process(side, &batch, ctx)? {
            out.collect(padded).await?;
        }
        Ok(())
    }

    async fn on_watermark(
        &mut self,
        watermark: EventTime,
        ctx: &mut OperatorContext,
        out: &mut dyn Collector,
    ) -> std::result::Result<Option<EventTime>, BoxError> {
        for joined in self.fire(watermark.0, ctx)? {
            out.collect(joined).await?;
        }
        Ok(Some(watermark))
    }
}
