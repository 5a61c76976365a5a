//! Watermarks: how event time moves forward.
//!
//! A watermark `t` on a channel promises that no later row on it has an event
//! time `<= t`. An operator's watermark is the minimum over its inputs that are
//! neither idle nor finished. An input that has not sent a watermark yet holds
//! the minimum back. An idle input does not, until it sends data again.
//!
//! ```
//! use headwater_runtime::time::{EventTime, Watermark};
//! use headwater_runtime::watermarks::InputWatermarks;
//!
//! let mut w = InputWatermarks::new(2);
//! assert_eq!(w.on_watermark(0, Watermark::EventTime(EventTime(10))), None); // input 1 is silent
//! assert_eq!(w.on_watermark(1, Watermark::EventTime(EventTime(7))),
//!            Some(Watermark::EventTime(EventTime(7))));
//! // Input 1 goes idle: input 0 alone decides now.
//! assert_eq!(w.on_watermark(1, Watermark::Idle), Some(Watermark::EventTime(EventTime(10))));
//! ```

use std::time::Duration;

use crate::time::{EventTime, Watermark};

#[derive(Debug, Clone, Copy, Default)]
struct InputState {
    watermark: Option<EventTime>,
    idle: bool,
    finished: bool,
}

/// Combines the watermarks of several inputs into one, never going backwards.
#[derive(Debug)]
pub struct InputWatermarks {
    inputs: Vec<InputState>,
    emitted: Option<EventTime>,
    idle_emitted: bool,
}

impl InputWatermarks {
    pub fn new(inputs: usize) -> Self {
        InputWatermarks {
            inputs: vec![InputState::default(); inputs],
            emitted: None,
            idle_emitted: false,
        }
    }

    /// The combined watermark sent downstream so far.
    pub fn current(&self) -> Option<EventTime> {
        self.emitted
    }

    /// Resumes at a watermark restored from a checkpoint: nothing at or
    /// before it is sent again.
    pub fn resume_at(&mut self, watermark: EventTime) {
        self.emitted = Some(watermark);
    }

    /// Input `i` sent a watermark or went idle. Returns what to send downstream, if anything.
    pub fn on_watermark(&mut self, i: usize, watermark: Watermark) -> Option<Watermark> {
        let input = &mut self.inputs[i];
        match watermark {
            Watermark::EventTime(t) => {
                input.idle = false;
                input.watermark = Some(input.watermark.map_or(t, |w| w.max(t)));
            }
            Watermark::Idle => input.idle = true,
        }
        self.advance()
    }

    /// Input `i` sent data: an idle input is active again.
    pub fn on_data(&mut self, i: usize) {
        let input = &mut self.inputs[i];
        if input.idle {
            input.idle = false;
            self.idle_emitted = false;
        }
    }

    /// Input `i` has ended. Returns what to send downstream, if anything.
    pub fn on_end_of_input(&mut self, i: usize) -> Option<Watermark> {
        self.inputs[i].finished = true;
        self.advance()
    }

    fn advance(&mut self) -> Option<Watermark> {
        let mut active = self
            .inputs
            .iter()
            .filter(|s| !s.finished && !s.idle)
            .peekable();
        if active.peek().is_none() {
            // Nobody active. If some input is merely idle, say so once; if all have
            // finished, end of stream says the rest.
            let any_idle = self.inputs.iter().any(|s| s.idle && !s.finished);
            if any_idle && !self.idle_emitted {
                self.idle_emitted = true;
                return Some(Watermark::Idle);
            }
            return None;
        }
        let mut min: Option<EventTime> = None;
        for state in active {
            let w = state.watermark?; // a silent active input holds everything back
            min = Some(min.map_or(w, |m| m.min(w)));
        }
        let min = min?;
        if self.emitted.is_none_or(|e| min > e) {
            self.emitted = Some(min);
            self.idle_emitted = false;
            Some(Watermark::EventTime(min))
        } else if self.idle_emitted {
            // Active again, but the watermark has not moved: tell downstream we are back.
            self.idle_emitted = false;
            self.emitted.map(Watermark::EventTime)
        } else {
            None
        }
    }
}

/// Watermarks for a source with bounded out-of-orderness: a row may arrive at
/// most `max_out_of_orderness` after a row with a later event time.
#[derive(Debug, Clone)]
pub struct BoundedOutOfOrderness {
    max_out_of_orderness_ms: i64,
    max_seen: Option<EventTime>,
    /// The watermark restored from a checkpoint: it never goes below it.
    floor: Option<EventTime>,
}

