//! The session window operator.
//!
//! Sessions depend on each key's data, so they are not sliced. A batch is
//! first cut into sessions of its own (rows sorted by key and time, split where
//! the gap is exceeded) and aggregated per session in one vectorized pass.
//! Then, for the batch's distinct keys at once, the stored sessions are read
//! (one multi-get), merged with the new ones where they meet, and written back.
//! A session of rows `t1..tn` is `[t1, tn + gap)`; two sessions merge when one
//! starts at or before the other's end. Each stored session has one timer, in
//! the [`TimerService`]: at its last instant, to fire; after firing (with
//! allowed lateness), at the end of the lateness, to be dropped.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{BooleanArray, RecordBatch};
use arrow::compute::filter_record_batch;
use async_trait::async_trait;
use headwater_runtime::key_groups::KeyGroup;
use headwater_runtime::state::{
    KeyedStateStore, StateDescriptor, StateKey, StateWriteBatch, Timer, TimerService, ValueState,
};
use headwater_runtime::time::event_time_column;
use headwater_runtime::{BoxError, Collector, EventTime, Operator, OperatorContext};
use serde::{Deserialize, Serialize};

use super::LATE_OUTPUT;
use super::WindowShared;
use super::aggregate::StateRowCodec;
use super::keys::KeyCodec;
use super::output::ResultBuffer;
use super::spec::WindowKind;
use crate::error::Result;

/// One session of a key, as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredSession {
    start: i64,
    /// Exclusive: the last row's time plus the gap.
    end: i64,
    /// Its result has been sent (it is kept for late rows until the lateness ends).
    fired: bool,
    /// The partial aggregates, as a state row.
    state: Vec<u8>,
}

/// A session being merged: stored sessions and this batch's.
struct Candidate {
    start: i64,
    end: i64,
    /// Index into this batch's sessions, or `None` for a stored one.
    local: Option<usize>,
    stored: Option<StoredSession>,
}

/// A session cut from one batch.
struct LocalSession {
    key_group: KeyGroup,
    key_row: usize,
    start: i64,
    end: i64,
}

pub(crate) struct SessionWindowOperator {
    shared: Arc<WindowShared>,
    gap: i64,
    keys: KeyCodec,
    states: StateRowCodec,
    sessions: Option<ValueState<Vec<StoredSession>>>,
    timers: Option<TimerService>,
    results: ResultBuffer,
}

/// A session to emit: its key, window and state row.
struct Emit {
    key: Vec<u8>,
    start: i64,
    end: i64,
    state: Vec<u8>,
}

impl SessionWindowOperator {
    pub(crate) fn new(shared: Arc<WindowShared>, keys: KeyCodec) -> Result<Self> {
        let WindowKind::Session { gap } = shared.kind else {
            unreachable!("only session windows come here")
        };
        Ok(SessionWindowOperator {
            gap,
            states: shared.plan.state_codec()?,
            results: ResultBuffer::new(shared.output_schema.clone()),
            shared,
            keys,
            sessions: None,
            timers: None,
        })
    }

    fn lateness(&self) -> i64 {
        self.shared.allowed_lateness
    }

    fn fire_time(&self, session: &StoredSession) -> i64 {
        if session.fired {
            (session.end - 1).saturating_add(self.lateness())
        } else {
            session.end - 1
        }
    }

    fn timer(&self, key_group: KeyGroup, key: &[u8], session: &StoredSession) -> Timer {
        Timer {
            time: self.fire_time(session),
            key_group,
            key: key.to_vec(),
            namespace: session.start.to_be_bytes().to_vec(),
        }
    }

    /// Merges partial state rows: `members[i]` are the rows that make result `i`.
    fn merge_states(&self, members: &[Vec<&[u8]>]) -> Result<Vec<Vec<u8>>> {
        let mut rows = Vec::new();
        let mut groups = Vec::new();
        for (group, m) in members.iter().enumerate() {
            for row in m {
                rows.push(*row);
                groups.push(group);
            }
        }
        let mut accumulators = self.shared.plan.accumulators()?;
        if !rows.is_empty() {
            let states = self.states.decode(rows)?;
            accumulators.merge(&states, &groups, members.len())?;
        }
        let merged = self.states.encode(&accumulators.state()?)?;
        Ok((0..members.len())
            .map(|i| merged.row(i).as_ref().to_vec())
            .collect())
    }

