//! Key groups: the unit of keyed state and of its redistribution.
//!
//! A key hashes to one of `max_parallelism` key groups. The key groups are split
//! into contiguous ranges, one per subtask, as in Flink. State is stored by key
//! group, so a job can restart with another parallelism: each new subtask takes
//! over the key groups of its new range.
//!
//! ```
//! use headwater_runtime::key_groups::KeyGroupRange;
//! let ranges: Vec<_> = (0..3).map(|i| KeyGroupRange::for_subtask(128, 3, i)).collect();
//! assert_eq!(ranges[0].start, 0);
//! assert_eq!(ranges[2].end, 128);
//! assert!(ranges.windows(2).all(|w| w[0].end == w[1].start));
//! ```

use std::ops::Range;

/// The default number of key groups: the largest parallelism a job can rescale to.
pub const DEFAULT_MAX_PARALLELISM: u32 = 128;

/// The largest max parallelism, as in Flink: key groups are stored as 16-bit
/// numbers in state keys (see the state layout).
pub const MAX_MAX_PARALLELISM: u32 = 1 << 15;

/// A key group: `hash % max_parallelism`.
pub type KeyGroup = u32;

/// A contiguous range of key groups `[start, end)`, owned by one subtask.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyGroupRange {
    pub start: KeyGroup,
    pub end: KeyGroup,
}

impl KeyGroupRange {
    /// The range of subtask `index` of `parallelism`.
    pub fn for_subtask(max_parallelism: u32, parallelism: u32, index: u32) -> KeyGroupRange {
        assert!(parallelism > 0 && parallelism <= max_parallelism && index < parallelism);
        let (m, p, i) = (max_parallelism as u64, parallelism as u64, index as u64);
        KeyGroupRange {
            start: ((i * m).div_ceil(p)) as u32,
            end: (((i + 1) * m).div_ceil(p)) as u32,
        }
    }

    pub fn contains(&self, key_group: KeyGroup) -> bool {
        (self.start..self.end).contains(&key_group)
    }

    pub fn len(&self) -> u32 {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    pub fn as_range(&self) -> Range<KeyGroup> {
        self.start..self.end
    }
}

/// The key group of a key hash.
#[inline]
pub fn key_group_of(hash: u64, max_parallelism: u32) -> KeyGroup {
    (hash % max_parallelism as u64) as KeyGroup
}

/// The subtask that owns a key group: the inverse of [`KeyGroupRange::for_subtask`].
#[inline]
pub fn subtask_of(key_group: KeyGroup, max_parallelism: u32, parallelism: u32) -> u32 {
    ((key_group as u64 * parallelism as u64) / max_parallelism as u64) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_cover_all_groups_and_agree_with_subtask_of() {
        for max in [1u32, 7, 128, 1000] {
            for p in 1..=max.min(17) {
                let mut next = 0;
                for i in 0..p {
                    let r = KeyGroupRange::for_subtask(max, p, i);
                    assert_eq!(r.start, next, "max {max} p {p} i {i}");
                    assert!(!r.is_empty());
                    for kg in r.as_range() {
                        assert_eq!(subtask_of(kg, max, p), i, "max {max} p {p} kg {kg}");
                    }
                    next = r.end;
                }
                assert_eq!(next, max);
            }
        }
    }
}