impl BoundedOutOfOrderness {
    pub fn new(max_out_of_orderness: Duration) -> Self {
        BoundedOutOfOrderness {
            max_out_of_orderness_ms: max_out_of_orderness.as_millis().min(i64::MAX as u128) as i64,
            max_seen: None,
            floor: None,
        }
    }

    /// Resumes at a watermark restored from a checkpoint.
    pub fn resume_at(&mut self, watermark: EventTime) {
        self.floor = Some(watermark);
    }

    /// Notes the largest event time of a batch.
    pub fn observe(&mut self, max_event_time: EventTime) {
        self.max_seen = Some(
            self.max_seen
                .map_or(max_event_time, |m| m.max(max_event_time)),
        );
    }

    /// The watermark: the largest event time seen, less the bound, less 1 ms
    /// (a row exactly at the bound is still on time).
    pub fn current(&self) -> Option<EventTime> {
        let seen = self.max_seen.map(|m| {
            EventTime(
                m.0.saturating_sub(self.max_out_of_orderness_ms)
                    .saturating_sub(1),
            )
        });
        seen.max(self.floor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wm(t: i64) -> Watermark {
        Watermark::EventTime(EventTime(t))
    }

    #[test]
    fn minimum_over_inputs_and_never_backwards() {
        let mut w = InputWatermarks::new(3);
        assert_eq!(w.on_watermark(0, wm(5)), None);
        assert_eq!(w.on_watermark(1, wm(9)), None);
        assert_eq!(w.on_watermark(2, wm(7)), Some(wm(5)));
        assert_eq!(w.on_watermark(0, wm(8)), Some(wm(7)));
        // An input's own watermark never goes backwards either.
        assert_eq!(w.on_watermark(2, wm(3)), None);
        assert_eq!(w.current(), Some(EventTime(7)));
        assert_eq!(w.on_watermark(2, wm(20)), Some(wm(8)));
    }

    #[test]
    fn idle_input_stops_holding_back_and_rejoins() {
        let mut w = InputWatermarks::new(2);
        assert_eq!(w.on_watermark(0, wm(100)), None);
        assert_eq!(w.on_watermark(1, Watermark::Idle), Some(wm(100)));
        assert_eq!(w.on_watermark(0, wm(150)), Some(wm(150)));
        // Input 1 comes back behind: it holds back again, and nothing goes backwards.
        assert_eq!(w.on_watermark(1, wm(120)), None);
        assert_eq!(w.on_watermark(0, wm(200)), None);
        assert_eq!(w.on_watermark(1, wm(180)), Some(wm(180)));
    }

    #[test]
    fn all_idle_is_idle_once() {
        let mut w = InputWatermarks::new(2);
        w.on_watermark(0, wm(1));
        w.on_watermark(1, wm(2));
        assert_eq!(w.on_watermark(0, Watermark::Idle), Some(wm(2)));
        assert_eq!(w.on_watermark(1, Watermark::Idle), Some(Watermark::Idle));
        assert_eq!(w.on_watermark(1, Watermark::Idle), None);
        w.on_data(1);
        assert_eq!(w.on_watermark(1, wm(3)), Some(wm(3)));
    }

    #[test]
    fn finished_inputs_are_ignored() {
        let mut w = InputWatermarks::new(2);
        w.on_watermark(0, wm(10));
        assert_eq!(w.on_end_of_input(1), Some(wm(10)));
        assert_eq!(w.on_end_of_input(0), None);
    }

    #[test]
    fn bounded_out_of_orderness() {
        let mut g = BoundedOutOfOrderness::new(Duration::from_millis(500));
        assert_eq!(g.current(), None);
        g.observe(EventTime(10_000));
        g.observe(EventTime(9_000));
        assert_eq!(g.current(), Some(EventTime(9_499)));
    }

    #[test]
    fn a_restored_watermark_is_a_floor() {
        let mut g = BoundedOutOfOrderness::new(Duration::from_millis(500));
        g.resume_at(EventTime(20_000));
        assert_eq!(g.current(), Some(EventTime(20_000)));
        g.observe(EventTime(10_000));
        assert_eq!(g.current(), Some(EventTime(20_000)));
        g.observe(EventTime(30_000));
        assert_eq!(g.current(), Some(EventTime(29_499)));
        let mut w = InputWatermarks::new(1);
        w.resume_at(EventTime(100));
        assert_eq!(w.on_watermark(0, wm(100)), None);
        assert_eq!(w.on_watermark(0, wm(101)), Some(wm(101)));
    }
}
