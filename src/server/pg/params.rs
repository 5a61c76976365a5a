//! The parameters of a bound statement (`$1`, `$2`, ..) as DataFusion values,
//! checked against what the client sent: a Bind with the wrong number of
//! format codes or values is refused, never indexed past its end.

use datafusion::common::ScalarValue;
use pgwire::api::Type;
use pgwire::api::portal::{Format, Portal};
use pgwire::error::PgWireResult;

use super::{Prepared, user_error};

/// The portal's parameters, typed by `types` (the statement's).
pub fn parameters(portal: &Portal<Prepared>, types: &[Type]) -> PgWireResult<Vec<ScalarValue>> {
    let count = portal.parameter_len();
    if let Format::Individual(codes) = &portal.parameter_format
        && codes.len() != count
    {
        return Err(user_error(
            "08P01",
            format!(
                "bind message has {} parameter formats but {count} parameters",
                codes.len()
            ),
        ));
    }
    (0..count)
        .map(|i| parameter(portal, i, types.get(i).unwrap_or(&Type::TEXT)))
        .collect()
}

/// Parameter `i` of a portal as a DataFusion value of its Postgres type.
fn parameter(portal: &Portal<Prepared>, i: usize, pg: &Type) -> PgWireResult<ScalarValue> {
    Ok(match *pg {
        Type::BOOL => ScalarValue::Boolean(portal.parameter::<bool>(i, pg)?),
        Type::INT2 => ScalarValue::Int16(portal.parameter::<i16>(i, pg)?),
        Type::INT4 => ScalarValue::Int32(portal.parameter::<i32>(i, pg)?),
        Type::INT8 => ScalarValue::Int64(portal.parameter::<i64>(i, pg)?),
        Type::FLOAT4 => ScalarValue::Float32(portal.parameter::<f32>(i, pg)?),
        Type::FLOAT8 => ScalarValue::Float64(portal.parameter::<f64>(i, pg)?),
        Type::TIMESTAMP => ScalarValue::TimestampMicrosecond(
            portal
                .parameter::<chrono::NaiveDateTime>(i, pg)?
                .map(|t| t.and_utc().timestamp_micros()),
            None,
        ),
        Type::TIMESTAMPTZ => ScalarValue::TimestampMicrosecond(
            portal
                .parameter::<chrono::DateTime<chrono::FixedOffset>>(i, pg)?
                .map(|t| t.timestamp_micros()),
            Some("+00:00".into()),
        ),
        Type::DATE => ScalarValue::Date32(
            portal
                .parameter::<chrono::NaiveDate>(i, pg)?
                .map(|d| (d - chrono::NaiveDate::default()).num_days() as i32),
        ),
        Type::NUMERIC => match portal.parameter::<rust_decimal::Decimal>(i, pg)? {
            Some(d) => ScalarValue::Decimal128(Some(d.mantissa()), 38, d.scale() as i8),
            None => ScalarValue::Decimal128(None, 38, 0),
        },
        _ => ScalarValue::Utf8(portal.parameter::<String>(i, pg)?),
    })
}
