//! What DataFusion sees of a script's tables while it plans: the declared
//! tables (columns only: a stream is read by the job, not by DataFusion) and
//! the window table functions `TUMBLE`, `HOP`, `SESSION` and `CUMULATE`.
//!
//! In a batch session ([`crate::batch`]) the same functions also compute
//! their windows, so a streaming query can be checked against DataFusion.

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::catalog::{Session, TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::{Result as DfResult, plan_err};
use datafusion::datasource::TableType;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use headwater_operators::window::WindowKind;

use crate::ddl::{TableDef, interval};

/// A declared table while planning: its columns, and its definition.
#[derive(Debug)]
pub struct DeclaredTable {
    pub def: TableDef,
}

#[async_trait]
impl TableProvider for DeclaredTable {
    fn schema(&self) -> SchemaRef {
        self.def.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        _projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        plan_err!(
            "table `{}` is a stream: read it in a job (INSERT INTO .. SELECT)",
            self.def.name
        )
    }
}

/// Which window table function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowFunction {
    Tumble,
    Hop,
    Session,
    Cumulate,
}

impl WindowFunction {
    pub const ALL: [WindowFunction; 4] = [
        WindowFunction::Tumble,
        WindowFunction::Hop,
        WindowFunction::Session,
        WindowFunction::Cumulate,
    ];

    pub fn name(self) -> &'static str {
        match self {
            WindowFunction::Tumble => "tumble",
            WindowFunction::Hop => "hop",
            WindowFunction::Session => "session",
            WindowFunction::Cumulate => "cumulate",
        }
    }

    fn usage(self) -> &'static str {
        match self {
            WindowFunction::Tumble => "TUMBLE(table, time_column, size)",
            WindowFunction::Hop => "HOP(table, time_column, slide, size)",
            WindowFunction::Session => "SESSION(table, time_column, gap)",
            WindowFunction::Cumulate => "CUMULATE(table, time_column, step, size)",
        }
    }

    fn kind(self, durations: &[Duration]) -> WindowKind {
        let ms = |d: &Duration| d.as_millis() as i64;
        match (self, durations) {
            (WindowFunction::Tumble, [size]) => WindowKind::Tumbling { size: ms(size) },
            (WindowFunction::Hop, [slide, size]) => WindowKind::Hopping {
                size: ms(size),
                slide: ms(slide),
            },
            (WindowFunction::Session, [gap]) => WindowKind::Session { gap: ms(gap) },
            (WindowFunction::Cumulate, [step, size]) => WindowKind::Cumulating {
                step: ms(step),
                max_size: ms(size),
            },
            _ => unreachable!("argument count checked"),
        }
    }
}

/// The tables a script has declared so far, by name, for the window functions.
pub type Tables = Arc<Mutex<HashMap<String, Arc<dyn TableProvider>>>>;

/// A window table function, registered under its name.
#[derive(Debug)]
pub struct WindowTableFunction {
    pub function: WindowFunction,
    pub tables: Tables,
}

impl TableFunctionImpl for WindowTableFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> DfResult<Arc<dyn TableProvider>> {
        let usage = self.function.usage();
        let exprs = args.exprs();
        let want = match self.function {
            WindowFunction::Tumble | WindowFunction::Session => 3,
            _ => 4,
        };
        if exprs.len() != want {
            return plan_err!("{usage} takes {want} arguments, not {}", exprs.len());
        }
        let (Expr::Column(table), Expr::Column(time)) = (&exprs[0], &exprs[1]) else {
            return plan_err!("{usage}: the first two arguments name a table and its time column");
        };
        let input = self
            .tables
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&table.name)
            .cloned();
        let Some(input) = input else {
            return plan_err!("{usage}: no table `{}`", table.name);
        };
        let schema = input.schema();
        let Ok(field) = schema.field_with_name(&time.name) else {
            return plan_err!(
                "{usage}: table `{}` has no column `{}`",
                table.name,
                time.name
            );
        };
        if !matches!(field.data_type(), DataType::Timestamp(..) | DataType::Int64) {
            return plan_err!(
                "{usage}: `{}` is {}, not a TIMESTAMP",
                time.name,
                field.data_type()
            );
        }
        let mut durations = Vec::new();
        for e in &exprs[2..] {
            match e {
                Expr::Literal(v, _) => match interval(v) {
                    Some(d) if d.as_millis() > 0 => durations.push(d),
                    _ => {
                        return plan_err!(
                            "{usage}: `{e}` is not a positive interval of days, hours, minutes, seconds or milliseconds"
                        );
                    }
                },
                _ => {
                    return plan_err!(
                        "{usage}: `{e}` is not an interval such as INTERVAL '10' SECOND"
                    );
                }
            }
        }
        let kind = self.function.kind(&durations);
        if let Err(e) = kind.validate() {
            return plan_err!("{usage}: {e}");
        }
        let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
        for name in ["window_start", "window_end"] {
            fields.push(Field::new(
                name,
                DataType::Timestamp(TimeUnit::Millisecond, None),
                false,
            ));
        }
        Ok(Arc::new(WindowedTable {
            table: table.name.clone(),
            time_column: time.name.clone(),
            kind,
            input,
            schema: Arc::new(Schema::new(fields)),
        }))
    }
}

/// A table cut into windows: the table's columns, `window_start` and `window_end`.
#[derive(Debug)]
pub struct WindowedTable {
    pub table: String,
    pub time_column: String,
    pub kind: WindowKind,
    pub input: Arc<dyn TableProvider>,
    pub schema: SchemaRef,
}

#[async_trait]
impl TableProvider for WindowedTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        crate::batch::scan_windowed(self, state, projection, filters, limit).await
    }
}

/// `provider` as a type of this module, if it is one.
pub fn downcast<T: 'static>(provider: &Arc<dyn TableProvider>) -> Option<&T> {
    (provider.as_ref() as &dyn Any).downcast_ref::<T>()
}
