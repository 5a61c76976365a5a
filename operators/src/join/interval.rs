//! The interval join, as Flink's: rows of two streams with equal keys whose
//! event times are close, `right.time - left.time` within
//! [`IntervalBounds`]. Its state is bounded by the watermark: a row is kept
//! until no row of the other side that is still to come could match it.
//!
//! Each side's rows live in keyed state by key and time ([`super::side`]).
//! A row that arrives is matched against the other side's rows of its key in
//! its time range (one RocksDB range scan), the pairs go through the residual
//! predicate, and the row is stored with a timer at the watermark that
//! expires it. When the watermark passes a timer, the key's expired rows are
//! deleted; in an outer join those that never matched are emitted then, with
//! NULLs for the other side. The watermark passed on is held back by the
//! interval, so that every row still to come is after it, in the time of
//! either side.
//!
//! A late row (at or behind the watermark) still joins what is stored, and is
//! not kept; in an outer join it is emitted at once if it matched nothing.

use std::collections::HashSet;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, TimestampMillisecondArray, UInt32Array};
use arrow::buffer::NullBuffer;
use arrow::compute::{filter_record_batch, take};
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::logical_expr::Expr;
use headwater_runtime::state::{Timer, TimerService};
use headwater_runtime::time::event_time_column;
use headwater_runtime::{BoxError, Collector, EventTime, Operator, OperatorContext, SubtaskInfo};

use super::output::JoinOutput;
use super::side::{SideRows, StoredRow};
use super::{JoinInput, JoinType, ResolvedInput, input_side};
use crate::error::{OperatorError, Result};
use crate::window::keys::{GroupKeys, KeyCodec};

/// How far apart in event time joined rows may be: `right.time - left.time`
/// is in `lower..=upper` (milliseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IntervalBounds {
    pub lower: i64,
    pub upper: i64,
}

impl IntervalBounds {
    /// The times of the other side's rows that a row of `side` at `time` joins.
    fn other_range(&self, side: usize, time: i64) -> (i64, i64) {
        if side == 0 {
            (
                time.saturating_add(self.lower),
                time.saturating_add(self.upper),
            )
        } else {
            (
                time.saturating_sub(self.upper),
                time.saturating_sub(self.lower),
            )
        }
    }

    /// The watermark at which a row of `side` at `time` can join nothing more.
    fn expiry(&self, side: usize, time: i64) -> i64 {
        if side == 0 {
            time.saturating_add(self.upper)
        } else {
            time.saturating_sub(self.lower)
        }
    }

    /// The time of the rows of `side` whose expiry is `expiry`.
    fn row_time(&self, side: usize, expiry: i64) -> i64 {
        if side == 0 {
            expiry.saturating_sub(self.upper)
        } else {
            expiry.saturating_add(self.lower)
        }
    }

    /// How far the output watermark stays behind the input's.
    fn delay(&self) -> i64 {
        self.upper.max(self.lower.saturating_neg()).max(0)
    }
}

/// An interval join of two keyed streams; run it behind a hash exchange of
/// each input on its key.
#[derive(Clone)]
pub struct IntervalJoin {
    bounds: IntervalBounds,
    output: JoinOutput,
}

impl IntervalJoin {
    /// Joins `left` and `right`; the output columns are the left's output
    /// columns then the right's, named `names`, then the event time (the
    /// later of the two rows' times). `residual` filters joined rows.
    pub fn try_new(
        join_type: JoinType,
        bounds: IntervalBounds,
        left: &JoinInput,
        right: &JoinInput,
        names: &[String],
        residual: Option<&Expr>,
    ) -> Result<Self> {
        if bounds.lower > bounds.upper {
            return Err(OperatorError::Config(format!(
                "the join's time interval is empty: {} ms to {} ms",
                bounds.lower, bounds.upper
            )));
        }
        let output =
            JoinOutput::try_new("an interval join", join_type, left, right, names, residual)?;
        Ok(IntervalJoin { bounds, output })
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
        Ok(Box::new(IntervalJoinOperator {
            keys: [codec(&inputs[0])?, codec(&inputs[1])?],
            sides: [
                SideRows::new("interval-join.left", &inputs[0].output_fields)?,
                SideRows::new("interval-join.right", &inputs[1].output_fields)?,
            ],
            timers: None,
            spec: self.clone(),
        }))
    }
}

