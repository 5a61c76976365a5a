//! The rescale matrix's window top-N, checked against a plain-Rust reference.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use serde_json::Value;

use crate::rescale_matrix::Event;

/// Per 1-second window and `k_int`, the three deliveries with the highest
/// amounts (ties by event id), numbered 1 to 3. A redelivered event is two
/// rows, as it is to the query; a late event (a day behind) is in no window.
pub fn check_top_n(dir: &Path, events: &[Event], late: &HashSet<String>, scenario: &str) {
    let start = |e: &Event| e.ts.div_euclid(1000) * 1000;
    let mut windows: HashMap<(i64, i64), Vec<&Event>> = HashMap::new();
    for e in events.iter().filter(|e| !late.contains(&e.id)) {
        windows.entry((e.k_int, start(e))).or_default().push(e);
    }
    let mut expected: Vec<String> = Vec::new();
    for ((k_int, window_start), mut rows) in windows {
        rows.sort_by(|a, b| b.amount.cmp(&a.amount).then_with(|| a.id.cmp(&b.id)));
        for (rank, e) in rows.iter().take(3).enumerate() {
            expected.push(format!(
                "{}|{k_int}|{window_start}|{}|{}",
                e.id,
                e.amount,
                rank + 1
            ));
        }
    }
    expected.sort();
    let mut got: Vec<String> = crate::common::committed_rows(&dir.join("out/top_n"))
        .iter()
        .map(|line| {
            let row: Value = serde_json::from_str(line).unwrap();
            format!(
                "{}|{}|{}|{}|{}",
                row["event_id"].as_str().unwrap(),
                row["k_int"],
                crate::rescale_matrix::millis(&row["window_start"]),
                row["amount"],
                row["rn"]
            )
        })
        .collect();
    got.sort();
    assert!(
        expected.len() > 1000,
        "{scenario} top-N: only {} rows",
        expected.len()
    );
    assert_eq!(
        got.len(),
        expected.len(),
        "{scenario} top-N: rows lost or duplicated"
    );
    assert!(
        got == expected,
        "{scenario} top-N: rows differ from the reference"
    );
}
