//! The window operator for tumbling, hopping and cumulating windows.
//!
//! Rows are pre-aggregated in memory, per slice, in DataFusion groups
//! accumulators: a batch updates them in one vectorized call per aggregate,
//! and RocksDB is not touched per row. A slice's partials move to RocksDB
//! (as one entry per key, `slice end | key | sequence` in a [`SortedState`])
//! when the operator's memory budget is used up, when the slice is shared by a
//! window that fires while a later one still needs it, and when late updates
//! are allowed. A window fires when the watermark passes its end: straight
//! from memory when it is one slice that nothing else needs (a tumbling window),
//! otherwise by merging its slices' partials, one key group at a time, so the
//! memory of a firing is bounded by one key group's keys.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use arrow::array::{RecordBatch, UInt32Array};
use arrow::compute::filter_record_batch;
use arrow::compute::kernels::aggregate::{max, min};
use async_trait::async_trait;
use headwater_runtime::checkpoint::Restored;
use headwater_runtime::key_groups::{KeyGroup, KeyGroupRange};
use headwater_runtime::state::{KeyedStateStore, SortedState, order_preserving};
use headwater_runtime::time::event_time_column;
use headwater_runtime::{BoxError, Collector, EventTime, Operator, OperatorContext};
use xxhash_rust::xxh3::xxh3_64;

use super::LATE_OUTPUT;
use super::WindowShared;
use super::aggregate::{AggregateInputs, StateRowCodec};
use super::fired::{Fired, StoredRange};
use super::keys::{BatchKeys, GroupKeys, KeyCodec};
use super::output::ResultBuffer;
use super::partials::{SliceTable, partial_key, partial_key_part};
use super::spec::Slicer;
use crate::error::Result;

pub(crate) struct SlicedWindowOperator {
    shared: Arc<WindowShared>,
    slicer: Slicer,
    keys: KeyCodec,
    states: StateRowCodec,
    partials: Option<SortedState>,
    /// Slices pre-aggregating in memory, by slice end.
    open: BTreeMap<i64, SliceTable>,
    /// Slices with partials in RocksDB.
    spilled: BTreeSet<i64>,
    /// How far windows have fired, by key-group range.
    fired: Fired,
    /// Distinguishes the entries of successive spills of one slice and key.
    spill_sequence: u64,
    results: ResultBuffer,
    group_indices: Vec<usize>,
}

impl SlicedWindowOperator {
    pub(crate) fn new(shared: Arc<WindowShared>, slicer: Slicer, keys: KeyCodec) -> Result<Self> {
        Ok(SlicedWindowOperator {
            states: shared.plan.state_codec()?,
            results: ResultBuffer::new(shared.output_schema.clone()),
            shared,
            slicer,
            keys,
            partials: None,
            open: BTreeMap::new(),
            spilled: BTreeSet::new(),
            fired: Fired::new(),
            spill_sequence: 0,
            group_indices: Vec::new(),
        })
    }

    fn lateness(&self) -> i64 {
        self.shared.allowed_lateness
    }

    /// Whether rows of this slice are past the allowed lateness at watermark `wm`.
    fn too_late(&self, slice: i64, wm: Option<EventTime>) -> bool {
        wm.is_some_and(|wm| {
            self.slicer
                .last_window_of_slice(slice)
                .saturating_sub(1)
                .saturating_add(self.lateness())
                <= wm.0
        })
    }

    /// Whether a window of this slice has fired already.
    fn has_fired_window(&self, slice: i64) -> bool {
        self.slicer
            .windows_of_slice(slice)
            .first()
            .is_some_and(|&end| end <= self.fired.until)
    }

    fn table(&mut self, slice: i64) -> Result<&mut SliceTable> {
        if !self.open.contains_key(&slice) {
            let table = SliceTable {
                keys: GroupKeys::new(),
                accumulators: self.shared.plan.accumulators()?,
            };
            self.open.insert(slice, table);
        }
        Ok(self.open.get_mut(&slice).expect("inserted above"))
    }

