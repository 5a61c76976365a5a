//! The event-time temporal join, as Flink's `JOIN versions FOR SYSTEM_TIME
//! AS OF left.time`: each left row joins the version of its key that was
//! current at the row's event time, the right row of that key with the
//! greatest time at or before it.
//!
//! The right input is the versioned table. Each of its rows is a new version
//! of its key (`+I`, `+U`, or any row of an append-only input), or, for `-D`,
//! the end of the key's versions from that time on; `-U` rows are skipped,
//! as the `+U` after them is the new version. Both sides' rows live in keyed
//! state ([`super::temporal_state`]): a left row waits until the watermark
//! (the lesser of both inputs') passes its time, so every version up to it
//! has arrived; then it is joined, and emitted with its own event time, so
//! the output is append-only and keeps the left's time attribute. A version
//! is dropped once the watermark passes a later version of its key, as no
//! left row still to come can join it.
//!
//! A late left row (at or behind the watermark) joins the versions that are
//! stored at once.

use std::collections::HashSet;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch, TimestampMillisecondArray, UInt32Array};
use arrow::buffer::NullBuffer;
use arrow::compute::{filter_record_batch, interleave_record_batch, take};
use arrow::datatypes::SchemaRef;
use arrow::row::RowConverter;
use async_trait::async_trait;
use datafusion::logical_expr::Expr;
use hashbrown::HashMap;
use headwater_runtime::key_groups::KeyGroup;
use headwater_runtime::state::{KeyedStateStore, Timer, TimerService};
use headwater_runtime::time::event_time_column;
use headwater_runtime::{BoxError, Collector, EventTime, Operator, OperatorContext, SubtaskInfo};

use super::output::JoinOutput;
use super::temporal_state::{Version, Versions, WaitingRow, WaitingRows, current_at, superseded};
use super::{JoinInput, JoinType, input_side};
use crate::changelog::{CHANGE_COLUMN, Change, changes_of};
use crate::error::{OperatorError, Result};
use crate::window::keys::{GroupKeys, KeyCodec};

/// How many left rows are joined at a time when the watermark passes them.
const CHUNK: usize = 8192;

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
            rows: [inputs[0].row_converter()?, inputs[1].row_converter()?],
            waiting: WaitingRows::new(),
            versions: Versions::new(),
            timers: None,
            fired: None,
            spec: self.clone(),
        }))
    }
}

struct TemporalJoinOperator {
    spec: TemporalJoin,
    keys: [KeyCodec; 2],
    /// Each side's output columns in the row format.
    rows: [RowConverter; 2],
    waiting: WaitingRows,
    versions: Versions,
    /// When a key's versions may be superseded: a timer at each version's time.
    timers: Option<TimerService>,
    /// The watermark up to which the waiting rows have been joined.
    fired: Option<i64>,
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
        let rows = self.rows[side].convert_columns(&own)?;
        let store = ctx.keyed_state()?;
        let mut write = store.new_batch();
        let mut timer_keys = GroupKeys::new();
        let mut registered: HashSet<(usize, i64)> = HashSet::new();
        let mut late: Vec<WaitingRow> = Vec::new();
        // Left rows that join nothing at once: NULL keys of a left join.
        let mut padded: Vec<u32> = Vec::new();
        let timers = self.timers.as_mut().expect("opened");
        for (i, &change) in changes.iter().enumerate() {
            if !joinable(i) {
                if side == 0 && self.spec.output.join_type == JoinType::Left {
                    padded.push(i as u32);
                }
                continue;
            }
            if change == Change::UpdateBefore {
                continue;
            }
            let (key, key_group, time) = (keys.rows.row(i), keys.key_groups[i], times.value(i));
            if side == 0 {
                let row = rows.row(i).data();
                if time <= watermark {
                    late.push(WaitingRow {
                        key_group,
                        key: key.data().into(),
                        time,
                        row: row.into(),
                    });
                } else {
                    self.waiting
                        .put(store, &mut write, key_group, key.data(), time, row)?;
                }
                continue;
            }
            let deleted = change == Change::Delete;
            self.versions.put(
                store,
                &mut write,
                key_group,
                key.data(),
                time,
                deleted,
                rows.row(i).data(),
            )?;
            let group = timer_keys.intern(key.data(), keys.hashes[i], key_group);
            if registered.insert((group, time)) {
                timers.register(
                    store,
                    &mut write,
                    &Timer {
                        time,
                        key_group,
                        key: key.data().to_vec(),
                        namespace: Vec::new(),
                    },
                )?;
            }
        }
        store.write(write)?;
        let mut out = self.join(store, &late)?;
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
        if self.fired.is_some_and(|f| f >= watermark) {
            return Ok(out);
        }
        let mut write = store.new_batch();
        let mut due: Vec<WaitingRow> = Vec::new();
        for key_group in store.key_groups().as_range() {
            self.waiting.take(
                store, &mut write, key_group, self.fired, watermark, &mut due,
            )?;
            if due.len() >= CHUNK {
                out.extend(self.join(store, &due)?);
                due.clear();
            }
        }
        out.extend(self.join(store, &due)?);
        store.write(write)?;
        self.fired = Some(watermark);

