//! Reading materialized views with SQL: DataFusion over one table provider
//! per view, every view as of the same completed checkpoint. An equality on
//! a view's whole key is a point lookup in the one subtask copy that holds
//! the key; anything else scans the copies.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{Result as DfResult, ScalarValue};
use datafusion::datasource::{MemTable, TableType};
use datafusion::execution::context::SQLOptions;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionContext;
use headwater_operators::view::{SnapshotPart, ViewCodec, ViewRegistry, rows_state};
use headwater_runtime::key_groups::key_group_of;
use headwater_runtime::key_hash::hash_columns;

/// A view as of one checkpoint.
#[derive(Debug)]
pub struct ViewTable {
    pub name: String,
    pub schema: SchemaRef,
    pub key: Vec<usize>,
    pub max_parallelism: u32,
    pub parts: Vec<SnapshotPart>,
}

impl ViewTable {
    /// The key's value if `filters` fix every key column to a literal.
    fn key_values(&self, filters: &[Expr]) -> Option<Vec<ScalarValue>> {
        if self.key.is_empty() {
            return None;
        }
        self.key
            .iter()
            .map(|&i| {
                let name = self.schema.field(i).name();
                filters.iter().find_map(|f| key_equality(f, name))
            })
            .collect()
    }

    fn rows(&self, filters: &[Expr]) -> DfResult<RecordBatch> {
        let codec = ViewCodec::new(&self.schema, &self.key)
            .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
        let state = rows_state(&self.name);
        let failed = |e: headwater_runtime::state::StateError| {
            datafusion::error::DataFusionError::External(Box::new(e))
        };
        let mut values: Vec<Box<[u8]>> = Vec::new();
        if let Some(key) = self.key_values(filters) {
            let columns: Vec<ArrayRef> = key
                .iter()
                .zip(&self.key)
                .map(|(v, &i)| v.cast_to(self.schema.field(i).data_type())?.to_array())
                .collect::<DfResult<_>>()?;
            let encoded = codec.keys.convert_columns(&columns)?;
            let mut hashes = Vec::new();
            hash_columns(&columns, 1, &mut hashes)
                .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
            let key_group = key_group_of(hashes[0], self.max_parallelism);
            for part in &self.parts {
                if part.key_groups.start <= key_group && key_group < part.key_groups.end {
                    if let Some(v) = part
                        .snapshot
                        .get(&state, key_group, encoded.row(0).as_ref())
                        .map_err(failed)?
                    {
                        values.push(v.into());
                    }
                }
            }
        } else {
            for part in &self.parts {
                for key_group in part.key_groups.start..part.key_groups.end {
                    for (_, value) in part
                        .snapshot
                        .range(&state, key_group, &[], None)
                        .map_err(failed)?
                    {
                        values.push(value);
                    }
                }
            }
        }
        let parser = codec.rows.parser();
        let rows = values.iter().map(|v| parser.parse(v));
        let columns = codec.rows.convert_rows(rows)?;
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }
}

/// `column = literal` (either way round) on `name`.
fn key_equality(filter: &Expr, name: &str) -> Option<ScalarValue> {
    let Expr::BinaryExpr(BinaryExpr {
        left,
        op: Operator::Eq,
        right,
    }) = filter
    else {
        return None;
    };
    match (left.as_ref(), right.as_ref()) {
        (Expr::Column(c), Expr::Literal(v, _)) | (Expr::Literal(v, _), Expr::Column(c))
            if c.name == name && !v.is_null() =>
        {
            Some(v.clone())
        }
        _ => None,
    }
}

#[async_trait]
impl TableProvider for ViewTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        Ok(filters
            .iter()
            .map(|f| {
                let on_key = self
                    .key
                    .iter()
                    .any(|&i| key_equality(f, self.schema.field(i).name()).is_some());
                if on_key {
                    // Used for a point lookup; DataFusion still checks it.
                    TableProviderFilterPushDown::Inexact
                } else {
                    TableProviderFilterPushDown::Unsupported
                }
            })
            .collect())
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let batch = self.rows(filters)?;
        MemTable::try_new(self.schema.clone(), vec![vec![batch]])?
            .scan(state, projection, &[], limit)
            .await
    }
}

/// Runs read-only SQL over the views of a registry.
#[derive(Debug, Clone)]
pub struct ViewQueries {
    pub registry: ViewRegistry,
}

impl ViewQueries {
    pub fn new(registry: ViewRegistry) -> Self {
        ViewQueries { registry }
    }

    /// A session whose tables are the views, all as of the newest checkpoint
    /// every view has published (empty before the first).
    pub fn session(&self) -> DfResult<(SessionContext, Option<u64>)> {
        let ctx = SessionContext::new();
        let names = self.registry.names();
        let version = self.registry.read_version(&names);
        for name in names {
            let Some((schema, key, max_parallelism)) = self.registry.describe(&name) else {
                continue;
            };
            let parts = version.map_or_else(Vec::new, |v| self.registry.parts(&name, v));
            ctx.register_table(
                &name,
                Arc::new(ViewTable {
                    name: name.clone(),
                    schema,
                    key,
                    max_parallelism,
                    parts,
                }),
            )?;
        }
        Ok((ctx, version))
    }

    /// Runs one query (SELECT, EXPLAIN, SHOW ..): no DDL, no writes.
    pub async fn query(&self, sql: &str) -> DfResult<(SchemaRef, Vec<RecordBatch>)> {
        let (ctx, _) = self.session()?;
        let options = SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false);
        let frame = ctx.sql_with_options(sql, options).await?;
        let schema: SchemaRef = Arc::new(frame.schema().as_arrow().clone());
        let batches = frame.collect().await?;
        Ok((schema, batches))
    }
}