    /// Adds rows `indices` of the batch (all of one slice) to the slice's partials.
    fn add_rows(
        &mut self,
        slice: i64,
        keys: &BatchKeys,
        inputs: &AggregateInputs,
        indices: Option<&[u32]>,
    ) -> Result<()> {
        let mut group_indices = std::mem::take(&mut self.group_indices);
        group_indices.clear();
        let table = self.table(slice)?;
        let taken;
        let inputs = match indices {
            None => {
                table
                    .keys
                    .intern_rows(keys, 0..inputs.num_rows(), &mut group_indices);
                inputs
            }
            Some(indices) => {
                table.keys.intern_rows(
                    keys,
                    indices.iter().map(|&i| i as usize),
                    &mut group_indices,
                );
                taken = inputs.take(&UInt32Array::from(indices.to_vec()))?;
                &taken
            }
        };
        let groups = table.keys.len();
        table.accumulators.update(inputs, &group_indices, groups)?;
        self.group_indices = group_indices;
        Ok(())
    }

    fn memory_used(&self) -> usize {
        self.open.values().map(SliceTable::size).sum()
    }

    /// Moves a slice's in-memory partials to RocksDB.
    fn spill(&mut self, store: &KeyedStateStore, slice: i64) -> Result<()> {
        let Some(mut table) = self.open.remove(&slice) else {
            return Ok(());
        };
        let partials = self.partials.as_ref().expect("opened");
        let states = table.accumulators.state()?;
        let rows = self.states.encode(&states)?;
        self.spill_sequence += 1;
        let mut batch = store.new_batch();
        let mut sort_key = Vec::new();
        // In stored-key order: RocksDB inserts sorted keys into its memtable
        // far faster than scattered ones.
        let keys = &table.keys;
        let mut order: Vec<usize> = (0..keys.len()).collect();
        order.sort_unstable_by(|&a, &b| {
            (keys.key_group(a), keys.key(a)).cmp(&(keys.key_group(b), keys.key(b)))
        });
        for group in order {
            partial_key(
                slice,
                table.keys.key(group),
                self.spill_sequence,
                &mut sort_key,
            );
            partials.put(
                store,
                &mut batch,
                table.keys.key_group(group),
                &sort_key,
                rows.row(group).as_ref(),
            )?;
            if batch.len() >= 100_000 {
                store.write(std::mem::replace(&mut batch, store.new_batch()))?;
            }
        }
        store.write(batch)?;
        self.spilled.insert(slice);
        Ok(())
    }

    fn spill_all(&mut self, store: &KeyedStateStore) -> Result<()> {
        let slices: Vec<i64> = self.open.keys().copied().collect();
        for slice in slices {
            self.spill(store, slice)?;
        }
        Ok(())
    }

    /// Windows with data that end in `(fired_until, up_to]`, in order.
    fn due_windows(&self, up_to: i64) -> BTreeSet<i64> {
        let mut due = BTreeSet::new();
        for &slice in self.open.keys().chain(self.spilled.iter()) {
            for end in self.slicer.windows_of_slice(slice) {
                if end > self.fired.until && end <= up_to {
                    due.insert(end);
                }
            }
        }
        due
    }

    /// Fires every window the watermark has passed, then drops partials no window needs.
    async fn fire(
        &mut self,
        watermark: i64,
        ctx: &mut OperatorContext,
        out: &mut dyn Collector,
    ) -> Result<(), BoxError> {
        // Window [start, end) is complete once the watermark reaches end - 1.
        let up_to = watermark.saturating_add(1);
        let due = self.due_windows(up_to);
        if !due.is_empty() {
            let store = ctx.keyed_state()?;
            for end in due {
                let slices: Vec<i64> = self
                    .slicer
                    .slices_of_window(end)
                    .filter(|s| self.open.contains_key(s) || self.spilled.contains(s))
                    .collect();
                let last_use = self.lateness() == 0;
                let only_in_memory = slices.len() == 1
                    && !self.spilled.contains(&slices[0])
                    && self.slicer.last_window_of_slice(slices[0]) == end;
                if last_use && only_in_memory {
                    let mut table = self.open.remove(&slices[0]).expect("checked");
                    let keys = self.keys.decode(table.keys.keys())?;
                    let n = table.keys.len();
                    let start = self.slicer.window_start(end);
                    self.results.push(
                        keys,
                        vec![start; n],
                        vec![end; n],
                        table.accumulators.evaluate()?,
                    )?;
                } else {
                    for &slice in &slices {
                        self.spill(store, slice)?;
                    }
                    // With no lateness, a slice whose last window this is is read for the last time.
                    let delete: Vec<bool> = slices
                        .iter()
                        .map(|&s| last_use && self.slicer.last_window_of_slice(s) == end)
                        .collect();
                    self.fire_from_store(store, end, &slices, &delete, None, out)
                        .await?;
                    for (slice, delete) in slices.iter().zip(delete) {
                        if delete {
                            self.spilled.remove(slice);
                        }
                    }
                }
                self.fired.until = end;
                if let Some(batch) = self.results.take(false)? {
                    out.collect(batch).await?;
                }
            }
            if let Some(batch) = self.results.take(true)? {
                out.collect(batch).await?;
            }
        }
        // Every window ending by `up_to` is complete, with rows or without: the
        // subtasks of this operator agree on that, whatever keys each had.
        self.fired.until = self.fired.until.max(up_to);
        self.clean_up(ctx, watermark)?;
        Ok(())
    }

