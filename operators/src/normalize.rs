//! Upserts into a changelog, as Flink's `ChangelogNormalize`: the latest
//! row of each key is kept in keyed state, so that an upsert (`+I` from an
//! upsert-kafka source) becomes `+I` for a new key, or `-U` of the old row and
//! `+U` of the new one, and a delete (`-D`, a tombstone carrying only the
//! key) becomes `-D` of the whole old row. An upsert that changes nothing
//! and a delete of an unknown key make no change.
//!
//! The same operator keeps the last row of each key for Flink's keep-last
//! deduplication ([`ChangelogNormalize::keep_last`]): every row is an
//! upsert, and a row older (in event time) than the key's row is dropped.
//!
//! Per batch: keys are interned (vectorized row format), one multi-get reads
//! the batch's stored rows, the changes are worked out in row order, and the
//! latest rows are written back in one write batch. Rows are stored in
//! Arrow's row format, so they restore at any parallelism.

use std::sync::Arc;

use arrow::array::{
    Array, AsArray, RecordBatch, StringArray, TimestampMillisecondArray, UInt32Array,
};
use arrow::compute::{concat, take};
use arrow::datatypes::{FieldRef, SchemaRef};
use arrow::row::{RowConverter, SortField};
use async_trait::async_trait;
use headwater_runtime::state::{StateDescriptor, StateKey, ValueState};
use headwater_runtime::time::{EVENT_TIME_FIELD, event_time_column};
use headwater_runtime::{BoxError, Collector, Operator, OperatorContext, SubtaskInfo};

use crate::changelog::{CHANGE_COLUMN, Change};
use crate::error::{OperatorError, Result};
use crate::window::keys::{GroupKeys, KeyCodec, key_columns_of};

/// Makes a keyed changelog of upserts and deletes; run it behind a hash
/// exchange on the key.
#[derive(Clone)]
pub struct ChangelogNormalize {
    schema: SchemaRef,
    key_columns: Vec<usize>,
    key_fields: Vec<FieldRef>,
    /// The row's own columns: all but `_change` and event time.
    data_columns: Vec<usize>,
    change: usize,
    event_time: usize,
    /// Keep-last deduplication: a row replaces the key's row only if its
    /// event time is not earlier; the stored value starts with that time.
    by_event_time: bool,
}

impl ChangelogNormalize {
    /// Normalizes `input` (columns, `_change`, event time) by `key_columns`.
    pub fn try_new(key_columns: &[String], input: &SchemaRef) -> Result<Self> {
        if key_columns.is_empty() {
            return Err(OperatorError::Config(
                "a changelog of upserts needs a key (PRIMARY KEY (..) NOT ENFORCED)".into(),
            ));
        }
        let (indices, fields) = key_columns_of(key_columns, input)?;
        let index = |name: &str| {
            input
                .index_of(name)
                .map_err(|_| OperatorError::Config(format!("upserts have no `{name}` column")))
        };
        let change = index(CHANGE_COLUMN)?;
        let event_time = index(EVENT_TIME_FIELD)?;
        let data_columns = (0..input.fields().len())
            .filter(|&i| i != change && i != event_time)
            .collect();
        Ok(ChangelogNormalize {
            schema: input.clone(),
            key_columns: indices,
            key_fields: fields,
            data_columns,
            change,
            event_time,
            by_event_time: false,
        })
    }

    /// Keeps the row of each key with the latest event time, as Flink's
    /// `ROW_NUMBER() OVER (PARTITION BY k ORDER BY rowtime DESC) = 1`: a
    /// changelog of `+I` for a new key and `-U`/`+U` when a row of the same
    /// or a later time arrives; an older row changes nothing. `input` holds
    /// inserts only (`_change` = `+I`).
    pub fn keep_last(key_columns: &[String], input: &SchemaRef) -> Result<Self> {
        Ok(ChangelogNormalize {
            by_event_time: true,
            ..Self::try_new(key_columns, input)?
        })
    }

