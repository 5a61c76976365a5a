//! The regular join, as Flink's: rows of two streams with equal keys, at any
//! distance in time. Every row stays in keyed state until it is retracted
//! (or its time to live runs out), so the state grows with the inputs
//! unless `table.exec.state.ttl` bounds it.
//!
//! A side that is a changelog keeps its distinct rows under `key length |
//! key | row` (the row's output columns in Arrow's row format), with how
//! many times the row is there, so that a retraction finds its row; an
//! append-only side, which never retracts, keeps each row under `key length
//! | key | row | sequence`, written without a read. Each row also records how
//! many rows of the other side it joins (Flink's `numOfAssociations`, which
//! an outer join needs to know when a row stops or starts being unmatched). A row that arrives is matched against the
//! other side's rows of its key (one RocksDB prefix scan per key and batch),
//! the pairs go through the residual predicate, and then each row's changes
//! are worked out in order:
//!
//! - an addition (`+I`, `+U`) emits its joined rows; in an outer join, an
//!   unmatched row is emitted padded with NULLs, and a row of the other side
//!   that matched nothing until now has its padded row retracted first;
//! - a retraction (`-U`, `-D`) retracts the same joined rows, and a row of
//!   the other side that no longer matches anything is emitted padded again.
//!
//! An inner join of two append-only inputs is append-only; any other regular
//! join emits a changelog. Each emitted row has the event time of the input
//! row that caused it; the output is not a time attribute.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Array, ArrayRef, RecordBatch, StringArray, UInt32Array};
use arrow::buffer::NullBuffer;
use arrow::compute::{interleave_record_batch, take};
use arrow::datatypes::{Schema, SchemaRef};
use arrow::row::RowConverter;
use async_trait::async_trait;
use datafusion::logical_expr::Expr;
use hashbrown::HashMap;
use headwater_runtime::key_groups::KeyGroup;
use headwater_runtime::state::{SortedState, StateDescriptor};
use headwater_runtime::time::event_time_column;
use headwater_runtime::{BoxError, Collector, Operator, OperatorContext, SubtaskInfo};

use super::output::{JoinOutput, REGULAR};
use super::regular_state::{Found, Probe, Record, SideState};
use super::{JoinInput, JoinType, ResolvedInput, input_side};
use crate::changelog::{CHANGE_COLUMN, Change, change_field, changes_of};
use crate::error::Result;
use crate::window::keys::KeyCodec;

/// A regular join of two keyed streams; run it behind a hash exchange of
/// each input on its key (or in one subtask, without keys).
#[derive(Clone)]
pub struct RegularJoin {
    output: JoinOutput,
    /// The `_change` column of each input that is a changelog.
    changes: [Option<usize>; 2],
    /// The joined columns, `_change` if the output is a changelog, event time.
    schema: SchemaRef,
    changelog: bool,
    ttl: Option<Duration>,
}

impl RegularJoin {
    /// Joins `left` and `right` (either may be a changelog); the output
    /// columns are the left's output columns then the right's, named
    /// `names`. `residual` filters joined rows; with a `ttl`, a row that
    /// has not changed for that long (processing time) is forgotten.
    pub fn try_new(
        join_type: JoinType,
        left: &JoinInput,
        right: &JoinInput,
        names: &[String],
        residual: Option<&Expr>,
        ttl: Option<Duration>,
    ) -> Result<Self> {
        let output = JoinOutput::try_new(REGULAR, join_type, left, right, names, residual)?;
        let changes = [left, right].map(|input| input.schema.index_of(CHANGE_COLUMN).ok());
        // Inner and semi joins of append-only inputs never retract a row.
        let changelog = !matches!(join_type, JoinType::Inner | JoinType::LeftSemi)
            || changes.iter().any(Option::is_some);
        let fields = output.schema.fields();
        let (columns, time) = fields.split_at(fields.len() - 1);
        // A semi or anti join emits the left's columns only, as the left names them.
        let mut emitted = if join_type.emits_pairs() {
            columns.to_vec()
        } else {
            columns
                .iter()
                .zip(&left.output)
                .map(|(f, name)| Arc::new(f.as_ref().clone().with_name(name)))
                .collect()
        };
        if changelog {
            emitted.push(change_field());
        }
        emitted.push(time[0].clone());
        let schema = Arc::new(Schema::new(emitted));
        Ok(RegularJoin {
            output,
            changes,
            schema,
            changelog,
            ttl,
        })
    }

