//! Partitioners: which downstream subtask gets which rows.

use arrow::array::{ArrayRef, RecordBatch, UInt32Array};
use arrow::compute::take_record_batch;

use crate::error::RuntimeError;
use crate::graph::Partitioning;
use crate::key_groups::{key_group_of, subtask_of};
use crate::key_hash::hash_columns;
use crate::time::column_names;

/// Splits batches over `targets` downstream subtasks.
#[derive(Debug)]
pub enum Partitioner {
    /// Everything to the one target.
    Single,
    Rebalance {
        next: usize,
        targets: usize,
    },
    Broadcast {
        targets: usize,
    },
    Hash(HashPartitioner),
}

impl Partitioner {
    /// `first_target` staggers the round-robin start, so that the subtasks of
    /// one operator do not all begin with the same target.
    pub fn new(
        partitioning: &Partitioning,
        targets: usize,
        max_parallelism: u32,
        first_target: usize,
    ) -> Self {
        match partitioning {
            _ if targets == 1 => Partitioner::Single,
            Partitioning::Forward => Partitioner::Single,
            Partitioning::Rebalance => Partitioner::Rebalance {
                next: first_target % targets,
                targets,
            },
            Partitioning::Broadcast => Partitioner::Broadcast { targets },
            Partitioning::Hash(keys) => Partitioner::Hash(HashPartitioner {
                keys: keys.clone(),
                targets: targets as u32,
                max_parallelism,
                hashes: Vec::new(),
            }),
        }
    }

    /// Calls `send(target, batch)` for each part of `batch`.
    pub fn split(
        &mut self,
        batch: RecordBatch,
        mut send: impl FnMut(usize, RecordBatch),
    ) -> Result<(), RuntimeError> {
        match self {
            Partitioner::Single => send(0, batch),
            Partitioner::Rebalance { next, targets } => {
                send(*next, batch);
                *next = (*next + 1) % *targets;
            }
            Partitioner::Broadcast { targets } => {
                for t in 0..*targets {
                    send(t, batch.clone());
                }
            }
            Partitioner::Hash(h) => h.split(batch, send)?,
        }
        Ok(())
    }
}

/// Sends each row to the subtask that owns its key group.
#[derive(Debug)]
pub struct HashPartitioner {
    keys: Vec<String>,
    targets: u32,
    max_parallelism: u32,
    hashes: Vec<u64>,
}

impl HashPartitioner {
    fn split(
        &mut self,
        batch: RecordBatch,
        mut send: impl FnMut(usize, RecordBatch),
    ) -> Result<(), RuntimeError> {
        let rows = batch.num_rows();
        let columns = self
            .keys
            .iter()
            .map(|k| {
                batch.column_by_name(k).cloned().ok_or_else(|| {
                    RuntimeError::Schema(format!(
                        "key column `{k}` is not in the stream (columns: {})",
                        column_names(batch.schema_ref())
                    ))
                })
            })
            .collect::<Result<Vec<ArrayRef>, _>>()?;
        hash_columns(&columns, rows, &mut self.hashes)?;

        // Counting sort of row indices by target: one pass to count, one to place.
        let targets = self.targets as usize;
        let mut target_of = Vec::with_capacity(rows);
        let mut counts = vec![0u32; targets];
        for h in &self.hashes {
            let t = subtask_of(
                key_group_of(*h, self.max_parallelism),
                self.max_parallelism,
                self.targets,
            );
            target_of.push(t);
            counts[t as usize] += 1;
        }
        if let Some(t) = counts.iter().position(|c| *c as usize == rows) {
            send(t, batch); // all rows go one way: no copy
            return Ok(());
        }
        let mut starts = Vec::with_capacity(targets);
        let mut acc = 0u32;
        for c in &counts {
            starts.push(acc);
            acc += c;
        }
        let mut order = vec![0u32; rows];
        let mut cursor = starts.clone();
        for (row, t) in target_of.iter().enumerate() {
            order[cursor[*t as usize] as usize] = row as u32;
            cursor[*t as usize] += 1;
        }
        for t in 0..targets {
            if counts[t] == 0 {
                continue;
            }
            let (start, len) = (starts[t] as usize, counts[t] as usize);
            let indices = UInt32Array::from(order[start..start + len].to_vec());
            send(t, take_record_batch(&batch, &indices)?);
        }
        Ok(())
    }
}
