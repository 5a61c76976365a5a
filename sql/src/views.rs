//! Reading materialized views with SQL: DataFusion over one table provider
//! per view, every view as of the same completed checkpoint. An equality on
//! a view's whole key is a point lookup in the one subtask copy that holds
//! the key; anything else scans the copies.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{Result as DfResult, ScalarValue};
use datafusion::datasource::{MemTable, TableType};
use datafusion::error::DataFusionError;
use datafusion::execution::context::SQLOptions;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::streaming::{PartitionStream, StreamingTableExec};
use datafusion::prelude::SessionContext;
use headwater_operators::view::{SnapshotPart, ViewCodec, ViewRegistry, rows_state};
use headwater_runtime::key_groups::key_group_of;
use headwater_runtime::key_hash::hash_columns;

use crate::view_scan::{PartScan, read_failed};

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

    /// Bounds on the key's first column from `filters`: the lower one, and
    /// the upper one with whether it is included.
    fn key_range(&self, filters: &[Expr]) -> Option<KeyRange> {
        let &first = self.key.first()?;
        let name = self.schema.field(first).name();
        let mut range = KeyRange::default();
        for filter in filters {
            for (op, value) in key_comparisons(filter, name) {
                match op {
                    Operator::Gt | Operator::GtEq => {
                        range.lower = Some(value);
                    }
                    Operator::Lt => range.upper = Some((value, false)),
                    Operator::LtEq => range.upper = Some((value, true)),
                    _ => {}
                }
            }
        }
        (range.lower.is_some() || range.upper.is_some()).then_some(range)
    }

    /// The rows whose key is `key`: one lookup in the copy that holds it.
    fn lookup(&self, key: &[ScalarValue]) -> DfResult<RecordBatch> {
        let codec = ViewCodec::new(&self.schema, &self.key).map_err(external)?;
        let state = rows_state(&self.name);
        let columns: Vec<ArrayRef> = key
            .iter()
            .zip(&self.key)
            .map(|(v, &i)| v.cast_to(self.schema.field(i).data_type())?.to_array())
            .collect::<DfResult<_>>()?;
        let encoded = codec.keys.convert_columns(&columns)?;
        let mut hashes = Vec::new();
        hash_columns(&columns, 1, &mut hashes).map_err(external)?;
        let key_group = key_group_of(hashes[0], self.max_parallelism);
        let mut values: Vec<Vec<u8>> = Vec::new();
        for part in &self.parts {
            if part.key_groups.start <= key_group && key_group < part.key_groups.end {
                if let Some(v) = part
                    .snapshot
                    .get(&state, key_group, encoded.row(0).as_ref())
                    .map_err(|e| read_failed(&self.name, &e))?
                {
                    values.push(v);
                }
            }
        }
        let parser = codec.rows.parser();
        let rows = values.iter().map(|v| parser.parse(v));
        let columns = codec.rows.convert_rows(rows)?;
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }

    /// A scan of every copy, batch by batch, bounded by a range on the key's
    /// first column from `filters` when they have one.
    fn scan_parts(&self, filters: &[Expr]) -> DfResult<Vec<Arc<dyn PartitionStream>>> {
        // A range on the key's first column bounds the scan of every key
        // group: the row format keeps the column's order, and a key's
        // encoding starts with its first column's.
        let (from, to) = match self.key_range(filters) {
            Some(range) => range.encoded(self.schema.field(self.key[0]).data_type())?,
            None => (Vec::new(), None),
        };
        Ok(self
            .parts
            .iter()
            .map(|part| {
                Arc::new(PartScan {
                    view: self.name.clone(),
                    schema: self.schema.clone(),
                    key: self.key.clone(),
                    part: part.clone(),
                    from: from.clone(),
                    to: to.clone(),
                }) as Arc<dyn PartitionStream>
            })
            .collect())
    }
}