    /// The same columns as the input: a changelog.
    pub fn output_schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// The operator of one subtask.
    pub fn operator(
        &self,
        subtask: &SubtaskInfo,
    ) -> std::result::Result<Box<dyn Operator>, BoxError> {
        let rows = RowConverter::new(
            self.data_columns
                .iter()
                .map(|&i| SortField::new(self.schema.field(i).data_type().clone()))
                .collect(),
        )?;
        Ok(Box::new(NormalizeOperator {
            keys: KeyCodec::new(
                self.key_columns.clone(),
                self.key_fields.clone(),
                subtask.max_parallelism,
            )?,
            rows,
            latest: ValueState::unregistered(StateDescriptor::new(if self.by_event_time {
                "keep-last"
            } else {
                "changelog-normalize"
            })),
            spec: self.clone(),
        }))
    }
}

struct NormalizeOperator {
    spec: ChangelogNormalize,
    keys: KeyCodec,
    /// Encodes a row's own columns.
    rows: RowConverter,
    /// The latest row of each key, in the row format.
    latest: ValueState<Vec<u8>>,
}

/// The row a key holds while a batch is worked through.
#[derive(Clone, Copy)]
enum Latest {
    None,
    /// The stored row, by its place among the stored rows read.
    Stored(usize),
    /// A row of the batch.
    Input(usize),
}

