//! The event-time temporal join, as Flink's `JOIN versions FOR SYSTEM_TIME
//! AS OF left.time`: each left row joins the version of its key that was
//! current at the row's event time, the right row of that key with the
//! greatest time at or before it.
//!
//! The right input is the versioned table. Each of its rows is a new version
//! of its key (`+I`, `+U`, or any row of an append-only input), or, for `-D`,
//! the end of the key's versions from that time on; `-U` rows are skipped,
//! as the `+U` after them is the new version. Both sides' rows live in keyed
//! state by key and time ([`super::side`]; a version's flag byte marks a
//! deletion). A left row waits until the watermark (the lesser of both
//! inputs') passes its time, so every version up to it has arrived; then it
//! is joined, and emitted with its own event time, so the output is
//! append-only and keeps the left's time attribute. A version is dropped
//! once the watermark passes a later version of its key, as no left row
//! still to come can join it.
//!
//! A late left row (at or behind the watermark) joins the versions that are
//! stored at once.

use std::collections::HashSet;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch, TimestampMillisecondArray, UInt32Array};
use arrow::buffer::NullBuffer;
use arrow::compute::{filter_record_batch, take};
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::logical_expr::Expr;
use headwater_runtime::key_groups::KeyGroup;
use headwater_runtime::state::{KeyedStateStore, Timer, TimerService};
use headwater_runtime::time::event_time_column;
use headwater_runtime::{BoxError, Collector, EventTime, Operator, OperatorContext, SubtaskInfo};

use super::output::JoinOutput;
use super::side::{SideRows, StoredRow};
use super::{JoinInput, JoinType, input_side};
use crate::changelog::{CHANGE_COLUMN, Change, changes_of};
use crate::error::{OperatorError, Result};
use crate::window::keys::{GroupKeys, KeyCodec};

/// The timers' namespaces: a left row's time, or a version's.
const LEFT_ROWS: u8 = 0;
const VERSION: u8 = 1;

/// An event-time temporal join of an append-only left stream and a
/// versioned right stream, both hashed on the join key.
#[derive(Clone)]
pub struct TemporalJoin {
    output: JoinOutput,
    /// The right input's `_change` column, if it is a changelog.
    right_changes: Option<usize>,
}

impl TemporalJoin {
    /// Joins each row of `left` with the version of `right` of its key at
    /// its event time; an inner join drops a row that has none (or whose
    /// version fails `residual`), a left join pads it with NULLs. The output
    /// columns are the left's then the right's, named `names`, then the left
    /// row's event time.
    pub fn try_new(
        join_type: JoinType,
        left: &JoinInput,
        right: &JoinInput,
        names: &[String],
        residual: Option<&Expr>,
    ) -> Result<Self> {
        if !matches!(join_type, JoinType::Inner | JoinType::Left) {
            return Err(OperatorError::Config(
                "a temporal join is an inner or a left join".into(),
            ));
        }
        if left.schema.index_of(CHANGE_COLUMN).is_ok() {
            return Err(OperatorError::Config(
                "the left input of a temporal join must be append-only".into(),
            ));
        }
        let output =
            JoinOutput::try_new("a temporal join", join_type, left, right, names, residual)?;
        Ok(TemporalJoin {
            output,
            right_changes: right.schema.index_of(CHANGE_COLUMN).ok(),
        })
    }

    /// The joined rows' columns and the event time (the left row's).
    pub fn output_schema(&self) -> SchemaRef {
        self.output.schema.clone()
    }

    /// The operator of one subtask.
    pub fn operator(
        &self,
        subtask: &SubtaskInfo,
    ) -> std::result::Result<Box<dyn Operator>, BoxError> {
        let inputs = &self.output.inputs;
        Ok(Box::new(TemporalJoinOperator {
            keys: [
                inputs[0].key_codec(subtask.max_parallelism)?,
                inputs[1].key_codec(subtask.max_parallelism)?,
            ],
            sides: [
                SideRows::new("temporal-join.left", &inputs[0].output_fields)?,
                SideRows::new("temporal-join.versions", &inputs[1].output_fields)?,
            ],
            timers: None,
            spec: self.clone(),
        }))
    }
}

struct TemporalJoinOperator {
    spec: TemporalJoin,
    keys: [KeyCodec; 2],
    /// Waiting left rows, and the versions (flagged: a deletion).
    sides: [SideRows; 2],
    /// When a key's left rows are due, and when its older versions go.
    timers: Option<TimerService>,
}

/// Left rows to join, each with the version it joins (if any).
#[derive(Default)]
struct Due {
    left: Vec<StoredRow>,
    versions: Vec<Option<StoredRow>>,
}

