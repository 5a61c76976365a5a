//! Pacing a generator to a number of rows per second.

use std::time::Duration;

use tokio::time::Instant;

/// Paces rows to a fixed rate. The wait comes before the rows are made, so a
/// source that is stopped while it waits loses nothing.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    rows_per_second: f64,
    started: Option<Instant>,
    rows: u64,
}

impl RateLimiter {
    pub fn new(rows_per_second: f64) -> Self {
        RateLimiter {
            rows_per_second: rows_per_second.max(1e-3),
            started: None,
            rows: 0,
        }
    }

    /// The batch size that gives about ten batches a second.
    pub fn batch_size(&self, max: usize) -> usize {
        ((self.rows_per_second / 10.0).ceil() as usize).clamp(1, max.max(1))
    }

    /// Waits until `rows` more rows may be sent, then counts them.
    pub async fn acquire(&mut self, rows: usize) {
        let started = *self.started.get_or_insert_with(Instant::now);
        let due = started + Duration::from_secs_f64(self.rows as f64 / self.rows_per_second);
        tokio::time::sleep_until(due).await;
        self.rows += rows as u64;
    }
}
