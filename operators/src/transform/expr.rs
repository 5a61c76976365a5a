//! DataFusion expressions, planned once against a stream's schema and then
//! evaluated on whole batches.

use std::sync::Arc;

use arrow::datatypes::{Field, SchemaRef};
use datafusion::common::DFSchema;
use datafusion::logical_expr::Expr;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::prelude::SessionContext;

use crate::error::OperatorError;

/// An expression planned for batches of one schema, and the field it makes.
#[derive(Debug, Clone)]
pub struct PlannedExpr {
    pub expr: Arc<dyn PhysicalExpr>,
    /// Named by the alias, or by the expression's text.
    pub field: Field,
}

/// Plans `expr` over `schema`: type coercion and function rewrites, then a
/// physical expression that runs on a batch of that schema.
pub fn plan_expr(expr: &Expr, schema: &SchemaRef) -> Result<PlannedExpr, OperatorError> {
    let failed = |source| OperatorError::Expr {
        expr: expr.to_string(),
        source,
    };
    let df_schema = DFSchema::try_from(schema.as_ref().clone())?;
    let physical = SessionContext::new()
        .create_physical_expr(expr.clone(), &df_schema)
        .map_err(failed)?;
    let data_type = physical.data_type(schema).map_err(failed)?;
    let nullable = physical.nullable(schema).map_err(failed)?;
    Ok(PlannedExpr {
        expr: physical,
        field: Field::new(expr.schema_name().to_string(), data_type, nullable),
    })
}
