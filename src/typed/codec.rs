//! Typed rows to Arrow and back, through serde_arrow: no per-type code.

use std::any::type_name;
use std::marker::PhantomData;

use arrow::array::{ArrayRef, RecordBatch};
use arrow::datatypes::FieldRef;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_arrow::schema::{SchemaLike, TracingOptions};
use serde_arrow::utils::Item;

use crate::error::{HeadwaterError, Result};

fn tracing_options() -> TracingOptions {
    // Utf8, Binary and List, as Arrow and DataFusion make them elsewhere.
    TracingOptions::default()
        .allow_null_fields(true)
        .enums_without_data_as_strings(true)
        .strings_as_large_utf8(false)
        .bytes_as_large_binary(false)
        .sequence_as_large_list(false)
}

fn rows_error<T>(source: serde_arrow::Error) -> HeadwaterError {
    HeadwaterError::Rows {
        type_name: type_name::<T>(),
        source,
    }
}

/// Converts between batches and rows of `T`. The Arrow fields of `T` are found
/// once, from the type.
#[derive(Debug)]
pub(crate) struct RowCodec<T> {
    fields: Vec<FieldRef>,
    _rows: PhantomData<fn() -> T>,
}

impl<T> Clone for RowCodec<T> {
    fn clone(&self) -> Self {
        RowCodec {
            fields: self.fields.clone(),
            _rows: PhantomData,
        }
    }
}

impl<T: DeserializeOwned> RowCodec<T> {
    /// Rows of `T` from a batch; columns not in `T` are ignored.
    pub fn decode(batch: &RecordBatch) -> Result<Vec<T>> {
        serde_arrow::from_record_batch(batch).map_err(rows_error::<T>)
    }
}

impl<T: Serialize + DeserializeOwned> RowCodec<T> {
    pub fn new() -> Result<Self> {
        let fields = Vec::<FieldRef>::from_type::<T>(tracing_options()).map_err(rows_error::<T>)?;
        Ok(RowCodec {
            fields,
            _rows: PhantomData,
        })
    }

    pub fn fields(&self) -> &[FieldRef] {
        &self.fields
    }

    pub fn encode(&self, rows: &[T]) -> Result<RecordBatch> {
        serde_arrow::to_record_batch(&self.fields, &rows).map_err(rows_error::<T>)
    }
}

/// Converts single values (such as keys) to one Arrow column.
#[derive(Debug)]
pub(crate) struct ValueCodec<K> {
    fields: Vec<FieldRef>,
    _values: PhantomData<fn() -> K>,
}

impl<K> Clone for ValueCodec<K> {
    fn clone(&self) -> Self {
        ValueCodec {
            fields: self.fields.clone(),
            _values: PhantomData,
        }
    }
}

impl<K: Serialize + DeserializeOwned> ValueCodec<K> {
    pub fn new() -> Result<Self> {
        let fields =
            Vec::<FieldRef>::from_type::<Item<K>>(tracing_options()).map_err(rows_error::<K>)?;
        Ok(ValueCodec {
            fields,
            _values: PhantomData,
        })
    }

    pub fn field(&self) -> &FieldRef {
        &self.fields[0]
    }

    pub fn encode(&self, values: &[K]) -> Result<ArrayRef> {
        let mut arrays = serde_arrow::to_arrow(&self.fields, serde_arrow::utils::Items(values))
            .map_err(rows_error::<K>)?;
        Ok(arrays.remove(0))
    }
}

impl<K: DeserializeOwned> ValueCodec<K> {
    /// The values of one column.
    pub fn decode(&self, column: &ArrayRef) -> Result<Vec<K>> {
        let items: serde_arrow::utils::Items<Vec<K>> =
            serde_arrow::from_arrow(&self.fields, &[column.clone()]).map_err(rows_error::<K>)?;
        Ok(items.0)
    }
}
