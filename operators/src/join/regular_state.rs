//! What one side of a regular join keeps: its rows in keyed state, under
//! `key length | key | row` (a changelog side, one entry per distinct row)
//! or `key length | key | row | sequence` (an append-only side, one entry
//! per row, written without a read), each with a [`Record`] of how often it
//! is there and how many rows it joins.

use std::ops::Range;

use arrow::row::{RowConverter, Rows};
use hashbrown::HashMap;
use headwater_runtime::key_groups::KeyGroup;
use headwater_runtime::state::{KeyedStateStore, SortedState, StateDescriptor};
use serde::{Deserialize, Serialize};

use super::side::key_prefix;
use crate::error::{OperatorError, Result};

/// What a side keeps of one distinct row.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub(super) struct Record {
    /// How many times the row is there.
    pub count: u64,
    /// How many rows of the other side it joins (counted with theirs).
    pub matches: u64,
}

/// A stored row, found by a probe.
pub(super) struct Found {
    pub sort_key: Box<[u8]>,
    pub record: Record,
}

/// The stored rows that a batch's rows may join.
pub(super) struct Probe {
    pub found: Vec<Found>,
    /// For each row of the batch, the range of `found` of its key (empty for
    /// a row that joins nothing).
    pub found_of_row: Vec<Range<usize>>,
}

/// One side's stored rows.
pub(super) struct SideState {
    pub state: SortedState,
    /// Whether the side is append-only (its rows carry a sequence number).
    pub appends: bool,
}

impl SideState {
    /// The stored sort key of `row` of `key`, with a sequence number if the
    /// side is append-only.
    pub fn sort_key(&self, store: &KeyedStateStore, key: &[u8], row: &[u8]) -> Box<[u8]> {
        let mut sort_key = Vec::with_capacity(4 + key.len() + row.len() + 8);
        key_prefix(key, &mut sort_key);
        sort_key.extend_from_slice(row);
        if self.appends {
            sort_key.extend_from_slice(&store.next_sequence().to_be_bytes());
        }
        sort_key.into_boxed_slice()
    }

    /// The row in a stored sort key: after its key, and before the sequence
    /// number of an append-only side.
    pub fn row_of<'a>(&self, sort_key: &'a [u8]) -> Result<&'a [u8]> {
        let malformed = || OperatorError::Config("regular join: a stored row is malformed".into());
        let key_len = sort_key
            .get(..4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_be_bytes)
            .ok_or_else(malformed)?;
        let start = 4 + key_len as usize;
        let end = if self.appends {
            sort_key.len().checked_sub(8).ok_or_else(malformed)?
        } else {
            sort_key.len()
        };
        sort_key.get(start..end).ok_or_else(malformed)
    }

    /// The stored record of a row, if it is there and unexpired.
    pub fn read(
        &self,
        store: &KeyedStateStore,
        records: &StateDescriptor<Record>,
        key_group: KeyGroup,
        sort_key: &[u8],
    ) -> Result<Option<Record>> {
        match self.state.get(store, key_group, sort_key)? {
            Some(value) => Ok(records.decode(&value)?),
            None => Ok(None),
        }
    }

    /// The stored rows of each joinable row's key (`keys` in the row format,
    /// `joinable` false for a row with a NULL key): the batch's distinct keys
    /// are read in key order with one iterator.
    pub fn probe(
        &self,
        store: &KeyedStateStore,
        records: &StateDescriptor<Record>,
        keys: &Rows,
        key_groups: &[KeyGroup],
        joinable: impl Fn(usize) -> bool,
    ) -> Result<Probe> {
        let n = key_groups.len();
        let mut distinct: HashMap<&[u8], usize> = HashMap::new();
        let mut prefixes: Vec<(KeyGroup, Vec<u8>)> = Vec::new();
        let mut key_of: Vec<usize> = Vec::with_capacity(n);
        for (i, &key_group) in key_groups.iter().enumerate() {
            if !joinable(i) {
                key_of.push(usize::MAX);
                continue;
            }
            let key = keys.row(i).data();
            let next = prefixes.len();
            let index = *distinct.entry(key).or_insert(next);
            if index == next {
                let mut prefix = Vec::new();
                key_prefix(key, &mut prefix);
                prefixes.push((key_group, prefix));
            }
            key_of.push(index);
        }
        let mut order: Vec<usize> = (0..prefixes.len()).collect();
        order.sort_unstable_by(|&a, &b| prefixes[a].cmp(&prefixes[b]));
        let sorted: Vec<(KeyGroup, &[u8])> = order
            .iter()
            .map(|&k| (prefixes[k].0, prefixes[k].1.as_slice()))
            .collect();
        let mut found: Vec<Found> = Vec::new();
        let mut found_key: Vec<usize> = Vec::new();
        self.state
            .scan_prefixes(store, &sorted, |at, sort_key, value| {
                if let Some(record) = records.decode(value)? {
                    found.push(Found {
                        sort_key: sort_key.into(),
                        record,
                    });
                    found_key.push(order[at]);
                }
                Ok(())
            })?;
        // Rows of one key are found together, in key order.
        let mut ranges: Vec<Range<usize>> = vec![0..0; prefixes.len()];
        let mut start = 0;
        while start < found.len() {
            let key = found_key[start];
            let end = start + found_key[start..].iter().take_while(|&&k| k == key).count();
            ranges[key] = start..end;
            start = end;
        }
        let found_of_row = key_of
            .iter()
            .map(|&k| {
                if k == usize::MAX {
                    0..0
                } else {
                    ranges[k].clone()
                }
            })
            .collect();
        Ok(Probe {
            found,
            found_of_row,
        })
    }

    /// The rows of `found[candidates]`, decoded by `rows` (the side's output columns).
    pub fn decode(
        &self,
        rows: &RowConverter,
        found: &[Found],
        candidates: &[u32],
    ) -> Result<Vec<arrow::array::ArrayRef>> {
        let parser = rows.parser();
        let mut parsed = rows.empty_rows(candidates.len(), 0);
        for &j in candidates {
            parsed.push(parser.parse(self.row_of(&found[j as usize].sort_key)?));
        }
        Ok(rows.convert_rows(&parsed)?)
    }
}
