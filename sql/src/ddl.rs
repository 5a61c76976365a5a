//! `CREATE TABLE`: a table's columns, its event time and watermark, and its
//! connector options.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::logical_expr::{BinaryExpr, Expr, Operator};
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser;
use sqlparser::ast::{
    ColumnOption, ConstraintCharacteristics, DataType as SqlType, ExactNumberInfo, Expr as SqlExpr,
    PrimaryKeyConstraint, Statement, TableConstraint, TimezoneInfo,
};
use sqlparser::dialect::GenericDialect;
use sqlparser::parser::Parser;

use crate::error::{Position, SqlError};
use crate::script::{MetadataClause, OptionValue, ScriptStatement};

/// A table declared by `CREATE TABLE`: a source, a sink, or both.
#[derive(Debug, Clone)]
pub struct TableDef {
    pub name: String,
    pub schema: SchemaRef,
    /// The event-time column and how late its rows may be.
    pub watermark: Option<(String, Duration)>,
    /// `PRIMARY KEY (..) NOT ENFORCED`: the columns an upsert table is keyed by.
    pub primary_key: Vec<String>,
    /// Columns filled from the connector's metadata (`METADATA FROM ..`).
    pub metadata: Vec<MetadataClause>,
    pub options: Options,
    pub at: Position,
}

/// Connector options, keys lower case, each with its place in the script.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub values: BTreeMap<String, OptionValue>,
    /// Where the `CREATE TABLE` is, for errors about a missing option.
    pub at: Position,
}

impl Options {
    pub fn get(&self, key: &str) -> Option<&OptionValue> {
        self.values.get(key)
    }

    pub fn require(&self, key: &str, what: &str) -> Result<&OptionValue, SqlError> {
        self.get(key)
            .ok_or_else(|| SqlError::invalid(self.at, format!("{what} needs the option '{key}'")))
    }

    /// A number option, checked.
    pub fn number<T: std::str::FromStr>(&self, key: &str) -> Result<Option<T>, SqlError> {
        self.get(key)
            .map(|v| {
                v.value.trim().parse().map_err(|_| {
                    SqlError::invalid(
                        v.at,
                        format!("option '{key}': `{}` is not a number", v.value),
                    )
                })
            })
            .transpose()
    }

    /// A number option that must lie in `range`: sizes, rates and shares,
    /// so that no option makes the process allocate without bound, or divide
    /// by zero, or wait forever (NaN is outside every range).
    pub fn number_in<T>(
        &self,
        key: &str,
        range: std::ops::RangeInclusive<T>,
    ) -> Result<Option<T>, SqlError>
    where
        T: std::str::FromStr + PartialOrd + std::fmt::Display,
    {
        let Some(n) = self.number::<T>(key)? else {
            return Ok(None);
        };
        if range.contains(&n) {
            return Ok(Some(n));
        }
        let at = self.get(key).map_or(self.at, |v| v.at);
        Err(SqlError::invalid(
            at,
            format!(
                "option '{key}' must be between {} and {}, not {n}",
                range.start(),
                range.end()
            ),
        ))
    }

    /// A true/false option.
    pub fn flag(&self, key: &str) -> Result<Option<bool>, SqlError> {
        self.get(key)
            .map(|v| match v.value.to_lowercase().as_str() {
                "true" => Ok(true),
                "false" => Ok(false),
                _ => Err(SqlError::invalid(
                    v.at,
                    format!("option '{key}' is true or false, not `{}`", v.value),
                )),
            })
            .transpose()
    }

    /// Refuses options not in `known`, naming the nearest known one.
    pub fn check_known(&self, connector: &str, known: &[&str]) -> Result<(), SqlError> {
        for (key, value) in &self.values {
            let ok = known.iter().any(|k| {
                k == key || (k.ends_with('*') && key.starts_with(k.trim_end_matches('*')))
            });
            if !ok {
                let mut names: Vec<_> = known.to_vec();
                names.sort();
                return Err(SqlError::invalid(
                    value.at,
                    format!(
                        "unknown option '{key}' for the {connector} connector; it takes: {}",
                        names.join(", ")
                    ),
                ));
            }
        }
        Ok(())
    }
}