    /// After a change of parallelism, fires the windows of the key groups whose
    /// old subtask was behind: windows that the others had fired, so they were
    /// complete at the checkpoint.
    async fn catch_up(
        &mut self,
        ctx: &mut OperatorContext,
        out: &mut dyn Collector,
    ) -> Result<(), BoxError> {
        if self.fired.behind.is_empty() {
            return Ok(());
        }
        let behind = std::mem::take(&mut self.fired.behind);
        let store = ctx.keyed_state()?;
        for (range, fired) in behind {
            let mut due = BTreeSet::new();
            for &slice in &self.spilled {
                for end in self.slicer.windows_of_slice(slice) {
                    if end > fired && end <= self.fired.until {
                        due.insert(end);
                    }
                }
            }
            for end in due {
                let slices: Vec<i64> = self
                    .slicer
                    .slices_of_window(end)
                    .filter(|s| self.spilled.contains(s))
                    .collect();
                let keep = vec![false; slices.len()];
                self.fire_from_store(store, end, &slices, &keep, Some(range), out)
                    .await?;
            }
        }
        if let Some(batch) = self.results.take(true)? {
            out.collect(batch).await?;
        }
        Ok(())
    }

    /// Drops the stored partials of slices past their last window and the allowed lateness.
    fn clean_up(&mut self, ctx: &mut OperatorContext, watermark: i64) -> Result<()> {
        let expired: Vec<i64> = self
            .spilled
            .iter()
            .copied()
            .filter(|&s| {
                let last = self.slicer.last_window_of_slice(s);
                last <= self.fired.until
                    && last.saturating_sub(1).saturating_add(self.lateness()) <= watermark
            })
            .collect();
        if expired.is_empty() {
            return Ok(());
        }
        let store = ctx.keyed_state()?;
        let partials = self.partials.as_ref().expect("opened");
        let mut batch = store.new_batch();
        // Point deletes, not range deletes: range tombstones piling up in a
        // memtable make every later iterator slower.
        for &slice in &expired {
            let prefix = order_preserving(slice).to_be_bytes();
            for key_group in store.key_groups().as_range() {
                for entry in partials.scan(store, key_group, &prefix) {
                    partials.delete(store, &mut batch, key_group, &entry?.0)?;
                }
            }
            self.spilled.remove(&slice);
        }
        store.write(batch)?;
        Ok(())
    }

