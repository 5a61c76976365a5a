//! Keyed process functions: per-key state and timers, row by row.
//!
//! A [`KeyedProcessFunction`] sees each row of a keyed stream with a
//! [`ProcessContext`] scoped to the row's key: it reads and writes that key's
//! value, list and map state in RocksDB, and sets event-time or
//! processing-time timers. Timers are stored in keyed state too, so they
//! outlive a restore, and fire in time order: event-time timers when the
//! watermark passes them, processing-time timers when the wall clock does.

use std::marker::PhantomData;
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, TimestampMillisecondArray};
use async_trait::async_trait;
use headwater_runtime::key_groups::{KeyGroup, key_group_of};
use headwater_runtime::key_hash::hash_columns;
use headwater_runtime::state::{
    KeyedStateStore, ListState, MapState, StateError, StateKey, Timer, TimerService, ValueState,
};
use headwater_runtime::time::{EVENT_TIME_FIELD, with_event_time};
use headwater_runtime::{BoxError, Collector, EventTime, Operator, OperatorContext};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::KEY_FIELD;
use super::codec::{RowCodec, ValueCodec};

/// Which clock a timer follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeDomain {
    /// Fires when the watermark reaches its time.
    EventTime,
    /// Fires when the wall clock reaches its time.
    ProcessingTime,
}

/// A timer that has fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FiredTimer {
    /// The time it was set for (ms since the epoch).
    pub time: i64,
    pub domain: TimeDomain,
}

/// A function over the rows of a keyed stream, with per-key state and timers.
///
/// One instance runs per subtask (cloned from the one given to
/// [`super::KeyedStream::process`]); it sees the keys that subtask owns.
/// Keep per-key data in state handles (made with `unregistered`
/// and a [`headwater_runtime::state::StateDescriptor`]), not in fields.
pub trait KeyedProcessFunction<K, I, O>: Send + 'static {
    /// Handles one row. Rows pushed to `out` take the row's event time.
    fn process_element(
        &mut self,
        row: I,
        ctx: &mut ProcessContext<'_, K>,
        out: &mut Vec<O>,
    ) -> Result<(), BoxError>;

    /// A timer of the context's key has fired. Rows pushed to `out` take the timer's time.
    fn on_timer(
        &mut self,
        _timer: FiredTimer,
        _ctx: &mut ProcessContext<'_, K>,
        _out: &mut Vec<O>,
    ) -> Result<(), BoxError> {
        Ok(())
    }
}

/// The key, time, state and timers a process function works with, for one row or timer.
pub struct ProcessContext<'a, K> {
    key: &'a K,
    key_bytes: &'a [u8],
    key_group: KeyGroup,
    timestamp: EventTime,
    watermark: Option<EventTime>,
    store: &'a KeyedStateStore,
    event_timers: &'a mut TimerService,
    processing_timers: &'a mut TimerService,
}

