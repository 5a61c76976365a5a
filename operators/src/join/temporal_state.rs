//! What the temporal join keeps in keyed state.
//!
//! - [`WaitingRows`]: left rows waiting for the watermark, under `event time
//!   | key length | key | sequence` in their key group, so the rows the
//!   watermark has passed are one range scan per key group, from where the
//!   last one ended (past the range tombstones of the rows fired before).
//! - [`Versions`]: the versioned table's rows, under `key length | key |
//!   event time | sequence`, with a flag byte (a deletion) before the row;
//!   the versions of a batch's keys are read with one iterator.

use headwater_runtime::key_groups::KeyGroup;
use headwater_runtime::state::{
    KeyedStateStore, SortedState, StateWriteBatch, i64_from_order_preserving, order_preserving,
};

use super::side::key_prefix;
use crate::error::{OperatorError, Result};

/// A left row the watermark has passed.
pub(super) struct WaitingRow {
    pub key_group: KeyGroup,
    pub key: Box<[u8]>,
    pub time: i64,
    /// The row's output columns, in the row format.
    pub row: Box<[u8]>,
}

/// Left rows by event time.
pub(super) struct WaitingRows {
    state: SortedState,
    sort_key: Vec<u8>,
}

fn malformed(what: &str) -> OperatorError {
    OperatorError::Config(format!("temporal join: a stored {what} is malformed"))
}

fn time_at(bytes: &[u8], at: usize) -> Option<i64> {
    let b: [u8; 8] = bytes.get(at..at + 8)?.try_into().ok()?;
    Some(i64_from_order_preserving(u64::from_be_bytes(b)))
}

impl WaitingRows {
    pub fn new() -> Self {
        WaitingRows {
            state: SortedState::unregistered("temporal-join.left"),
            sort_key: Vec::new(),
        }
    }

    /// Stores a row of `key` at `time` until the watermark passes it.
    pub fn put(
        &mut self,
        store: &KeyedStateStore,
        write: &mut StateWriteBatch,
        key_group: KeyGroup,
        key: &[u8],
        time: i64,
        row: &[u8],
    ) -> Result<()> {
        self.sort_key.clear();
        self.sort_key
            .extend_from_slice(&order_preserving(time).to_be_bytes());
        self.sort_key
            .extend_from_slice(&(key.len() as u32).to_be_bytes());
        self.sort_key.extend_from_slice(key);
        self.sort_key
            .extend_from_slice(&store.next_sequence().to_be_bytes());
        self.state
            .put(store, write, key_group, &self.sort_key, row)?;
        Ok(())
    }

    /// Takes out the rows of `key_group` with times after `after` (every
    /// earlier one is gone) and at or before `up_to`, earliest first.
    pub fn take(
        &self,
        store: &KeyedStateStore,
        write: &mut StateWriteBatch,
        key_group: KeyGroup,
        after: Option<i64>,
        up_to: i64,
        out: &mut Vec<WaitingRow>,
    ) -> Result<()> {
        let from = match after {
            None => Some(i64::MIN),
            Some(t) => t.checked_add(1),
        };
        let Some(from) = from.filter(|&f| f <= up_to) else {
            return Ok(());
        };
        let from = order_preserving(from).to_be_bytes();
        let until = up_to
            .checked_add(1)
            .map(|t| order_preserving(t).to_be_bytes());
        let before = out.len();
        for item in self.state.scan_from(
            store,
            key_group,
            &[],
            &from,
            until.as_ref().map(|u| u.as_slice()),
        ) {
            let (sort_key, row) = item?;
            let time = time_at(&sort_key, 0).ok_or_else(|| malformed("left row"))?;
            let key_len = sort_key
                .get(8..12)
                .and_then(|b| b.try_into().ok())
                .map(u32::from_be_bytes)
                .ok_or_else(|| malformed("left row"))? as usize;
            let key = sort_key
                .get(12..12 + key_len)
                .ok_or_else(|| malformed("left row"))?;
            out.push(WaitingRow {
                key_group,
                key: key.into(),
                time,
                row,
            });
        }
        if out.len() > before {
            // One range tombstone for all of them.
            let end = until.unwrap_or([0xff; 8]);
            let mut end = end.to_vec();
            if up_to == i64::MAX {
                end.push(0xff);
            }
            self.state
                .delete_range(store, write, key_group, &from, &end)?;
        }
        Ok(())
    }
}

