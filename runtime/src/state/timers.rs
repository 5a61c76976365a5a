//! Timers kept in keyed state, so they survive checkpoints and restores.
//!
//! A timer is (time, key group, key, namespace). It is stored in a
//! [`SortedState`] with the time first, so the timers of a key group that are
//! due are a range scan from its start. The service keeps a lower bound of the
//! earliest timer in memory, so a watermark that passes no timer costs nothing.

use super::error::StateError;
use super::sorted::SortedState;
use super::store::{KeyedStateStore, StateWriteBatch};
use crate::key_groups::{KeyGroup, KeyGroupRange};

/// A timer of one key (and namespace, such as a window) at a point in time (ms).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timer {
    pub time: i64,
    pub key_group: KeyGroup,
    pub key: Vec<u8>,
    pub namespace: Vec<u8>,
}

impl Timer {
    fn sort_key(&self, out: &mut Vec<u8>) {
        out.clear();
        out.extend_from_slice(&order_preserving(self.time).to_be_bytes());
        out.extend_from_slice(&(self.key.len() as u32).to_be_bytes());
        out.extend_from_slice(&self.key);
        out.extend_from_slice(&self.namespace);
    }

    fn decode(key_group: KeyGroup, sort_key: &[u8]) -> Option<Timer> {
        let time =
            i64_from_order_preserving(u64::from_be_bytes(sort_key.get(..8)?.try_into().ok()?));
        let len = u32::from_be_bytes(sort_key.get(8..12)?.try_into().ok()?) as usize;
        let key = sort_key.get(12..12 + len)?.to_vec();
        let namespace = sort_key.get(12 + len..)?.to_vec();
        Some(Timer {
            time,
            key_group,
            key,
            namespace,
        })
    }
}

/// An i64 as a u64 whose big-endian bytes sort as the i64 does.
pub fn order_preserving(v: i64) -> u64 {
    (v as u64) ^ (1 << 63)
}

/// The inverse of [`order_preserving`].
pub fn i64_from_order_preserving(v: u64) -> i64 {
    (v ^ (1 << 63)) as i64
}

/// The timers of one subtask in one time domain (event or processing time).
#[derive(Debug)]
pub struct TimerService {
    state: SortedState,
    name: String,
    key_groups: KeyGroupRange,
    /// No timer is earlier than this (`None`: there are no timers).
    earliest: Option<i64>,
    sort_key: Vec<u8>,
}

impl TimerService {
    /// Opens the timers named `name` in `store`, finding the earliest one stored.
    pub fn new(store: &mut KeyedStateStore, name: &str) -> Result<Self, StateError> {
        let state = SortedState::new(store, name)?;
        let key_groups = store.key_groups();
        let mut earliest: Option<i64> = None;
        for key_group in key_groups.as_range() {
            if let Some((sort_key, _)) = state.first_from(store, key_group, &[])? {
                let timer = Timer::decode(key_group, &sort_key).ok_or_else(|| corrupt(name))?;
                earliest = Some(earliest.map_or(timer.time, |e| e.min(timer.time)));
            }
        }
        Ok(TimerService {
            state,
            name: name.to_string(),
            key_groups,
            earliest,
            sort_key: Vec::new(),
        })
    }

    /// No timer is due before this time; `None` if there are no timers.
    pub fn earliest(&self) -> Option<i64> {
        self.earliest
    }

    /// Adds `timer` (a no-op if it exists). It counts once `batch` is written.
    pub fn register(
        &mut self,
        store: &KeyedStateStore,
        batch: &mut StateWriteBatch,
        timer: &Timer,
    ) -> Result<(), StateError> {
        timer.sort_key(&mut self.sort_key);
        self.state
            .put(store, batch, timer.key_group, &self.sort_key, &[])?;
        self.earliest = Some(self.earliest.map_or(timer.time, |e| e.min(timer.time)));
        Ok(())
    }

    /// Removes `timer`, if it exists.
    pub fn delete(
        &mut self,
        store: &KeyedStateStore,
        batch: &mut StateWriteBatch,
        timer: &Timer,
    ) -> Result<(), StateError> {
        timer.sort_key(&mut self.sort_key);
        self.state
            .delete(store, batch, timer.key_group, &self.sort_key)
    }

    /// Removes and returns up to `limit` timers due at `up_to` (time `<= up_to`),
    /// earliest first (then by key group, key and namespace). Call it again
    /// until it returns none: handling a timer may register another that is due.
    pub fn pop_due(
        &mut self,
        store: &KeyedStateStore,
        up_to: i64,
        limit: usize,
    ) -> Result<Vec<Timer>, StateError> {
        if self.earliest.is_none_or(|e| e > up_to) || limit == 0 {
            return Ok(Vec::new());
        }
        // The `limit` earliest due timers over all key groups, in a max-heap:
        // a key group's scan stops at a timer later than all of a full heap,
        // so each call reads about `limit` timers, not every due one.
        let mut due: std::collections::BinaryHeap<Timer> = std::collections::BinaryHeap::new();
        let mut earliest_left: Option<i64> = None;
        let mut note_left = |t: i64| earliest_left = Some(earliest_left.map_or(t, |e| e.min(t)));
        // No timer is before `earliest`: the scan starts there, past the
        // tombstones of the timers popped before (a queue's front in RocksDB).
        let from = order_preserving(self.earliest.unwrap_or(i64::MIN)).to_be_bytes();
        for key_group in self.key_groups.as_range() {
            for item in self.state.scan_from(store, key_group, &[], &from, None) {
                let (sort_key, _) = item?;
                let timer =
                    Timer::decode(key_group, &sort_key).ok_or_else(|| corrupt(&self.name))?;
                if timer.time > up_to || (due.len() == limit && due.peek() <= Some(&timer)) {
                    note_left(timer.time);
                    break;
                }
                if due.len() == limit
                    && let Some(evicted) = due.pop()
                {
                    note_left(evicted.time);
                }
                due.push(timer);
            }
        }
        let due = due.into_sorted_vec();
        let mut batch = store.new_batch();
        for timer in &due {
            self.delete(store, &mut batch, timer)?;
        }
        store.write(batch)?;
        self.earliest = earliest_left;
        Ok(due)
    }
}

fn corrupt(name: &str) -> StateError {
    StateError::Codec {
        state: name.to_string(),
        message: "a stored timer is malformed".into(),
    }
}
