//! The key hash: which key group a row belongs to.
//!
//! State is stored by key group, and checkpoints record key groups, so the hash
//! must never change under a checkpoint. It is therefore defined here, not
//! borrowed from a hash map's hasher: XXH3-64 over a fixed byte encoding of
//! each key column, each column seeded with the hash of the columns before it.
//! [`KEY_HASH_VERSION`] names this definition; a change to it is a new version.
//!
//! Integers hash by value, whatever their width (an `Int32` 7 and an `Int64` 7
//! land in the same key group), so a key typed in Rust and the same key in SQL
//! agree.

use arrow::array::{
    Array, ArrayRef, AsArray, BinaryViewArray, BooleanArray, GenericBinaryArray,
    GenericStringArray, OffsetSizeTrait, PrimitiveArray, StringViewArray,
};
use arrow::datatypes::*;
use xxhash_rust::xxh3::xxh3_64_with_seed;

use crate::error::RuntimeError;

/// The version of the key hash defined in this module.
pub const KEY_HASH_VERSION: u32 = 1;

const SEED: u64 = 0x4865_6164_7761_7465; // "Headwate"
const NULL_TAG: &[u8] = &[0xff, 0x00, 0x4e];

/// Hashes the key columns of `rows` rows into `hashes` (cleared first).
pub fn hash_columns(
    columns: &[ArrayRef],
    rows: usize,
    hashes: &mut Vec<u64>,
) -> Result<(), RuntimeError> {
    hashes.clear();
    hashes.resize(rows, SEED);
    for column in columns {
        hash_column(column.as_ref(), hashes)?;
    }
    Ok(())
}

/// The key hash of one value given as bytes, for keys computed outside Arrow.
pub fn hash_bytes(bytes: &[u8]) -> u64 {
    xxh3_64_with_seed(bytes, SEED)
}

fn hash_column(array: &dyn Array, hashes: &mut [u64]) -> Result<(), RuntimeError> {
    macro_rules! signed {
        ($t:ty) => {
            hash_primitive(array.as_primitive::<$t>(), hashes, |v| {
                (v as i64).to_le_bytes()
            })
        };
    }
    macro_rules! unsigned {
        ($t:ty) => {
            hash_primitive(array.as_primitive::<$t>(), hashes, |v| {
                (v as u64).to_le_bytes()
            })
        };
    }
    match array.data_type() {
        DataType::Int8 => signed!(Int8Type),
        DataType::Int16 => signed!(Int16Type),
        DataType::Int32 => signed!(Int32Type),
        DataType::Int64 => signed!(Int64Type),
        DataType::UInt8 => unsigned!(UInt8Type),
        DataType::UInt16 => unsigned!(UInt16Type),
        DataType::UInt32 => unsigned!(UInt32Type),
        DataType::UInt64 => unsigned!(UInt64Type),
        DataType::Date32 => signed!(Date32Type),
        DataType::Date64 => signed!(Date64Type),
        DataType::Time32(TimeUnit::Second) => signed!(Time32SecondType),
        DataType::Time32(TimeUnit::Millisecond) => signed!(Time32MillisecondType),
        DataType::Time64(TimeUnit::Microsecond) => signed!(Time64MicrosecondType),
        DataType::Time64(TimeUnit::Nanosecond) => signed!(Time64NanosecondType),
        DataType::Timestamp(TimeUnit::Second, _) => signed!(TimestampSecondType),
        DataType::Timestamp(TimeUnit::Millisecond, _) => signed!(TimestampMillisecondType),
        DataType::Timestamp(TimeUnit::Microsecond, _) => signed!(TimestampMicrosecondType),
        DataType::Timestamp(TimeUnit::Nanosecond, _) => signed!(TimestampNanosecondType),
        DataType::Float32 => hash_primitive(array.as_primitive::<Float32Type>(), hashes, |v| {
            canonical_f64(v as f64).to_le_bytes()
        }),
        DataType::Float64 => hash_primitive(array.as_primitive::<Float64Type>(), hashes, |v| {
            canonical_f64(v).to_le_bytes()
        }),
        DataType::Decimal128(_, _) => {
            hash_primitive(array.as_primitive::<Decimal128Type>(), hashes, |v| {
                v.to_le_bytes()
            })
        }
        DataType::Boolean => hash_boolean(array.as_boolean(), hashes),
        DataType::Utf8 => hash_string::<i32>(array.as_string(), hashes),
        DataType::LargeUtf8 => hash_string::<i64>(array.as_string(), hashes),
        DataType::Utf8View => hash_string_view(array.as_string_view(), hashes),
        DataType::Binary => hash_binary::<i32>(array.as_binary(), hashes),
        DataType::LargeBinary => hash_binary::<i64>(array.as_binary(), hashes),
        DataType::BinaryView => hash_binary_view(array.as_binary_view(), hashes),
        DataType::Dictionary(_, _) => {
            // Hash as the values the dictionary stands for, so that a dictionary
            // column and a plain one agree.
            let plain = arrow::compute::cast(array, value_type(array.data_type()))?;
            return hash_column(plain.as_ref(), hashes);
        }
        other => {
            return Err(RuntimeError::Schema(format!(
                "a column of type {other} cannot be used as a key"
            )));
        }
    }
    Ok(())
}