impl TableDef {
    /// Reads a `CREATE TABLE` statement.
    pub fn from_statement(
        statement: &ScriptStatement,
        ctx: &SessionContext,
    ) -> Result<TableDef, SqlError> {
        let parsed = Parser::new(&GenericDialect {})
            .try_with_sql(&statement.text)
            .and_then(|mut p| p.parse_statement())
            .map_err(|e| SqlError::parser(e, statement.start))?;
        let Statement::CreateTable(create) = parsed else {
            return Err(SqlError::invalid(statement.start, "expected CREATE TABLE"));
        };
        if create.query.is_some() {
            return Err(SqlError::unsupported(
                statement.start,
                "CREATE TABLE .. AS SELECT is not supported; declare the table, then INSERT INTO it",
            ));
        }
        let name = create.name.to_string();
        let mut fields = Vec::with_capacity(create.columns.len());
        let mut primary_key = Vec::new();
        for constraint in &create.constraints {
            let at = statement.start;
            let TableConstraint::PrimaryKey(pk) = constraint else {
                return Err(SqlError::unsupported(
                    at,
                    format!(
                        "table `{name}`: only a PRIMARY KEY (..) NOT ENFORCED constraint is supported, not {constraint}"
                    ),
                ));
            };
            primary_key = primary_key_columns(pk, at)?;
        }
        for column in &create.columns {
            let at = column.name.span.start.into();
            for option in &column.options {
                if let ColumnOption::PrimaryKey(pk) = &option.option {
                    not_enforced(pk.characteristics.as_ref(), at)?;
                    primary_key = vec![column.name.value.clone()];
                }
            }
            let not_null = column
                .options
                .iter()
                .any(|o| matches!(o.option, ColumnOption::NotNull));
            let data_type = arrow_type(&column.data_type).ok_or_else(|| {
                SqlError::unsupported(
                    at,
                    format!(
                        "column `{}`: type {} is not supported (use BOOLEAN, TINYINT, SMALLINT, \
                         INT, BIGINT, FLOAT, DOUBLE, DECIMAL(p, s) with 1 <= p <= 38 and 0 <= s <= p, \
                         VARCHAR/STRING, BYTES, DATE, TIMESTAMP(p) or TIMESTAMP_LTZ(p))",
                        column.name, column.data_type
                    ),
                )
            })?;
            let clause = statement
                .metadata
                .iter()
                .find(|m| m.column == column.name.value);
            let data_type = match clause {
                Some(m) if m.is_map => {
                    if m.name != "headers" {
                        return Err(SqlError::unsupported(
                            m.at,
                            format!(
                                "column `{}`: a MAP column can only hold the metadata 'headers'",
                                m.column
                            ),
                        ));
                    }
                    headwater_operators::sources::kafka::columns::headers_type()
                }
                _ => data_type,
            };
            fields.push(Field::new(column.name.value.clone(), data_type, !not_null));
        }
        if fields.is_empty() {
            return Err(SqlError::invalid(
                statement.start,
                format!("table `{name}` has no columns"),
            ));
        }
        for key in &primary_key {
            if !fields.iter().any(|f| f.name() == key) {
                return Err(SqlError::invalid(
                    statement.start,
                    format!("table `{name}`: the primary key names `{key}`, which is not a column"),
                ));
            }
        }
        if let Some(m) = statement
            .metadata
            .iter()
            .find(|m| primary_key.contains(&m.column))
        {
            return Err(SqlError::invalid(
                m.at,
                format!(
                    "metadata column `{}` cannot be part of the primary key",
                    m.column
                ),
            ));
        }
        let schema = Arc::new(Schema::new(fields));
        let watermark = statement
            .watermark
            .as_ref()
            .map(|w| watermark(w, &schema, ctx))
            .transpose()?;
        Ok(TableDef {
            name,
            schema,
            watermark,
            primary_key,
            metadata: statement.metadata.clone(),
            options: Options {
                values: statement.options.clone(),
                at: statement.start,
            },
            at: statement.start,
        })
    }

