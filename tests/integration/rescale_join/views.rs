//! The rescale matrix's materialized views, read over the Postgres
//! protocol at the end of the last run and checked against plain-Rust
//! references.

use std::collections::{BTreeMap, HashSet};

use crate::rescale_matrix::Event;

/// The view of the updating aggregate against the reference: every event
/// counts (late or redelivered), as a GROUP BY without a window counts rows.
pub fn check_view(address: &str, events: &[Event], scenario: &str) {
    let mut expected: BTreeMap<(i64, String), (i64, i64)> = BTreeMap::new();
    for e in events {
        let t = expected.entry((e.k_int, e.k_str.to_string())).or_default();
        t.0 += 1;
        t.1 += e.amount;
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let got: BTreeMap<(i64, String), (i64, i64)> = runtime.block_on(async {
        let client = crate::common::pg_connect(address).await;
        client
            .query("SELECT k_int, k_str, n, total FROM totals", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| ((r.get(0), r.get(1)), (r.get(2), r.get(3))))
            .collect()
    });
    assert!(
        got == expected,
        "{scenario} view totals: {got:?}\nexpected {expected:?}"
    );
}

/// The keep-last view against the reference: each key's event with the
/// latest event time (late rows, a day behind, never are). Events of a key
/// with the same time may arrive in either order from two readers, so any of
/// them is right.
pub fn check_latest(address: &str, events: &[Event], scenario: &str) {
    let mut latest: BTreeMap<(i64, String), (i64, HashSet<(String, i64)>)> = BTreeMap::new();
    for e in events {
        let entry = latest
            .entry((e.k_int, e.k_str.to_string()))
            .or_insert((i64::MIN, HashSet::new()));
        if e.ts > entry.0 {
            *entry = (e.ts, HashSet::new());
        }
        if e.ts == entry.0 {
            entry.1.insert((e.id.clone(), e.amount));
        }
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let got: BTreeMap<(i64, String), (String, i64)> = runtime.block_on(async {
        let client = crate::common::pg_connect(address).await;
        client
            .query("SELECT k_int, k_str, event_id, amount FROM latest", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| ((r.get(0), r.get(1)), (r.get(2), r.get(3))))
            .collect()
    });
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        latest.keys().collect::<Vec<_>>(),
        "{scenario} view latest: keys lost or added"
    );
    for (key, row) in &got {
        assert!(
            latest[key].1.contains(row),
            "{scenario} view latest: {key:?} holds {row:?}, not one of {:?}",
            latest[key].1
        );
    }
}

/// The view of a left regular join of two updating aggregates against the
/// reference: each (k_int, k_str) with its count, and the largest amount of
/// its k_int, over every event.
pub fn check_joined(address: &str, events: &[Event], scenario: &str) {
    let mut top: BTreeMap<i64, i64> = BTreeMap::new();
    let mut counts: BTreeMap<(i64, String), i64> = BTreeMap::new();
    for e in events {
        let t = top.entry(e.k_int).or_insert(e.amount);
        *t = (*t).max(e.amount);
        *counts.entry((e.k_int, e.k_str.to_string())).or_default() += 1;
    }
    let expected: BTreeMap<(i64, String), (i64, Option<i64>)> = counts
        .into_iter()
        .map(|(key, n)| {
            let top = top.get(&key.0).copied();
            (key, (n, top))
        })
        .collect();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let got: BTreeMap<(i64, String), (i64, Option<i64>)> = runtime.block_on(async {
        let client = crate::common::pg_connect(address).await;
        client
            .query("SELECT k_int, k_str, n, top FROM joined", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| ((r.get(0), r.get(1)), (r.get(2), r.get(3))))
            .collect()
    });
    assert!(
        got == expected,
        "{scenario} view joined: {got:?}\nexpected {expected:?}"
    );
}