struct IntervalJoinOperator {
    spec: IntervalJoin,
    keys: [KeyCodec; 2],
    sides: [SideRows; 2],
    /// When each key's rows of a side expire (namespace: the side).
    timers: Option<TimerService>,
}

impl IntervalJoinOperator {
    /// Joins a batch of input `side`, stores its rows, and returns what to emit.
    fn process(
        &mut self,
        side: usize,
        batch: &RecordBatch,
        ctx: &mut OperatorContext,
    ) -> Result<Vec<RecordBatch>> {
        let other = 1 - side;
        let n = batch.num_rows();
        let watermark = ctx.current_watermark.map_or(i64::MIN, |w| w.0);
        let input = &self.spec.output.inputs[side];
        let keys = self.keys[side].keys(batch)?;
        let times = event_time_column(batch)?;
        // A row with a NULL key (or time) joins nothing.
        let nulls = input
            .key_columns
            .iter()
            .fold(times.nulls().cloned(), |nulls, &c| {
                NullBuffer::union(nulls.as_ref(), batch.column(c).nulls())
            });
        let joinable = |i: usize| nulls.as_ref().is_none_or(|n| n.is_valid(i));
        let store = ctx.keyed_state()?;
        let mut out = Vec::new();

        // Match each row with the other side's rows of its key and time range.
        let mut probes: Vec<u32> = Vec::new();
        let mut found: Vec<StoredRow> = Vec::new();
        for i in (0..n).filter(|&i| joinable(i)) {
            let (from, to) = self.spec.bounds.other_range(side, times.value(i));
            let before = found.len();
            self.sides[other].range(
                store,
                keys.key_groups[i],
                keys.rows.row(i).data(),
                from,
                to,
                &mut found,
            )?;
            probes.extend(std::iter::repeat_n(i as u32, found.len() - before));
        }
        let mut matched = vec![false; n];
        let mut write = store.new_batch();
        if !found.is_empty() {
            let pairs = self.pairs(side, batch, &probes, &found)?;
            let passed = self.spec.output.residual(&pairs)?;
            let mark_other = self.spec.output.join_type.keeps_unmatched(other);
            let mut marked: HashSet<&[u8]> = HashSet::new();
            for (j, row) in found.iter().enumerate() {
                if !passed.value(j) {
                    continue;
                }
                let i = probes[j] as usize;
                matched[i] = true;
                if mark_other && !row.matched && marked.insert(&row.sort_key) {
                    self.sides[other].mark_matched(store, &mut write, keys.key_groups[i], row)?;
                }
            }
            let joined = filter_record_batch(&pairs, &passed)?;
            if joined.num_rows() > 0 {
                out.push(joined);
            }
        }

        // Keep each row until the watermark passes its interval.
        let own: Vec<ArrayRef> = input
            .output_columns
            .iter()
            .map(|&c| batch.column(c).clone())
            .collect();
        let rows = self.sides[side].encode(&own)?;
        let keep_unmatched = self.spec.output.join_type.keeps_unmatched(side);
        let mut unmatched: Vec<u32> = Vec::new();
        let mut timer_keys = GroupKeys::new();
        let mut timers: HashSet<(usize, i64)> = HashSet::new();
        let timer_service = self.timers.as_mut().expect("opened");
        for i in 0..n {
            if !joinable(i) {
                if keep_unmatched {
                    unmatched.push(i as u32);
                }
                continue;
            }
            let time = times.value(i);
            let expiry = self.spec.bounds.expiry(side, time);
            if expiry <= watermark {
                if keep_unmatched && !matched[i] {
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
                time,
                matched[i],
                rows.row(i).data(),
            )?;
            let group = timer_keys.intern(key.data(), keys.hashes[i], keys.key_groups[i]);
            if timers.insert((group, expiry)) {
                timer_service.register(
                    store,
                    &mut write,
                    &Timer {
                        time: expiry,
                        key_group: keys.key_groups[i],
                        key: key.data().to_vec(),
                        namespace: vec![side as u8],
                    },
                )?;
            }
        }
        store.write(write)?;
        if !unmatched.is_empty() {
            let indices = UInt32Array::from(unmatched);
            let own = own
                .iter()
                .map(|c| take(c, &indices, None))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            let own_times = take(times, &indices, None)?;
            out.push(self.spec.output.padded(side, own, own_times)?);
        }
        Ok(out)
    }

    /// The joined rows of probe rows `probes` of `batch` (input `side`) and
    /// the stored rows `found` of the other side, one pair per position.
    fn pairs(
        &self,
        side: usize,
        batch: &RecordBatch,
        probes: &[u32],
        found: &[StoredRow],
    ) -> Result<RecordBatch> {
        let indices = UInt32Array::from(probes.to_vec());
        let probe_columns = self.spec.output.inputs[side]
            .output_columns
            .iter()
            .map(|&c| take(batch.column(c), &indices, None))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let found_columns = self.sides[1 - side].decode(found.iter().map(StoredRow::row))?;
        let probe_times = take(event_time_column(batch)?, &indices, None)?;
        let probe_times = probe_times.as_primitive::<arrow::datatypes::TimestampMillisecondType>();
        let times: TimestampMillisecondArray = probe_times
            .values()
            .iter()
            .zip(found)
            .map(|(&t, row)| Some(t.max(row.time)))
            .collect();
        let (left, right) = if side == 0 {
            (probe_columns, found_columns)
        } else {
            (found_columns, probe_columns)
        };
        self.spec.output.joined(left, right, Arc::new(times))
    }

    /// Deletes the rows the watermark has passed; returns the unmatched
    /// rows of outer sides, padded.
    fn expire(&mut self, watermark: i64, ctx: &mut OperatorContext) -> Result<Vec<RecordBatch>> {
        let store = ctx.keyed_state()?;
        let timers = self.timers.as_mut().expect("opened");
        let mut out = Vec::new();
        loop {
            let due = timers.pop_due(store, watermark, 4096)?;
            if due.is_empty() {
                return Ok(out);
            }
            let mut write = store.new_batch();
            let mut unmatched: [Vec<StoredRow>; 2] = [Vec::new(), Vec::new()];
            for timer in &due {
                let side = match timer.namespace.as_slice() {
                    [0] => 0,
                    [1] => 1,
                    _ => {
                        return Err(OperatorError::Config(
                            "interval join: a stored timer names no side".into(),
                        ));
                    }
                };
                // The timer of the rows of its key at one time.
                let time = self.spec.bounds.row_time(side, timer.time);
                let expired = self.sides[side].expire(
                    store,
                    &mut write,
                    timer.key_group,
                    &timer.key,
                    time,
                )?;
                if self.spec.output.join_type.keeps_unmatched(side) {
                    unmatched[side].extend(expired.into_iter().filter(|r| !r.matched));
                }
            }
            store.write(write)?;
            for (side, rows) in unmatched.iter().enumerate() {
                if rows.is_empty() {
                    continue;
                }
                let own = self.sides[side].decode(rows.iter().map(StoredRow::row))?;
                let times: TimestampMillisecondArray = rows.iter().map(|r| Some(r.time)).collect();
                out.push(self.spec.output.padded(side, own, Arc::new(times))?);
            }
        }
    }
}

#[async_trait]
impl Operator for IntervalJoinOperator {
    async fn open(&mut self, ctx: &mut OperatorContext) -> std::result::Result<(), BoxError> {
        let store = ctx.keyed_state()?;
        self.timers = Some(TimerService::new(store, "interval-join.expiry")?);
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
        for joined in self.process(side, &batch, ctx)? {
            out.collect(joined).await?;
        }
        Ok(())
    }

    async fn on_watermark(
        &mut self,
        watermark: EventTime,
        ctx: &mut OperatorContext,
        out: &mut dyn Collector,
    ) -> std::result::Result<Option<EventTime>, BoxError> {
        for padded in self.expire(watermark.0, ctx)? {
            out.collect(padded).await?;
        }
        Ok(Some(if watermark == EventTime::MAX {
            watermark
        } else {
            EventTime(watermark.0.saturating_sub(self.spec.bounds.delay()))
        }))
    }
}
