//! The partial aggregates of a slice: in memory while the slice is open, and
//! in RocksDB (sorted by slice end, key and spill sequence) once spilled.

use headwater_runtime::state::order_preserving;

use super::aggregate::Accumulators;
use super::keys::GroupKeys;

/// The in-memory partials of one slice.
pub(super) struct SliceTable {
    pub keys: GroupKeys,
    pub accumulators: Accumulators,
}

impl SliceTable {
    pub fn size(&self) -> usize {
        self.keys.size() + self.accumulators.size()
    }
}

/// The sort key of a stored partial: slice end, key, spill sequence.
pub(super) fn partial_key(slice: i64, key: &[u8], sequence: u64, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&order_preserving(slice).to_be_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(&sequence.to_be_bytes());
}

/// The key within a partial's sort key.
pub(super) fn partial_key_part(sort_key: &[u8]) -> &[u8] {
    &sort_key[8..sort_key.len() - 8]
}