    /// The `connector` option.
    pub fn connector(&self) -> Result<&OptionValue, SqlError> {
        self.options
            .require("connector", &format!("table `{}`", self.name))
    }
}

/// The columns of `PRIMARY KEY (a, b) NOT ENFORCED`.
fn primary_key_columns(pk: &PrimaryKeyConstraint, at: Position) -> Result<Vec<String>, SqlError> {
    not_enforced(pk.characteristics.as_ref(), at)?;
    pk.columns
        .iter()
        .map(|c| match &c.column.expr {
            SqlExpr::Identifier(ident) => Ok(ident.value.clone()),
            other => Err(SqlError::invalid(
                at,
                format!("a primary key is made of columns, not `{other}`"),
            )),
        })
        .collect()
}

/// Headwater does not own the data it writes, so it cannot enforce a key:
/// as in Flink, the only mode is `NOT ENFORCED`, and it must be said.
fn not_enforced(
    characteristics: Option<&ConstraintCharacteristics>,
    at: Position,
) -> Result<(), SqlError> {
    match characteristics.and_then(|c| c.enforced) {
        Some(false) => Ok(()),
        _ => Err(SqlError::unsupported(
            at,
            "a primary key is not enforced (Headwater does not own the data): write \
             PRIMARY KEY (..) NOT ENFORCED",
        )),
    }
}

/// `WATERMARK FOR ts AS ts - INTERVAL '5' SECOND`: the column and the delay.
fn watermark(
    clause: &crate::script::WatermarkClause,
    schema: &SchemaRef,
    ctx: &SessionContext,
) -> Result<(String, Duration), SqlError> {
    let at = clause.at;
    let field = schema.field_with_name(&clause.column).map_err(|_| {
        SqlError::invalid(
            at,
            format!("WATERMARK FOR `{}`: no such column", clause.column),
        )
    })?;
    if !matches!(field.data_type(), DataType::Timestamp(..) | DataType::Int64) {
        return Err(SqlError::invalid(
            at,
            format!(
                "WATERMARK FOR `{}`: the column is {}, not a TIMESTAMP (or BIGINT epoch milliseconds)",
                clause.column,
                field.data_type()
            ),
        ));
    }
    let df_schema =
        DFSchema::try_from(schema.as_ref().clone()).map_err(|e| SqlError::datafusion(e, at))?;
    let expr = ctx
        .parse_sql_expr(&clause.expression, &df_schema)
        .map_err(|e| SqlError::datafusion(e, at))?;
    let bad = || {
        SqlError::unsupported(
            at,
            format!(
                "WATERMARK FOR `{0}` AS {1}: the expression must be `{0}` or `{0} - INTERVAL ..`",
                clause.column, clause.expression
            ),
        )
    };
    let delay = match &expr {
        Expr::Column(c) if c.name == clause.column => Duration::ZERO,
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Minus,
            right,
        }) => match (left.as_ref(), right.as_ref()) {
            (Expr::Column(c), Expr::Literal(value, _)) if c.name == clause.column => {
                interval(value).ok_or_else(bad)?
            }
            _ => return Err(bad()),
        },
        _ => return Err(bad()),
    };
    Ok((clause.column.clone(), delay))
}

/// A fixed interval (no months) as a duration.
pub fn interval(value: &ScalarValue) -> Option<Duration> {
    let nanos: i128 = match value {
        ScalarValue::IntervalMonthDayNano(Some(v)) if v.months == 0 => {
            v.days as i128 * 86_400_000_000_000 + v.nanoseconds as i128
        }
        ScalarValue::IntervalDayTime(Some(v)) => {
            v.days as i128 * 86_400_000_000_000 + v.milliseconds as i128 * 1_000_000
        }
        _ => return None,
    };
    (nanos >= 0).then(|| Duration::from_nanos(nanos as u64))
}