        // Versions no row still to come can join.
        loop {
            let timers = self.timers.as_mut().expect("opened");
            let due = timers.pop_due(store, watermark, 4096)?;
            if due.is_empty() {
                return Ok(out);
            }
            let mut distinct: HashMap<(KeyGroup, &[u8]), ()> = HashMap::new();
            let keys: Vec<(KeyGroup, &[u8])> = due
                .iter()
                .map(|t| (t.key_group, t.key.as_slice()))
                .filter(|k| distinct.insert(*k, ()).is_none())
                .collect();
            let versions = self.versions.of_keys(store, &keys)?;
            let mut write = store.new_batch();
            for ((key_group, _), versions) in keys.iter().zip(&versions) {
                for version in &versions[..superseded(versions, watermark)] {
                    self.versions
                        .delete(store, &mut write, *key_group, version)?;
                }
            }
            store.write(write)?;
        }
    }

    /// `rows` (of the left input) with the versions current at their times:
    /// joined, or, in a left join, padded where there is none (or it fails
    /// the residual predicate).
    fn join(&self, store: &KeyedStateStore, rows: &[WaitingRow]) -> Result<Option<RecordBatch>> {
        if rows.is_empty() {
            return Ok(None);
        }
        let mut distinct: HashMap<(KeyGroup, &[u8]), usize> = HashMap::new();
        let mut keys: Vec<(KeyGroup, &[u8])> = Vec::new();
        let key_of: Vec<usize> = rows
            .iter()
            .map(|r| {
                let key = (r.key_group, &*r.key);
                *distinct.entry(key).or_insert_with(|| {
                    keys.push(key);
                    keys.len() - 1
                })
            })
            .collect();
        let versions = self.versions.of_keys(store, &keys)?;
        let found: Vec<Option<&Version>> = rows
            .iter()
            .zip(&key_of)
            .map(|(r, &k)| current_at(&versions[k], r.time))
            .collect();
        self.joined(rows, &found)
    }

    /// The left `rows` with their versions' columns, filtered.
    fn joined(
        &self,
        rows: &[WaitingRow],
        found: &[Option<&Version>],
    ) -> Result<Option<RecordBatch>> {
        let output = &self.spec.output;
        let decode = |converter: &RowConverter, bytes: &mut dyn Iterator<Item = &[u8]>| {
            let parser = converter.parser();
            converter.convert_rows(bytes.map(|b| parser.parse(b)))
        };
        let left = decode(&self.rows[0], &mut rows.iter().map(|r| &*r.row))?;
        let times: ArrayRef = Arc::new(
            rows.iter()
                .map(|r| Some(r.time))
                .collect::<TimestampMillisecondArray>(),
        );
        // Rows with a version, joined and filtered.
        let with: Vec<u32> = (0..rows.len() as u32)
            .filter(|&i| found[i as usize].is_some())
            .collect();
        let indices = UInt32Array::from(with.clone());
        let versions = decode(
            &self.rows[1],
            &mut with
                .iter()
                .filter_map(|&i| found[i as usize].map(Version::row)),
        )?;
        let left_with = left
            .iter()
            .map(|c| take(c, &indices, None))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let pairs = output.joined(left_with, versions, take(&times, &indices, None)?)?;
        let passed = output.residual(&pairs)?;
        let joined = filter_record_batch(&pairs, &passed)?;
        if output.join_type != JoinType::Left {
            return Ok((joined.num_rows() > 0).then_some(joined));
        }
        // A left join pads every row that joined nothing, in the rows' order.
        let mut matched = vec![false; rows.len()];
        for (p, &i) in with.iter().enumerate() {
            matched[i as usize] = passed.value(p);
        }
        let mut from_pairs = 0;
        let order: Vec<(usize, usize)> = matched
            .iter()
            .enumerate()
            .map(|(i, &m)| {
                if m {
                    from_pairs += 1;
                    (0, from_pairs - 1)
                } else {
                    (1, i)
                }
            })
            .collect();
        let padded = output.padded(0, left, times)?;
        Ok(Some(interleave_record_batch(&[&joined, &padded], &order)?))
    }
}

#[async_trait]
impl Operator for TemporalJoinOperator {
    async fn open(&mut self, ctx: &mut OperatorContext) -> std::result::Result<(), BoxError> {
        let store = ctx.keyed_state()?;
        self.timers = Some(TimerService::new(store, "temporal-join.expiry")?);
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
