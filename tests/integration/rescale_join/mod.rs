//! The rescale matrix's interval, window, regular and temporal joins, window top-N and views,
//! checked against plain-Rust references.

mod regular;
mod temporal;
mod top_n;
mod views;

pub use regular::check_regular_join;
pub use temporal::check_temporal_join;
pub use top_n::check_top_n;
pub use views::{check_joined, check_latest, check_view};

use std::collections::{HashMap, HashSet};
use std::path::Path;

use serde_json::Value;

use crate::rescale_matrix::Event;

/// The left interval join against a plain-Rust nested loop: each delivery
/// of an on-time event with every on-time delivery of another event with
/// its keys up to 1 s later, or alone (a NULL) if there is none. A late
/// event (a day behind) joins nothing, and comes out alone at once.
pub fn check_join(dir: &Path, events: &[Event], late: &HashSet<String>, scenario: &str) {
    let key = |e: &Event| (e.k_int, e.k_str, e.amount % 50);
    let mut by_key: HashMap<(i64, &str, i64), Vec<&Event>> = HashMap::new();
    for e in events.iter().filter(|e| !late.contains(&e.id)) {
        by_key.entry(key(e)).or_default().push(e);
    }
    let mut expected: Vec<String> = Vec::new();
    for a in events {
        let before = expected.len();
        if !late.contains(&a.id) {
            for b in &by_key[&key(a)] {
                if b.ts >= a.ts && b.ts <= a.ts + 1000 && b.id != a.id {
                    expected.push(format!("{}|{}|{}", a.id, b.id, a.k_int));
                }
            }
        }
        if expected.len() == before {
            expected.push(format!("{}|null|{}", a.id, a.k_int));
        }
    }
    expected.sort();
    let mut got: Vec<String> = crate::common::committed_rows(&dir.join("out/join"))
        .iter()
        .map(|line| {
            let row: Value = serde_json::from_str(line).unwrap();
            format!(
                "{}|{}|{}",
                row["a_id"].as_str().unwrap(),
                row["b_id"].as_str().unwrap_or("null"),
                row["k_int"]
            )
        })
        .collect();
    got.sort();
    let matched = expected.iter().filter(|r| !r.contains("|null|")).count();
    assert!(
        matched > 1000,
        "{scenario} join: only {matched} joined rows"
    );
    assert_eq!(
        got.len(),
        expected.len(),
        "{scenario} join: rows lost or duplicated"
    );
    assert!(
        got == expected,
        "{scenario} join: rows differ from the reference"
    );
}

/// The window join against a plain-Rust reference: every two on-time
/// deliveries of different events with the join's keys in the same 1 s
/// tumbling window. Late events (a day behind) are dropped, as Flink drops
/// them.
pub fn check_window_join(dir: &Path, events: &[Event], late: &HashSet<String>, scenario: &str) {
    let start = |e: &Event| e.ts.div_euclid(1000) * 1000;
    let key = |e: &Event| (e.k_int, e.k_str, e.amount % 10, start(e));
    let mut by_key: HashMap<(i64, &str, i64, i64), Vec<&Event>> = HashMap::new();
    for e in events.iter().filter(|e| !late.contains(&e.id)) {
        by_key.entry(key(e)).or_default().push(e);
    }
    let mut expected: Vec<String> = Vec::new();
    for group in by_key.values() {
        for a in group {
            for b in group.iter().filter(|b| b.id != a.id) {
                expected.push(format!("{}|{}|{}", a.id, b.id, start(a)));
            }
        }
    }
    expected.sort();
    let mut got: Vec<String> = crate::common::committed_rows(&dir.join("out/window_join"))
        .iter()
        .map(|line| {
            let row: Value = serde_json::from_str(line).unwrap();
            let start = crate::rescale_matrix::millis(&row["window_start"]);
            format!(
                "{}|{}|{start}",
                row["a_id"].as_str().unwrap(),
                row["b_id"].as_str().unwrap()
            )
        })
        .collect();
    got.sort();
    assert!(
        expected.len() > 1000,
        "{scenario} window join: only {} joined rows",
        expected.len()
    );
    assert_eq!(
        got.len(),
        expected.len(),
        "{scenario} window join: rows lost or duplicated"
    );
    assert!(
        got == expected,
        "{scenario} window join: rows differ from the reference"
    );
}
