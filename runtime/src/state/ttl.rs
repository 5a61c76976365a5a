//! Which stored values compaction may drop once they expire.
//!
//! Only values of a state declared with a TTL carry an expiry. Raw entries
//! (view rows, window partials, timers) are plain bytes that may look like an
//! envelope with a past expiry, so the compaction filter never reads a
//! value's bytes to decide whether it has one: it looks up the state id in the
//! key (see [`super::layout`]) among the states this store knows to have a
//! TTL. A state joins that set when it is registered with a TTL, or when a
//! value with a TTL is first written for it. Until then, its values are kept:
//! a missed removal costs disk, a wrong one loses state.

use std::collections::HashSet;
use std::sync::RwLock;

use rocksdb::CompactionDecision;

use super::codec::{is_expired, now_ms};

/// The ids of a store's states whose values expire.
#[derive(Debug, Default)]
pub struct TtlStates {
    ids: RwLock<HashSet<u32>>,
}

impl TtlStates {
    /// Marks state `id` as one whose values carry an expiry.
    pub fn insert(&self, id: u32) {
        if self.contains(id) {
            return;
        }
        self.ids
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id);
    }

    pub fn contains(&self, id: u32) -> bool {
        self.ids
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&id)
    }

    /// What compaction does with one stored entry at `now_ms`.
    pub fn decide(&self, key: &[u8], value: &[u8], now_ms: i64) -> CompactionDecision {
        let Some(id) = key.get(2..6) else {
            return CompactionDecision::Keep;
        };
        let id = u32::from_be_bytes([id[0], id[1], id[2], id[3]]);
        if self.contains(id) && is_expired(value, now_ms) {
            CompactionDecision::Remove
        } else {
            CompactionDecision::Keep
        }
    }

    /// [`Self::decide`] at the current time: the compaction filter.
    pub fn filter(&self, key: &[u8], value: &[u8]) -> CompactionDecision {
        self.decide(key, value, now_ms())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::layout::{StateKey, state_id};

    fn stored_key(state: &str) -> Vec<u8> {
        let mut out = Vec::new();
        StateKey::new(7, b"k").encode(state_id(state), &mut out);
        out
    }

    #[test]
    fn only_states_with_a_ttl_expire() {
        // Looks like an envelope (format byte 1) that expired at 1 ms.
        let mut value = vec![1u8, 0, 1];
        value.extend_from_slice(&1i64.to_be_bytes());
        value.push(0);
        let ttl = TtlStates::default();
        ttl.insert(state_id("seen"));
        let remove = |d: CompactionDecision| matches!(d, CompactionDecision::Remove);
        assert!(remove(ttl.decide(&stored_key("seen"), &value, 1_000)));
        assert!(!remove(ttl.decide(&stored_key("view:v"), &value, 1_000)));
        assert!(!remove(ttl.decide(&[0, 1], &value, 1_000)));
    }
}