/// A SQL column type as an Arrow type.
fn arrow_type(t: &SqlType) -> Option<DataType> {
    Some(match t {
        SqlType::Boolean | SqlType::Bool => DataType::Boolean,
        SqlType::TinyInt(_) => DataType::Int8,
        SqlType::SmallInt(_) => DataType::Int16,
        SqlType::Int(_) | SqlType::Integer(_) => DataType::Int32,
        SqlType::BigInt(_) => DataType::Int64,
        SqlType::Float(_) | SqlType::Real => DataType::Float32,
        SqlType::Double(_) | SqlType::DoublePrecision => DataType::Float64,
        SqlType::Varchar(_)
        | SqlType::CharVarying(_)
        | SqlType::Char(_)
        | SqlType::Character(_)
        | SqlType::String(_)
        | SqlType::Text => DataType::Utf8,
        SqlType::Date => DataType::Date32,
        SqlType::Bytes(_) | SqlType::Varbinary(_) | SqlType::Binary(_) | SqlType::Bytea => {
            DataType::Binary
        }
        // Flink's TIMESTAMP_LTZ(p): an instant, shown in the session's zone.
        SqlType::Custom(name, args) if name.to_string().eq_ignore_ascii_case("TIMESTAMP_LTZ") => {
            let unit = match args
                .first()
                .and_then(|p| p.parse::<u32>().ok())
                .unwrap_or(3)
            {
                0 => TimeUnit::Second,
                1..=3 => TimeUnit::Millisecond,
                4..=6 => TimeUnit::Microsecond,
                _ => TimeUnit::Nanosecond,
            };
            DataType::Timestamp(unit, Some("UTC".into()))
        }
        SqlType::Timestamp(precision, tz) => {
            let unit = match precision.unwrap_or(3) {
                0 => TimeUnit::Second,
                1..=3 => TimeUnit::Millisecond,
                4..=6 => TimeUnit::Microsecond,
                _ => TimeUnit::Nanosecond,
            };
            let zone = match tz {
                TimezoneInfo::None | TimezoneInfo::WithoutTimeZone => None,
                _ => Some("UTC".into()),
            };
            DataType::Timestamp(unit, zone)
        }
        // As Flink: 1 <= precision <= 38 and 0 <= scale <= precision; any
        // other is refused, never wrapped into another type.
        SqlType::Decimal(info) | SqlType::Numeric(info) | SqlType::Dec(info) => {
            let (p, s) = match info {
                ExactNumberInfo::PrecisionAndScale(p, s) => (*p, *s),
                ExactNumberInfo::Precision(p) => (*p, 0),
                ExactNumberInfo::None => (38, 10),
            };
            if !(1..=38).contains(&p) || s < 0 || s as u64 > p {
                return None;
            }
            DataType::Decimal128(p as u8, s as i8)
        }
        _ => return None,
    })
}

/// A duration as Flink writes them: `'1 h'`, `'30 min'`, `'10 s'`,
/// `'500 ms'`, `'1 d'`, or milliseconds alone.
pub fn duration(text: &str) -> Option<std::time::Duration> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().ok()?;
    let ms = match unit.trim().to_lowercase().as_str() {
        "" | "ms" | "milli" | "millis" | "millisecond" | "milliseconds" => n,
        "s" | "sec" | "secs" | "second" | "seconds" => n * 1000,
        "m" | "min" | "mins" | "minute" | "minutes" => n * 60_000,
        "h" | "hour" | "hours" => n * 3_600_000,
        "d" | "day" | "days" => n * 86_400_000,
        _ => return None,
    };
    Some(std::time::Duration::from_millis(ms))
}
