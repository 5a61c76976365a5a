//! Window top-N, as Flink's: the first `N` rows of each partition of each
//! window, by an order, once the window has closed.
//!
//! ```sql
//! SELECT * FROM (
//!   SELECT *, ROW_NUMBER() OVER (PARTITION BY window_start, window_end, k
//!                                ORDER BY total DESC) AS rn
//!   FROM (.. a window aggregate, or a window function ..))
//! WHERE rn <= 3
//! ```
//!
//! Rows wait in RocksDB keyed state under `partition | window_end |
//! sequence` (the join's row store), with one timer per partition and window
//! at the window's last millisecond. When the watermark passes it, the
//! window's rows of the partition are read, sorted (Arrow's `lexsort`, with
//! the limit), numbered 1.. and emitted once, append-only; then deleted. A
//! row whose window has closed already is late: dropped and counted in
//! `late_rows`, as in Flink. With `N = 1` this is Flink's window
//! deduplication.

use std::collections::HashSet;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, RecordBatch, TimestampMillisecondArray, UInt32Array, UInt64Array,
};
use arrow::compute::{SortColumn, SortOptions, lexsort_to_indices, take};
use arrow::datatypes::TimestampMillisecondType;
use arrow::datatypes::{DataType, Field, FieldRef, Schema, SchemaRef, TimeUnit};
use async_trait::async_trait;
use headwater_runtime::state::{Timer, TimerService};
use headwater_runtime::time::{EVENT_TIME_FIELD, schema_with_event_time};
use headwater_runtime::{BoxError, Collector, EventTime, Operator, OperatorContext, SubtaskInfo};

use super::keys::{GroupKeys, KeyCodec, key_columns_of};
use crate::error::{OperatorError, Result};
use crate::join::side::{SideRows, StoredRow};

/// One column the rows are ordered by.
#[derive(Debug, Clone)]
pub struct SortKey {
    pub column: String,
    pub descending: bool,
    pub nulls_first: bool,
}

impl SortKey {
    /// Smallest first; NULLs first, as Flink orders them (the lowest).
    pub fn ascending(column: &str) -> Self {
        SortKey {
            column: column.to_string(),
            descending: false,
            nulls_first: true,
        }
    }

    /// Largest first; NULLs last, as Flink orders them (the lowest).
    pub fn descending(column: &str) -> Self {
        SortKey {
            column: column.to_string(),
            descending: true,
            nulls_first: false,
        }
    }
}

struct Shared {
    /// The partition columns (the window's start and end among them).
    key_columns: Vec<usize>,
    key_fields: Vec<FieldRef>,
    window_end: usize,
    order: Vec<(usize, SortOptions)>,
    limit: usize,
    /// The input's columns, without its event time, and where they are.
    fields: Vec<FieldRef>,
    field_indices: Vec<usize>,
    output_schema: SchemaRef,
}

/// A window top-N of a stream; run it behind a hash exchange on the
/// partition columns.
#[derive(Clone)]
pub struct WindowTopN {
    shared: Arc<Shared>,
}

