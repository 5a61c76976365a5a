//! Flink's built-in functions with Flink's meaning, where DataFusion has
//! none of that name or one that means something else: `DATE_FORMAT` takes
//! Java patterns here, not strftime, so a Flink query never gets a silent
//! wrong answer.
//!
//! Most are scalar UDFs ([`FlinkFunction`]). A few are rewritten in the
//! parsed statement instead ([`rewrite_statement`]): `IF` becomes a `CASE`
//! (so only the chosen branch is evaluated), `MOD` becomes `%`, and the unit
//! of `TIMESTAMPADD`/`TIMESTAMPDIFF` (a keyword) becomes a string.
//!
//! The session time zone is UTC.

mod java_time;
mod json;
mod string;
mod time;

use std::ops::ControlFlow;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{Result as DfResult, ScalarValue, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    TypeSignature, Volatility,
};
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser;
use sqlparser::ast::helpers::attached_token::AttachedToken;
use sqlparser::ast::{
    BinaryOperator, CaseWhen, Expr as SqlExpr, FunctionArg, FunctionArgExpr, FunctionArguments,
    Ident, Statement, Value, visit_expressions_mut,
};

pub use java_time::JavaPattern;

use crate::error::Position;
use crate::script::JsonClauses;

/// What a [`FlinkFunction`] computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    DateFormat,
    ToTimestamp,
    ToTimestampLtz,
    UnixTimestamp,
    FromUnixtime,
    TimestampAdd,
    TimestampDiff,
    RegexpExtract,
    SplitIndex,
    Locate,
    JsonValue,
    JsonQuery,
}

impl Kind {
    const ALL: [Kind; 12] = [
        Kind::DateFormat,
        Kind::ToTimestamp,
        Kind::ToTimestampLtz,
        Kind::UnixTimestamp,
        Kind::FromUnixtime,
        Kind::TimestampAdd,
        Kind::TimestampDiff,
        Kind::RegexpExtract,
        Kind::SplitIndex,
        Kind::Locate,
        Kind::JsonValue,
        Kind::JsonQuery,
    ];

    fn name(self) -> &'static str {
        match self {
            Kind::DateFormat => "date_format",
            Kind::ToTimestamp => "to_timestamp",
            Kind::ToTimestampLtz => "to_timestamp_ltz",
            Kind::UnixTimestamp => "unix_timestamp",
            Kind::FromUnixtime => "from_unixtime",
            Kind::TimestampAdd => "timestampadd",
            Kind::TimestampDiff => "timestampdiff",
            Kind::RegexpExtract => "regexp_extract",
            Kind::SplitIndex => "split_index",
            Kind::Locate => "locate",
            Kind::JsonValue => "json_value",
            Kind::JsonQuery => "json_query",
        }
    }

    /// How many arguments it takes.
    fn arity(self) -> std::ops::RangeInclusive<usize> {
        match self {
            Kind::UnixTimestamp => 0..=2,
            Kind::ToTimestamp | Kind::FromUnixtime | Kind::ToTimestampLtz => 1..=2,
            Kind::DateFormat => 2..=2,
            Kind::TimestampAdd | Kind::TimestampDiff | Kind::SplitIndex => 3..=3,
            Kind::RegexpExtract | Kind::Locate => 2..=3,
            // The path, then RETURNING, (the wrapper,) ON EMPTY and ON
            // ERROR as lifted by the script reader.
            Kind::JsonValue => 2..=5,
            Kind::JsonQuery => 2..=6,
        }
    }
}

/// One of Flink's functions as a DataFusion scalar UDF.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct FlinkFunction {
    kind: Kind,
    signature: Signature,
}

impl FlinkFunction {
    pub fn new(kind: Kind) -> FlinkFunction {
        let volatility = if kind == Kind::UnixTimestamp {
            Volatility::Volatile
        } else {
            Volatility::Immutable
        };
        let signature = Signature::one_of(
            vec![TypeSignature::Nullary, TypeSignature::UserDefined],
            volatility,
        );
        FlinkFunction { kind, signature }
    }

    fn check_arity(&self, count: usize) -> DfResult<()> {
        let arity = self.kind.arity();
        if !arity.contains(&count) {
            return plan_err!(
                "{} takes {} to {} arguments, not {count}",
                self.kind.name().to_uppercase(),
                arity.start(),
                arity.end()
            );
        }
        Ok(())
    }

    /// The result type, from the argument types and the literal arguments.
    fn data_type(
        &self,
        types: &[DataType],
        scalars: &[Option<&ScalarValue>],
    ) -> DfResult<DataType> {
        self.check_arity(types.len())?;
        Ok(match self.kind {
            Kind::DateFormat
            | Kind::FromUnixtime
            | Kind::RegexpExtract
            | Kind::SplitIndex
            | Kind::JsonQuery => DataType::Utf8,
            Kind::Locate | Kind::TimestampDiff => DataType::Int32,
            Kind::UnixTimestamp => DataType::Int64,
            Kind::ToTimestamp => time::timestamp_type(None),
            Kind::ToTimestampLtz => time::timestamp_type(Some("UTC")),
            Kind::TimestampAdd => types[2].clone(),
            Kind::JsonValue => json::returning(scalars)?,
        })
    }
}