    /// The joined rows' columns, `_change` if a changelog, and the event time.
    pub fn output_schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// Whether the output is a changelog (an outer join, or an updating input).
    pub fn is_changelog(&self) -> bool {
        self.changelog
    }

    /// The operator of one subtask.
    pub fn operator(
        &self,
        subtask: &SubtaskInfo,
    ) -> std::result::Result<Box<dyn Operator>, BoxError> {
        let inputs = &self.output.inputs;
        let codec = |input: &ResolvedInput| input.key_codec(subtask.max_parallelism);
        let rows = |input: &ResolvedInput| input.row_converter();
        let state = |name: &str, side: usize| {
            let state = SortedState::unregistered(name);
            SideState {
                state: if self.ttl.is_some() {
                    state.with_ttl()
                } else {
                    state
                },
                appends: self.changes[side].is_none(),
            }
        };
        let mut records = StateDescriptor::new("regular-join.rows");
        if let Some(ttl) = self.ttl {
            records = records.with_ttl(ttl);
        }
        Ok(Box::new(RegularJoinOperator {
            keys: [codec(&inputs[0])?, codec(&inputs[1])?],
            rows: [rows(&inputs[0])?, rows(&inputs[1])?],
            sides: [
                state("regular-join.left", 0),
                state("regular-join.right", 1),
            ],
            records,
            spec: self.clone(),
        }))
    }
}

/// Where an emitted row comes from: a joined pair, an input row padded
/// with NULLs, or a found row of the other side padded.
#[derive(Clone, Copy)]
enum Emit {
    Pair(usize),
    PaddedOwn(usize),
    PaddedOther(usize),
}

struct RegularJoinOperator {
    spec: RegularJoin,
    keys: [KeyCodec; 2],
    /// Each side's output columns in the row format.
    rows: [RowConverter; 2],
    sides: [SideState; 2],
    records: StateDescriptor<Record>,
}

/// A side's state changes of one batch, not yet written: sort key → key
/// group and record (`None`: delete it).
type Pending = HashMap<Box<[u8]>, (KeyGroup, Option<Record>)>;