impl NormalizeOperator {
    fn changes(
        &mut self,
        batch: &RecordBatch,
        ctx: &mut OperatorContext,
    ) -> Result<Option<RecordBatch>> {
        let n = batch.num_rows();
        let keys = self.keys.keys(batch)?;
        let mut groups = GroupKeys::new();
        let mut group_of_row = Vec::with_capacity(n);
        groups.intern_rows(&keys, 0..n, &mut group_of_row);
        let store = ctx.keyed_state()?;
        let state_keys: Vec<StateKey> = (0..groups.len())
            .map(|g| StateKey::new(groups.key_group(g), groups.key(g)))
            .collect();
        let stored = self.latest.multi_get(store, &state_keys)?;
        // Keep-last values start with the row's event time (8 bytes).
        let skip = if self.spec.by_event_time { 8 } else { 0 };
        let mut stored_rows: Vec<&[u8]> = Vec::new();
        let mut stored_times: Vec<i64> = Vec::new();
        for value in stored.iter().flatten() {
            if value.len() < skip {
                return Err(OperatorError::Config(
                    "a stored keep-last row is shorter than its time".into(),
                ));
            }
            let (time, row) = value.split_at(skip);
            stored_times.push(time.try_into().map_or(i64::MIN, i64::from_be_bytes));
            stored_rows.push(row);
        }
        let mut latest: Vec<Latest> = Vec::with_capacity(groups.len());
        let mut at = 0;
        for s in &stored {
            latest.push(match s {
                Some(_) => {
                    at += 1;
                    Latest::Stored(at - 1)
                }
                None => Latest::None,
            });
        }
        let data: Vec<_> = self
            .spec
            .data_columns
            .iter()
            .map(|&i| batch.column(i).clone())
            .collect();
        let input_rows = self.rows.convert_columns(&data)?;
        let changes = batch.column(self.spec.change).as_string::<i32>();
        let times = event_time_column(batch)?;

        // Each change: which row (stored rows first, then the batch's), its
        // kind, and the event time of the row that caused it.
        let row_of = |l: Latest| match l {
            Latest::Stored(s) => Some(s as u32),
            Latest::Input(i) => Some((stored_rows.len() + i) as u32),
            Latest::None => None,
        };
        let bytes_of = |l: Latest| match l {
            Latest::Stored(s) => Some(stored_rows[s]),
            Latest::Input(i) => Some(input_rows.row(i).data()),
            Latest::None => None,
        };
        let mut picked: Vec<u32> = Vec::new();
        let mut kinds: Vec<&'static str> = Vec::new();
        let mut at_times: Vec<Option<i64>> = Vec::new();
        for (row, &g) in group_of_row.iter().enumerate() {
            let time = times.is_valid(row).then(|| times.value(row));
            let before = latest[g];
            let mut emit = |l: Latest, kind: Change| {
                picked.push(row_of(l).expect("a row to emit"));
                kinds.push(kind.as_str());
                at_times.push(time);
            };
            match Change::parse(changes.value(row)) {
                Some(Change::Delete | Change::UpdateBefore) => {
                    if !matches!(before, Latest::None) {
                        emit(before, Change::Delete);
                    }
                    latest[g] = Latest::None;
                }
                Some(Change::Insert | Change::UpdateAfter) => {
                    let now = Latest::Input(row);
                    if self.spec.by_event_time {
                        let time_of = |l: Latest| match l {
                            Latest::Stored(s) => Some(stored_times[s]),
                            Latest::Input(i) => Some(
                                times
                                    .is_valid(i)
                                    .then(|| times.value(i))
                                    .unwrap_or(i64::MIN),
                            ),
                            Latest::None => None,
                        };
                        if time_of(before).is_some_and(|t| t > time_of(now).unwrap_or(i64::MIN)) {
                            continue;
                        }
                    }
                    match before {
                        Latest::None => emit(now, Change::Insert),
                        _ if bytes_of(before) == bytes_of(now) => {}
                        _ => {
                            emit(before, Change::UpdateBefore);
                            emit(now, Change::UpdateAfter);
                        }
                    }
                    latest[g] = now;
                }
                None => {
                    return Err(OperatorError::Config(format!(
                        "`{}` is not a change (+I, -U, +U, -D)",
                        changes.value(row)
                    )));
                }
            }
        }

        let mut write = store.new_batch();
        for (g, key) in state_keys.iter().enumerate() {
            match latest[g] {
                Latest::Input(i) => {
                    let mut bytes = Vec::with_capacity(skip + input_rows.row(i).data().len());
                    if self.spec.by_event_time {
                        let time = if times.is_valid(i) {
                            times.value(i)
                        } else {
                            i64::MIN
                        };
                        bytes.extend_from_slice(&time.to_be_bytes());
                    }
                    bytes.extend_from_slice(input_rows.row(i).data());
                    self.latest.put(store, &mut write, *key, &bytes)?;
                }
                Latest::None if stored[g].is_some() => {
                    self.latest.delete(store, &mut write, *key)?
                }
                _ => {}
            }
        }
        store.write(write)?;
        if picked.is_empty() {
            return Ok(None);
        }

        // The rows to emit, from the stored rows and the batch's.
        let parser = self.rows.parser();
        let old = self
            .rows
            .convert_rows(stored_rows.iter().map(|bytes| parser.parse(bytes)))?;
        let picked = UInt32Array::from(picked);
        let mut columns = Vec::with_capacity(self.spec.schema.fields().len());
        let mut data_at = 0;
        for i in 0..self.spec.schema.fields().len() {
            if i == self.spec.change {
                columns.push(Arc::new(StringArray::from(std::mem::take(&mut kinds))) as _);
            } else if i == self.spec.event_time {
                columns.push(Arc::new(TimestampMillisecondArray::from(std::mem::take(
                    &mut at_times,
                ))) as _);
            } else {
                let all = concat(&[old[data_at].as_ref(), data[data_at].as_ref()])?;
                columns.push(take(&all, &picked, None)?);
                data_at += 1;
            }
        }
        Ok(Some(RecordBatch::try_new(
            self.spec.schema.clone(),
            columns,
        )?))
    }
}

#[async_trait]
impl Operator for NormalizeOperator {
    async fn process_batch(
        &mut self,
        batch: RecordBatch,
        ctx: &mut OperatorContext,
        out: &mut dyn Collector,
    ) -> std::result::Result<(), BoxError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        if let Some(changes) = self.changes(&batch, ctx)? {
            out.collect(changes).await?;
        }
        Ok(())
    }
}
