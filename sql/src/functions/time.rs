//! Flink's time functions: `DATE_FORMAT`, `TO_TIMESTAMP`,
//! `TO_TIMESTAMP_LTZ`, `UNIX_TIMESTAMP`, `FROM_UNIXTIME`, `TIMESTAMPADD` and
//! `TIMESTAMPDIFF`.

use std::sync::Arc;

use chrono::{DateTime, Datelike, Months, NaiveDate, NaiveDateTime, TimeDelta};
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Date32Array, Int32Array, Int64Array, StringArray,
    TimestampMicrosecondArray, TimestampMillisecondArray,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{
    DataType, Float64Type, Int32Type, Int64Type, TimeUnit, TimestampMicrosecondType,
};
use datafusion::common::{DataFusionError, Result as DfResult, exec_err, plan_err};

use super::Kind;
use super::java_time::{JavaPattern, parse_default_timestamp};

/// Flink's `TIMESTAMP(3)` (no zone) or `TIMESTAMP_LTZ(3)` (zone `UTC`).
pub fn timestamp_type(zone: Option<&str>) -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, zone.map(Into::into))
}

fn is_string(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null
    )
}

/// A timestamp argument, at microseconds (strings are read with Flink's
/// default pattern).
fn micros(t: &DataType) -> DataType {
    match t {
        DataType::Timestamp(_, zone) => DataType::Timestamp(TimeUnit::Microsecond, zone.clone()),
        _ => DataType::Timestamp(TimeUnit::Microsecond, None),
    }
}

pub fn coerce(kind: Kind, types: &[DataType]) -> DfResult<Vec<DataType>> {
    let name = kind.name().to_uppercase();
    let numeric = |t: &DataType| {
        if t.is_integer() || t.is_null() {
            Ok(DataType::Int64)
        } else if t.is_numeric() {
            Ok(DataType::Float64)
        } else {
            plan_err!("{name} takes a number, not {t}")
        }
    };
    Ok(match kind {
        Kind::DateFormat => {
            let first = if is_string(&types[0]) {
                DataType::Utf8
            } else if matches!(types[0], DataType::Timestamp(..) | DataType::Date32) {
                micros(&types[0])
            } else {
                return plan_err!("{name} takes a TIMESTAMP or a STRING, not {}", types[0]);
            };
            if !is_string(&types[1]) {
                return plan_err!("{name}: the pattern is a STRING, not {}", types[1]);
            }
            vec![first, DataType::Utf8]
        }
        Kind::ToTimestamp | Kind::UnixTimestamp => {
            // As Flink: a number is refused, never read as text.
            if let Some(t) = types.iter().find(|t| !is_string(t)) {
                return plan_err!(
                    "{name} takes a STRING and a pattern, not {t}; for epoch seconds or \
                     milliseconds use TO_TIMESTAMP_LTZ(n, 0) or TO_TIMESTAMP_LTZ(n, 3)"
                );
            }
            vec![DataType::Utf8; types.len()]
        }
        Kind::ToTimestampLtz => {
            let mut out = vec![numeric(&types[0])?];
            if types.len() == 2 {
                out.push(DataType::Int32);
            }
            out
        }
        Kind::FromUnixtime => {
            let mut out = vec![DataType::Int64];
            if !(types[0].is_numeric() || types[0].is_null()) {
                return plan_err!("{name} takes epoch seconds, not {}", types[0]);
            }
            if types.len() == 2 {
                if !is_string(&types[1]) {
                    return plan_err!("{name}: the pattern is a STRING, not {}", types[1]);
                }
                out.push(DataType::Utf8);
            }
            out
        }
        Kind::TimestampAdd => {
            let point = match &types[2] {
                DataType::Date32 | DataType::Timestamp(..) => types[2].clone(),
                t if is_string(t) => timestamp_type(None),
                t => return plan_err!("{name} takes a DATE or TIMESTAMP, not {t}"),
            };
            if !(types[1].is_integer() || types[1].is_null()) {
                return plan_err!("{name}: the count is an INTEGER, not {}", types[1]);
            }
            vec![DataType::Utf8, DataType::Int64, point]
        }
        Kind::TimestampDiff => {
            for t in &types[1..] {
                if !(matches!(t, DataType::Date32 | DataType::Timestamp(..)) || is_string(t)) {
                    return plan_err!("{name} takes a DATE or TIMESTAMP, not {t}");
                }
            }
            let point = DataType::Timestamp(TimeUnit::Microsecond, None);
            vec![DataType::Utf8, point.clone(), point]
        }
        _ => unreachable!("not a time function"),
    })
}