impl TemporalJoinOperator {
    /// Stores a batch of input `side`; returns the late left rows, joined.
    fn process(
        &mut self,
        side: usize,
        batch: &RecordBatch,
        ctx: &mut OperatorContext,
    ) -> Result<Option<RecordBatch>> {
        let n = batch.num_rows();
        let watermark = ctx.current_watermark.map_or(i64::MIN, |w| w.0);
        let input = &self.spec.output.inputs[side];
        let keys = self.keys[side].keys(batch)?;
        let times = event_time_column(batch)?;
        let nulls = input
            .key_columns
            .iter()
            .fold(times.nulls().cloned(), |nulls, &c| {
                NullBuffer::union(nulls.as_ref(), batch.column(c).nulls())
            });
        let joinable = |i: usize| nulls.as_ref().is_none_or(|n| n.is_valid(i));
        let changes = if side == 1 {
            changes_of(batch, self.spec.right_changes)?
        } else {
            vec![Change::Insert; n]
        };
        let own: Vec<ArrayRef> = input
            .output_columns
            .iter()
            .map(|&c| batch.column(c).clone())
            .collect();
        let rows = self.sides[side].encode(&own)?;
        let store = ctx.keyed_state()?;
        let mut write = store.new_batch();
        let mut timer_keys = GroupKeys::new();
        let mut registered: HashSet<(usize, i64)> = HashSet::new();
        let mut late = Due::default();
        // Left rows that join nothing at once: NULL keys of a left join.
        let mut padded: Vec<u32> = Vec::new();
        let timers = self.timers.as_mut().expect("opened");
        for i in 0..n {
            if !joinable(i) {
                if side == 0 && self.spec.output.join_type == JoinType::Left {
                    padded.push(i as u32);
                }
                continue;
            }
            if changes[i] == Change::UpdateBefore {
                continue;
            }
            let (key, key_group, time) = (keys.rows.row(i), keys.key_groups[i], times.value(i));
            if side == 0 && time <= watermark {
                let version =
                    latest_version(&mut self.sides[1], store, key_group, key.data(), time)?;
                late.left.push(StoredRow {
                    sort_key: Box::new([]),
                    time,
                    matched: false,
                    value: [&[0u8][..], rows.row(i).data()].concat().into(),
                });
                late.versions.push(version);
                continue;
            }
            let deletion = changes[i] == Change::Delete;
            self.sides[side].put(
                store,
                &mut write,
                key_group,
                key.data(),
                time,
                deletion,
                rows.row(i).data(),
            )?;
            let group = timer_keys.intern(key.data(), keys.hashes[i], key_group);
            if registered.insert((group, time)) {
                let namespace = if side == 0 { LEFT_ROWS } else { VERSION };
                timers.register(
                    store,
                    &mut write,
                    &Timer {
                        time,
                        key_group,
                        key: key.data().to_vec(),
                        namespace: vec![namespace],
                    },
                )?;
            }
        }
        store.write(write)?;
        let mut out = self.joined(late)?;
        if !padded.is_empty() {
            let indices = UInt32Array::from(padded);
            let own = own
                .iter()
                .map(|c| take(c, &indices, None))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            let own_times = take(times, &indices, None)?;
            let rows = self.spec.output.padded(0, own, own_times)?;
            out = Some(match out {
                Some(joined) => arrow::compute::concat_batches(&rows.schema(), [&joined, &rows])?,
                None => rows,
            });
        }
        Ok(out)
    }

    /// Joins the left rows the watermark has passed, and drops the versions
    /// it has superseded; returns the joined rows.
    fn fire(&mut self, watermark: i64, ctx: &mut OperatorContext) -> Result<Vec<RecordBatch>> {
        let store = ctx.keyed_state()?;
        let mut out = Vec::new();
        loop {
            let timers = self.timers.as_mut().expect("opened");
            let due = timers.pop_due(store, watermark, 4096)?;
            if due.is_empty() {
                return Ok(out);
            }
            let mut write = store.new_batch();
            let mut joins = Due::default();
            // Timers come in time order, a key's left rows before its
            // version of the same time: the versions a row joins are still there.
            for timer in &due {
                match timer.namespace.as_slice() {
                    [LEFT_ROWS] => {
                        let rows = self.sides[0].expire(
                            store,
                            &mut write,
                            timer.key_group,
                            &timer.key,
                            timer.time,
                        )?;
                        if rows.is_empty() {
                            continue;
                        }
                        let version = latest_version(
                            &mut self.sides[1],
                            store,
                            timer.key_group,
                            &timer.key,
                            timer.time,
                        )?;
                        joins.versions.extend(rows.iter().map(|_| version.clone()));
                        joins.left.extend(rows);
                    }
                    [VERSION] => self.drop_superseded(store, &mut write, timer)?,
                    _ => {
                        return Err(OperatorError::Config(
                            "temporal join: a stored timer names no side".into(),
                        ));
                    }
                }
            }
            store.write(write)?;
            out.extend(self.joined(joins)?);
        }
    }