fn value_type(data_type: &DataType) -> &DataType {
    match data_type {
        DataType::Dictionary(_, value) => value,
        other => other,
    }
}

fn canonical_f64(v: f64) -> u64 {
    if v.is_nan() {
        f64::NAN.to_bits()
    } else if v == 0.0 {
        0 // -0.0 and 0.0 are one key
    } else {
        v.to_bits()
    }
}

#[inline]
fn combine(hash: &mut u64, bytes: &[u8]) {
    *hash = xxh3_64_with_seed(bytes, *hash);
}

#[inline]
fn combine_null(hash: &mut u64) {
    combine(hash, NULL_TAG);
}

fn hash_primitive<T: ArrowPrimitiveType, const N: usize>(
    array: &PrimitiveArray<T>,
    hashes: &mut [u64],
    bytes: impl Fn(T::Native) -> [u8; N],
) {
    let values = array.values();
    if array.null_count() == 0 {
        for (h, v) in hashes.iter_mut().zip(values.iter()) {
            combine(h, &bytes(*v));
        }
    } else {
        for (i, h) in hashes.iter_mut().enumerate() {
            if array.is_null(i) {
                combine_null(h)
            } else {
                combine(h, &bytes(values[i]))
            }
        }
    }
}

fn hash_boolean(array: &BooleanArray, hashes: &mut [u64]) {
    for (i, h) in hashes.iter_mut().enumerate() {
        if array.is_null(i) {
            combine_null(h)
        } else {
            combine(h, &[array.value(i) as u8])
        }
    }
}

fn hash_string<O: OffsetSizeTrait>(array: &GenericStringArray<O>, hashes: &mut [u64]) {
    for (i, h) in hashes.iter_mut().enumerate() {
        if array.is_null(i) {
            combine_null(h)
        } else {
            combine(h, array.value(i).as_bytes())
        }
    }
}

fn hash_string_view(array: &StringViewArray, hashes: &mut [u64]) {
    for (i, h) in hashes.iter_mut().enumerate() {
        if array.is_null(i) {
            combine_null(h)
        } else {
            combine(h, array.value(i).as_bytes())
        }
    }
}

fn hash_binary<O: OffsetSizeTrait>(array: &GenericBinaryArray<O>, hashes: &mut [u64]) {
    for (i, h) in hashes.iter_mut().enumerate() {
        if array.is_null(i) {
            combine_null(h)
        } else {
            combine(h, array.value(i))
        }
    }
}

fn hash_binary_view(array: &BinaryViewArray, hashes: &mut [u64]) {
    for (i, h) in hashes.iter_mut().enumerate() {
        if array.is_null(i) {
            combine_null(h)
        } else {
            combine(h, array.value(i))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{DictionaryArray, Int32Array, Int64Array, StringArray};

    use super::*;

    fn hashes(columns: &[ArrayRef]) -> Vec<u64> {
        let mut out = Vec::new();
        hash_columns(columns, columns[0].len(), &mut out).unwrap();
        out
    }

    #[test]
    fn integer_width_does_not_change_the_hash() {
        let a: ArrayRef = Arc::new(Int32Array::from(vec![1, -7, 300]));
        let b: ArrayRef = Arc::new(Int64Array::from(vec![1, -7, 300]));
        assert_eq!(hashes(&[a]), hashes(&[b]));
    }

    #[test]
    fn dictionary_hashes_like_plain_strings() {
        let plain: ArrayRef = Arc::new(StringArray::from(vec!["x", "y", "x"]));
        let dict: ArrayRef = Arc::new(
            vec!["x", "y", "x"]
                .into_iter()
                .collect::<DictionaryArray<Int32Type>>(),
        );
        assert_eq!(hashes(&[plain]), hashes(&[dict]));
    }

    #[test]
    fn column_order_and_nulls_matter() {
        let a: ArrayRef = Arc::new(Int64Array::from(vec![Some(1), None]));
        let b: ArrayRef = Arc::new(Int64Array::from(vec![Some(2), Some(2)]));
        let ab = hashes(&[a.clone(), b.clone()]);
        let ba = hashes(&[b, a]);
        assert_ne!(ab[0], ba[0]);
        assert_ne!(ab[0], ab[1]);
    }

    /// The hash is part of the checkpoint format: these values must never change
    /// without a new KEY_HASH_VERSION.
    #[test]
    fn hash_is_stable() {
        let a: ArrayRef = Arc::new(Int64Array::from(vec![0, 42]));
        let s: ArrayRef = Arc::new(StringArray::from(vec!["", "headwater"]));
        let got = hashes(&[a, s]);
        assert_eq!(
            got,
            STABLE.to_vec(),
            "key hash changed: bump KEY_HASH_VERSION"
        );
    }

    const STABLE: [u64; 2] = [11116541350377790774, 7202858227094712732];
}