impl<K> ProcessContext<'_, K> {
    /// The key of the current row or timer.
    pub fn key(&self) -> &K {
        self.key
    }

    /// The event time of the current row, or the time of the firing timer.
    pub fn timestamp(&self) -> EventTime {
        self.timestamp
    }

    /// The operator's current watermark, if any has arrived.
    pub fn watermark(&self) -> Option<EventTime> {
        self.watermark
    }

    /// The wall clock, ms since the epoch.
    pub fn processing_time(&self) -> i64 {
        now_ms()
    }

    fn at(&self) -> StateKey<'_> {
        StateKey::new(self.key_group, self.key_bytes)
    }

    fn write(
        &self,
        f: impl FnOnce(&mut headwater_runtime::state::StateWriteBatch) -> Result<(), StateError>,
    ) -> Result<(), StateError> {
        let mut batch = self.store.new_batch();
        f(&mut batch)?;
        self.store.write(batch)
    }

    /// The key's value in `state`.
    pub fn value<V: Serialize + DeserializeOwned>(
        &self,
        state: &ValueState<V>,
    ) -> Result<Option<V>, StateError> {
        state.get(self.store, self.at())
    }

    pub fn set_value<V: Serialize + DeserializeOwned>(
        &self,
        state: &ValueState<V>,
        value: &V,
    ) -> Result<(), StateError> {
        self.write(|b| state.put(self.store, b, self.at(), value))
    }

    pub fn clear_value<V: Serialize + DeserializeOwned>(
        &self,
        state: &ValueState<V>,
    ) -> Result<(), StateError> {
        self.write(|b| state.delete(self.store, b, self.at()))
    }

    /// The key's list in `state`, in the order added.
    pub fn list<V: Serialize + DeserializeOwned>(
        &self,
        state: &ListState<V>,
    ) -> Result<Vec<V>, StateError> {
        state.get(self.store, self.at())
    }

    pub fn add_to_list<V: Serialize + DeserializeOwned>(
        &self,
        state: &ListState<V>,
        value: &V,
    ) -> Result<(), StateError> {
        self.write(|b| state.add(self.store, b, self.at(), value))
    }

    pub fn clear_list<V: Serialize + DeserializeOwned>(
        &self,
        state: &ListState<V>,
    ) -> Result<(), StateError> {
        self.write(|b| state.clear(self.store, b, self.at()))
    }

    pub fn map_get<M: Serialize + DeserializeOwned, V: Serialize + DeserializeOwned>(
        &self,
        state: &MapState<M, V>,
        map_key: &M,
    ) -> Result<Option<V>, StateError> {
        state.get(self.store, self.at(), map_key)
    }

    pub fn map_put<M: Serialize + DeserializeOwned, V: Serialize + DeserializeOwned>(
        &self,
        state: &MapState<M, V>,
        map_key: &M,
        value: &V,
    ) -> Result<(), StateError> {
        self.write(|b| state.put(self.store, b, self.at(), map_key, value))
    }

    pub fn map_remove<M: Serialize + DeserializeOwned, V: Serialize + DeserializeOwned>(
        &self,
        state: &MapState<M, V>,
        map_key: &M,
    ) -> Result<(), StateError> {
        self.write(|b| state.remove(self.store, b, self.at(), map_key))
    }

    pub fn map_entries<M: Serialize + DeserializeOwned, V: Serialize + DeserializeOwned>(
        &self,
        state: &MapState<M, V>,
    ) -> Result<Vec<(M, V)>, StateError> {
        state.entries(self.store, self.at())
    }

    fn timer(&self, time: i64) -> Timer {
        Timer {
            time,
            key_group: self.key_group,
            key: self.key_bytes.to_vec(),
            namespace: Vec::new(),
        }
    }

    /// Calls `on_timer` for this key once the watermark reaches `time`.
    /// Setting the same time twice sets one timer.
    pub fn register_event_time_timer(&mut self, time: EventTime) -> Result<(), StateError> {
        let timer = self.timer(time.0);
        let mut batch = self.store.new_batch();
        self.event_timers.register(self.store, &mut batch, &timer)?;
        self.store.write(batch)
    }

    pub fn delete_event_time_timer(&mut self, time: EventTime) -> Result<(), StateError> {
        let timer = self.timer(time.0);
        let mut batch = self.store.new_batch();
        self.event_timers.delete(self.store, &mut batch, &timer)?;
        self.store.write(batch)
    }

    /// Calls `on_timer` for this key once the wall clock reaches `time` (ms since the epoch).
    pub fn register_processing_time_timer(&mut self, time: i64) -> Result<(), StateError> {
        let timer = self.timer(time);
        let mut batch = self.store.new_batch();
        self.processing_timers
            .register(self.store, &mut batch, &timer)?;
        self.store.write(batch)
    }

    pub fn delete_processing_time_timer(&mut self, time: i64) -> Result<(), StateError> {
        let timer = self.timer(time);
        let mut batch = self.store.new_batch();
        self.processing_timers
            .delete(self.store, &mut batch, &timer)?;
        self.store.write(batch)
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Runs a [`KeyedProcessFunction`] in one subtask.
pub(crate) struct ProcessOp<K, I, O, F> {
    pub f: F,
    pub key: ValueCodec<K>,
    pub out: RowCodec<O>,
    pub max_parallelism: u32,
    pub event_timers: Option<TimerService>,
    pub processing_timers: Option<TimerService>,
    pub _rows: PhantomData<fn(I) -> O>,
}

/// Timers handled per round; a round reads them from RocksDB at once.
const TIMER_ROUND: usize = 1024;

impl<K, I, O, F> ProcessOp<K, I, O, F>
where
    K: Serialize + DeserializeOwned + Send + 'static,
    I: DeserializeOwned + Send + 'static,
    O: Serialize + DeserializeOwned + Send + 'static,
    F: KeyedProcessFunction<K, I, O>,
{
    /// The batch of `rows` at `times`, if there are any.
    fn encode(&self, rows: Vec<O>, times: Vec<i64>) -> Result<Option<RecordBatch>, BoxError> {
        if rows.is_empty() {
            return Ok(None);
        }
        let batch = self.out.encode(&rows)?;
        let times: ArrayRef = Arc::new(TimestampMillisecondArray::from(times));
        Ok(Some(with_event_time(&batch, times)?))
    }

    /// Fires the timers of `domain` due at `up_to`, earliest first.
    async fn fire(
        &mut self,
        domain: TimeDomain,
        up_to: i64,
        ctx: &mut OperatorContext,
        out: &mut dyn Collector,
    ) -> Result<(), BoxError> {
        let watermark = ctx.current_watermark;
        let store = ctx.keyed_state()?;
        loop {
            let (event_timers, processing_timers) = (
                self.event_timers.as_mut().expect("opened"),
                self.processing_timers.as_mut().expect("opened"),
            );
            let due = match domain {
                TimeDomain::EventTime => event_timers.pop_due(store, up_to, TIMER_ROUND)?,
                TimeDomain::ProcessingTime => {
                    processing_timers.pop_due(store, up_to, TIMER_ROUND)?
                }
            };
            if due.is_empty() {
                return Ok(());
            }
            let mut rows = Vec::new();
            let mut times = Vec::new();
            for timer in due {
                let key: K = postcard::from_bytes(&timer.key)
                    .map_err(|e| format!("a stored timer's key does not decode: {e}"))?;
                let mut pc = ProcessContext {
                    key: &key,
                    key_bytes: &timer.key,
                    key_group: timer.key_group,
                    timestamp: EventTime(timer.time),
                    watermark,
                    store,
                    event_timers: self.event_timers.as_mut().expect("opened"),
                    processing_timers: self.processing_timers.as_mut().expect("opened"),
                };
                let before = rows.len();
                self.f.on_timer(
                    FiredTimer {
                        time: timer.time,
                        domain,
                    },
                    &mut pc,
                    &mut rows,
                )?;
                times.resize(times.len() + rows.len() - before, timer.time);
            }
            if let Some(batch) = self.encode(rows, times)? {
                out.collect(batch).await?;
            }
        }
    }
}

#[async_trait]
impl<K, I, O, F> Operator for ProcessOp<K, I, O, F>
where
    K: Serialize + DeserializeOwned + Send + 'static,
    I: DeserializeOwned + Send + 'static,
    O: Serialize + DeserializeOwned + Send + 'static,
    F: KeyedProcessFunction<K, I, O>,
{
    async fn open(&mut self, ctx: &mut OperatorContext) -> Result<(), BoxError> {
        let store = ctx.keyed_state()?;
        self.event_timers = Some(TimerService::new(store, "process.event_timers")?);
        self.processing_timers = Some(TimerService::new(store, "process.processing_timers")?);
        Ok(())
    }

    async fn process_batch(
        &mut self,
        batch: RecordBatch,
        ctx: &mut OperatorContext,
        out: &mut dyn Collector,
    ) -> Result<(), BoxError> {
        let key_column = batch
            .column_by_name(KEY_FIELD)
            .ok_or("process() needs a stream keyed by key_by")?
            .clone();
        let keys = self.key.decode(&key_column)?;
        let mut hashes = Vec::new();
        hash_columns(&[key_column], batch.num_rows(), &mut hashes)?;
        let event_times = batch
            .column_by_name(EVENT_TIME_FIELD)
            .ok_or("batch has no event time")?
            .as_any()
            .downcast_ref::<TimestampMillisecondArray>()
            .ok_or("event time has the wrong type")?
            .values()
            .clone();
        let input = RowCodec::<I>::decode(&batch)?;
        let watermark = ctx.current_watermark;
        let store = ctx.keyed_state()?;
        let mut rows = Vec::new();
        let mut times = Vec::new();
        let mut key_bytes = Vec::new();
        for (i, (row, key)) in input.into_iter().zip(&keys).enumerate() {
            key_bytes.clear();
            key_bytes = postcard::to_extend(key, key_bytes)
                .map_err(|e| format!("the key does not encode: {e}"))?;
            let mut pc = ProcessContext {
                key,
                key_bytes: &key_bytes,
                key_group: key_group_of(hashes[i], self.max_parallelism),
                timestamp: EventTime(event_times[i]),
                watermark,
                store,
                event_timers: self.event_timers.as_mut().expect("opened"),
                processing_timers: self.processing_timers.as_mut().expect("opened"),
            };
            let before = rows.len();
            self.f.process_element(row, &mut pc, &mut rows)?;
            times.resize(times.len() + rows.len() - before, event_times[i]);
        }
        match self.encode(rows, times)? {
            Some(batch) => out.collect(batch).await,
            None => Ok(()),
        }
    }

    async fn on_watermark(
        &mut self,
        watermark: EventTime,
        ctx: &mut OperatorContext,
        out: &mut dyn Collector,
    ) -> Result<Option<EventTime>, BoxError> {
        self.fire(TimeDomain::EventTime, watermark.0, ctx, out)
            .await?;
        Ok(Some(watermark))
    }

    fn next_processing_time(&self) -> Option<i64> {
        self.processing_timers.as_ref()?.earliest()
    }

    async fn on_processing_time(
        &mut self,
        now: i64,
        ctx: &mut OperatorContext,
        out: &mut dyn Collector,
    ) -> Result<(), BoxError> {
        self.fire(TimeDomain::ProcessingTime, now, ctx, out).await
    }
}
