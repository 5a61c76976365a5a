//! Arrow rows as Postgres rows, batch by batch as the query makes them.
//! arrow-pg encodes the values; NUMERIC is encoded here, since Postgres'
//! NUMERIC holds every Arrow decimal (any scale, negative scales, 38 and 76
//! digits) and rust_decimal, arrow-pg's carrier, holds 28 digits. A type
//! Postgres has no name for is sent as text.

use std::error::Error;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Decimal128Type, Decimal256Type, Field, Schema};
use bytes::{BufMut, BytesMut};
use datafusion::execution::SendableRecordBatchStream;
use futures::{Stream, StreamExt, stream};
use pgwire::api::Type;
use pgwire::api::portal::Format;
use pgwire::api::results::{DataRowEncoder, FieldInfo};
use pgwire::error::PgWireResult;
use pgwire::messages::data::DataRow;
use pgwire::types::ToSqlText;
use pgwire::types::format::FormatOptions;
use postgres_types::{IsNull, ToSql, to_sql_checked};

use super::user_error;
use crate::server::engine::query_error;

/// The Postgres columns of a schema, in `format`; `None` if `format` names
/// another number of columns than the schema has.
pub fn fields(schema: &Schema, format: &Format) -> Option<Vec<FieldInfo>> {
    if let Format::Individual(codes) = format
        && codes.len() != schema.fields().len()
    {
        return None;
    }
    Some(
        schema
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| {
                FieldInfo::new(
                    f.name().clone(),
                    None,
                    None,
                    pg_type(f),
                    format.format_for(i),
                )
            })
            .collect(),
    )
}

/// The Postgres type of a column: arrow-pg's, NUMERIC for every decimal, and
/// text for what Postgres has no type for.
pub fn pg_type(field: &Arc<Field>) -> Type {
    match field.data_type() {
        DataType::Decimal128(..) | DataType::Decimal256(..) => Type::NUMERIC,
        _ => arrow_pg::datatypes::field_into_pg_type(field).unwrap_or(Type::TEXT),
    }
}

/// The rows of `batches`, encoded as they come.
pub fn rows(
    fields: Arc<Vec<FieldInfo>>,
    batches: SendableRecordBatchStream,
) -> impl Stream<Item = PgWireResult<DataRow>> + Send + 'static {
    batches.flat_map(move |batch| {
        let rows: Vec<PgWireResult<DataRow>> = match batch {
            Ok(batch) => encode_batch(&fields, &batch),
            Err(e) => {
                let e = query_error(e);
                vec![Err(user_error(e.code, e.message))]
            }
        };
        stream::iter(rows)
    })
}

/// One batch's rows; after an error, no more.
/// Row `row` of a decimal column as a NUMERIC (`None` for NULL).
fn numeric_at<T: arrow::datatypes::DecimalType>(
    column: &ArrayRef,
    row: usize,
    scale: i8,
) -> Option<Numeric>
where
    T::Native: std::fmt::Display,
{
    let a = column.as_primitive::<T>();
    a.is_valid(row)
        .then(|| Numeric::new(&a.value(row).to_string(), scale))
}

fn encode_batch(fields: &Arc<Vec<FieldInfo>>, batch: &RecordBatch) -> Vec<PgWireResult<DataRow>> {
    let schema = batch.schema();
    // Columns Postgres gets as text, turned to text a column at a time.
    let columns: Result<Vec<ArrayRef>, _> = batch
        .columns()
        .iter()
        .zip(fields.iter())
        .map(|(c, f)| {
            if *f.datatype() == Type::TEXT && !is_text(c.data_type()) {
                arrow::compute::cast(c, &DataType::Utf8)
            } else {
                Ok(c.clone())
            }
        })
        .collect();
    let columns = match columns {
        Ok(columns) => columns,
        Err(e) => return vec![Err(user_error("22000", e.to_string()))],
    };
    let text_field = Field::new("text", DataType::Utf8, true);
    let mut encoder = DataRowEncoder::new(fields.clone());
    let mut out = Vec::with_capacity(batch.num_rows());
    for row in 0..batch.num_rows() {
        for (i, column) in columns.iter().enumerate() {
            let field = &fields[i];
            let result = match column.data_type() {
                DataType::Decimal128(_, scale) => {
                    let v = numeric_at::<Decimal128Type>(column, row, *scale);
                    encode(&mut encoder, &v, field)
                }
                DataType::Decimal256(_, scale) => {
                    let v = numeric_at::<Decimal256Type>(column, row, *scale);
                    encode(&mut encoder, &v, field)
                }
                _ => {
                    let arrow_field = if column.data_type() == schema.field(i).data_type() {
                        schema.field(i)
                    } else {
                        &text_field
                    };
                    arrow_pg::encoder::encode_value(&mut encoder, column, row, arrow_field, field)
                }
            };
            if let Err(e) = result {
                out.push(Err(e));
                return out;
            }
        }
        out.push(Ok(encoder.take_row()));
    }
    out
}

fn is_text(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

fn encode(
    encoder: &mut DataRowEncoder,
    value: &Option<Numeric>,
    field: &FieldInfo,
) -> PgWireResult<()> {
    encoder.encode_field_with_type_and_format(
        value,
        field.datatype(),
        field.format(),
        field.format_options(),
    )
}

/// A decimal as Postgres' NUMERIC: its sign and its digits before and after
/// the point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Numeric {
    negative: bool,
    integer: String,
    fraction: String,
}