/// Compiles patterns, reusing the last one (a literal pattern compiles once).
#[derive(Default)]
struct Patterns {
    last: Option<(String, JavaPattern)>,
}

impl Patterns {
    fn get(&mut self, text: &str) -> DfResult<&JavaPattern> {
        if self.last.as_ref().is_none_or(|(t, _)| t != text) {
            let pattern = JavaPattern::compile(text)
                .map_err(|e| DataFusionError::Execution(format!("date pattern '{text}': {e}")))?;
            self.last = Some((text.to_string(), pattern));
        }
        Ok(&self.last.as_ref().expect("set above").1)
    }
}

fn strings(array: &ArrayRef) -> &StringArray {
    array.as_string::<i32>()
}

fn from_micros(v: i64) -> Option<NaiveDateTime> {
    DateTime::from_timestamp_micros(v).map(|t| t.naive_utc())
}

/// Parses `text` with `pattern`, or Flink's lenient default without one.
fn parse(text: &str, pattern: Option<&JavaPattern>) -> Option<NaiveDateTime> {
    match pattern {
        Some(p) => p.parse(text),
        None => parse_default_timestamp(text),
    }
}

pub fn evaluate(
    kind: Kind,
    args: &[ArrayRef],
    rows: usize,
    return_type: &DataType,
) -> DfResult<ArrayRef> {
    let mut patterns = Patterns::default();
    let pattern_at = |i: usize, row: usize| -> Option<&str> {
        let a = strings(args.get(i)?);
        (!a.is_null(row)).then(|| a.value(row))
    };
    Ok(match kind {
        Kind::DateFormat => {
            let mut out = Vec::with_capacity(rows);
            for row in 0..rows {
                let Some(format) = pattern_at(1, row) else {
                    out.push(None);
                    continue;
                };
                let time = if args[0].is_null(row) {
                    None
                } else if let DataType::Timestamp(..) = args[0].data_type() {
                    from_micros(
                        args[0]
                            .as_primitive::<TimestampMicrosecondType>()
                            .value(row),
                    )
                } else {
                    parse_default_timestamp(strings(&args[0]).value(row))
                };
                out.push(match time {
                    Some(t) => Some(patterns.get(format)?.format(&t)),
                    None => None,
                });
            }
            Arc::new(StringArray::from(out))
        }
        Kind::ToTimestamp | Kind::UnixTimestamp if args.is_empty() => {
            let now = chrono::Utc::now().timestamp();
            Arc::new(Int64Array::from(vec![now; rows]))
        }
        Kind::ToTimestamp | Kind::UnixTimestamp => {
            let text = strings(&args[0]);
            let mut millis = Vec::with_capacity(rows);
            for row in 0..rows {
                if text.is_null(row) || (args.len() == 2 && args[1].is_null(row)) {
                    millis.push(None);
                    continue;
                }
                let pattern = match pattern_at(1, row) {
                    Some(p) => Some(patterns.get(p)?),
                    None => None,
                };
                millis
                    .push(parse(text.value(row), pattern).map(|t| t.and_utc().timestamp_millis()));
            }
            if kind == Kind::ToTimestamp {
                Arc::new(TimestampMillisecondArray::from(millis))
            } else {
                // Flink answers Long.MIN_VALUE for a string it cannot parse.
                let seconds: Vec<Option<i64>> = millis
                    .into_iter()
                    .enumerate()
                    .map(|(row, m)| match m {
                        Some(ms) => Some(ms.div_euclid(1000)),
                        None if text.is_null(row) => None,
                        None => Some(i64::MIN),
                    })
                    .collect();
                Arc::new(Int64Array::from(seconds))
            }
        }
        Kind::ToTimestampLtz => {
            let precision = match args.get(1) {
                Some(p) => {
                    let p = p.as_primitive::<Int32Type>();
                    let values: Vec<i32> = p.iter().flatten().collect();
                    match values.first() {
                        Some(&v) if (0..=9).contains(&v) && values.iter().all(|x| *x == v) => v,
                        Some(v) => {
                            return exec_err!(
                                "TO_TIMESTAMP_LTZ: the precision is 0 (seconds) to 9 (nanoseconds), not {v}"
                            );
                        }
                        None => 3,
                    }
                }
                None => 3,
            };
            let scale = 10f64.powi(3 - precision);
            let millis: Vec<Option<i64>> = match args[0].data_type() {
                DataType::Int64 => args[0]
                    .as_primitive::<Int64Type>()
                    .iter()
                    .map(|v| v.and_then(|v| integer_millis(v, precision)))
                    .collect(),
                _ => args[0]
                    .as_primitive::<Float64Type>()
                    .iter()
                    .map(|v| {
                        v.map(|v| (v * scale).floor())
                            .filter(|m| m.is_finite() && m.abs() < 9.2e18)
                            .map(|m| m as i64)
                    })
                    .collect(),
            };
            Arc::new(TimestampMillisecondArray::from(millis).with_timezone("UTC"))
        }
        Kind::FromUnixtime => {
            let seconds = args[0].as_primitive::<Int64Type>();
            let default = JavaPattern::default_timestamp();
            let mut out = Vec::with_capacity(rows);
            for row in 0..rows {
                if seconds.is_null(row) || (args.len() == 2 && args[1].is_null(row)) {
                    out.push(None);
                    continue;
                }
                let pattern = match pattern_at(1, row) {
                    Some(p) => patterns.get(p)?,
                    None => &default,
                };
                let t = DateTime::from_timestamp(seconds.value(row), 0).map(|t| t.naive_utc());
                out.push(t.map(|t| pattern.format(&t)));
            }
            Arc::new(StringArray::from(out))
        }
        Kind::TimestampAdd => timestamp_add(args, rows, return_type)?,
        Kind::TimestampDiff => {
            let unit = strings(&args[0]);
            let from = args[1].as_primitive::<TimestampMicrosecondType>();
            let to = args[2].as_primitive::<TimestampMicrosecondType>();
            let mut out = Vec::with_capacity(rows);
            for row in 0..rows {
                if unit.is_null(row) || from.is_null(row) || to.is_null(row) {
                    out.push(None);
                    continue;
                }
                out.push(Some(timestamp_diff(
                    unit.value(row),
                    from.value(row),
                    to.value(row),
                )?));
            }
            Arc::new(Int32Array::from(out))
        }
        _ => unreachable!("not a time function"),
    })
}