    /// Computes the results of `emits` into the result buffer.
    fn emit(&mut self, emits: Vec<Emit>) -> Result<()> {
        if emits.is_empty() {
            return Ok(());
        }
        let mut accumulators = self.shared.plan.accumulators()?;
        let states = self.states.decode(emits.iter().map(|e| &e.state[..]))?;
        let groups: Vec<usize> = (0..emits.len()).collect();
        accumulators.merge(&states, &groups, emits.len())?;
        self.results.push(
            self.keys.decode(emits.iter().map(|e| &e.key[..]))?,
            emits.iter().map(|e| e.start).collect(),
            emits.iter().map(|e| e.end).collect(),
            accumulators.evaluate()?,
        )
    }

    fn write_sessions(
        &self,
        store: &KeyedStateStore,
        batch: &mut StateWriteBatch,
        key_group: KeyGroup,
        key: &[u8],
        sessions: &[StoredSession],
    ) -> Result<()> {
        let state = self.sessions.as_ref().expect("opened");
        let at = StateKey::new(key_group, key);
        if sessions.is_empty() {
            state.delete(store, batch, at)?;
        } else {
            state.put(store, batch, at, &sessions.to_vec())?;
        }
        Ok(())
    }

    async fn fire(
        &mut self,
        watermark: i64,
        ctx: &mut OperatorContext,
        out: &mut dyn Collector,
    ) -> Result<(), BoxError> {
        let store = ctx.keyed_state()?;
        loop {
            let timers = self
                .timers
                .as_mut()
                .expect("opened")
                .pop_due(store, watermark, 4096)?;
            if timers.is_empty() {
                break;
            }
            // Every key's sessions, read once for all its due timers.
            let mut order: Vec<(KeyGroup, Vec<u8>)> = Vec::new();
            let mut starts: HashMap<(KeyGroup, Vec<u8>), Vec<i64>> = HashMap::new();
            for timer in &timers {
                let id = (timer.key_group, timer.key.clone());
                let start = i64::from_be_bytes(timer.namespace[..8].try_into()?);
                let entry = starts.entry(id.clone()).or_default();
                if entry.is_empty() {
                    order.push(id);
                }
                entry.push(start);
            }
            let state_keys: Vec<StateKey<'_>> =
                order.iter().map(|(g, k)| StateKey::new(*g, k)).collect();
            let stored = self
                .sessions
                .as_ref()
                .expect("opened")
                .multi_get(store, &state_keys)?;
            let mut batch = store.new_batch();
            let mut emits = Vec::new();
            for ((key_group, key), sessions) in order.iter().zip(stored) {
                let mut sessions = sessions.unwrap_or_default();
                let due = &starts[&(*key_group, key.clone())];
                let mut kept = Vec::with_capacity(sessions.len());
                for mut session in sessions.drain(..) {
                    if !due.contains(&session.start) || self.fire_time(&session) > watermark {
                        kept.push(session);
                        continue;
                    }
                    if session.fired {
                        continue; // the lateness has passed: drop it
                    }
                    emits.push(Emit {
                        key: key.clone(),
                        start: session.start,
                        end: session.end,
                        state: session.state.clone(),
                    });
                    if self.lateness() > 0 {
                        session.fired = true;
                        let timer = self.timer(*key_group, key, &session);
                        self.timers
                            .as_mut()
                            .expect("opened")
                            .register(store, &mut batch, &timer)?;
                        kept.push(session);
                    }
                }
                self.write_sessions(store, &mut batch, *key_group, key, &kept)?;
            }
            store.write(batch)?;
            self.emit(emits)?;
            if let Some(b) = self.results.take(false)? {
                out.collect(b).await?;
            }
        }
        if let Some(b) = self.results.take(true)? {
            out.collect(b).await?;
        }
        Ok(())
    }
}