impl Numeric {
    /// The decimal `unscaled × 10^-scale`, from the unscaled value's digits
    /// (with a leading `-` if negative).
    pub fn new(unscaled: &str, scale: i8) -> Numeric {
        let (negative, digits) = match unscaled.strip_prefix('-') {
            Some(d) => (true, d),
            None => (false, unscaled),
        };
        let (integer, fraction) = if scale <= 0 {
            (
                format!("{digits}{}", "0".repeat(scale.unsigned_abs() as usize)),
                String::new(),
            )
        } else {
            let scale = scale as usize;
            let padded = format!("{digits:0>width$}", width = scale + 1);
            let (i, f) = padded.split_at(padded.len() - scale);
            (i.to_string(), f.to_string())
        };
        let integer = integer.trim_start_matches('0').to_string();
        let zero = integer.is_empty() && fraction.bytes().all(|b| b == b'0');
        Numeric {
            negative: negative && !zero,
            integer,
            fraction,
        }
    }

    /// The text form: `-12.340`, `0.5`, `100`.
    pub fn text(&self) -> String {
        let integer = if self.integer.is_empty() {
            "0"
        } else {
            &self.integer
        };
        let sign = if self.negative { "-" } else { "" };
        if self.fraction.is_empty() {
            format!("{sign}{integer}")
        } else {
            format!("{sign}{integer}.{}", self.fraction)
        }
    }

    /// The binary form: base-10000 digits with a weight, a sign and a
    /// display scale.
    pub fn binary(&self, out: &mut BytesMut) {
        let pad_left = (4 - self.integer.len() % 4) % 4;
        let pad_right = (4 - self.fraction.len() % 4) % 4;
        let digits: Vec<u8> = std::iter::repeat_n(b'0', pad_left)
            .chain(self.integer.bytes())
            .chain(self.fraction.bytes())
            .chain(std::iter::repeat_n(b'0', pad_right))
            .collect();
        let mut groups: Vec<i16> = digits
            .chunks(4)
            .map(|c| c.iter().fold(0i16, |n, d| n * 10 + i16::from(d - b'0')))
            .collect();
        let mut weight = ((pad_left + self.integer.len()) / 4) as i16 - 1;
        let leading = groups.iter().take_while(|&&g| g == 0).count();
        groups.drain(..leading);
        weight -= leading as i16;
        while groups.last() == Some(&0) {
            groups.pop();
        }
        if groups.is_empty() {
            weight = 0;
        }
        out.put_i16(groups.len() as i16);
        out.put_i16(weight);
        out.put_u16(if self.negative { 0x4000 } else { 0 });
        out.put_u16(self.fraction.len() as u16);
        for g in groups {
            out.put_i16(g);
        }
    }
}

impl ToSql for Numeric {
    fn to_sql(
        &self,
        _ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        self.binary(out);
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::NUMERIC
    }

    to_sql_checked!();
}

impl ToSqlText for Numeric {
    fn to_sql_text(
        &self,
        _ty: &Type,
        out: &mut BytesMut,
        _format_options: &FormatOptions,
    ) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        out.put_slice(self.text().as_bytes());
        Ok(IsNull::No)
    }
}

#[cfg(test)]
mod tests {
    use postgres_types::FromSql;
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn numeric_text_takes_every_scale() {
        assert_eq!(
            Numeric::new("1000000000000000000000000000000", 30).text(),
            "1.000000000000000000000000000000"
        );
        assert_eq!(Numeric::new("-5", 2).text(), "-0.05");
        assert_eq!(Numeric::new("12", -3).text(), "12000");
        assert_eq!(Numeric::new("0", 2).text(), "0.00");
        assert_eq!(Numeric::new("-0", 0).text(), "0");
        assert_eq!(
            Numeric::new(&i128::MIN.to_string(), 0).text(),
            i128::MIN.to_string()
        );
    }

    /// Decodes Postgres' binary NUMERIC as rust_decimal does (for values it holds).
    fn decoded(n: &Numeric) -> rust_decimal::Decimal {
        let mut out = BytesMut::new();
        n.binary(&mut out);
        rust_decimal::Decimal::from_sql(&Type::NUMERIC, &out).unwrap()
    }

    #[test]
    fn numeric_binary_decodes_to_the_same_value() {
        for (unscaled, scale, expected) in [
            ("12345", 2, "123.45"),
            ("-1", 4, "-0.0001"),
            ("100000000", 0, "100000000"),
            ("7", -2, "700"),
            ("0", 3, "0.000"),
            ("99990000", 4, "9999.0000"),
        ] {
            let n = Numeric::new(unscaled, scale);
            assert_eq!(
                decoded(&n).to_string(),
                expected,
                "{unscaled} scale {scale}"
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        #[test]
        fn numeric_binary_and_text_agree(v in -(10i128.pow(27))..10i128.pow(27), scale in 0i8..=27) {
            let n = Numeric::new(&v.to_string(), scale);
            let expected = rust_decimal::Decimal::from_i128_with_scale(v, scale as u32);
            prop_assert_eq!(decoded(&n), expected);
            prop_assert_eq!(n.text(), expected.to_string());
        }

        #[test]
        fn numeric_never_panics(digits in "-?[0-9]{0,80}", scale in any::<i8>()) {
            let n = Numeric::new(&digits, scale);
            let mut out = BytesMut::new();
            n.binary(&mut out);
            prop_assert!(!n.text().is_empty());
        }
    }
}
