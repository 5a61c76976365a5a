//! `datagen`: rows made up from a schema, deterministic by seed.
//!
//! Each field is random or a sequence, as its [`FieldGen`] says. Rows are made
//! in blocks of [`BLOCK_ROWS`]; block `b` is made by subtask `b % parallelism`
//! from a generator seeded by the seed, the block and the column. So the rows
//! are the same at any parallelism, and a new column does not change the others.
//! A subtask's position is the blocks it has left to make, as arithmetic
//! progressions; a restore at another parallelism splits every old subtask's
//! progressions among the new subtasks, so no block is made twice or skipped.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::*;
use arrow::datatypes::*;
use async_trait::async_trait;
use headwater_runtime::checkpoint::Restored;
use headwater_runtime::graph::SourceFactory;
use headwater_runtime::{
    BoxError, EventTimeSpec, OperatorContext, Source, SourcePoll, SubtaskInfo,
};
use rand::distr::Alphanumeric;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::SourceSpec;
use super::rate_limit::RateLimiter;
use crate::error::OperatorError;

/// Rows per block: the unit of determinism.
pub const BLOCK_ROWS: u64 = 1024;

/// How one field's values are made.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldGen {
    /// Uniform in `[min, max]` for numbers and times (ms for timestamps, days
    /// for dates); `length` characters for strings.
    Random {
        min: Option<f64>,
        max: Option<f64>,
        length: usize,
    },
    /// `start + row` for numbers; `start + row * step` for timestamps (ms);
    /// the row number for strings.
    Sequence { start: i64, step: i64 },
    /// Picked uniformly from a list.
    OneOf(Vec<String>),
}

impl Default for FieldGen {
    fn default() -> Self {
        FieldGen::Random {
            min: None,
            max: None,
            length: 10,
        }
    }
}

/// The datagen source's settings.
#[derive(Debug, Clone)]
pub struct DatagenSource {
    pub schema: SchemaRef,
    pub fields: HashMap<String, FieldGen>,
    /// The share of NULLs in nullable fields.
    pub null_rate: f64,
    pub seed: u64,
    /// Rows per second over all subtasks; `None` for as fast as possible.
    pub rows_per_second: Option<f64>,
    /// The number of rows; `None` for an unbounded stream.
    pub row_count: Option<u64>,
    pub event_time: EventTimeSpec,
    pub batch_size: usize,
}

impl DatagenSource {
    pub fn new(schema: SchemaRef) -> Self {
        DatagenSource {
            schema,
            fields: HashMap::new(),
            null_rate: 0.0,
            seed: 0,
            rows_per_second: None,
            row_count: None,
            event_time: EventTimeSpec::ArrivalTime,
            batch_size: 8192,
        }
    }

    pub fn field(mut self, name: impl Into<String>, generator: FieldGen) -> Self {
        self.fields.insert(name.into(), generator);
        self
    }

    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    pub fn rows_per_second(mut self, rate: f64) -> Self {
        self.rows_per_second = Some(rate);
        self
    }

    pub fn row_count(mut self, rows: u64) -> Self {
        self.row_count = Some(rows);
        self
    }

    pub fn null_rate(mut self, rate: f64) -> Self {
        self.null_rate = rate.clamp(0.0, 1.0);
        self
    }

    /// Uses a timestamp field as event time, with this bound on lateness.
    pub fn event_time_field(
        mut self,
        name: impl Into<String>,
        max_out_of_orderness: Duration,
    ) -> Self {
        self.event_time = EventTimeSpec::column(name, max_out_of_orderness);
        self
    }