#[async_trait]
impl Operator for SessionWindowOperator {
    async fn open(&mut self, ctx: &mut OperatorContext) -> Result<(), BoxError> {
        let store = ctx.keyed_state()?;
        self.sessions = Some(ValueState::new(
            store,
            StateDescriptor::new("window.sessions"),
        )?);
        self.timers = Some(TimerService::new(store, "window.session_timers")?);
        Ok(())
    }

    async fn process_batch(
        &mut self,
        batch: RecordBatch,
        ctx: &mut OperatorContext,
        out: &mut dyn Collector,
    ) -> Result<(), BoxError> {
        let rows = batch.num_rows();
        if rows == 0 {
            return Ok(());
        }
        let watermark = ctx.current_watermark.map_or(i64::MIN, |w| w.0);
        let times = event_time_column(&batch)?.values().clone();
        let keys = self.keys.keys(&batch)?;
        let inputs = self.shared.plan.inputs(&batch)?;

        // Cut the batch into sessions: sort by key, then time.
        let mut order: Vec<usize> = (0..rows).collect();
        order.sort_unstable_by(|&a, &b| {
            keys.rows
                .row(a)
                .cmp(&keys.rows.row(b))
                .then(times[a].cmp(&times[b]))
        });
        let mut local: Vec<LocalSession> = Vec::new();
        let mut session_of_row = vec![0usize; rows];
        let mut previous: Option<usize> = None;
        for &i in &order {
            let joins = previous.is_some_and(|p| {
                keys.rows.row(p) == keys.rows.row(i)
                    && times[i] <= times[p].saturating_add(self.gap)
            });
            if joins {
                local.last_mut().expect("joined").end = times[i].saturating_add(self.gap);
            } else {
                local.push(LocalSession {
                    key_group: keys.key_groups[i],
                    key_row: i,
                    start: times[i],
                    end: times[i].saturating_add(self.gap),
                });
            }
            session_of_row[i] = local.len() - 1;
            previous = Some(i);
        }
        let mut accumulators = self.shared.plan.accumulators()?;
        accumulators.update(&inputs, &session_of_row, local.len())?;
        let local_states = self.states.encode(&accumulators.state()?)?;

        // The batch's sessions of each key are adjacent: merge them with the stored ones.
        let store = ctx.keyed_state()?;
        let mut key_spans: Vec<(usize, usize)> = Vec::new();
        for (s, session) in local.iter().enumerate() {
            match key_spans.last_mut() {
                Some((first, end))
                    if keys.rows.row(local[*first].key_row) == keys.rows.row(session.key_row) =>
                {
                    *end = s + 1
                }
                _ => key_spans.push((s, s + 1)),
            }
        }
        let state_keys: Vec<StateKey<'_>> = key_spans
            .iter()
            .map(|&(first, _)| {
                let s = &local[first];
                StateKey::new(s.key_group, keys.rows.row(s.key_row).data())
            })
            .collect();
        let stored = self
            .sessions
            .as_ref()
            .expect("opened")
            .multi_get(store, &state_keys)?;

        let mut write = store.new_batch();
        let mut late_session = vec![false; local.len()];
        let mut emits = Vec::new();
        // Per key: merged sessions (their members), to merge states in one pass.
        let mut results: Vec<(usize, Vec<Candidate>)> = Vec::new();
        for (span, stored) in key_spans.iter().zip(stored) {
            let mut candidates: Vec<Candidate> = stored
                .unwrap_or_default()
                .into_iter()
                .map(|s| Candidate {
                    start: s.start,
                    end: s.end,
                    local: None,
                    stored: Some(s),
                })
                .collect();
            candidates.extend((span.0..span.1).map(|s| Candidate {
                start: local[s].start,
                end: local[s].end,
                local: Some(s),
                stored: None,
            }));
            candidates.sort_by_key(|c| c.start);
            let mut groups: Vec<Vec<Candidate>> = Vec::new();
            let mut group_end = i64::MIN;
            for c in candidates {
                if groups.is_empty() || c.start > group_end {
                    group_end = c.end;
                    groups.push(vec![c]);
                } else {
                    group_end = group_end.max(c.end);
                    groups.last_mut().expect("non-empty").push(c);
                }
            }
            for group in groups {
                results.push((span.0, group));
            }
        }

        // New state of every merged session that gained rows.
        let mut members: Vec<Vec<&[u8]>> = Vec::new();
        let mut changed: Vec<usize> = Vec::new();
        for (r, (_, group)) in results.iter().enumerate() {
            if group.iter().all(|c| c.local.is_none()) {
                continue;
            }
            let end = group.iter().map(|c| c.end).max().expect("non-empty");
            if (end - 1).saturating_add(self.lateness()) <= watermark {
                // Too late: no stored session is in it, so it is only this batch's rows.
                for c in group {
                    late_session[c.local.expect("only new sessions are late")] = true;
                }
                continue;
            }
            members.push(
                group
                    .iter()
                    .map(|c| match (&c.stored, c.local) {
                        (Some(s), _) => &s.state[..],
                        (None, Some(l)) => local_states.row(l).data(),
                        (None, None) => unreachable!("a candidate is stored or new"),
                    })
                    .collect(),
            );
            changed.push(r);
        }
        let merged = self.merge_states(&members)?;

        let mut new_state: HashMap<usize, Vec<u8>> = changed.into_iter().zip(merged).collect();
        let mut per_key: Vec<(usize, Vec<StoredSession>)> = Vec::new();
        let timers = self.timers.as_mut().expect("opened");
        for (r, (first, group)) in results.into_iter().enumerate() {
            if per_key.last().is_none_or(|(f, _)| *f != first) {
                per_key.push((first, Vec::new()));
            }
            let sessions = &mut per_key.last_mut().expect("pushed").1;
            let key_group = local[first].key_group;
            let key = keys.rows.row(local[first].key_row);
            let Some(state) = new_state.remove(&r) else {
                if group.iter().all(|c| c.local.is_none()) {
                    sessions.extend(group.into_iter().filter_map(|c| c.stored));
                }
                continue;
            };
            let start = group.iter().map(|c| c.start).min().expect("non-empty");
            let end = group.iter().map(|c| c.end).max().expect("non-empty");
            for old in group.iter().filter_map(|c| c.stored.as_ref()) {
                let timer = Timer {
                    time: if old.fired {
                        (old.end - 1).saturating_add(self.shared.allowed_lateness)
                    } else {
                        old.end - 1
                    },
                    key_group,
                    key: key.as_ref().to_vec(),
                    namespace: old.start.to_be_bytes().to_vec(),
                };
                timers.delete(store, &mut write, &timer)?;
            }
            let due = end - 1 <= watermark;
            let session = StoredSession {
                start,
                end,
                fired: due,
                state,
            };
            if due {
                // A late row changed a session whose end has passed: send its new result.
                emits.push(Emit {
                    key: key.as_ref().to_vec(),
                    start,
                    end,
                    state: session.state.clone(),
                });
            }
            let time = if due {
                (end - 1).saturating_add(self.shared.allowed_lateness)
            } else {
                end - 1
            };
            timers.register(
                store,
                &mut write,
                &Timer {
                    time,
                    key_group,
                    key: key.as_ref().to_vec(),
                    namespace: start.to_be_bytes().to_vec(),
                },
            )?;
            sessions.push(session);
        }
        for (first, sessions) in &per_key {
            let s = &local[*first];
            self.write_sessions(
                store,
                &mut write,
                s.key_group,
                keys.rows.row(s.key_row).as_ref(),
                sessions,
            )?;
        }
        store.write(write)?;
        self.emit(emits)?;
        if let Some(b) = self.results.take(true)? {
            out.collect(b).await?;
        }

        if late_session.iter().any(|&l| l) {
            let mask: BooleanArray = session_of_row
                .iter()
                .map(|&s| Some(late_session[s]))
                .collect();
            let late_rows = filter_record_batch(&batch, &mask)?;
            ctx.metrics
                .counter("late_rows")
                .add(late_rows.num_rows() as u64);
            out.collect_side(LATE_OUTPUT, late_rows).await?;
        }
        Ok(())
    }

    async fn on_watermark(
        &mut self,
        watermark: EventTime,
        ctx: &mut OperatorContext,
        out: &mut dyn Collector,
    ) -> Result<Option<EventTime>, BoxError> {
        self.fire(watermark.0, ctx, out).await?;
        Ok(Some(watermark))
    }
}
