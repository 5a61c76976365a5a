//! Window kinds, and how event time maps to windows and slices.
//!
//! Tumbling, hopping and cumulating windows are cut into *slices*: the
//! largest intervals no window boundary crosses. Every row belongs to exactly
//! one slice, so it is aggregated once however many windows share it, and a
//! window's result merges the partial aggregates of its slices (as Flink's
//! window slicing does). Session windows depend on the data and are handled
//! per key instead.

use std::time::Duration;

use crate::error::OperatorError;

/// An event-time window kind. Times are milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowKind {
    /// Fixed, non-overlapping windows of `size`.
    Tumbling { size: i64 },
    /// Windows of `size` starting every `slide` (size a multiple of slide);
    /// a row is in `size / slide` of them.
    Hopping { size: i64, slide: i64 },
    /// Windows that start every `max_size` and grow by `step` until `max_size`,
    /// emitting at every step.
    Cumulating { step: i64, max_size: i64 },
    /// A window per key that closes after `gap` without rows; rows within
    /// `gap` of each other (inclusive) share a session.
    Session { gap: i64 },
}

/// Tumbling windows.
pub struct Tumbling;
impl Tumbling {
    pub fn of(size: Duration) -> WindowKind {
        WindowKind::Tumbling { size: ms(size) }
    }
}

/// Hopping (sliding) windows.
pub struct Hopping;
impl Hopping {
    pub fn of(size: Duration, slide: Duration) -> WindowKind {
        WindowKind::Hopping {
            size: ms(size),
            slide: ms(slide),
        }
    }
}

/// Cumulating windows.
pub struct Cumulating;
impl Cumulating {
    pub fn of(step: Duration, max_size: Duration) -> WindowKind {
        WindowKind::Cumulating {
            step: ms(step),
            max_size: ms(max_size),
        }
    }
}

/// Session windows.
pub struct Session;
impl Session {
    pub fn with_gap(gap: Duration) -> WindowKind {
        WindowKind::Session { gap: ms(gap) }
    }
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl WindowKind {
    /// Checks the sizes: positive, and a cumulating window a whole number of steps.
    pub fn validate(&self) -> Result<(), OperatorError> {
        let bad = |m: String| Err(OperatorError::Config(m));
        match *self {
            WindowKind::Tumbling { size } if size <= 0 => bad(format!(
                "tumbling window size must be positive, got {size} ms"
            )),
            WindowKind::Hopping { size, slide } if size <= 0 || slide <= 0 => bad(format!(
                "hopping window size and slide must be positive, got {size} ms and {slide} ms"
            )),
            WindowKind::Hopping { size, slide } if size % slide != 0 => bad(format!(
                "a hopping window's size ({size} ms) must be a whole number of slides ({slide} ms)"
            )),
            WindowKind::Cumulating { step, max_size } if step <= 0 || max_size <= 0 => {
                bad(format!(
                    "cumulating window step and size must be positive, got {step} ms and {max_size} ms"
                ))
            }
            WindowKind::Cumulating { step, max_size } if max_size % step != 0 => bad(format!(
                "a cumulating window's size ({max_size} ms) must be a whole number of steps ({step} ms)"
            )),
            WindowKind::Session { gap } if gap <= 0 => {
                bad(format!("session gap must be positive, got {gap} ms"))
            }
            _ => Ok(()),
        }
    }

    /// The slice length; `None` for sessions.
    pub fn slice_size(&self) -> Option<i64> {
        match *self {
            WindowKind::Tumbling { size } => Some(size),
            WindowKind::Hopping { slide, .. } => Some(slide),
            WindowKind::Cumulating { step, .. } => Some(step),
            WindowKind::Session { .. } => None,
        }
    }
}

/// The slice and window arithmetic of a tumbling, hopping or cumulating window.
#[derive(Debug, Clone, Copy)]
pub struct Slicer {
    kind: WindowKind,
    slice: i64,
}

impl Slicer {
    /// `None` for session windows, which are not sliced.
    pub fn new(kind: WindowKind) -> Option<Slicer> {
        Some(Slicer {
            kind,
            slice: kind.slice_size()?,
        })
    }

    /// The length of every slice.
    pub fn slice_size(&self) -> i64 {
        self.slice
    }

    /// The (exclusive) end of the slice that holds event time `ts`.
    pub fn slice_end(&self, ts: i64) -> i64 {
        floor_to(ts, self.slice).saturating_add(self.slice)
    }