    /// Deletes the versions of the timer's key before the one current at
    /// its time (and that one too if it is a deletion).
    fn drop_superseded(
        &mut self,
        store: &KeyedStateStore,
        write: &mut headwater_runtime::state::StateWriteBatch,
        timer: &Timer,
    ) -> Result<()> {
        let mut versions = Vec::new();
        let versions_side = &mut self.sides[1];
        versions_side.range(
            store,
            timer.key_group,
            &timer.key,
            i64::MIN,
            timer.time,
            &mut versions,
        )?;
        let keep_last = versions.last().is_some_and(|v| !v.matched);
        let drop = versions.len() - usize::from(keep_last);
        for version in &versions[..drop] {
            versions_side.delete(store, write, timer.key_group, &version.sort_key)?;
        }
        Ok(())
    }

    /// The left rows of `due` with their versions' columns (NULLs in a left
    /// join where there is none, or it fails the residual predicate).
    fn joined(&self, due: Due) -> Result<Option<RecordBatch>> {
        if due.left.is_empty() {
            return Ok(None);
        }
        let output = &self.spec.output;
        let left = self.sides[0].decode(due.left.iter().map(StoredRow::row))?;
        let times: ArrayRef = Arc::new(
            due.left
                .iter()
                .map(|r| Some(r.time))
                .collect::<TimestampMillisecondArray>(),
        );
        // Rows with a live version, joined and filtered.
        let with: Vec<u32> = (0..due.left.len() as u32)
            .filter(|&i| {
                due.versions[i as usize]
                    .as_ref()
                    .is_some_and(|v| !v.matched)
            })
            .collect();
        let indices = UInt32Array::from(with.clone());
        let versions = self.sides[1].decode(
            with.iter()
                .filter_map(|&i| due.versions[i as usize].as_ref().map(StoredRow::row)),
        )?;
        let take_all = |columns: &[ArrayRef]| {
            columns
                .iter()
                .map(|c| take(c, &indices, None))
                .collect::<std::result::Result<Vec<_>, _>>()
        };
        let pairs = output.joined(take_all(&left)?, versions, take(&times, &indices, None)?)?;
        let passed = output.residual(&pairs)?;
        let joined = filter_record_batch(&pairs, &passed)?;
        if output.join_type != JoinType::Left {
            return Ok((joined.num_rows() > 0).then_some(joined));
        }
        // A left join pads every row that joined nothing, in the rows' order.
        let mut matched = vec![false; due.left.len()];
        for (p, &i) in with.iter().enumerate() {
            matched[i as usize] = passed.value(p);
        }
        let mut from_pairs = 0;
        let mut order: Vec<(usize, usize)> = Vec::with_capacity(due.left.len());
        for (i, &m) in matched.iter().enumerate() {
            if m {
                order.push((0, from_pairs));
                from_pairs += 1;
            } else {
                order.push((1, i));
            }
        }
        let padded = output.padded(0, left, times)?;
        Ok(Some(arrow::compute::interleave_record_batch(
            &[&joined, &padded],
            &order,
        )?))
    }
}

/// The version of `key` current at `time`: its latest stored row at or
/// before it (a deletion, flagged, means none).
fn latest_version(
    versions: &mut SideRows,
    store: &KeyedStateStore,
    key_group: KeyGroup,
    key: &[u8],
    time: i64,
) -> Result<Option<StoredRow>> {
    let mut found = Vec::new();
    versions.range(store, key_group, key, i64::MIN, time, &mut found)?;
    Ok(found.pop())
}

#[async_trait]
impl Operator for TemporalJoinOperator {
    async fn open(&mut self, ctx: &mut OperatorContext) -> std::result::Result<(), BoxError> {
        let store = ctx.keyed_state()?;
        self.timers = Some(TimerService::new(store, "temporal-join.timers")?);
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
        if let Some(joined) = self.process(side, &batch, ctx)? {
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
        for joined in self.fire(watermark.0, ctx)? {
            out.collect(joined).await?;
        }
        Ok(Some(watermark))
    }
}

#[cfg(test)]
#[path = "temporal_tests.rs"]
mod tests;
