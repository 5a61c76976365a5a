//! The batch side of the window table functions: DataFusion computes the
//! windows of a bounded table itself, so the same query text runs as a batch
//! query, the oracle a streaming result is checked against.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch, TimestampMillisecondArray, UInt32Array};
use datafusion::arrow::compute::take;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{Result as DfResult, not_impl_err};
use datafusion::datasource::MemTable;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::{ExecutionPlan, collect};
use headwater_operators::window::{self, WindowKind, millis};

use crate::catalog::WindowedTable;

/// Scans a windowed bounded table: every row once per window it is in.
pub(crate) async fn scan_windowed(
    table: &WindowedTable,
    state: &dyn Session,
    projection: Option<&Vec<usize>>,
    filters: &[Expr],
    limit: Option<usize>,
) -> DfResult<Arc<dyn ExecutionPlan>> {
    if let WindowKind::Session { .. } = table.kind {
        return not_impl_err!("SESSION windows have no batch form: they need the GROUP BY keys");
    }
    let input = table.input.scan(state, None, &[], None).await?;
    let batches = collect(input, state.task_ctx()).await?;
    let mut out = Vec::with_capacity(batches.len());
    for batch in batches {
        out.push(assign_windows(table, &batch)?);
    }
    MemTable::try_new(table.schema.clone(), vec![out])?
        .scan(state, projection, filters, limit)
        .await
}

fn assign_windows(table: &WindowedTable, batch: &RecordBatch) -> DfResult<RecordBatch> {
    let time = batch
        .column_by_name(&table.time_column)
        .ok_or_else(|| datafusion::common::DataFusionError::Plan("no time column".into()))?;
    let external = |e: headwater_operators::OperatorError| {
        datafusion::common::DataFusionError::External(Box::new(e))
    };
    let time = millis(time).map_err(external)?;
    let windows = window::assign_windows(table.kind, time.iter()).map_err(external)?;
    let indices = UInt32Array::from(windows.rows);
    let mut columns: Vec<ArrayRef> = batch
        .columns()
        .iter()
        .map(|c| take(c, &indices, None))
        .collect::<Result<_, _>>()?;
    columns.push(Arc::new(TimestampMillisecondArray::from(windows.starts)));
    columns.push(Arc::new(TimestampMillisecondArray::from(windows.ends)));
    Ok(RecordBatch::try_new(table.schema.clone(), columns)?)
}

/// Runs a script as a batch job in DataFusion: every file table is read
/// whole, every window function computes its windows, and each `INSERT INTO
/// t SELECT ..` returns its rows under `t`. The oracle of the SQL tests: over
/// bounded input, a streaming job's final result must equal this.
pub async fn run_batch(
    sql: &str,
) -> Result<std::collections::BTreeMap<String, Vec<RecordBatch>>, crate::SqlError> {
    use crate::catalog::Tables;
    use crate::ddl::TableDef;
    use crate::error::SqlError;
    use datafusion::logical_expr::{DmlStatement, LogicalPlan};
    use datafusion::sql::parser::Statement as DfStatement;

    let tables: Tables = Default::default();
    let ctx = crate::planner::session(&tables);
    let mut results = std::collections::BTreeMap::new();
    for statement in crate::script::read_script(sql)? {
        let at = statement.start;
        if let Some(clause) = statement.temporal_clauses.first() {
            // DataFusion would read it as a join of every version.
            return Err(SqlError::unsupported(
                clause.at,
                "a batch query cannot run a temporal join (FOR SYSTEM_TIME AS OF)",
            ));
        }
        if statement.lead.starts_with("CREATE TABLE") {
            let def = TableDef::from_statement(&statement, &ctx)?;
            let batches = read_table(&def).map_err(|e| SqlError::invalid(at, e))?;
            let table: Arc<dyn TableProvider> = Arc::new(
                MemTable::try_new(def.schema.clone(), vec![batches])
                    .map_err(|e| SqlError::datafusion(e, at))?,
            );
            ctx.register_table(
                datafusion::common::TableReference::bare(def.name.as_str()),
                table.clone(),
            )
            .map_err(|e| SqlError::datafusion(e, at))?;
            tables
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(def.name, table);
        } else if statement.lead.starts_with("CREATE VIEW")
            || statement.lead.starts_with("CREATE TEMPORARY VIEW")
        {
            crate::planner::create_view(&ctx, &tables, &statement).await?;
        } else if statement.lead.starts_with("INSERT") {
            let parsed = crate::planner::parse(&statement)?;
            let plan = ctx
                .state()
                .statement_to_plan(DfStatement::Statement(Box::new(parsed)))
                .await
                .map_err(|e| SqlError::datafusion(e, at))?;
            let LogicalPlan::Dml(DmlStatement {
                table_name, input, ..
            }) = plan
            else {
                return Err(SqlError::invalid(at, "expected INSERT INTO"));
            };
            let rows = ctx
                .execute_logical_plan(input.as_ref().clone())
                .await
                .map_err(|e| SqlError::datafusion(e, at))?
                .collect()
                .await
                .map_err(|e| SqlError::datafusion(e, at))?;
            results
                .entry(table_name.table().to_string())
                .or_insert_with(Vec::new)
                .extend(rows);
        }
    }
    Ok(results)
}

/// The rows of a filesystem table (none for any other connector, or a
/// path that does not exist yet: a sink's).
fn read_table(def: &crate::ddl::TableDef) -> Result<Vec<RecordBatch>, String> {
    let connector = def.options.get("connector").map(|c| c.value.to_lowercase());
    let Some(path) = def
        .options
        .get("path")
        .filter(|_| connector.as_deref() == Some("filesystem"))
    else {
        return Ok(Vec::new());
    };
    let path = std::path::Path::new(&path.value);
    if !path.is_file() {
        return Ok(Vec::new());
    }
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let reader = std::io::BufReader::new(file);
    let format = def
        .options
        .get("format")
        .map_or("json".into(), |f| f.value.to_lowercase());
    let failed = |e: datafusion::arrow::error::ArrowError| format!("{}: {e}", path.display());
    if format == "csv" {
        let header = def
            .options
            .get("csv.ignore-first-line")
            .is_some_and(|v| v.value.eq_ignore_ascii_case("true"));
        let delimiter = def.options.get("csv.field-delimiter").map_or(b',', |d| {
            d.value.as_bytes().first().copied().unwrap_or(b',')
        });
        datafusion::arrow::csv::ReaderBuilder::new(def.schema.clone())
            .with_header(header)
            .with_delimiter(delimiter)
            .build(reader)
            .map_err(failed)?
            .collect::<Result<_, _>>()
            .map_err(failed)
    } else {
        datafusion::arrow::json::ReaderBuilder::new(def.schema.clone())
            .build(reader)
            .map_err(failed)?
            .collect::<Result<_, _>>()
            .map_err(failed)
    }
}
