//! The typed Rust API: streams of serde types, transformed by closures.
//!
//! Rows travel as Arrow batches all the same; a typed operator decodes a batch
//! into rows of `T` (by field name, through serde_arrow), calls the closure, and
//! encodes the results. Event time is carried from each row to its results.

mod codec;
mod ops;
mod process;

pub use process::{FiredTimer, KeyedProcessFunction, ProcessContext, TimeDomain};

use std::marker::PhantomData;
use std::sync::Arc;

use arrow::datatypes::{Field, FieldRef, Schema, SchemaRef};
use datafusion::common::Column;
use datafusion::logical_expr::Expr;
use headwater_operators::sinks::{CollectReceiver, SinkSpec};
use headwater_runtime::Operator;
use headwater_runtime::time::{schema_with_event_time, user_schema};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::data_stream::DataStream;
use crate::error::{HeadwaterError, Result};
use codec::{RowCodec, ValueCodec};
use ops::{FilterOp, FlatMapOp, KeyOp, MapOp};

/// The column that holds the key computed by [`Stream::key_by`].
pub const KEY_FIELD: &str = "_key";

/// Bounds every row type of the typed API meets.
pub trait Row: Serialize + DeserializeOwned + Send + 'static {}
impl<T: Serialize + DeserializeOwned + Send + 'static> Row for T {}

/// A stream of rows of type `T`.
pub struct Stream<T> {
    inner: DataStream,
    _rows: PhantomData<fn() -> T>,
}

impl<T> Clone for Stream<T> {
    fn clone(&self) -> Self {
        Stream {
            inner: self.inner.clone(),
            _rows: PhantomData,
        }
    }
}

impl<T: Row> Stream<T> {
    pub(crate) fn from_data_stream(inner: DataStream) -> Self {
        Stream {
            inner,
            _rows: PhantomData,
        }
    }

    /// Checks that every field of `T` is a column of the stream.
    pub(crate) fn try_from_data_stream(inner: DataStream) -> Result<Self> {
        let fields = RowCodec::<T>::new()?;
        let missing: Vec<&str> = fields
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .filter(|name| inner.schema.index_of(name).is_err())
            .collect();
        if !missing.is_empty() {
            let columns: Vec<String> = inner
                .schema()
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect();
            return Err(HeadwaterError::Pipeline(format!(
                "`{}` has fields that are not columns of the stream: {} (columns: {})",
                std::any::type_name::<T>(),
                missing.join(", "),
                columns.join(", ")
            )));
        }
        Ok(Stream::from_data_stream(inner))
    }

    /// The stream as Arrow batches.
    pub fn into_data_stream(self) -> DataStream {
        self.inner
    }

    /// Sets the parallelism of the operator that makes this stream.
    pub fn with_parallelism(self, parallelism: usize) -> Result<Self> {
        Ok(Stream::from_data_stream(
            self.inner.with_parallelism(parallelism)?,
        ))
    }

    /// One output row per input row.
    pub fn map<U: Row, F>(self, f: F) -> Result<Stream<U>>
    where
        F: Fn(T) -> U + Send + Sync + 'static,
    {
        let out = RowCodec::<U>::new()?;
        let schema = typed_schema(out.fields());
        let f = Arc::new(f);
        let factory = Arc::new(move |_: &_| {
            Ok(Box::new(MapOp::<T, U, F> {
                f: f.clone(),
                out: out.clone(),
                _rows: PhantomData,
            }) as Box<dyn Operator>)
        });
        Ok(Stream::from_data_stream(
            self.inner.then("map", schema, factory)?,
        ))
    }

    /// Any number of output rows per input row.
    pub fn flat_map<U: Row, I, F>(self, f: F) -> Result<Stream<U>>
    where
        I: IntoIterator<Item = U> + 'static,
        F: Fn(T) -> I + Send + Sync + 'static,
    {
        let out = RowCodec::<U>::new()?;
        let schema = typed_schema(out.fields());
        let f = Arc::new(f);
        let factory = Arc::new(move |_: &_| {
            Ok(Box::new(FlatMapOp::<T, U, F> {
                f: f.clone(),
                out: out.clone(),
                _rows: PhantomData,
            }) as Box<dyn Operator>)
        });
        Ok(Stream::from_data_stream(
            self.inner.then("flat_map", schema, factory)?,
        ))
    }

    /// Keeps the rows for which `f` is true.
    pub fn filter<F>(self, f: F) -> Result<Stream<T>>
    where
        F: Fn(&T) -> bool + Send + Sync + 'static,
    {
        let schema = drop_key(&self.inner.schema);
        let f = Arc::new(f);
        let factory = Arc::new(move |_: &_| {
            Ok(Box::new(FilterOp::<T, F> {
                f: f.clone(),
                _rows: PhantomData,
            }) as Box<dyn Operator>)
        });
        Ok(Stream::from_data_stream(
            self.inner.then("filter", schema, factory)?,
        ))
    }

    /// Partitions the stream by a key computed from each row: every row with
    /// the same key goes to the same subtask of the next operator.
    pub fn key_by<K: Row, F>(self, f: F) -> Result<KeyedStream<T, K>>
    where
        F: Fn(&T) -> K + Send + Sync + 'static,
    {
        let key = ValueCodec::<K>::new()?;
        let key_field: FieldRef = Arc::new(Field::new(
            KEY_FIELD,
            key.field().data_type().clone(),
            key.field().is_nullable(),
        ));
        let mut fields: Vec<FieldRef> = drop_key(&self.inner.schema)
            .fields()
            .iter()
            .cloned()
            .collect();
        fields.push(key_field);
        let schema: SchemaRef = Arc::new(Schema::new(fields));
        let f = Arc::new(f);
        let op_schema = schema.clone();
        let factory = Arc::new(move |_: &_| {
            Ok(Box::new(KeyOp::<T, K, F> {
                f: f.clone(),
                key: key.clone(),
                schema: op_schema.clone(),
                _rows: PhantomData,
            }) as Box<dyn Operator>)
        });
        let keyed = self
            .inner
            .then("key_by", schema, factory)?
            .key_by(&[KEY_FIELD])?;
        Ok(KeyedStream {
            stream: Stream::from_data_stream(keyed),
            _key: PhantomData,
        })
    }