impl ScalarUDFImpl for FlinkFunction {
    fn name(&self) -> &str {
        self.kind.name()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> DfResult<Vec<DataType>> {
        self.check_arity(arg_types.len())?;
        match self.kind {
            Kind::RegexpExtract | Kind::SplitIndex | Kind::Locate => {
                string::coerce(self.kind, arg_types)
            }
            Kind::JsonValue | Kind::JsonQuery => Ok(vec![DataType::Utf8; arg_types.len()]),
            _ => time::coerce(self.kind, arg_types),
        }
    }

    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        self.data_type(arg_types, &[])
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> DfResult<FieldRef> {
        let types: Vec<DataType> = args
            .arg_fields
            .iter()
            .map(|f| f.data_type().clone())
            .collect();
        let data_type = self.data_type(&types, args.scalar_arguments)?;
        Ok(Arc::new(Field::new(self.name(), data_type, true)))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let rows = args.number_rows;
        let return_type = args.return_field.data_type().clone();
        // Every argument as an array of the batch's length, also when all
        // are literals (a stream does not fold them away).
        let arrays = args
            .args
            .iter()
            .map(|a| a.to_array(rows))
            .collect::<DfResult<Vec<_>>>()?;
        let result = match self.kind {
            Kind::RegexpExtract | Kind::SplitIndex | Kind::Locate => {
                string::evaluate(self.kind, &arrays)?
            }
            Kind::JsonValue | Kind::JsonQuery => json::evaluate(self.kind, &arrays, &return_type)?,
            _ => time::evaluate(self.kind, &arrays, rows, &return_type)?,
        };
        Ok(ColumnarValue::Array(result))
    }
}

/// Registers Flink's functions in a session, over DataFusion's of the same
/// name.
pub fn register(ctx: &SessionContext) {
    for kind in Kind::ALL {
        ctx.register_udf(ScalarUDF::new_from_impl(FlinkFunction::new(kind)));
    }
}

/// Rewrites the Flink calls that are not functions in DataFusion: `IF`,
/// `MOD` and the unit keyword of `TIMESTAMPADD`/`TIMESTAMPDIFF`; and gives
/// each `JSON_VALUE`/`JSON_QUERY` the clauses the script reader lifted.
pub fn rewrite_statement(statement: &mut Statement, json: &[JsonClauses]) {
    let _ = visit_expressions_mut(statement, |expr| {
        rewrite_call(expr, json);
        ControlFlow::<()>::Continue(())
    });
}

fn rewrite_call(expr: &mut SqlExpr, json: &[JsonClauses]) {
    let SqlExpr::Function(function) = expr else {
        return;
    };
    let name = function.name.to_string().to_ascii_uppercase();
    let at: Option<Position> = function
        .name
        .0
        .first()
        .and_then(|part| part.as_ident())
        .map(|ident| ident.span.start.into());
    let FunctionArguments::List(list) = &mut function.args else {
        return;
    };
    if (name == "JSON_VALUE" || name == "JSON_QUERY")
        && let Some(clauses) = json.iter().find(|c| Some(c.at) == at)
    {
        for argument in &clauses.arguments {
            list.args
                .push(FunctionArg::Unnamed(FunctionArgExpr::Expr(SqlExpr::value(
                    Value::SingleQuotedString(argument.clone()),
                ))));
        }
        return;
    }
    let plain: Option<Vec<SqlExpr>> = list
        .args
        .iter()
        .map(|a| match a {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e.clone()),
            _ => None,
        })
        .collect();
    match (name.as_str(), plain) {
        ("IF", Some(args)) if args.len() == 3 => {
            let [condition, then, otherwise] = <[SqlExpr; 3]>::try_from(args).expect("3");
            *expr = SqlExpr::Case {
                case_token: AttachedToken::empty(),
                end_token: AttachedToken::empty(),
                operand: None,
                conditions: vec![CaseWhen {
                    condition,
                    result: then,
                }],
                else_result: Some(Box::new(otherwise)),
            };
        }
        ("MOD", Some(args)) if args.len() == 2 => {
            let [left, right] = <[SqlExpr; 2]>::try_from(args).expect("2");
            *expr = SqlExpr::Nested(Box::new(SqlExpr::BinaryOp {
                left: Box::new(left),
                op: BinaryOperator::Modulo,
                right: Box::new(right),
            }));
        }
        ("TIMESTAMPADD" | "TIMESTAMPDIFF", Some(_)) => {
            if let Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(unit))) = list.args.first_mut()
                && let SqlExpr::Identifier(Ident {
                    value,
                    quote_style: None,
                    ..
                }) = unit
            {
                *unit = SqlExpr::value(Value::SingleQuotedString(value.to_ascii_uppercase()));
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests;
