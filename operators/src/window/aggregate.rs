//! Aggregate functions for windows: any DataFusion aggregate, through its
//! (groups) accumulators.
//!
//! An [`AggregatePlan`] is planned once from DataFusion `Expr`s (`count(..)`,
//! `sum(..)`, `approx_distinct(..)`, with `FILTER` and `DISTINCT`), with the
//! same type coercion as a DataFusion query. [`Accumulators`] hold the partial
//! aggregates of many groups at once and are updated a batch at a time. Their
//! intermediate state travels as Arrow arrays ([`Accumulators::state`],
//! [`Accumulators::merge`]), which is how partials are spilled to RocksDB and
//! merged back.

use std::ops::Range;
use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, BooleanArray, RecordBatch, UInt32Array};
use arrow::compute::take;
use arrow::datatypes::{Field, FieldRef, SchemaRef};
use arrow::row::{RowConverter, Rows, SortField};
use datafusion::common::config::ConfigOptions;
use datafusion::execution::context::ExecutionProps;
use datafusion::logical_expr::EmitTo;
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::{Expr, GroupsAccumulator, LogicalPlan, table_scan};
use datafusion::optimizer::Analyzer;
use datafusion::physical_expr::aggregate::{AggregateFunctionExpr, LoweredAggregateBuilder};
use datafusion::physical_expr::{GroupsAccumulatorAdapter, PhysicalExpr};

use crate::error::{OperatorError, Result};

struct PlannedAggregate {
    function: Arc<AggregateFunctionExpr>,
    args: Vec<Arc<dyn PhysicalExpr>>,
    filter: Option<Arc<dyn PhysicalExpr>>,
    /// Where this aggregate's state columns are among all state columns.
    states: Range<usize>,
}

/// Aggregate expressions planned against one input schema.
pub struct AggregatePlan {
    aggregates: Vec<PlannedAggregate>,
    state_fields: Vec<FieldRef>,
    output_fields: Vec<FieldRef>,
}

impl std::fmt::Debug for AggregatePlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AggregatePlan")
            .field("output_fields", &self.output_fields)
            .finish()
    }
}

impl AggregatePlan {
    /// Plans `exprs` (each an aggregate function call, optionally aliased) over `schema`.
    pub fn try_new(exprs: &[Expr], schema: &SchemaRef) -> Result<Self> {
        if exprs.is_empty() {
            return Err(OperatorError::Config(
                "a window needs at least one aggregate".into(),
            ));
        }
        let failed = |expr: &Expr| {
            let expr = expr.to_string();
            move |source| OperatorError::Expr { expr, source }
        };
        // Coerce argument types as a DataFusion query would: plan an aggregate
        // over a scan of the schema and run the analyzer on it.
        let plan = table_scan(Some("input"), schema.as_ref(), None)
            .and_then(|b| b.aggregate(Vec::<Expr>::new(), exprs.to_vec()))
            .and_then(|b| b.build())
            .map_err(failed(&exprs[0]))?;
        let plan = Analyzer::new()
            .execute_and_check(plan, &ConfigOptions::default(), |_, _| {})
            .map_err(failed(&exprs[0]))?;
        let LogicalPlan::Aggregate(aggregate) = plan else {
            return Err(OperatorError::Config(format!(
                "aggregates planned to an unexpected plan:\n{plan}"
            )));
        };
        let input_schema = aggregate.input.schema();
        let props = ExecutionProps::new();
        let mut aggregates = Vec::new();
        let mut state_fields = Vec::new();
        let mut output_fields = Vec::new();
        for (expr, user_expr) in aggregate.aggr_expr.iter().zip(exprs) {
            let planning = PhysicalPlanningContext::default();
            let lowered = LoweredAggregateBuilder::new(
                expr,
                input_schema,
                input_schema.as_arrow(),
                &props,
                &planning,
            )
            .build()
            .map_err(failed(user_expr))?;
            let (function, filter) = (lowered.aggregate, lowered.filter);
            // An ordered aggregate (`last_value(x ORDER BY t)`) takes its
            // ordering values as extra arguments and orders rows itself, as
            // DataFusion's own aggregation does with unsorted input.
            let mut args = function.expressions();
            args.extend(lowered.order_bys.iter().map(|s| Arc::clone(&s.expr)));
            let states = function.state_fields().map_err(failed(user_expr))?;
            let range = state_fields.len()..state_fields.len() + states.len();
            state_fields.extend(states);
            let field = function.field();
            output_fields.push(Arc::new(Field::new(
                output_name(user_expr),
                field.data_type().clone(),
                field.is_nullable(),
            )));
            aggregates.push(PlannedAggregate {
                args,
                function,
                filter,
                states: range,
            });
        }
        Ok(AggregatePlan {
            aggregates,
            state_fields,
            output_fields,
        })
    }

    /// The result columns, one per aggregate, named by alias or by the expression.
    pub fn output_fields(&self) -> &[FieldRef] {
        &self.output_fields
    }

    /// The columns of the intermediate state of every aggregate, in order.
    pub fn state_fields(&self) -> &[FieldRef] {
        &self.state_fields
    }