    pub fn with_batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size.max(1);
        self
    }

    /// Checks every field has a type datagen can make and a generator that fits it.
    pub fn validate(&self) -> Result<(), OperatorError> {
        for name in self.fields.keys() {
            if self.schema.field_with_name(name).is_err() {
                return Err(OperatorError::Config(format!(
                    "datagen: option for unknown field `{name}`"
                )));
            }
        }
        let probe = self.make_block(0, 0..1)?;
        debug_assert_eq!(probe.num_rows(), 1);
        Ok(())
    }

    fn make_block(
        &self,
        block: u64,
        rows: std::ops::Range<u64>,
    ) -> Result<RecordBatch, OperatorError> {
        let columns = self
            .schema
            .fields()
            .iter()
            .enumerate()
            .map(|(c, field)| {
                let seed = self.seed
                    ^ block.wrapping_mul(0x9E37_79B9_7F4A_7C15)
                    ^ (c as u64).wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
                let mut rng = ChaCha8Rng::seed_from_u64(seed);
                let generator = self.fields.get(field.name()).cloned().unwrap_or_default();
                let null_rate = if field.is_nullable() {
                    self.null_rate
                } else {
                    0.0
                };
                make_column(field, &generator, rows.clone(), null_rate, &mut rng)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }
}

impl SourceSpec for DatagenSource {
    fn default_name(&self) -> String {
        "datagen".into()
    }

    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn event_time(&self) -> EventTimeSpec {
        self.event_time.clone()
    }

    fn factory(&self) -> SourceFactory {
        let spec = self.clone();
        Arc::new(move |subtask: &SubtaskInfo| {
            spec.validate()?;
            let rate = spec
                .rows_per_second
                .map(|r| RateLimiter::new(r / subtask.parallelism as f64));
            Ok(Box::new(Datagen {
                spec: spec.clone(),
                blocks: vec![Blocks {
                    next: subtask.index as u64,
                    step: subtask.parallelism as u64,
                }],
                subtask: (subtask.index as u64, subtask.parallelism as u64),
                rate,
            }) as Box<dyn Source>)
        })
    }
}

/// Blocks `next`, `next + step`, `next + 2 * step`, ... still to be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Blocks {
    next: u64,
    step: u64,
}

impl Blocks {
    /// The `index`-th of `parts` progressions that together make these blocks.
    fn part(self, index: u64, parts: u64) -> Blocks {
        Blocks {
            next: self.next.saturating_add(index.saturating_mul(self.step)),
            step: self.step.saturating_mul(parts),
        }
    }
}

struct Datagen {
    spec: DatagenSource,
    /// The blocks this subtask has left to make (one progression, until a
    /// restore at another parallelism hands it parts of several).
    blocks: Vec<Blocks>,
    /// (index, parallelism) of this subtask.
    subtask: (u64, u64),
    rate: Option<RateLimiter>,
}

#[async_trait]
impl Source for Datagen {
    fn schema(&self) -> SchemaRef {
        self.spec.schema.clone()
    }

    async fn next(&mut self, _ctx: &mut OperatorContext) -> Result<SourcePoll, BoxError> {
        let limit = self.spec.row_count.unwrap_or(u64::MAX);
        let limit_blocks = limit.div_ceil(BLOCK_ROWS);
        // The lowest block left, so that rows come in block order.
        self.blocks.retain(|b| b.next < limit_blocks);
        let Some(block) = self.blocks.iter().map(|b| b.next).min() else {
            return Ok(SourcePoll::Finished);
        };
        let first_row = block.saturating_mul(BLOCK_ROWS);
        let end = first_row.saturating_add(BLOCK_ROWS).min(limit);
        // The wait may be cancelled (a barrier comes first): the block is
        // taken only after it, with no await in between.
        if let Some(rate) = &mut self.rate {
            rate.acquire((end - first_row) as usize).await;
        }
        let lowest = self
            .blocks
            .iter_mut()
            .find(|b| b.next == block)
            .expect("the block found above");
        lowest.next = lowest.next.saturating_add(lowest.step);
        let batch = self.spec.make_block(block, first_row..end)?;
        Ok(SourcePoll::Batch(batch))
    }

    /// The blocks left to make (blocks are identical at any parallelism).
    async fn snapshot_state(&mut self) -> Result<Option<Vec<u8>>, BoxError> {
        Ok(Some(postcard::to_stdvec(&self.blocks)?))
    }

    async fn restore_state(&mut self, restored: Restored) -> Result<(), BoxError> {
        let mut left = Vec::new();
        for state in restored.blobs() {
            let blocks: Vec<Blocks> = postcard::from_bytes(state)
                .map_err(|e| format!("a stored datagen position does not decode: {e}"))?;
            left.extend(blocks);
        }
        self.blocks = if restored.rescaled {
            // Every old subtask's blocks, split among the new subtasks.
            let (index, parallelism) = self.subtask;
            left.into_iter()
                .map(|b| b.part(index, parallelism))
                .collect()
        } else {
            left
        };
        Ok(())
    }
}