impl RegularJoinOperator {
    /// Joins a batch of input `side`, updates the state, and returns what to emit.
    fn process(
        &mut self,
        side: usize,
        batch: &RecordBatch,
        ctx: &mut OperatorContext,
    ) -> Result<Option<RecordBatch>> {
        let other = 1 - side;
        let n = batch.num_rows();
        let input = &self.spec.output.inputs[side];
        let join_type = self.spec.output.join_type;
        // Which rows of each side come out alone: unmatched ones of an outer
        // side or of an anti join, matched ones of a semi join.
        let (own_outer, other_outer) = (
            join_type.keeps_unmatched(side),
            join_type.keeps_unmatched(other),
        );
        let (own_semi, other_semi) = (
            join_type.keeps_matched_alone(side),
            join_type.keeps_matched_alone(other),
        );
        let tracks_other = other_outer || other_semi;
        let pairs_out = join_type.emits_pairs();
        let changes = changes_of(batch, self.spec.changes[side])?;
        let keys = self.keys[side].keys(batch)?;
        // A row with a NULL key joins nothing.
        let nulls = input.key_columns.iter().fold(None, |nulls, &c| {
            NullBuffer::union(nulls.as_ref(), batch.column(c).nulls())
        });
        let joinable = |i: usize| nulls.as_ref().is_none_or(|n| n.is_valid(i));
        let own: Vec<ArrayRef> = input
            .output_columns
            .iter()
            .map(|&c| batch.column(c).clone())
            .collect();
        let own_rows = self.rows[side].convert_columns(&own)?;
        let store = ctx.keyed_state()?;

        // The other side's rows of each distinct key in the batch, read in
        // key order with one iterator, and a candidate pair for each row and
        // each of them.
        let Probe {
            found,
            found_of_row,
        } = self.sides[other].probe(
            store,
            &self.records,
            &keys.rows,
            &keys.key_groups,
            joinable,
        )?;
        let mut probes: Vec<u32> = Vec::new();
        let mut candidates: Vec<u32> = Vec::new();
        let mut pairs_of: Vec<Range<usize>> = Vec::with_capacity(n);
        for (i, range) in found_of_row.into_iter().enumerate() {
            let start = probes.len();
            for j in range {
                probes.push(i as u32);
                candidates.push(j as u32);
            }
            pairs_of.push(start..probes.len());
        }
        let pairs = self.pairs(side, batch, &own, &probes, &candidates, &found)?;
        let passed = self.spec.output.residual(&pairs)?;

        // Each row's changes, in order.
        let mut pending: [Pending; 2] = [HashMap::new(), HashMap::new()];
        let mut write = store.new_batch();
        let mut value = Vec::new();
        let mut emits: Vec<(Emit, Change)> = Vec::new();
        for i in 0..n {
            let change = changes[i];
            let adds = change.is_addition();
            if !joinable(i) {
                if own_outer {
                    emits.push((Emit::PaddedOwn(i), padded_change(adds)));
                }
                continue;
            }
            let key_group = keys.key_groups[i];
            let mut matched_rows = 0u64;
            let mut any = false;
            for p in pairs_of[i].clone().filter(|&p| passed.value(p)) {
                any = true;
                let j = candidates[p] as usize;
                let sort_key = &found[j].sort_key;
                let mut record = match pending[other].get(sort_key) {
                    Some((_, record)) => record.unwrap_or_default(),
                    None => found[j].record,
                };
                matched_rows += record.count;
                let times = record.count as usize;
                let alone = |change| std::iter::repeat_n((Emit::PaddedOther(p), change), times);
                let pair = std::iter::repeat_n((Emit::Pair(p), change), times);
                if adds {
                    // The other row's first match.
                    if record.matches == 0 && other_outer {
                        emits.extend(alone(Change::Delete));
                    }
                    if record.matches == 0 && other_semi {
                        emits.extend(alone(Change::Insert));
                    }
                    if pairs_out {
                        emits.extend(pair);
                    }
                    record.matches += 1;
                } else {
                    if pairs_out {
                        emits.extend(pair);
                    }
                    record.matches = record.matches.saturating_sub(1);
                    // The other row's last match left.
                    if record.matches == 0 && other_outer {
                        emits.extend(alone(Change::Insert));
                    }
                    if record.matches == 0 && other_semi {
                        emits.extend(alone(Change::Delete));
                    }
                }
                // Only a side whose rows come out alone needs to know what they match.
                if tracks_other {
                    pending[other].insert(sort_key.clone(), (key_group, Some(record)));
                }
            }
            if (!any && own_outer) || (any && own_semi) {
                emits.push((Emit::PaddedOwn(i), padded_change(adds)));
            }

            // The row itself.
            let own_side = &self.sides[side];
            let sort_key =
                own_side.sort_key(store, keys.rows.row(i).data(), own_rows.row(i).data());
            if own_side.appends {
                // Each row of an append-only side is its own entry.
                let record = Record {
                    count: 1,
                    matches: matched_rows,
                };
                self.records.encode(&record, &mut value)?;
                own_side
                    .state
                    .put(store, &mut write, key_group, &sort_key, &value)?;
                continue;
            }
            let record = match pending[side].get(&sort_key) {
                Some((_, record)) => *record,
                None => own_side.read(store, &self.records, key_group, &sort_key)?,
            };
            let updated = if adds {
                let count = record.map_or(0, |r| r.count) + 1;
                Some(Record {
                    count,
                    matches: matched_rows,
                })
            } else {
                // A retraction of a row no longer kept (its time to live ran
                // out) still retracts what it joined, as in Flink.
                record
                    .map(|r| Record {
                        count: r.count.saturating_sub(1),
                        matches: matched_rows,
                    })
                    .filter(|r| r.count > 0)
            };
            pending[side].insert(sort_key, (key_group, updated));
        }

        for (s, changed) in pending.iter().enumerate() {
            for (sort_key, (key_group, record)) in changed {
                match record {
                    Some(record) => {
                        self.records.encode(record, &mut value)?;
                        self.sides[s]
                            .state
                            .put(store, &mut write, *key_group, sort_key, &value)?;
                    }
                    None => self.sides[s]
                        .state
                        .delete(store, &mut write, *key_group, sort_key)?,
                }
            }
        }
        store.write(write)?;
        if emits.is_empty() {
            return Ok(None);
        }
        self.emit(side, batch, own, &pairs, &emits).map(Some)
    }