fn external(e: impl std::error::Error + Send + Sync + 'static) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

/// Bounds on a view key's first column.
#[derive(Debug, Default)]
struct KeyRange {
    /// Included (a strict bound is checked again by DataFusion).
    lower: Option<ScalarValue>,
    /// With whether it is included.
    upper: Option<(ScalarValue, bool)>,
}

impl KeyRange {
    /// The range of encoded keys to read: from (included), to (excluded).
    fn encoded(&self, data_type: &DataType) -> DfResult<(Vec<u8>, Option<Vec<u8>>)> {
        let converter = RowConverter::new(vec![SortField::new(data_type.clone())])?;
        let encode = |v: &ScalarValue| -> DfResult<Vec<u8>> {
            let column = v.cast_to(data_type)?.to_array()?;
            Ok(converter
                .convert_columns(&[column])?
                .row(0)
                .as_ref()
                .to_vec())
        };
        let from = match &self.lower {
            Some(v) => encode(v)?,
            None => Vec::new(),
        };
        let to = match &self.upper {
            Some((v, false)) => Some(encode(v)?),
            // Every key whose first column is `v`: up to the next prefix.
            Some((v, true)) => prefix_successor(encode(v)?),
            None => None,
        };
        Ok((from, to))
    }
}

/// The smallest byte string above every string that starts with `prefix`
/// (`None`: there is none).
fn prefix_successor(mut prefix: Vec<u8>) -> Option<Vec<u8>> {
    while let Some(last) = prefix.pop() {
        if last < u8::MAX {
            prefix.push(last + 1);
            return Some(prefix);
        }
    }
    None
}

/// `column <op> literal` comparisons on `name` in `filter` (`BETWEEN` and
/// `AND` included), turned so that the column is on the left.
fn key_comparisons(filter: &Expr, name: &str) -> Vec<(Operator, ScalarValue)> {
    match filter {
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::And,
            right,
        }) => {
            let mut all = key_comparisons(left, name);
            all.extend(key_comparisons(right, name));
            all
        }
        Expr::Between(between) if !between.negated => match (
            between.expr.as_ref(),
            between.low.as_ref(),
            between.high.as_ref(),
        ) {
            (Expr::Column(c), Expr::Literal(low, _), Expr::Literal(high, _))
                if c.name == name && !low.is_null() && !high.is_null() =>
            {
                vec![
                    (Operator::GtEq, low.clone()),
                    (Operator::LtEq, high.clone()),
                ]
            }
            _ => Vec::new(),
        },
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => match (left.as_ref(), right.as_ref()) {
            (Expr::Column(c), Expr::Literal(v, _)) if c.name == name && !v.is_null() => {
                vec![(*op, v.clone())]
            }
            (Expr::Literal(v, _), Expr::Column(c)) if c.name == name && !v.is_null() => op
                .swap()
                .map(|op| vec![(op, v.clone())])
                .unwrap_or_default(),
            _ => Vec::new(),
        },
        _ => Vec::new(),
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
                let on_first = self
                    .key
                    .first()
                    .is_some_and(|&i| !key_comparisons(f, self.schema.field(i).name()).is_empty());
                if on_key || on_first {
                    // Used for a point lookup or a range scan; DataFusion still checks it.
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
        // A limit reaches the scan only when no filter is left above it.
        if let Some(key) = self.key_values(filters) {
            let batch = self.lookup(&key)?;
            return MemTable::try_new(self.schema.clone(), vec![vec![batch]])?
                .scan(state, projection, &[], limit)
                .await;
        }
        let parts = self.scan_parts(filters)?;
        if parts.is_empty() {
            // No checkpoint published yet: no rows.
            return MemTable::try_new(self.schema.clone(), vec![vec![]])?
                .scan(state, projection, &[], limit)
                .await;
        }
        Ok(Arc::new(StreamingTableExec::try_new(
            self.schema.clone(),
            parts,
            projection,
            [],
            false,
            limit,
        )?))
    }
}

/// A session over the views as of some checkpoints, and which ones.
type CachedSession = (Vec<(String, Option<u64>)>, SessionContext);

/// What a server adds to every session it makes (a catalog, functions).
pub type SessionSetup = Arc<dyn Fn(&SessionContext) -> DfResult<()> + Send + Sync>;

/// Runs read-only SQL over the views of a registry.
#[derive(Clone)]
pub struct ViewQueries {
    pub registry: ViewRegistry,
    cache: Arc<std::sync::Mutex<Option<CachedSession>>>,
    setup: Option<SessionSetup>,
}

impl ViewQueries {
    pub fn new(registry: ViewRegistry) -> Self {
        ViewQueries {
            registry,
            cache: Default::default(),
            setup: None,
        }
    }

    /// Runs `setup` on every session made over the views.
    pub fn with_setup(mut self, setup: SessionSetup) -> Self {
        self.setup = Some(setup);
        self
    }

    /// A session whose tables are the views, the views of a job all as of
    /// the newest checkpoint each of them has published (empty before the
    /// first); with the checkpoint each view is read at.
    ///
    /// While a view of a running job has no published checkpoint yet (its
    /// job is starting, or restoring), it waits for one (up to 30 s).
    pub async fn session(&self) -> DfResult<(SessionContext, HashMap<String, u64>)> {
        self.registry
            .wait_published(std::time::Duration::from_secs(30))
            .await;
        let versions = self.registry.read_versions();
        let names = self.registry.names();
        let signature: Vec<(String, Option<u64>)> = names
            .iter()
            .map(|n| (n.clone(), versions.get(n).copied()))
            .collect();
        // Views as of the same checkpoints: the same (read-only) session,
        // built once per checkpoint rather than once per query.
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((cached, ctx)) = cache.as_ref()
            && *cached == signature
        {
            return Ok((ctx.clone(), versions));
        }
        let ctx = SessionContext::new_with_config(
            datafusion::prelude::SessionConfig::new().with_information_schema(true),
        );
        for name in names {
            let Some((schema, key, max_parallelism)) = self.registry.describe(&name) else {
                continue;
            };
            let parts = versions
                .get(&name)
                .map_or_else(Vec::new, |&v| self.registry.parts(&name, v));
            ctx.register_table(
                datafusion::common::TableReference::bare(name.clone()),
                Arc::new(ViewTable {
                    name: name.clone(),
                    schema,
                    key,
                    max_parallelism,
                    parts,
                }),
            )?;
        }
        if let Some(setup) = &self.setup {
            setup(&ctx)?;
        }
        *cache = Some((signature, ctx.clone()));
        Ok((ctx, versions))
    }

    /// Runs one query (SELECT, EXPLAIN, SHOW ..): no DDL, no writes.
    pub async fn query(&self, sql: &str) -> DfResult<(SchemaRef, Vec<RecordBatch>)> {
        let (ctx, _) = self.session().await?;
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