impl WindowTopN {
    /// The first `limit` rows of each `partition` (which holds the window's
    /// start and end; `window_end` names the end) by `order`. The output is
    /// the input's columns, then `rank` (1 to `limit`, a BIGINT UNSIGNED as
    /// `ROW_NUMBER()` is), then the event time: the window's last millisecond.
    pub fn try_new(
        input: &SchemaRef,
        partition: &[String],
        window_end: &str,
        order: &[SortKey],
        limit: usize,
        rank: &str,
    ) -> Result<Self> {
        if limit == 0 {
            return Err(OperatorError::Config(
                "a top-N keeps at least one row".into(),
            ));
        }
        let (key_columns, key_fields) = key_columns_of(partition, input)?;
        if !partition.iter().any(|p| p == window_end) {
            return Err(OperatorError::Config(format!(
                "a window top-N partitions by the window: `{window_end}` is not among its columns"
            )));
        }
        let window_end = input
            .index_of(window_end)
            .map_err(|_| OperatorError::Config(format!("no window end column `{window_end}`")))?;
        if input.field(window_end).data_type() != &DataType::Timestamp(TimeUnit::Millisecond, None)
        {
            return Err(OperatorError::Config(format!(
                "window end `{}` is a {}, not a TIMESTAMP(3)",
                input.field(window_end).name(),
                input.field(window_end).data_type()
            )));
        }
        let order = order
            .iter()
            .map(|k| {
                let index = input.index_of(&k.column).map_err(|_| {
                    OperatorError::Config(format!("no column `{}` to order by", k.column))
                })?;
                Ok((
                    index,
                    SortOptions {
                        descending: k.descending,
                        nulls_first: k.nulls_first,
                    },
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        let (field_indices, fields): (Vec<usize>, Vec<FieldRef>) = input
            .fields()
            .iter()
            .enumerate()
            .filter(|(_, f)| f.name() != EVENT_TIME_FIELD)
            .map(|(i, f)| (i, f.clone()))
            .unzip();
        let mut output: Vec<FieldRef> = fields.clone();
        output.push(Arc::new(Field::new(rank, DataType::UInt64, false)));
        let output_schema = schema_with_event_time(&Arc::new(Schema::new(output)));
        Ok(WindowTopN {
            shared: Arc::new(Shared {
                key_columns,
                key_fields,
                window_end,
                order,
                limit,
                fields,
                field_indices,
                output_schema,
            }),
        })
    }

    /// The input's columns, the rank and the event time.
    pub fn output_schema(&self) -> SchemaRef {
        self.shared.output_schema.clone()
    }

    /// The operator of one subtask.
    pub fn operator(
        &self,
        subtask: &SubtaskInfo,
    ) -> std::result::Result<Box<dyn Operator>, BoxError> {
        Ok(Box::new(WindowTopNOperator {
            keys: KeyCodec::new(
                self.shared.key_columns.clone(),
                self.shared.key_fields.clone(),
                subtask.max_parallelism,
            )?,
            rows: SideRows::new("window-top-n.rows", &self.shared.fields)?,
            timers: None,
            shared: self.shared.clone(),
        }))
    }
}

struct WindowTopNOperator {
    shared: Arc<Shared>,
    keys: KeyCodec,
    rows: SideRows,
    /// When each partition's window closes (at its last millisecond).
    timers: Option<TimerService>,
}

impl WindowTopNOperator {
    /// Stores a batch's rows until their windows close.
    fn process(&mut self, batch: &RecordBatch, ctx: &mut OperatorContext) -> Result<()> {
        let watermark = ctx.current_watermark.map_or(i64::MIN, |w| w.0);
        let keys = self.keys.keys(batch)?;
        let ends = batch
            .column(self.shared.window_end)
            .as_primitive::<TimestampMillisecondType>();
        let own: Vec<ArrayRef> = self
            .shared
            .field_indices
            .iter()
            .map(|&c| batch.column(c).clone())
            .collect();
        let rows = self.rows.encode(&own)?;
        let store = ctx.keyed_state()?;
        let mut write = store.new_batch();
        let timer_service = self.timers.as_mut().expect("opened");
        let mut timer_keys = GroupKeys::new();
        let mut timers: HashSet<(usize, i64)> = HashSet::new();
        let mut late = 0u64;
        for i in 0..batch.num_rows() {
            let Some(end) = ends.is_valid(i).then(|| ends.value(i)) else {
                late += 1;
                continue;
            };
            let last = end.saturating_sub(1);
            if last <= watermark {
                late += 1;
                continue;
            }
            let key = keys.rows.row(i);
            self.rows.put(
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
        Ok(())
    }

    /// Ranks, emits and deletes the rows of every window the watermark has closed.
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
            let mut rows: Vec<StoredRow> = Vec::new();
            let mut groups: Vec<(usize, usize)> = Vec::new();
            for timer in &due {
                let start = rows.len();
                rows.extend(self.rows.expire(
                    store,
                    &mut write,
                    timer.key_group,
                    &timer.key,
                    timer.time.saturating_add(1),
                )?);
                if rows.len() > start {
                    groups.push((start, rows.len()));
                }
            }
            store.write(write)?;
            if rows.is_empty() {
                continue;
            }
            let columns = self.rows.decode(rows.iter().map(StoredRow::row))?;
            let (mut picked, mut ranks, mut times) = (Vec::new(), Vec::new(), Vec::new());
            for (start, end) in groups {
                let sort: Vec<SortColumn> = self
                    .shared
                    .order
                    .iter()
                    .map(|&(c, options)| SortColumn {
                        values: columns[c].slice(start, end - start),
                        options: Some(options),
                    })
                    .collect();
                let order = if sort.is_empty() {
                    UInt32Array::from_iter_values(0..((end - start).min(self.shared.limit)) as u32)
                } else {
                    lexsort_to_indices(&sort, Some(self.shared.limit))?
                };
                for (rank, &i) in order.values().iter().enumerate() {
                    picked.push(start as u32 + i);
                    ranks.push(rank as u64 + 1);
                    times.push(rows[start].time.saturating_sub(1));
                }
            }
            let picked = UInt32Array::from(picked);
            let mut output = columns
                .iter()
                .map(|c| take(c, &picked, None))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            output.push(Arc::new(UInt64Array::from(ranks)));
            output.push(Arc::new(TimestampMillisecondArray::from(times)));
            out.push(RecordBatch::try_new(
                self.shared.output_schema.clone(),
                output,
            )?);
        }
    }
}

#[async_trait]
impl Operator for WindowTopNOperator {
    async fn open(&mut self, ctx: &mut OperatorContext) -> std::result::Result<(), BoxError> {
        let store = ctx.keyed_state()?;
        self.timers = Some(TimerService::new(store, "window-top-n.close")?);
        Ok(())
    }

    async fn process_batch(
        &mut self,
        batch: RecordBatch,
        ctx: &mut OperatorContext,
        _out: &mut dyn Collector,
    ) -> std::result::Result<(), BoxError> {
        if batch.num_rows() > 0 {
            self.process(&batch, ctx)?;
        }
        Ok(())
    }

    async fn on_watermark(
        &mut self,
        watermark: EventTime,
        ctx: &mut OperatorContext,
        out: &mut dyn Collector,
    ) -> std::result::Result<Option<EventTime>, BoxError> {
        for ranked in self.fire(watermark.0, ctx)? {
            out.collect(ranked).await?;
        }
        Ok(Some(watermark))
    }
}
