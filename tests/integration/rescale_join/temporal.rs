//! The rescale matrix's temporal join, checked against a plain-Rust reference.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use serde_json::Value;

use crate::rescale_matrix::Event;

/// The left temporal join of every delivery with the versions (events with
/// amount divisible by 3, each a version of its k_int and k_str): one row
/// per delivery, nothing lost or duplicated. An on-time event joins the
/// version of its keys with the greatest time at or before its own (any of
/// them if two share that time, as their order of arrival decides), or none.
/// A late event (a day behind) joins whatever late version of its keys is
/// still stored, which depends on when it arrives: only its count is checked.
pub fn check_temporal_join(dir: &Path, events: &[Event], late: &HashSet<String>, scenario: &str) {
    let mut versions: HashMap<(i64, &str), Vec<&Event>> = HashMap::new();
    for e in events
        .iter()
        .filter(|e| e.amount % 3 == 0 && !late.contains(&e.id))
    {
        versions.entry((e.k_int, e.k_str)).or_default().push(e);
    }
    let mut deliveries: BTreeMap<&str, (usize, &Event)> = BTreeMap::new();
    for e in events {
        deliveries.entry(&e.id).or_insert((0, e)).0 += 1;
    }
    let mut got: HashMap<String, Vec<String>> = HashMap::new();
    for line in crate::common::committed_rows(&dir.join("out/temporal")) {
        let row: Value = serde_json::from_str(&line).unwrap();
        let id = row["event_id"].as_str().unwrap().to_string();
        let version = row["version_id"].as_str().unwrap_or("null").to_string();
        got.entry(id).or_default().push(version);
    }
    let mut joined = 0;
    for (id, (times, e)) in &deliveries {
        let rows = got.remove(*id).unwrap_or_default();
        assert_eq!(
            rows.len(),
            *times,
            "{scenario} temporal join: event {id} was delivered {times} times, and joined {} times",
            rows.len()
        );
        if late.contains(*id) {
            continue;
        }
        let candidates: Vec<&&Event> = versions
            .get(&(e.k_int, e.k_str))
            .into_iter()
            .flatten()
            .filter(|v| v.ts <= e.ts)
            .collect();
        let latest = candidates.iter().map(|v| v.ts).max();
        let allowed: HashSet<&str> = candidates
            .iter()
            .filter(|v| Some(v.ts) == latest)
            .map(|v| v.id.as_str())
            .collect();
        for version in &rows {
            if allowed.is_empty() {
                assert_eq!(
                    version, "null",
                    "{scenario} temporal join: event {id} has no version, and joined {version}"
                );
            } else {
                joined += 1;
                assert!(
                    allowed.contains(version.as_str()),
                    "{scenario} temporal join: event {id} joined {version}, not one of {allowed:?}"
                );
            }
        }
    }
    assert!(
        got.is_empty(),
        "{scenario} temporal join: rows of events that do not exist: {:?}",
        got.keys().take(5).collect::<Vec<_>>()
    );
    assert!(
        joined > 10_000,
        "{scenario} temporal join: only {joined} rows joined a version"
    );
}