fn integer_millis(v: i64, precision: i32) -> Option<i64> {
    if precision <= 3 {
        v.checked_mul(10i64.pow((3 - precision) as u32))
    } else {
        Some(v.div_euclid(10i64.pow((precision - 3) as u32)))
    }
}

/// Fixed units in microseconds, or months.
enum Step {
    Micros(i64),
    Months(i64),
}

fn unit_step(unit: &str) -> DfResult<Step> {
    Ok(match unit.to_ascii_uppercase().as_str() {
        "MICROSECOND" => Step::Micros(1),
        "MILLISECOND" => Step::Micros(1_000),
        "SECOND" => Step::Micros(1_000_000),
        "MINUTE" => Step::Micros(60_000_000),
        "HOUR" => Step::Micros(3_600_000_000),
        "DAY" => Step::Micros(86_400_000_000),
        "WEEK" => Step::Micros(7 * 86_400_000_000),
        "MONTH" => Step::Months(1),
        "QUARTER" => Step::Months(3),
        "YEAR" => Step::Months(12),
        other => {
            return exec_err!(
                "unknown time unit {other}: use SECOND, MINUTE, HOUR, DAY, WEEK, MONTH, QUARTER or YEAR"
            );
        }
    })
}

fn add_months(t: NaiveDateTime, months: i64) -> Option<NaiveDateTime> {
    let months32 = u32::try_from(months.unsigned_abs()).ok()?;
    if months >= 0 {
        t.checked_add_months(Months::new(months32))
    } else {
        t.checked_sub_months(Months::new(months32))
    }
}

