//! How far a window operator has fired, by key-group range: what its
//! checkpoints keep, and what a subtask takes over after a change of
//! parallelism, when its key groups come from old subtasks that had fired
//! more or less far.

use std::collections::BTreeMap;

use headwater_runtime::key_groups::KeyGroupRange;

/// A range of key groups and how far its windows had fired, as stored.
pub(crate) type StoredRange = (u32, u32, i64);

#[derive(Debug)]
pub(crate) struct Fired {
    /// Every window ending at or before this has fired (it follows the
    /// watermark, not only the windows that had rows).
    pub until: i64,
    /// After a change of parallelism: key groups whose old subtask had fired
    /// less far than `until`, with how far. Their windows up to `until` fire
    /// before anything else happens.
    pub behind: Vec<(KeyGroupRange, i64)>,
}

impl Fired {
    pub fn new() -> Self {
        Fired {
            until: i64::MIN,
            behind: Vec::new(),
        }
    }

    /// What a checkpoint keeps of a subtask that owns `own`: the ranges still
    /// behind, then its own range, which holds the rest.
    pub fn to_stored(&self, own: KeyGroupRange) -> Vec<StoredRange> {
        self.behind
            .iter()
            .map(|(r, f)| (r.start, r.end, *f))
            .chain([(own.start, own.end, self.until)])
            .collect()
    }

    /// Takes, for the key groups of `own`, how far the old subtasks had fired
    /// (their stored ranges, in old subtask order): the furthest, and the key
    /// groups behind it.
    pub fn restore(stored: impl IntoIterator<Item = StoredRange>, own: KeyGroupRange) -> Self {
        // Within one old subtask, ranges behind come before its own range:
        // per key group, the first entry that holds it wins.
        let mut by_group: BTreeMap<u32, i64> = BTreeMap::new();
        for (start, end, until) in stored {
            for g in start.max(own.start)..end.min(own.end) {
                by_group.entry(g).or_insert(until);
            }
        }
        let until = by_group.values().copied().max().unwrap_or(i64::MIN);
        Fired {
            until,
            behind: ranges_behind(&by_group, until),
        }
    }
}

/// Runs of key groups fired less far than `until`, with how far.
fn ranges_behind(by_group: &BTreeMap<u32, i64>, until: i64) -> Vec<(KeyGroupRange, i64)> {
    let mut runs: Vec<(KeyGroupRange, i64)> = Vec::new();
    for (&g, &fired) in by_group {
        if fired >= until {
            continue;
        }
        match runs.last_mut() {
            Some((r, f)) if r.end == g && *f == fired => r.end = g + 1,
            _ => runs.push((
                KeyGroupRange {
                    start: g,
                    end: g + 1,
                },
                fired,
            )),
        }
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_groups_behind_the_furthest_firing_are_listed_as_runs() {
        // Key groups 0..4 fired until 100, 4..6 until 80, 6..8 until 100, 8 until 60.
        let mut by_group = BTreeMap::new();
        for g in 0..9u32 {
            let until = match g {
                4 | 5 => 80,
                8 => 60,
                _ => 100,
            };
            by_group.insert(g, until);
        }
        assert_eq!(
            ranges_behind(&by_group, 100),
            vec![
                (KeyGroupRange { start: 4, end: 6 }, 80),
                (KeyGroupRange { start: 8, end: 9 }, 60)
            ]
        );
        assert!(ranges_behind(&by_group, 60).is_empty());
    }

    #[test]
    fn a_subtask_takes_the_furthest_firing_of_its_key_groups_and_keeps_the_rest_behind() {
        // Old subtask 0 owned 0..4 and had fired until 100, but 2..3 only
        // until 70 (behind from an earlier rescale); old subtask 1 owned 4..8
        // and had fired until 90. The new subtask owns 2..6.
        let stored = [(2, 3, 70), (0, 4, 100), (4, 8, 90)];
        let fired = Fired::restore(stored, KeyGroupRange { start: 2, end: 6 });
        assert_eq!(fired.until, 100);
        assert_eq!(
            fired.behind,
            vec![
                (KeyGroupRange { start: 2, end: 3 }, 70),
                (KeyGroupRange { start: 4, end: 6 }, 90)
            ]
        );
        let own = KeyGroupRange { start: 2, end: 6 };
        assert_eq!(
            Fired::restore(fired.to_stored(own), own).behind,
            fired.behind,
            "what a checkpoint keeps restores the same"
        );
    }
}