    /// Computes window `end` from the stored partials of `slices`, one key
    /// group at a time (of `only` if given); deletes the entries of the slices
    /// marked in `delete`.
    async fn fire_from_store(
        &mut self,
        store: &KeyedStateStore,
        end: i64,
        slices: &[i64],
        delete: &[bool],
        only: Option<KeyGroupRange>,
        out: &mut dyn Collector,
    ) -> Result<(), BoxError> {
        let partials = self.partials.clone().expect("opened");
        let start = self.slicer.window_start(end);
        let range = only.unwrap_or(store.key_groups());
        for key_group in range.as_range() {
            let mut keys = GroupKeys::new();
            let mut groups = Vec::new();
            let mut state_rows: Vec<Box<[u8]>> = Vec::new();
            let mut batch = store.new_batch();
            for (&slice, &delete) in slices.iter().zip(delete) {
                let prefix = order_preserving(slice).to_be_bytes();
                for entry in partials.scan(store, key_group, &prefix) {
                    let (sort_key, state) = entry?;
                    let key = partial_key_part(&sort_key);
                    groups.push(keys.intern(key, xxh3_64(key), key_group));
                    state_rows.push(state);
                    if delete {
                        partials.delete(store, &mut batch, key_group, &sort_key)?;
                    }
                }
            }
            if !batch.is_empty() {
                store.write(batch)?;
            }
            if keys.is_empty() {
                continue;
            }
            let mut accumulators = self.shared.plan.accumulators()?;
            let states = self.states.decode(state_rows.iter().map(|r| &r[..]))?;
            accumulators.merge(&states, &groups, keys.len())?;
            let n = keys.len();
            self.results.push(
                self.keys.decode(keys.keys())?,
                vec![start; n],
                vec![end; n],
                accumulators.evaluate()?,
            )?;
            // Send as we go: a window of many keys is never held whole.
            if let Some(batch) = self.results.take(false)? {
                out.collect(batch).await?;
            }
        }
        Ok(())
    }

    /// Sends updated results of the fired windows of `slice` for the keys of
    /// its late rows, after storing those rows' partials.
    fn late_update(&mut self, store: &KeyedStateStore, slice: i64, watermark: i64) -> Result<()> {
        let Some(table) = self.open.get(&slice) else {
            return Ok(());
        };
        let affected: Vec<(KeyGroup, Vec<u8>)> = (0..table.keys.len())
            .map(|g| (table.keys.key_group(g), table.keys.key(g).to_vec()))
            .collect();
        self.spill(store, slice)?;
        let partials = self.partials.clone().expect("opened");
        for end in self.slicer.windows_of_slice(slice) {
            let fired = end <= self.fired.until;
            let within_lateness = end.saturating_sub(1).saturating_add(self.lateness()) > watermark;
            if !fired || !within_lateness {
                continue;
            }
            let mut groups = Vec::new();
            let mut state_rows: Vec<Box<[u8]>> = Vec::new();
            for (group, (key_group, key)) in affected.iter().enumerate() {
                for s in self.slicer.slices_of_window(end) {
                    if !self.spilled.contains(&s) {
                        continue;
                    }
                    let mut prefix = order_preserving(s).to_be_bytes().to_vec();
                    prefix.extend_from_slice(key);
                    for entry in partials.scan(store, *key_group, &prefix) {
                        state_rows.push(entry?.1);
                        groups.push(group);
                    }
                }
            }
            let mut accumulators = self.shared.plan.accumulators()?;
            let states = self.states.decode(state_rows.iter().map(|r| &r[..]))?;
            accumulators.merge(&states, &groups, affected.len())?;
            let n = affected.len();
            self.results.push(
                self.keys.decode(affected.iter().map(|(_, k)| &k[..]))?,
                vec![self.slicer.window_start(end); n],
                vec![end; n],
                accumulators.evaluate()?,
            )?;
        }
        Ok(())
    }
}

#[async_trait]
impl Operator for SlicedWindowOperator {
    async fn open(&mut self, ctx: &mut OperatorContext) -> Result<(), BoxError> {
        let store = ctx.keyed_state()?;
        self.partials = Some(SortedState::new(store, "window.partials")?);
        Ok(())
    }