    /// The joined row of each candidate pair: row `probes[p]` of `batch`
    /// (input `side`) with found row `candidates[p]` of the other side.
    fn pairs(
        &self,
        side: usize,
        batch: &RecordBatch,
        own: &[ArrayRef],
        probes: &[u32],
        candidates: &[u32],
        found: &[Found],
    ) -> Result<RecordBatch> {
        let probes = UInt32Array::from(probes.to_vec());
        let own_columns = own
            .iter()
            .map(|c| take(c, &probes, None))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let other = 1 - side;
        let other_columns = self.sides[other].decode(&self.rows[other], found, candidates)?;
        let times = take(event_time_column(batch)?, &probes, None)?;
        let (left, right) = if side == 0 {
            (own_columns, other_columns)
        } else {
            (other_columns, own_columns)
        };
        self.spec.output.joined(left, right, times)
    }

    /// The emitted rows, in order, with `_change` if the output is a changelog.
    fn emit(
        &self,
        side: usize,
        batch: &RecordBatch,
        own: Vec<ArrayRef>,
        pairs: &RecordBatch,
        emits: &[(Emit, Change)],
    ) -> Result<RecordBatch> {
        let output = &self.spec.output;
        let mut sources: Vec<RecordBatch> = vec![pairs.clone()];
        let mut own_padded = None;
        let mut other_padded = None;
        if emits.iter().any(|(e, _)| matches!(e, Emit::PaddedOwn(_))) {
            let times = event_time_column(batch)?.clone();
            sources.push(output.padded(side, own, Arc::new(times))?);
            own_padded = Some(sources.len() - 1);
        }
        if emits.iter().any(|(e, _)| matches!(e, Emit::PaddedOther(_))) {
            let left_width = output.inputs[0].output_columns.len();
            let other_columns = if side == 0 {
                pairs.columns()[left_width..pairs.num_columns() - 1].to_vec()
            } else {
                pairs.columns()[..left_width].to_vec()
            };
            let times = pairs.column(pairs.num_columns() - 1).clone();
            sources.push(output.padded(1 - side, other_columns, times)?);
            other_padded = Some(sources.len() - 1);
        }
        let indices: Vec<(usize, usize)> = emits
            .iter()
            .map(|(e, _)| match *e {
                Emit::Pair(p) => (0, p),
                Emit::PaddedOwn(i) => (own_padded.unwrap_or(0), i),
                Emit::PaddedOther(p) => (other_padded.unwrap_or(0), p),
            })
            .collect();
        let sources: Vec<&RecordBatch> = sources.iter().collect();
        let joined = interleave_record_batch(&sources, &indices)?;
        let mut columns = joined.columns().to_vec();
        let time = columns.pop().expect("the event-time column");
        if !output.join_type.emits_pairs() {
            columns.truncate(output.inputs[0].output_columns.len());
        }
        if self.spec.changelog {
            let change: StringArray = emits.iter().map(|(_, c)| Some(c.as_str())).collect();
            columns.push(Arc::new(change));
        }
        columns.push(time);
        Ok(RecordBatch::try_new(self.spec.schema.clone(), columns)?)
    }
}

/// The change of a padded row: `+I` as its row arrives, `-D` as it leaves.
fn padded_change(adds: bool) -> Change {
    if adds { Change::Insert } else { Change::Delete }
}

#[async_trait]
impl Operator for RegularJoinOperator {
    async fn open(&mut self, ctx: &mut OperatorContext) -> std::result::Result<(), BoxError> {
        ctx.keyed_state()?;
        Ok(())
    }

    async fn process_batch(
        &mut self,
        batch: RecordBatch,
        ctx: &mut OperatorContext,
        out: &mut dyn Collector,
    ) -> std::result::Result<(), BoxError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let side = input_side(ctx)?;
        if let Some(joined) = self.process(side, &batch, ctx)? {
            out.collect(joined).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "regular_tests.rs"]
mod tests;