fn make_column(
    field: &Field,
    generator: &FieldGen,
    rows: std::ops::Range<u64>,
    null_rate: f64,
    rng: &mut ChaCha8Rng,
) -> Result<ArrayRef, OperatorError> {
    let n = (rows.end - rows.start) as usize;
    let unsupported = || {
        OperatorError::Config(format!(
            "datagen cannot make field `{}` of type {} with {generator:?}",
            field.name(),
            field.data_type()
        ))
    };
    let nulls: Option<Vec<bool>> =
        (null_rate > 0.0).then(|| (0..n).map(|_| !rng.random_bool(null_rate)).collect());
    let ints = |rng: &mut ChaCha8Rng, lo: i64, hi: i64| -> Result<Vec<i64>, OperatorError> {
        Ok(match generator {
            FieldGen::Random { min, max, .. } => {
                let (lo, hi) = (min.map_or(lo, |m| m as i64), max.map_or(hi, |m| m as i64));
                if lo > hi {
                    return Err(OperatorError::Config(format!(
                        "datagen: field `{}` has min > max",
                        field.name()
                    )));
                }
                (0..n).map(|_| rng.random_range(lo..=hi)).collect()
            }
            FieldGen::Sequence { start, step } => {
                rows.clone().map(|r| start + r as i64 * step).collect()
            }
            FieldGen::OneOf(_) => return Err(unsupported()),
        })
    };
    macro_rules! int_column {
        ($array:ty, $native:ty) => {{
            let values = ints(rng, <$native>::MIN as i64, <$native>::MAX as i64)?;
            Arc::new(<$array>::from_iter(values.into_iter().enumerate().map(
                |(i, v)| nulls.as_ref().is_none_or(|m| m[i]).then_some(v as $native),
            ))) as ArrayRef
        }};
    }
    let valid = |i: usize| nulls.as_ref().is_none_or(|m| m[i]);
    Ok(match field.data_type() {
        DataType::Int8 => int_column!(Int8Array, i8),
        DataType::Int16 => int_column!(Int16Array, i16),
        DataType::Int32 => int_column!(Int32Array, i32),
        DataType::Int64 => int_column!(Int64Array, i64),
        DataType::UInt8 => int_column!(UInt8Array, u8),
        DataType::UInt16 => int_column!(UInt16Array, u16),
        DataType::UInt32 => int_column!(UInt32Array, u32),
        DataType::Float32 | DataType::Float64 => {
            let values: Vec<f64> = match generator {
                FieldGen::Random { min, max, .. } => {
                    let (lo, hi) = (min.unwrap_or(0.0), max.unwrap_or(1.0));
                    (0..n)
                        .map(|_| lo + (hi - lo) * rng.random::<f64>())
                        .collect()
                }
                FieldGen::Sequence { start, step } => rows
                    .clone()
                    .map(|r| (start + r as i64 * step) as f64)
                    .collect(),
                FieldGen::OneOf(_) => return Err(unsupported()),
            };
            let array = Float64Array::from_iter(
                values
                    .into_iter()
                    .enumerate()
                    .map(|(i, v)| valid(i).then_some(v)),
            );
            arrow::compute::cast(&array, field.data_type())?
        }
        DataType::Boolean => Arc::new(BooleanArray::from_iter(
            (0..n).map(|i| valid(i).then(|| rng.random_bool(0.5))),
        )),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            let mut b = StringBuilder::with_capacity(n, n * 10);
            let mut s = String::new();
            for (i, row) in rows.clone().enumerate() {
                s.clear();
                match generator {
                    FieldGen::Random { length, .. } => {
                        s.extend(rng.sample_iter(Alphanumeric).take(*length).map(char::from))
                    }
                    FieldGen::Sequence { start, step } => {
                        s.push_str(&(start + row as i64 * step).to_string())
                    }
                    FieldGen::OneOf(values) if !values.is_empty() => {
                        s.push_str(&values[rng.random_range(0..values.len())])
                    }
                    FieldGen::OneOf(_) => return Err(unsupported()),
                }
                if valid(i) {
                    b.append_value(&s)
                } else {
                    b.append_null()
                }
            }
            arrow::compute::cast(&b.finish(), field.data_type())?
        }
        DataType::Timestamp(unit, tz) => {
            // Times are made in ms: a sequence from 2025-01-01 one ms apart unless told otherwise.
            let start_ms = 1_735_689_600_000i64;
            let ms: Vec<i64> = match generator {
                FieldGen::Sequence { start, step } => {
                    let start = if *start == 0 { start_ms } else { *start };
                    rows.clone()
                        .map(|r| start + r as i64 * (*step).max(1))
                        .collect()
                }
                FieldGen::Random { min, max, .. } => {
                    let lo = min.map_or(start_ms, |m| m as i64);
                    let hi = max.map_or(lo + 86_400_000, |m| m as i64);
                    (0..n).map(|_| rng.random_range(lo..=hi.max(lo))).collect()
                }
                FieldGen::OneOf(_) => return Err(unsupported()),
            };
            let array = TimestampMillisecondArray::from_iter(
                ms.into_iter()
                    .enumerate()
                    .map(|(i, v)| valid(i).then_some(v)),
            );
            arrow::compute::cast(&array, &DataType::Timestamp(*unit, tz.clone()))?
        }
        DataType::Date32 => {
            let values = ints(rng, 19_000, 21_000)?;
            Arc::new(Date32Array::from_iter(
                values
                    .into_iter()
                    .enumerate()
                    .map(|(i, v)| valid(i).then_some(v as i32)),
            ))
        }
        _ => return Err(unsupported()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parts_of_progressions_make_exactly_the_blocks_left() {
        // Two old subtasks, one further on than the other, split three ways.
        let old = [Blocks { next: 6, step: 2 }, Blocks { next: 11, step: 2 }];
        let expand = |b: Blocks| {
            (0..200)
                .map(move |k| b.next + k * b.step)
                .filter(|&n| n < 200)
        };
        let mut left: Vec<u64> = old.iter().flat_map(|&b| expand(b)).collect();
        let mut parts: Vec<u64> = (0..3)
            .flat_map(|i| old.iter().map(move |b| b.part(i, 3)))
            .flat_map(expand)
            .collect();
        left.sort_unstable();
        parts.sort_unstable();
        assert_eq!(parts, left);
    }

    fn spec() -> DatagenSource {
        DatagenSource::new(Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
            Field::new("price", DataType::Float64, false),
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Millisecond, None),
                false,
            ),
        ])))
        .field("id", FieldGen::Sequence { start: 1, step: 1 })
        .field(
            "price",
            FieldGen::Random {
                min: Some(10.0),
                max: Some(20.0),
                length: 0,
            },
        )
        .field("ts", FieldGen::Sequence { start: 0, step: 10 })
        .null_rate(0.2)
        .seed(5)
    }

    #[test]
    fn blocks_are_deterministic_and_in_range() {
        let s = spec();
        s.validate().unwrap();
        let a = s.make_block(3, 3 * BLOCK_ROWS..4 * BLOCK_ROWS).unwrap();
        let b = s.make_block(3, 3 * BLOCK_ROWS..4 * BLOCK_ROWS).unwrap();
        assert_eq!(a, b);
        let ids = a.column(0).as_primitive::<Int64Type>();
        assert_eq!(ids.value(0), 3 * BLOCK_ROWS as i64 + 1);
        let prices = a.column(2).as_primitive::<Float64Type>();
        assert!(prices.values().iter().all(|p| (10.0..=20.0).contains(p)));
        assert!(a.column(1).null_count() > 100 && a.column(1).null_count() < 300);
        assert_eq!(
            a.column(0).null_count(),
            0,
            "non-nullable fields get no NULLs"
        );
    }

    #[test]
    fn unknown_fields_and_types_are_refused() {
        let s = spec().field("nope", FieldGen::default());
        assert!(s.validate().unwrap_err().to_string().contains("nope"));
        let s = DatagenSource::new(Arc::new(Schema::new(vec![Field::new(
            "l",
            DataType::new_list(DataType::Int32, true),
            false,
        )])));
        assert!(s.validate().unwrap_err().to_string().contains("`l`"));
    }
}
