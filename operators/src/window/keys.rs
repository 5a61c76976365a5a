//! Grouping keys: the key columns of a batch as byte rows, their key groups,
//! and a table that numbers the distinct keys it has seen.

use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, RecordBatch};
use arrow::datatypes::{DataType, FieldRef};
use arrow::row::{RowConverter, Rows, SortField};
use hashbrown::HashTable;
use headwater_runtime::key_groups::{KeyGroup, key_group_of};
use headwater_runtime::key_hash::hash_columns;

use crate::error::Result;

/// Turns key columns into byte rows (Arrow's row format) and back.
/// The indices and fields of the key columns `names` of `input`.
pub fn key_columns_of(
    names: &[String],
    input: &arrow::datatypes::SchemaRef,
) -> Result<(Vec<usize>, Vec<FieldRef>)> {
    names
        .iter()
        .map(|name| {
            let index = input.index_of(name).map_err(|_| {
                crate::error::OperatorError::Config(format!(
                    "key `{name}` is not a column of the stream"
                ))
            })?;
            Ok((index, input.fields()[index].clone()))
        })
        .collect::<Result<Vec<_>>>()
        .map(|pairs| pairs.into_iter().unzip())
}

pub struct KeyCodec {
    columns: Vec<usize>,
    converter: RowConverter,
    max_parallelism: u32,
}

/// The keys of one batch: a byte row, a hash and a key group per row.
pub struct BatchKeys {
    pub rows: Rows,
    pub hashes: Vec<u64>,
    pub key_groups: Vec<KeyGroup>,
}

impl KeyCodec {
    /// `columns` are the indices of the key columns in the input, `fields` their fields.
    /// With no key columns every row has one and the same key.
    pub fn new(columns: Vec<usize>, fields: Vec<FieldRef>, max_parallelism: u32) -> Result<Self> {
        let mut sort_fields: Vec<SortField> = fields
            .iter()
            .map(|f| SortField::new(f.data_type().clone()))
            .collect();
        if sort_fields.is_empty() {
            // Arrow's row format needs a column: a constant stands in.
            sort_fields.push(SortField::new(DataType::Boolean));
        }
        let converter = RowConverter::new(sort_fields)?;
        Ok(KeyCodec {
            columns,
            converter,
            max_parallelism,
        })
    }

    /// The keys of every row of `batch`. The hash is the one the exchange
    /// used, so each key group is one this subtask owns.
    pub fn keys(&self, batch: &RecordBatch) -> Result<BatchKeys> {
        let mut columns: Vec<ArrayRef> = self
            .columns
            .iter()
            .map(|&i| batch.column(i).clone())
            .collect();
        if columns.is_empty() {
            columns.push(Arc::new(BooleanArray::from(vec![true; batch.num_rows()])));
        }
        let rows = self.converter.convert_columns(&columns)?;
        let mut hashes = Vec::new();
        hash_columns(&columns, batch.num_rows(), &mut hashes)?;
        let key_groups = hashes
            .iter()
            .map(|&h| key_group_of(h, self.max_parallelism))
            .collect();
        Ok(BatchKeys {
            rows,
            hashes,
            key_groups,
        })
    }

    /// The key columns of encoded keys.
    pub fn decode<'a>(&self, keys: impl IntoIterator<Item = &'a [u8]>) -> Result<Vec<ArrayRef>> {
        let parser = self.converter.parser();
        let rows: Vec<_> = keys.into_iter().map(|k| parser.parse(k)).collect();
        let mut columns = self.converter.convert_rows(rows)?;
        if self.columns.is_empty() {
            columns.clear(); // the stand-in is not a column of the results
        }
        Ok(columns)
    }
}

/// Numbers distinct keys 0, 1, 2, ... in the order first seen, keeping each
/// key's bytes and key group.
#[derive(Default)]
pub struct GroupKeys {
    table: HashTable<(u64, u32)>,
    bytes: Vec<u8>,
    offsets: Vec<usize>,
    key_groups: Vec<KeyGroup>,
}

impl GroupKeys {
    pub fn new() -> Self {
        GroupKeys {
            offsets: vec![0],
            ..Default::default()
        }
    }

    pub fn len(&self) -> usize {
        self.key_groups.len()
    }

    pub fn is_empty(&self) -> bool {
        self.key_groups.is_empty()
    }

    /// The group of a key, added if new.
    pub fn intern(&mut self, key: &[u8], hash: u64, key_group: KeyGroup) -> usize {
        let GroupKeys {
            table,
            bytes,
            offsets,
            key_groups,
        } = self;
        let found = table.find(hash, |&(h, g)| {
            h == hash && &bytes[offsets[g as usize]..offsets[g as usize + 1]] == key
        });
        if let Some(&(_, group)) = found {
            return group as usize;
        }
        let group = key_groups.len();
        bytes.extend_from_slice(key);
        offsets.push(bytes.len());
        key_groups.push(key_group);
        table.insert_unique(hash, (hash, group as u32), |&(h, _)| h);
        group
    }

    /// The groups of rows `indices` of a batch's keys, appended to `out`.
    pub fn intern_rows(
        &mut self,
        keys: &BatchKeys,
        indices: impl Iterator<Item = usize>,
        out: &mut Vec<usize>,
    ) {
        for i in indices {
            out.push(self.intern(
                keys.rows.row(i).as_ref(),
                keys.hashes[i],
                keys.key_groups[i],
            ));
        }
    }

    pub fn key(&self, group: usize) -> &[u8] {
        &self.bytes[self.offsets[group]..self.offsets[group + 1]]
    }

    pub fn key_group(&self, group: usize) -> KeyGroup {
        self.key_groups[group]
    }

    /// Every key, in group order.
    pub fn keys(&self) -> impl Iterator<Item = &[u8]> {
        (0..self.len()).map(|g| self.key(g))
    }

    /// Bytes of memory held.
    pub fn size(&self) -> usize {
        self.table.capacity() * 16
            + self.bytes.capacity()
            + self.offsets.capacity() * 8
            + self.key_groups.capacity() * 4
    }
}
