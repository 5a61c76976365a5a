//! The rows one input of a join keeps in keyed state, by key and event time.
//!
//! A row is stored under `key length | key | event time | sequence` (the
//! time order-preserving, so one key's rows in a time range are one RocksDB
//! range scan), and its value is a flag byte (the row has matched) and the
//! row's output columns in Arrow's row format, so state restores at any
//! parallelism.

use arrow::array::ArrayRef;
use arrow::datatypes::FieldRef;
use arrow::row::{RowConverter, Rows, SortField};
use headwater_runtime::key_groups::KeyGroup;
use headwater_runtime::state::{
    KeyedStateStore, SortedState, StateWriteBatch, i64_from_order_preserving, order_preserving,
};

use crate::error::{OperatorError, Result};

/// A row read back from a side's state.
pub(crate) struct StoredRow {
    /// Where it is stored (its sort key).
    pub sort_key: Box<[u8]>,
    pub time: i64,
    /// Whether it has joined a row of the other side (outer joins).
    pub matched: bool,
    /// The row's output columns, in the row format.
    pub value: Box<[u8]>,
}

impl StoredRow {
    pub fn row(&self) -> &[u8] {
        &self.value[1..]
    }
}

/// One side's stored rows.
pub(crate) struct SideRows {
    state: SortedState,
    /// Encodes and decodes the side's output columns.
    rows: RowConverter,
    name: String,
    sort_key: Vec<u8>,
    value: Vec<u8>,
}

impl SideRows {
    /// The rows of state `name`, whose output columns are `fields`.
    pub fn new(name: &str, fields: &[FieldRef]) -> Result<Self> {
        Ok(SideRows {
            state: SortedState::unregistered(name),
            rows: RowConverter::new(
                fields
                    .iter()
                    .map(|f| SortField::new(f.data_type().clone()))
                    .collect(),
            )?,
            name: name.to_string(),
            sort_key: Vec::new(),
            value: Vec::new(),
        })
    }

    /// The row format of `columns` (the side's output columns of a batch).
    pub fn encode(&self, columns: &[ArrayRef]) -> Result<Rows> {
        Ok(self.rows.convert_columns(columns)?)
    }

    /// The output columns of `rows` (row-format bytes).
    pub fn decode<'a>(&self, rows: impl IntoIterator<Item = &'a [u8]>) -> Result<Vec<ArrayRef>> {
        let parser = self.rows.parser();
        Ok(self
            .rows
            .convert_rows(rows.into_iter().map(|r| parser.parse(r)))?)
    }

    /// Stores a row of `key` at `time`.
    #[allow(clippy::too_many_arguments)]
    pub fn put(
        &mut self,
        store: &KeyedStateStore,
        write: &mut StateWriteBatch,
        key_group: KeyGroup,
        key: &[u8],
        time: i64,
        matched: bool,
        row: &[u8],
    ) -> Result<()> {
        key_prefix(key, &mut self.sort_key);
        self.sort_key
            .extend_from_slice(&order_preserving(time).to_be_bytes());
        self.sort_key
            .extend_from_slice(&store.next_sequence().to_be_bytes());
        self.value.clear();
        self.value.push(matched as u8);
        self.value.extend_from_slice(row);
        self.state
            .put(store, write, key_group, &self.sort_key, &self.value)?;
        Ok(())
    }

    /// Records that a stored row has matched.
    pub fn mark_matched(
        &mut self,
        store: &KeyedStateStore,
        write: &mut StateWriteBatch,
        key_group: KeyGroup,
        row: &StoredRow,
    ) -> Result<()> {
        self.value.clear();
        self.value.push(1);
        self.value.extend_from_slice(row.row());
        self.state
            .put(store, write, key_group, &row.sort_key, &self.value)?;
        Ok(())
    }

    /// Deletes the stored row at `sort_key`.
    pub fn delete(
        &mut self,
        store: &KeyedStateStore,
        write: &mut StateWriteBatch,
        key_group: KeyGroup,
        sort_key: &[u8],
    ) -> Result<()> {
        self.state.delete(store, write, key_group, sort_key)?;
        Ok(())
    }

    /// The rows of `key` with event times in `from..=to`, earliest first.
    pub fn range(
        &mut self,
        store: &KeyedStateStore,
        key_group: KeyGroup,
        key: &[u8],
        from: i64,
        to: i64,
        found: &mut Vec<StoredRow>,
    ) -> Result<()> {
        if from > to {
            return Ok(());
        }
        key_prefix(key, &mut self.sort_key);
        let start = order_preserving(from).to_be_bytes();
        // The scan ends at `to`: RocksDB need not look past it.
        let until = to.checked_add(1).map(|t| order_preserving(t).to_be_bytes());
        for item in self.state.scan_from(
            store,
            key_group,
            &self.sort_key,
            &start,
            until.as_ref().map(|u| u.as_slice()),
        ) {
            let (sort_key, value) = item?;
            let row = self.read(key.len(), sort_key, value)?;
            if row.time > to {
                break;
            }
            found.push(row);
        }
        Ok(())
    }

    /// Deletes the rows of `key` at event time `time`, and returns them. A
    /// row is expired by the timer of its own time: a scan from the key's
    /// first row would pass the tombstones of every row expired before.
    pub fn expire(
        &mut self,
        store: &KeyedStateStore,
        write: &mut StateWriteBatch,
        key_group: KeyGroup,
        key: &[u8],
        time: i64,
    ) -> Result<Vec<StoredRow>> {
        let mut expired = Vec::new();
        self.range(store, key_group, key, time, time, &mut expired)?;
        for row in &expired {
            self.delete(store, write, key_group, &row.sort_key)?;
        }
        Ok(expired)
    }

    fn read(&self, key_len: usize, sort_key: Box<[u8]>, value: Box<[u8]>) -> Result<StoredRow> {
        let at = 4 + key_len;
        let time = sort_key
            .get(at..at + 8)
            .and_then(|b| b.try_into().ok())
            .map(|b| i64_from_order_preserving(u64::from_be_bytes(b)));
        let (Some(time), Some(&flag)) = (time, value.first()) else {
            return Err(OperatorError::Config(format!(
                "join state `{}`: a stored row is malformed",
                self.name
            )));
        };
        Ok(StoredRow {
            sort_key,
            time,
            matched: flag != 0,
            value,
        })
    }
}

/// `key length | key`: the prefix of every row of one key.
pub(crate) fn key_prefix(key: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&(key.len() as u32).to_be_bytes());
    out.extend_from_slice(key);
}
