//! The byte layout of a stored key:
//!
//! ```text
//! key group (u16 BE) | state id (u32 BE) | key length (u32 BE) | key | namespace length (u32 BE) | namespace | [user key]
//! ```
//!
//! Big-endian integers sort as numbers, so all state of key group `g` sorts
//! before that of `g + 1`, and within a state, all namespaces of one key are
//! adjacent (a window operator reads every window of a key with one prefix scan).
//! The state id is a fixed hash of the state's name, the same in every subtask
//! and after every restore.

use xxhash_rust::xxh3::xxh3_64;

use crate::key_groups::KeyGroup;

/// The stable id of a state, from its name.
pub fn state_id(name: &str) -> u32 {
    (xxh3_64(name.as_bytes()) >> 32) as u32
}

/// Where one value lives: a key group, a key and a namespace, as bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateKey<'a> {
    pub key_group: KeyGroup,
    pub key: &'a [u8],
    /// The scope of the value within the key, such as a window; empty if none.
    pub namespace: &'a [u8],
}

impl<'a> StateKey<'a> {
    pub fn new(key_group: KeyGroup, key: &'a [u8]) -> Self {
        StateKey {
            key_group,
            key,
            namespace: &[],
        }
    }

    pub fn with_namespace(mut self, namespace: &'a [u8]) -> Self {
        self.namespace = namespace;
        self
    }

    /// Appends the stored form of this key for state `state` to `out`.
    pub fn encode(&self, state: u32, out: &mut Vec<u8>) {
        out.reserve(14 + self.key.len() + self.namespace.len());
        out.extend_from_slice(&(self.key_group as u16).to_be_bytes());
        out.extend_from_slice(&state.to_be_bytes());
        out.extend_from_slice(&(self.key.len() as u32).to_be_bytes());
        out.extend_from_slice(self.key);
        out.extend_from_slice(&(self.namespace.len() as u32).to_be_bytes());
        out.extend_from_slice(self.namespace);
    }
}

/// The first stored key of key group `key_group` (inclusive bound of its range).
pub fn key_group_start(key_group: KeyGroup) -> [u8; 2] {
    (key_group as u16).to_be_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(kg: u32, key: &[u8], ns: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        StateKey::new(kg, key)
            .with_namespace(ns)
            .encode(state_id("s"), &mut out);
        out
    }

    #[test]
    fn key_groups_sort_first_and_keys_are_not_ambiguous() {
        assert!(encoded(1, b"zzzz", b"") < encoded(2, b"a", b""));
        assert!(encoded(255, b"a", b"") < encoded(256, b"a", b""));
        // ("ab", "c") and ("a", "bc") must differ.
        assert_ne!(encoded(0, b"ab", b"c"), encoded(0, b"a", b"bc"));
        // The namespaces of one key share its prefix.
        let a = encoded(3, b"k", b"w1");
        let b = encoded(3, b"k", b"w2");
        assert_eq!(a[..a.len() - 2], b[..b.len() - 2]);
    }

    #[test]
    fn state_ids_are_stable() {
        assert_eq!(state_id("count"), state_id("count"));
        assert_ne!(state_id("count"), state_id("sum"));
        assert_eq!(
            state_id("count"),
            2_164_929_397,
            "state ids are part of the checkpoint format"
        );
    }
}