    /// The ends of every window that holds the slice ending at `slice_end`, in order.
    pub fn windows_of_slice(&self, slice_end: i64) -> Vec<i64> {
        let slice_start = slice_end - self.slice;
        match self.kind {
            WindowKind::Tumbling { .. } => vec![slice_end],
            WindowKind::Hopping { size, slide } => {
                // Window starts are multiples of `slide` in [slice_end - size, slice_start].
                let mut start = ceil_to(slice_end.saturating_sub(size), slide);
                let mut ends = Vec::new();
                while start <= slice_start {
                    ends.push(start.saturating_add(size));
                    start = start.saturating_add(slide);
                }
                ends
            }
            WindowKind::Cumulating { step, max_size } => {
                let period_end = floor_to(slice_start, max_size).saturating_add(max_size);
                let mut ends = Vec::new();
                let mut end = slice_end;
                while end <= period_end {
                    ends.push(end);
                    end = end.saturating_add(step);
                }
                ends
            }
            WindowKind::Session { .. } => unreachable!("a Slicer is never made for sessions"),
        }
    }

    /// The end of the last window that holds the slice: after it fires, the
    /// slice's partials are needed only for late updates.
    pub fn last_window_of_slice(&self, slice_end: i64) -> i64 {
        *self
            .windows_of_slice(slice_end)
            .last()
            .expect("every slice is in at least one window")
    }

    /// The start of the window ending at `window_end`.
    pub fn window_start(&self, window_end: i64) -> i64 {
        match self.kind {
            WindowKind::Tumbling { size } | WindowKind::Hopping { size, .. } => {
                window_end.saturating_sub(size)
            }
            WindowKind::Cumulating { max_size, .. } => floor_to(window_end - 1, max_size),
            WindowKind::Session { .. } => unreachable!("a Slicer is never made for sessions"),
        }
    }

    /// The ends of the slices of the window ending at `window_end`, in order.
    pub fn slices_of_window(&self, window_end: i64) -> impl Iterator<Item = i64> + use<> {
        let start = self.window_start(window_end);
        let slice = self.slice;
        (1..)
            .map(move |k: i64| start.saturating_add(k.saturating_mul(slice)))
            .take_while(move |&end| end <= window_end)
    }
}

fn floor_to(v: i64, unit: i64) -> i64 {
    v.div_euclid(unit).saturating_mul(unit)
}

fn ceil_to(v: i64, unit: i64) -> i64 {
    let f = floor_to(v, unit);
    if f == v { f } else { f.saturating_add(unit) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Window membership straight from the definitions, for comparison.
    fn windows_containing(kind: WindowKind, ts: i64) -> Vec<(i64, i64)> {
        let mut out = Vec::new();
        for start in -100..100 {
            let candidates: Vec<(i64, i64)> = match kind {
                WindowKind::Tumbling { size } if start % size == 0 => vec![(start, start + size)],
                WindowKind::Hopping { size, slide } if start % slide == 0 => {
                    vec![(start, start + size)]
                }
                WindowKind::Cumulating { step, max_size } if start % max_size == 0 => (1
                    ..=max_size / step)
                    .map(|j| (start, start + j * step))
                    .collect(),
                _ => vec![],
            };
            out.extend(candidates.into_iter().filter(|&(s, e)| s <= ts && ts < e));
        }
        out.sort_by_key(|w| w.1);
        out
    }

    #[test]
    fn slices_place_every_row_in_exactly_its_windows() {
        let kinds = [
            WindowKind::Tumbling { size: 5 },
            WindowKind::Hopping { size: 10, slide: 5 },
            WindowKind::Hopping { size: 9, slide: 3 },
            WindowKind::Hopping { size: 4, slide: 4 },
            WindowKind::Cumulating {
                step: 2,
                max_size: 8,
            },
        ];
        for kind in kinds {
            let s = Slicer::new(kind).unwrap();
            for ts in -40..40 {
                let slice = s.slice_end(ts);
                assert!(slice - s.slice <= ts && ts < slice, "{kind:?} ts {ts}");
                let got: Vec<(i64, i64)> = s
                    .windows_of_slice(slice)
                    .into_iter()
                    .map(|e| (s.window_start(e), e))
                    .collect();
                assert_eq!(got, windows_containing(kind, ts), "{kind:?} ts {ts}");
                for &(_, end) in &got {
                    assert!(s.slices_of_window(end).any(|e| e == slice));
                }
            }
        }
    }
}
