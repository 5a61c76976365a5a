//! The operators behind the typed API: closures over rows of a serde type.
//!
//! Each decodes a batch into rows with serde_arrow, runs the closure, and (for
//! map and flat_map) encodes the results into a batch, carrying each result's
//! event time over from the row it came from.

use std::marker::PhantomData;
use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, RecordBatch, UInt32Array};
use arrow::compute::{filter_record_batch, take};
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use headwater_runtime::time::{EVENT_TIME_FIELD, with_event_time};
use headwater_runtime::{BoxError, Collector, Operator, OperatorContext};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::KEY_FIELD;
use super::codec::{RowCodec, ValueCodec};

fn event_times(batch: &RecordBatch) -> Result<&ArrayRef, BoxError> {
    batch
        .column_by_name(EVENT_TIME_FIELD)
        .ok_or_else(|| format!("batch has no `{EVENT_TIME_FIELD}`").into())
}

/// A batch without the typed key column (zero-copy).
fn without_key(batch: RecordBatch) -> RecordBatch {
    match batch.schema_ref().index_of(KEY_FIELD) {
        Ok(i) => {
            let mut batch = batch;
            batch.remove_column(i);
            batch
        }
        Err(_) => batch,
    }
}

pub(crate) struct MapOp<T, U, F> {
    pub f: Arc<F>,
    pub out: RowCodec<U>,
    pub _rows: PhantomData<fn(T)>,
}

#[async_trait]
impl<T, U, F> Operator for MapOp<T, U, F>
where
    T: DeserializeOwned + Send + 'static,
    U: Serialize + DeserializeOwned + Send + 'static,
    F: Fn(T) -> U + Send + Sync + 'static,
{
    async fn process_batch(
        &mut self,
        batch: RecordBatch,
        _: &mut OperatorContext,
        out: &mut dyn Collector,
    ) -> Result<(), BoxError> {
        let rows = RowCodec::<T>::decode(&batch)?;
        let results: Vec<U> = rows.into_iter().map(|r| (self.f)(r)).collect();
        let encoded = self.out.encode(&results)?;
        out.collect(with_event_time(&encoded, event_times(&batch)?.clone())?)
            .await
    }
}

pub(crate) struct FlatMapOp<T, U, F> {
    pub f: Arc<F>,
    pub out: RowCodec<U>,
    pub _rows: PhantomData<fn(T)>,
}

#[async_trait]
impl<T, U, I, F> Operator for FlatMapOp<T, U, F>
where
    T: DeserializeOwned + Send + 'static,
    U: Serialize + DeserializeOwned + Send + 'static,
    I: IntoIterator<Item = U>,
    F: Fn(T) -> I + Send + Sync + 'static,
{
    async fn process_batch(
        &mut self,
        batch: RecordBatch,
        _: &mut OperatorContext,
        out: &mut dyn Collector,
    ) -> Result<(), BoxError> {
        let rows = RowCodec::<T>::decode(&batch)?;
        let mut results = Vec::with_capacity(rows.len());
        let mut origin = Vec::with_capacity(rows.len());
        for (i, row) in rows.into_iter().enumerate() {
            for u in (self.f)(row) {
                results.push(u);
                origin.push(i as u32);
            }
        }
        if results.is_empty() {
            return Ok(());
        }
        let encoded = self.out.encode(&results)?;
        let times = take(event_times(&batch)?, &UInt32Array::from(origin), None)?;
        out.collect(with_event_time(&encoded, times)?).await
    }
}

pub(crate) struct FilterOp<T, F> {
    pub f: Arc<F>,
    pub _rows: PhantomData<fn(T)>,
}

#[async_trait]
impl<T, F> Operator for FilterOp<T, F>
where
    T: Serialize + DeserializeOwned + Send + 'static,
    F: Fn(&T) -> bool + Send + Sync + 'static,
{
    async fn process_batch(
        &mut self,
        batch: RecordBatch,
        _: &mut OperatorContext,
        out: &mut dyn Collector,
    ) -> Result<(), BoxError> {
        let rows = RowCodec::<T>::decode(&batch)?;
        let mask: BooleanArray = rows.iter().map(|r| Some((self.f)(r))).collect();
        let kept = mask.true_count();
        if kept == 0 {
            return Ok(());
        }
        let batch = without_key(batch);
        let batch = if kept == batch.num_rows() {
            batch
        } else {
            filter_record_batch(&batch, &mask)?
        };
        out.collect(batch).await
    }
}

/// Computes each row's key into the key column, for the hash exchange after it.
pub(crate) struct KeyOp<T, K, F> {
    pub f: Arc<F>,
    pub key: ValueCodec<K>,
    pub schema: SchemaRef,
    pub _rows: PhantomData<fn(T)>,
}

#[async_trait]
impl<T, K, F> Operator for KeyOp<T, K, F>
where
    T: DeserializeOwned + Send + 'static,
    K: Serialize + DeserializeOwned + Send + 'static,
    F: Fn(&T) -> K + Send + Sync + 'static,
{
    async fn process_batch(
        &mut self,
        batch: RecordBatch,
        _: &mut OperatorContext,
        out: &mut dyn Collector,
    ) -> Result<(), BoxError> {
        let rows = RowCodec::<T>::decode(&batch)?;
        let keys: Vec<K> = rows.iter().map(|r| (self.f)(r)).collect();
        let key_column = self.key.encode(&keys)?;
        let mut columns = without_key(batch).columns().to_vec();
        columns.push(key_column);
        out.collect(RecordBatch::try_new(self.schema.clone(), columns)?)
            .await
    }
}