fn timestamp_add(args: &[ArrayRef], rows: usize, return_type: &DataType) -> DfResult<ArrayRef> {
    let unit = strings(&args[0]);
    let count = args[1].as_primitive::<Int64Type>();
    // Work at microseconds; come back to the argument's type at the end.
    let point = cast(&args[2], &micros(args[2].data_type()))?;
    let point = point.as_primitive::<TimestampMicrosecondType>();
    let mut out = Vec::with_capacity(rows);
    for row in 0..rows {
        if unit.is_null(row) || count.is_null(row) || point.is_null(row) {
            out.push(None);
            continue;
        }
        let n = count.value(row);
        let Some(t) = from_micros(point.value(row)) else {
            out.push(None);
            continue;
        };
        let added = match unit_step(unit.value(row))? {
            Step::Micros(step) => n
                .checked_mul(step)
                .and_then(|d| t.checked_add_signed(TimeDelta::microseconds(d))),
            Step::Months(step) => n.checked_mul(step).and_then(|m| add_months(t, m)),
        };
        match added {
            Some(t) => out.push(Some(t.and_utc().timestamp_micros())),
            None => return exec_err!("TIMESTAMPADD: the result is out of range"),
        }
    }
    let zone = match args[2].data_type() {
        DataType::Timestamp(_, zone) => zone.clone(),
        _ => None,
    };
    let result: ArrayRef = Arc::new(TimestampMicrosecondArray::from(out).with_timezone_opt(zone));
    if matches!(return_type, DataType::Date32) {
        let days: Date32Array = result
            .as_primitive::<TimestampMicrosecondType>()
            .iter()
            .map(|v| v.map(|v| v.div_euclid(86_400_000_000) as i32))
            .collect();
        return Ok(Arc::new(days));
    }
    Ok(cast(&result, return_type)?)
}

/// `TIMESTAMPDIFF(unit, from, to)`: whole units from `from` to `to`,
/// truncated toward zero; months count as Flink (Calcite) counts them.
fn timestamp_diff(unit: &str, from: i64, to: i64) -> DfResult<i32> {
    let value = match unit_step(unit)? {
        Step::Micros(step) => to.saturating_sub(from) / step,
        Step::Months(step) => {
            let (Some(a), Some(b)) = (from_micros(from), from_micros(to)) else {
                return exec_err!("TIMESTAMPDIFF: a timestamp is out of range");
            };
            months_between(b, a) / step
        }
    };
    i32::try_from(value).map_err(|_| {
        DataFusionError::Execution("TIMESTAMPDIFF: the result does not fit an INT".into())
    })
}

/// Whole months from `t1` to `t0` (negative when `t0` is earlier).
fn months_between(t0: NaiveDateTime, t1: NaiveDateTime) -> i64 {
    if t0 < t1 {
        return -months_between(t1, t0);
    }
    let (d0, d1) = (t0.date(), t1.date());
    let mut m =
        i64::from(d0.year() - d1.year()) * 12 + i64::from(d0.month()) - i64::from(d1.month());
    // The largest m whose shifted date is not past t0's date...
    while m > 0 && shift(d1, m) > d0 {
        m -= 1;
    }
    // ...and on the same date, not past its time of day.
    if m > 0 && shift(d1, m) == d0 && t0.time() < t1.time() {
        m -= 1;
    }
    m
}

fn shift(d: NaiveDate, months: i64) -> NaiveDate {
    d.checked_add_months(Months::new(months as u32))
        .unwrap_or(NaiveDate::MAX)
}
