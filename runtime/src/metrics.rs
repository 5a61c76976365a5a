//! Job metrics: counters per operator, shared by its subtasks.
//!
//! Each job owns its metrics; there is no global registry. Counters are atomics,
//! updated once per batch, never once per row.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// A counter that only goes up.
#[derive(Debug, Clone, Default)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    /// Raises the counter to `n` if it is lower (for ids and high-water marks).
    pub fn raise_to(&self, n: u64) {
        self.0.fetch_max(n, Ordering::Relaxed);
    }
}

/// The metrics of one operator (all its subtasks together).
#[derive(Debug, Default)]
pub struct OperatorMetrics {
    pub rows_in: Counter,
    pub rows_out: Counter,
    pub batches_in: Counter,
    /// The latest watermark any subtask of the operator has passed on, in ms.
    pub watermark_ms: Counter,
    custom: Mutex<BTreeMap<String, Counter>>,
}

impl OperatorMetrics {
    /// A named counter of this operator, created on first use.
    pub fn counter(&self, name: &str) -> Counter {
        let mut custom = self.custom.lock().unwrap_or_else(|e| e.into_inner());
        custom.entry(name.to_string()).or_default().clone()
    }

    pub(crate) fn note_watermark(&self, ms: i64) {
        self.watermark_ms
            .0
            .fetch_max(ms.max(0) as u64, Ordering::Relaxed);
    }

    fn snapshot(&self) -> OperatorMetricsSnapshot {
        let custom = self.custom.lock().unwrap_or_else(|e| e.into_inner());
        OperatorMetricsSnapshot {
            rows_in: self.rows_in.get(),
            rows_out: self.rows_out.get(),
            batches_in: self.batches_in.get(),
            watermark_ms: Some(self.watermark_ms.get()).filter(|w| *w > 0),
            counters: custom.iter().map(|(k, v)| (k.clone(), v.get())).collect(),
        }
    }
}

/// The metrics of a running job, by operator name.
#[derive(Debug, Default, Clone)]
pub struct JobMetrics {
    operators: Arc<Mutex<BTreeMap<String, Arc<OperatorMetrics>>>>,
}

impl JobMetrics {
    /// The metrics of an operator, created on first use.
    pub fn operator(&self, name: &str) -> Arc<OperatorMetrics> {
        let mut ops = self.operators.lock().unwrap_or_else(|e| e.into_inner());
        ops.entry(name.to_string()).or_default().clone()
    }

    /// A copy of every counter now.
    pub fn snapshot(&self) -> MetricsSnapshot {
        let ops = self.operators.lock().unwrap_or_else(|e| e.into_inner());
        MetricsSnapshot {
            operators: ops.iter().map(|(k, v)| (k.clone(), v.snapshot())).collect(),
        }
    }
}

/// Counters of one operator at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OperatorMetricsSnapshot {
    pub rows_in: u64,
    pub rows_out: u64,
    pub batches_in: u64,
    pub watermark_ms: Option<u64>,
    pub counters: BTreeMap<String, u64>,
}

/// Counters of every operator of a job at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetricsSnapshot {
    pub operators: BTreeMap<String, OperatorMetricsSnapshot>,
}

impl MetricsSnapshot {
    /// The metrics of one operator (zeros if it has none).
    pub fn operator(&self, name: &str) -> OperatorMetricsSnapshot {
        self.operators.get(name).cloned().unwrap_or_default()
    }

    /// A named counter of an operator (0 if never touched).
    pub fn counter(&self, operator: &str, name: &str) -> u64 {
        self.operators
            .get(operator)
            .and_then(|o| o.counters.get(name).copied())
            .unwrap_or(0)
    }
}