    /// The rows of this stream and of `others`. Each is narrowed to the fields
    /// of `T` first, so streams with extra columns can be merged.
    pub fn union(self, others: Vec<Stream<T>>) -> Result<Stream<T>> {
        let codec = RowCodec::<T>::new()?;
        let names: Vec<&str> = codec.fields().iter().map(|f| f.name().as_str()).collect();
        let narrow = |stream: DataStream| -> Result<DataStream> {
            let schema = stream.schema();
            let current: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
            if current == names {
                return Ok(stream);
            }
            let columns = names
                .iter()
                .map(|n| Expr::Column(Column::new_unqualified(*n)))
                .collect();
            stream.select(columns)
        };
        let first = narrow(self.inner)?;
        let others = others
            .into_iter()
            .map(|s| narrow(s.inner))
            .collect::<Result<Vec<_>>>()?;
        Ok(Stream::from_data_stream(first.union(others)?))
    }

    /// Writes the stream to a sink.
    pub fn sink(self, spec: impl SinkSpec) -> Result<()> {
        self.inner.sink(spec)
    }

    /// Hands the rows back to this program.
    pub fn collect(self) -> Result<TypedReceiver<T>> {
        Ok(TypedReceiver {
            inner: self.inner.collect()?,
            _rows: PhantomData,
        })
    }
}

/// A stream partitioned by a key of type `K`.
pub struct KeyedStream<T, K> {
    stream: Stream<T>,
    _key: PhantomData<fn() -> K>,
}

impl<T: Row, K: Row> KeyedStream<T, K> {
    /// Runs `f` on every row with its key's state and timers (see
    /// [`KeyedProcessFunction`]). Each subtask runs its own clone of `f`.
    pub fn process<U: Row, F>(self, f: F) -> Result<Stream<U>>
    where
        F: KeyedProcessFunction<K, T, U> + Clone + Sync,
    {
        let out = RowCodec::<U>::new()?;
        let key = ValueCodec::<K>::new()?;
        let schema = typed_schema(out.fields());
        let factory = Arc::new(move |subtask: &headwater_runtime::SubtaskInfo| {
            Ok(Box::new(process::ProcessOp::<K, T, U, F> {
                f: f.clone(),
                key: key.clone(),
                out: out.clone(),
                max_parallelism: subtask.max_parallelism,
                event_timers: None,
                processing_timers: None,
                _rows: PhantomData,
            }) as Box<dyn Operator>)
        });
        Ok(Stream::from_data_stream(
            self.stream.inner.then("process", schema, factory)?,
        ))
    }

    /// Cuts the stream into event-time windows of `kind`; aggregate them with
    /// DataFusion aggregates. The results name the key column `key`.
    pub fn window(
        self,
        kind: headwater_operators::window::WindowKind,
    ) -> Result<crate::window::WindowedStream> {
        Ok(self.stream.inner.window(kind)?.typed_key())
    }
}

impl<T: Row, K> KeyedStream<T, K> {
    /// One output row per input row, on the subtask that owns the key.
    pub fn map<U: Row, F>(self, f: F) -> Result<Stream<U>>
    where
        F: Fn(T) -> U + Send + Sync + 'static,
    {
        self.stream.map(f)
    }

    /// Any number of rows per input row, on the subtask that owns the key.
    pub fn flat_map<U: Row, I, F>(self, f: F) -> Result<Stream<U>>
    where
        I: IntoIterator<Item = U> + 'static,
        F: Fn(T) -> I + Send + Sync + 'static,
    {
        self.stream.flat_map(f)
    }

    /// Keeps the rows for which `f` is true, on the subtask that owns the key.
    pub fn filter<F>(self, f: F) -> Result<Stream<T>>
    where
        F: Fn(&T) -> bool + Send + Sync + 'static,
    {
        self.stream.filter(f)
    }
}

/// Receives the rows of a typed stream in this program.
pub struct TypedReceiver<T> {
    inner: CollectReceiver,
    _rows: PhantomData<fn() -> T>,
}

impl<T: Row> TypedReceiver<T> {
    /// The rows of the next batch, or `None` once the sink has finished.
    pub async fn recv(&mut self) -> Option<Result<Vec<T>>> {
        let batch = self.inner.recv().await?;
        Some(RowCodec::<T>::decode(&batch))
    }

    /// Every row until the sink has finished.
    pub async fn collect_all(self) -> Result<Vec<T>> {
        let mut rows = Vec::new();
        for batch in self.inner.collect_all().await {
            rows.extend(RowCodec::<T>::decode(&batch)?);
        }
        Ok(rows)
    }
}

fn typed_schema(fields: &[FieldRef]) -> SchemaRef {
    schema_with_event_time(&Arc::new(Schema::new(fields.to_vec())))
}

fn drop_key(schema: &SchemaRef) -> SchemaRef {
    let user = user_schema(schema);
    let fields: Vec<FieldRef> = user
        .fields()
        .iter()
        .filter(|f| f.name() != KEY_FIELD)
        .cloned()
        .collect();
    schema_with_event_time(&Arc::new(Schema::new(fields)))
}
