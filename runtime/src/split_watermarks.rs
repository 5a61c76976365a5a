//! Event time of a source subtask that reads several splits (Kafka
//! partitions), each in its own order: a watermark per split, and the
//! subtask's is the least over the splits that are not idle, as Flink's
//! per-split watermarks. A split turns idle when it has sent no row for the
//! idle timeout, and stops holding the others back until it sends again.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;

use crate::time::EventTime;
use crate::watermarks::BoundedOutOfOrderness;

/// The watermarks of one source subtask's splits.
#[derive(Debug)]
pub struct SplitWatermarks {
    bound: Duration,
    idle_timeout: Duration,
    /// The watermark restored from a checkpoint: no split goes below it.
    floor: Option<EventTime>,
    splits: BTreeMap<u64, Split>,
}

#[derive(Debug)]
struct Split {
    generator: BoundedOutOfOrderness,
    /// When it was assigned, or last sent rows.
    active_at: Instant,
}

impl SplitWatermarks {
    pub fn new(bound: Duration, idle_timeout: Duration) -> Self {
        SplitWatermarks {
            bound,
            idle_timeout,
            floor: None,
            splits: BTreeMap::new(),
        }
    }

    /// Resumes at a watermark restored from a checkpoint.
    pub fn resume_at(&mut self, watermark: EventTime) {
        self.floor = Some(watermark);
        for split in self.splits.values_mut() {
            split.generator.resume_at(watermark);
        }
    }

    fn split(&self, now: Instant) -> Split {
        let mut generator = BoundedOutOfOrderness::new(self.bound);
        if let Some(floor) = self.floor {
            generator.resume_at(floor);
        }
        Split {
            generator,
            active_at: now,
        }
    }

    /// The splits the subtask reads now. Others are forgotten (finished, or
    /// given up); a new one holds the watermark back until it sends rows or
    /// turns idle.
    pub fn set_splits(&mut self, splits: &[u64], now: Instant) {
        self.splits.retain(|id, _| splits.contains(id));
        for &id in splits {
            if !self.splits.contains_key(&id) {
                let split = self.split(now);
                self.splits.insert(id, split);
            }
        }
    }

    /// Notes the largest event time of a batch of split `id`.
    pub fn observe(&mut self, id: u64, max_event_time: Option<EventTime>, now: Instant) {
        if !self.splits.contains_key(&id) {
            let split = self.split(now);
            self.splits.insert(id, split);
        }
        let split = self.splits.get_mut(&id).expect("inserted above");
        split.active_at = now;
        if let Some(max) = max_event_time {
            split.generator.observe(max);
        }
    }

    fn is_idle(&self, split: &Split, now: Instant) -> bool {
        now.duration_since(split.active_at) >= self.idle_timeout
    }

    /// The watermark at `now`: the least over the splits that are not idle.
    /// `None` while one of those has sent no row yet, or when all are idle
    /// (the subtask as a whole is idle then).
    pub fn current(&self, now: Instant) -> Option<EventTime> {
        let mut least: Option<EventTime> = None;
        for split in self.splits.values() {
            if self.is_idle(split, now) {
                continue;
            }
            let w = split.generator.current()?;
            least = Some(least.map_or(w, |l| l.min(w)));
        }
        least
    }

    /// When the next split that is active now turns idle: the watermark may
    /// move then.
    pub fn next_idle_at(&self, now: Instant) -> Option<Instant> {
        self.splits
            .values()
            .filter(|s| !self.is_idle(s, now))
            .map(|s| s.active_at + self.idle_timeout)
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUND: Duration = Duration::from_millis(100);
    const IDLE: Duration = Duration::from_secs(5);

    #[test]
    fn the_slowest_active_split_holds_the_watermark() {
        let start = Instant::now();
        let mut w = SplitWatermarks::new(BOUND, IDLE);
        w.set_splits(&[0, 1], start);
        w.observe(0, Some(EventTime(10_000)), start);
        // Split 1 has sent nothing yet: it holds the watermark back.
        assert_eq!(w.current(start), None);
        w.observe(1, Some(EventTime(4_000)), start);
        assert_eq!(w.current(start), Some(EventTime(3_899)));
        w.observe(1, Some(EventTime(20_000)), start);
        assert_eq!(w.current(start), Some(EventTime(9_899)));
    }

    #[test]
    fn an_idle_split_does_not_hold_the_others() {
        let start = Instant::now();
        let mut w = SplitWatermarks::new(BOUND, IDLE);
        w.set_splits(&[0, 1], start);
        w.observe(0, Some(EventTime(1_000)), start);
        assert_eq!(w.next_idle_at(start), Some(start + IDLE));
        let later = start + IDLE + Duration::from_millis(1);
        // Split 1 never sent a row; split 0 sends on.
        w.observe(0, Some(EventTime(50_000)), later);
        assert_eq!(w.current(later), Some(EventTime(49_899)));
        // Split 1 wakes up behind: it holds the watermark again.
        w.observe(1, Some(EventTime(30_000)), later);
        assert_eq!(w.current(later), Some(EventTime(29_899)));
        // Everything idle: no watermark of its own.
        let much_later = later + IDLE;
        assert_eq!(w.current(much_later), None);
    }

    #[test]
    fn a_restored_watermark_is_every_splits_floor() {
        let start = Instant::now();
        let mut w = SplitWatermarks::new(BOUND, IDLE);
        w.resume_at(EventTime(70_000));
        w.set_splits(&[3], start);
        assert_eq!(w.current(start), Some(EventTime(70_000)));
        w.observe(3, Some(EventTime(10)), start);
        assert_eq!(w.current(start), Some(EventTime(70_000)));
        // A finished split is let go.
        w.set_splits(&[], start);
        assert_eq!(w.current(start), None);
    }
}