    async fn process_batch(
        &mut self,
        batch: RecordBatch,
        ctx: &mut OperatorContext,
        out: &mut dyn Collector,
    ) -> Result<(), BoxError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        self.catch_up(ctx, out).await?;
        let times = event_time_column(&batch)?;
        let watermark = ctx.current_watermark;
        let keys = self.keys.keys(&batch)?;
        let inputs = self.shared.plan.inputs(&batch)?;
        let (low, high) = (
            min(times).expect("non-empty"),
            max(times).expect("non-empty"),
        );
        let one_slice = self.slicer.slice_end(low) == self.slicer.slice_end(high);
        let on_time = watermark.is_none_or(|wm| low > wm.0);
        if one_slice && on_time {
            self.add_rows(self.slicer.slice_end(low), &keys, &inputs, None)?;
        } else {
            // Rows of several slices, or late rows: split the batch by slice.
            let mut by_slice: HashMap<i64, Vec<u32>> = HashMap::new();
            for (i, ts) in times.values().iter().enumerate() {
                by_slice
                    .entry(self.slicer.slice_end(*ts))
                    .or_default()
                    .push(i as u32);
            }
            let mut late = vec![false; batch.num_rows()];
            let mut updated = Vec::new();
            let mut fire_due = false;
            for (slice, indices) in by_slice {
                if self.too_late(slice, watermark) {
                    for &i in &indices {
                        late[i as usize] = true;
                    }
                    continue;
                }
                if self.has_fired_window(slice) {
                    updated.push(slice);
                } else if watermark.is_some_and(|wm| slice - self.slicer.slice_size() <= wm.0) {
                    // Rows at or before the watermark, in windows that have not
                    // fired: those windows may be due already.
                    fire_due = true;
                }
                self.add_rows(slice, &keys, &inputs, Some(&indices))?;
            }
            if late.iter().any(|&l| l) {
                let late_rows = filter_record_batch(&batch, &late.into())?;
                ctx.metrics
                    .counter("late_rows")
                    .add(late_rows.num_rows() as u64);
                out.collect_side(LATE_OUTPUT, late_rows).await?;
            }
            if !updated.is_empty() {
                let wm = watermark.map_or(i64::MIN, |w| w.0);
                let store = ctx.keyed_state()?;
                updated.sort_unstable();
                for slice in updated {
                    self.late_update(store, slice, wm)?;
                }
                if let Some(batch) = self.results.take(true)? {
                    out.collect(batch).await?;
                }
            }
            if let (true, Some(wm)) = (fire_due, watermark) {
                self.fire(wm.0, ctx, out).await?;
            }
        }
        if self.memory_used() > self.shared.memory_limit {
            let store = ctx.keyed_state()?;
            self.spill_all(store)?;
        }
        Ok(())
    }

    /// At a barrier every partial goes to RocksDB, so the keyed-state
    /// snapshot holds them all; the operator's own state is how far it fired,
    /// by key-group range.
    async fn snapshot_state(
        &mut self,
        _checkpoint: u64,
        ctx: &mut OperatorContext,
    ) -> Result<Option<Vec<u8>>, BoxError> {
        let store = ctx.keyed_state()?;
        self.spill_all(store)?;
        let fired = self.fired.to_stored(store.key_groups());
        Ok(Some(postcard::to_stdvec(&(fired, self.spill_sequence))?))
    }

    /// Takes how far the old subtasks fired, for the key groups this subtask
    /// owns: the furthest, and the key groups behind it to catch up.
    async fn restore_state(
        &mut self,
        restored: Restored,
        ctx: &mut OperatorContext,
    ) -> Result<(), BoxError> {
        let mut stored: Vec<StoredRange> = Vec::new();
        for state in restored.blobs() {
            let (ranges, sequence): (Vec<StoredRange>, u64) = postcard::from_bytes(state)
                .map_err(|e| format!("a window's stored state does not decode: {e}"))?;
            stored.extend(ranges);
            self.spill_sequence = self.spill_sequence.max(sequence);
        }
        self.fired = Fired::restore(stored, ctx.subtask.key_groups);
        self.spill_sequence += 1;
        // Which slices have partials: one seek per slice and key group.
        let store = ctx.keyed_state()?;
        let partials = self.partials.clone().expect("opened");
        for key_group in store.key_groups().as_range() {
            let mut from = Vec::new();
            while let Some((sort_key, _)) = partials.first_from(store, key_group, &from)? {
                let slice = headwater_runtime::state::i64_from_order_preserving(
                    u64::from_be_bytes(sort_key[..8].try_into()?),
                );
                self.spilled.insert(slice);
                if slice == i64::MAX {
                    break;
                }
                from = order_preserving(slice + 1).to_be_bytes().to_vec();
            }
        }
        Ok(())
    }

    async fn on_watermark(
        &mut self,
        watermark: EventTime,
        ctx: &mut OperatorContext,
        out: &mut dyn Collector,
    ) -> Result<Option<EventTime>, BoxError> {
        self.catch_up(ctx, out).await?;
        self.fire(watermark.0, ctx, out).await?;
        Ok(Some(watermark))
    }
}
