//! The rescale matrix's regular join of append-only inputs, checked against
//! a plain-Rust reference.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use crate::rescale_matrix::Event;

/// The inner self-join on event id and k_int, filtered by amount: each
/// delivery of an event with amount divisible by 4 joins every delivery of
/// it, so an event delivered twice gives four rows. Late events join too: a
/// regular join has no time bound.
pub fn check_regular_join(dir: &Path, events: &[Event], scenario: &str) {
    let mut deliveries: BTreeMap<&str, (usize, &Event)> = BTreeMap::new();
    for e in events {
        deliveries.entry(&e.id).or_insert((0, e)).0 += 1;
    }
    let mut expected: Vec<String> = Vec::new();
    for (id, (times, e)) in &deliveries {
        if e.amount % 4 == 0 {
            let row = format!("{id}|{}|{}", e.k_int, e.amount);
            expected.extend(std::iter::repeat_n(row, times * times));
        }
    }
    expected.sort();
    let mut got: Vec<String> = crate::common::committed_rows(&dir.join("out/regular_join"))
        .iter()
        .map(|line| {
            let row: Value = serde_json::from_str(line).unwrap();
            format!(
                "{}|{}|{}",
                row["event_id"].as_str().unwrap(),
                row["k_int"],
                row["amount"]
            )
        })
        .collect();
    got.sort();
    assert!(
        expected.len() > 10_000,
        "{scenario} regular join: only {} rows",
        expected.len()
    );
    assert_eq!(
        got.len(),
        expected.len(),
        "{scenario} regular join: rows lost or duplicated"
    );
    assert!(
        got == expected,
        "{scenario} regular join: rows differ from the reference"
    );
}