/// A version of a key: a row of the versioned table, or its deletion.
pub(super) struct Version {
    pub sort_key: Box<[u8]>,
    pub time: i64,
    pub deleted: bool,
    /// The flag byte, then the row's output columns in the row format.
    pub value: Box<[u8]>,
}

impl Version {
    pub fn row(&self) -> &[u8] {
        &self.value[1..]
    }
}

/// The versioned table's rows by key and time.
pub(super) struct Versions {
    state: SortedState,
    sort_key: Vec<u8>,
    value: Vec<u8>,
}

impl Versions {
    pub fn new() -> Self {
        Versions {
            state: SortedState::unregistered("temporal-join.versions"),
            sort_key: Vec::new(),
            value: Vec::new(),
        }
    }

    /// Stores a version of `key` at `time` (a deletion if `deleted`).
    #[allow(clippy::too_many_arguments)]
    pub fn put(
        &mut self,
        store: &KeyedStateStore,
        write: &mut StateWriteBatch,
        key_group: KeyGroup,
        key: &[u8],
        time: i64,
        deleted: bool,
        row: &[u8],
    ) -> Result<()> {
        key_prefix(key, &mut self.sort_key);
        self.sort_key
            .extend_from_slice(&order_preserving(time).to_be_bytes());
        self.sort_key
            .extend_from_slice(&store.next_sequence().to_be_bytes());
        self.value.clear();
        self.value.push(deleted as u8);
        self.value.extend_from_slice(row);
        self.state
            .put(store, write, key_group, &self.sort_key, &self.value)?;
        Ok(())
    }

    /// Each key's versions, earliest first; `keys` are distinct `(key
    /// group, key)` pairs, read in stored order with one iterator.
    pub fn of_keys(
        &self,
        store: &KeyedStateStore,
        keys: &[(KeyGroup, &[u8])],
    ) -> Result<Vec<Vec<Version>>> {
        let prefixes: Vec<(KeyGroup, Vec<u8>)> = keys
            .iter()
            .map(|(key_group, key)| {
                let mut prefix = Vec::with_capacity(4 + key.len());
                key_prefix(key, &mut prefix);
                (*key_group, prefix)
            })
            .collect();
        let mut order: Vec<usize> = (0..keys.len()).collect();
        order.sort_unstable_by(|&a, &b| prefixes[a].cmp(&prefixes[b]));
        let sorted: Vec<(KeyGroup, &[u8])> = order
            .iter()
            .map(|&i| (prefixes[i].0, prefixes[i].1.as_slice()))
            .collect();
        let mut found: Vec<Vec<Version>> = (0..keys.len()).map(|_| Vec::new()).collect();
        let mut bad = false;
        self.state
            .scan_prefixes(store, &sorted, |at, sort_key, value| {
                let key = order[at];
                let time = time_at(sort_key, prefixes[key].1.len());
                match (time, value.first()) {
                    (Some(time), Some(&flag)) => found[key].push(Version {
                        sort_key: sort_key.into(),
                        time,
                        deleted: flag != 0,
                        value: value.into(),
                    }),
                    _ => bad = true,
                }
                Ok(())
            })?;
        if bad {
            return Err(malformed("version"));
        }
        Ok(found)
    }

    /// Deletes a stored version.
    pub fn delete(
        &self,
        store: &KeyedStateStore,
        write: &mut StateWriteBatch,
        key_group: KeyGroup,
        version: &Version,
    ) -> Result<()> {
        self.state
            .delete(store, write, key_group, &version.sort_key)?;
        Ok(())
    }
}

/// The version current at `time` among a key's `versions` (earliest
/// first): the last at or before it, unless that is a deletion.
pub(super) fn current_at(versions: &[Version], time: i64) -> Option<&Version> {
    let after = versions.partition_point(|v| v.time <= time);
    after
        .checked_sub(1)
        .map(|i| &versions[i])
        .filter(|v| !v.deleted)
}

/// How many of a key's `versions` (earliest first) no row at or after
/// `watermark` can join: all before the last at or before it, and that
/// one too if it is a deletion.
pub(super) fn superseded(versions: &[Version], watermark: i64) -> usize {
    let at_or_before = versions.partition_point(|v| v.time <= watermark);
    match at_or_before.checked_sub(1) {
        Some(last) if versions[last].deleted => at_or_before,
        Some(last) => last,
        None => 0,
    }
}