    /// Fresh accumulators, holding no groups.
    pub fn accumulators(&self) -> Result<Accumulators> {
        let accumulators = self
            .aggregates
            .iter()
            .map(|a| {
                if a.function.groups_accumulator_supported() {
                    Ok(a.function.create_groups_accumulator()?)
                } else {
                    let function = a.function.clone();
                    Ok(Box::new(GroupsAccumulatorAdapter::new(move || {
                        function.create_accumulator()
                    })) as Box<dyn GroupsAccumulator>)
                }
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Accumulators {
            accumulators,
            states: self.aggregates.iter().map(|a| a.states.clone()).collect(),
            groups: 0,
        })
    }

    /// Evaluates every aggregate's arguments (and filter) on `batch`.
    pub fn inputs(&self, batch: &RecordBatch) -> Result<AggregateInputs> {
        let rows = batch.num_rows();
        let inputs = self
            .aggregates
            .iter()
            .map(|a| {
                let args = a
                    .args
                    .iter()
                    .map(|e| e.evaluate(batch)?.into_array(rows))
                    .collect::<Result<Vec<_>, _>>()?;
                let filter = match &a.filter {
                    Some(f) => Some(f.evaluate(batch)?.into_array(rows)?.as_boolean().clone()),
                    None => None,
                };
                Ok((args, filter))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(AggregateInputs { inputs, rows })
    }

    /// A codec of state rows: one byte string per group holding all its state columns.
    pub fn state_codec(&self) -> Result<StateRowCodec> {
        let fields = self
            .state_fields
            .iter()
            .map(|f| SortField::new(f.data_type().clone()))
            .collect();
        let converter = RowConverter::new(fields).map_err(|e| {
            OperatorError::Config(format!(
                "these aggregates keep state of a type windows cannot store ({}): {e}",
                self.state_fields
                    .iter()
                    .map(|f| f.data_type().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
        Ok(StateRowCodec { converter })
    }
}

/// `count(x) AS n` is named `n`; an unnamed aggregate by its text.
fn output_name(expr: &Expr) -> String {
    match expr {
        Expr::Alias(alias) => alias.name.clone(),
        other => other.schema_name().to_string(),
    }
}

/// The evaluated arguments of every aggregate, for the rows of one batch.
pub struct AggregateInputs {
    inputs: Vec<(Vec<ArrayRef>, Option<BooleanArray>)>,
    rows: usize,
}

impl AggregateInputs {
    pub fn num_rows(&self) -> usize {
        self.rows
    }

    /// The inputs of the rows at `indices`.
    pub fn take(&self, indices: &UInt32Array) -> Result<AggregateInputs> {
        let inputs = self
            .inputs
            .iter()
            .map(|(args, filter)| {
                let args = args
                    .iter()
                    .map(|a| take(a.as_ref(), indices, None))
                    .collect::<Result<Vec<_>, _>>()?;
                let filter = match filter {
                    Some(f) => Some(take(f, indices, None)?.as_boolean().clone()),
                    None => None,
                };
                Ok((args, filter))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(AggregateInputs {
            inputs,
            rows: indices.len(),
        })
    }
}

/// The partial aggregates of a set of groups (numbered 0..n), for every aggregate.
pub struct Accumulators {
    accumulators: Vec<Box<dyn GroupsAccumulator>>,
    states: Vec<Range<usize>>,
    groups: usize,
}

impl Accumulators {
    /// The number of groups held.
    pub fn groups(&self) -> usize {
        self.groups
    }

    /// Adds rows to groups: row `i` of `inputs` goes to group `group_indices[i]`.
    pub fn update(
        &mut self,
        inputs: &AggregateInputs,
        group_indices: &[usize],
        total_groups: usize,
    ) -> Result<()> {
        self.groups = self.groups.max(total_groups);
        for (acc, (args, filter)) in self.accumulators.iter_mut().zip(&inputs.inputs) {
            acc.update_batch(args, group_indices, filter.as_ref(), self.groups)?;
        }
        Ok(())
    }

    /// Merges partial states (all state columns, as from [`Accumulators::state`]):
    /// state row `i` goes into group `group_indices[i]`.
    pub fn merge(
        &mut self,
        states: &[ArrayRef],
        group_indices: &[usize],
        total_groups: usize,
    ) -> Result<()> {
        self.groups = self.groups.max(total_groups);
        for (acc, range) in self.accumulators.iter_mut().zip(&self.states) {
            acc.merge_batch(&states[range.clone()], group_indices, self.groups)?;
        }
        Ok(())
    }

    /// Takes out the state of every group (all state columns); no groups remain.
    pub fn state(&mut self) -> Result<Vec<ArrayRef>> {
        let mut columns = Vec::new();
        for acc in &mut self.accumulators {
            columns.extend(acc.state(EmitTo::All)?);
        }
        self.groups = 0;
        Ok(columns)
    }

    /// Takes out the final value of every group, one column per aggregate; no groups remain.
    pub fn evaluate(&mut self) -> Result<Vec<ArrayRef>> {
        let columns = self
            .accumulators
            .iter_mut()
            .map(|acc| acc.evaluate(EmitTo::All))
            .collect::<Result<Vec<_>, _>>()?;
        self.groups = 0;
        Ok(columns)
    }

    /// Bytes of memory held.
    pub fn size(&self) -> usize {
        self.accumulators.iter().map(|a| a.size()).sum()
    }
}

/// Encodes the state columns of each group as one byte string (Arrow's row
/// format), to store a group's partial aggregate under its key.
pub struct StateRowCodec {
    converter: RowConverter,
}

impl StateRowCodec {
    pub fn encode(&self, states: &[ArrayRef]) -> Result<Rows> {
        Ok(self.converter.convert_columns(states)?)
    }

    /// The state columns of the encoded rows in `rows`.
    pub fn decode<'a>(&self, rows: impl IntoIterator<Item = &'a [u8]>) -> Result<Vec<ArrayRef>> {
        let parser = self.converter.parser();
        let rows: Vec<_> = rows.into_iter().map(|r| parser.parse(r)).collect();
        Ok(self.converter.convert_rows(rows)?)
    }
}
