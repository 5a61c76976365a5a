//! The Postgres wire protocol (through `pgwire`): psql, JDBC, tokio-postgres
//! and BI tools read the views with the simple and the extended query
//! protocol. Every query runs over all views as of one completed checkpoint.

use std::fmt::Debug;
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{
    DataType, Date32Type, Decimal128Type, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type,
    Int64Type, SchemaRef, TimeUnit, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use async_trait::async_trait;
use datafusion::common::ParamValues;
use datafusion::common::ScalarValue;
use futures::{Sink, stream};
use headwater_sql::views::ViewQueries;

use super::engine::{self, Engine, Outcome, StatementError};
use pgwire::api::auth::md5pass::{Md5PasswordAuthStartupHandler, hash_md5_password};
use pgwire::api::auth::noop::NoopStartupHandler;
use pgwire::api::auth::{
    AuthSource, DefaultServerParameterProvider, LoginInfo, Password, StartupHandler,
};
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::Tag;
use pgwire::api::results::{
    DataRowEncoder, DescribePortalResponse, DescribeStatementResponse, FieldInfo, QueryResponse,
    Response,
};
use pgwire::api::stmt::{QueryParser, StoredStatement};
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore, PgWireServerHandlers, Type};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use tokio::net::TcpListener;

/// Serves `engine` on `listener` until the process ends; with a password,
/// clients log in with it (MD5, any user name).
pub async fn serve(listener: TcpListener, engine: Engine, password: Option<String>) {
    let backend = Arc::new(Backend {
        queries: engine.queries.clone(),
        engine,
        parser: Arc::new(Parser),
    });
    let handlers = Arc::new(Handlers {
        startup: Arc::new(Startup {
            md5: password.map(|password| {
                Md5PasswordAuthStartupHandler::new(
                    Arc::new(PasswordSource { password }),
                    Arc::new(DefaultServerParameterProvider::default()),
                )
            }),
            backend: backend.clone(),
        }),
        backend,
    });
    loop {
        let Ok((socket, _)) = listener.accept().await else {
            continue;
        };
        let handlers = handlers.clone();
        tokio::spawn(async move {
            if let Err(e) = pgwire::tokio::process_socket(socket, None, handlers).await {
                tracing::debug!("a Postgres connection ended: {e}");
            }
        });
    }
}

struct Handlers {
    backend: Arc<Backend>,
    startup: Arc<Startup>,
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.backend.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        self.backend.clone()
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        self.startup.clone()
    }
}

struct Backend {
    engine: Engine,
    queries: ViewQueries,
    parser: Arc<Parser>,
}

impl NoopStartupHandler for Backend {}

/// The server's one password, salted per connection.
#[derive(Debug)]
struct PasswordSource {
    password: String,
}

#[async_trait]
impl AuthSource for PasswordSource {
    async fn get_password(&self, login: &LoginInfo) -> PgWireResult<Password> {
        let salt: [u8; 4] = rand::random();
        let user = login.user().unwrap_or_default();
        Ok(Password::new(
            Some(salt.to_vec()),
            hash_md5_password(user, &self.password, &salt).into_bytes(),
        ))
    }
}

/// No authentication, or the password's.
struct Startup {
    md5: Option<Md5PasswordAuthStartupHandler<PasswordSource, DefaultServerParameterProvider>>,
    backend: Arc<Backend>,
}

#[async_trait]
impl StartupHandler for Startup {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match &self.md5 {
            Some(md5) => md5.on_startup(client, message).await,
            None => self.backend.on_startup(client, message).await,
        }
    }
}

/// A user error with its SQLSTATE.
fn user_error(code: &str, message: impl Into<String>) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".to_string(),
        code.to_string(),
        message.into(),
    )))
}

/// A DataFusion error as a Postgres error, with its SQLSTATE.
fn query_error(e: datafusion::error::DataFusionError) -> PgWireError {
    statement_error(engine::query_error(e))
}

fn statement_error(e: StatementError) -> PgWireError {
    user_error(e.code, e.message)
}

#[async_trait]
impl SimpleQueryHandler for Backend {
    async fn do_query<C>(&self, _client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
    {
        let mut responses = Vec::new();
        for statement in engine::split_statements(query) {
            let outcome = self
                .engine
                .execute(&statement)
                .await
                .map_err(statement_error)?;
            responses.push(outcome_response(outcome, &Format::UnifiedText)?);
        }
        Ok(responses)
    }
}

fn outcome_response(outcome: Outcome, format: &Format) -> PgWireResult<Response> {
    match outcome {
        Outcome::Rows { schema, batches } => rows_response(&schema, batches, format),
        Outcome::Done { tag } => Ok(Response::Execution(Tag::new(&tag))),
    }
}

/// A statement the extended protocol passes to the engine as it is:
/// no parameters, no result columns.
fn is_command(sql: &str) -> bool {
    engine::session_statement(sql).is_some() || engine::changes_catalog(sql)
}

/// A prepared statement: its text, parameter types and result columns.
#[derive(Debug, Clone)]
struct Prepared {
    sql: String,
    parameters: Vec<Type>,
    schema: SchemaRef,
}

struct Parser;

#[async_trait]
impl QueryParser for Parser {
    type Statement = Prepared;

    async fn parse_sql<C>(
        &self,
        _client: &C,
        sql: &str,
        types: &[Option<Type>],
    ) -> PgWireResult<Option<Prepared>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        // Planned in `do_describe`/`do_query`, where the views are at hand.
        Ok(Some(Prepared {
            sql: sql.to_string(),
            parameters: types
                .iter()
                .map(|t| t.clone().unwrap_or(Type::UNKNOWN))
                .collect(),
            schema: Arc::new(arrow::datatypes::Schema::empty()),
        }))
    }

    fn get_parameter_types(&self, stmt: &Prepared) -> PgWireResult<Vec<Type>> {
        Ok(stmt.parameters.clone())
    }

    fn get_result_schema(
        &self,
        stmt: &Prepared,
        format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        Ok(fields(&stmt.schema, format.unwrap_or(&Format::UnifiedText)))
    }
}

impl Backend {
    /// Plans `sql` over the views: its parameter types and result columns.
    async fn prepare(&self, sql: &str, given: &[Option<Type>]) -> PgWireResult<Prepared> {
        if is_command(sql) {
            return Ok(Prepared {
                sql: sql.to_string(),
                parameters: Vec::new(),
                schema: Arc::new(arrow::datatypes::Schema::empty()),
            });
        }
        let (ctx, _) = self.queries.session().await.map_err(query_error)?;
        let plan = ctx
            .state()
            .create_logical_plan(sql)
            .await
            .map_err(query_error)?;
        let inferred = plan.get_parameter_types().map_err(query_error)?;
        let mut parameters = Vec::new();
        for i in 0..inferred.len().max(given.len()) {
            let from_client = given
                .get(i)
                .cloned()
                .flatten()
                .filter(|t| *t != Type::UNKNOWN);
            let from_plan = inferred
                .get(&format!("${}", i + 1))
                .cloned()
                .flatten()
                .map(|t| pg_type(&t));
            parameters.push(from_client.or(from_plan).unwrap_or(Type::TEXT));
        }
        Ok(Prepared {
            sql: sql.to_string(),
            parameters,
            schema: Arc::new(plan.schema().as_arrow().clone()),
        })
    }
}

#[async_trait]
impl ExtendedQueryHandler for Backend {
    type Statement = Prepared;
    type QueryParser = Parser;

    fn query_parser(&self) -> Arc<Parser> {
        self.parser.clone()
    }

    async fn do_describe_statement<C>(
        &self,
        _client: &mut C,
        target: &StoredStatement<Prepared>,
    ) -> PgWireResult<DescribeStatementResponse>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Prepared>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let prepared = self
            .prepare(&target.statement.sql, &target.parameter_types)
            .await?;
        Ok(DescribeStatementResponse::new(
            prepared.parameters.clone(),
            fields(&prepared.schema, &Format::UnifiedText),
        ))
    }

    async fn do_describe_portal<C>(
        &self,
        _client: &mut C,
        target: &Portal<Prepared>,
    ) -> PgWireResult<DescribePortalResponse>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Prepared>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let stmt = &target.statement;
        let prepared = self
            .prepare(&stmt.statement.sql, &stmt.parameter_types)
            .await?;
        Ok(DescribePortalResponse::new(fields(
            &prepared.schema,
            &target.result_column_format,
        )))
    }

    async fn do_query<C>(
        &self,
        _client: &mut C,
        portal: &Portal<Prepared>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Prepared>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let stmt = &portal.statement;
        if is_command(&stmt.statement.sql) {
            let outcome = self
                .engine
                .execute(&stmt.statement.sql)
                .await
                .map_err(statement_error)?;
            return outcome_response(outcome, &portal.result_column_format);
        }
        let started = std::time::Instant::now();
        let result = self.run_portal(portal).await;
        self.engine.record(started, result.is_ok());
        result
    }
}

impl Backend {
    /// Runs a query portal with its parameters.
    async fn run_portal(&self, portal: &Portal<Prepared>) -> PgWireResult<Response> {
        let stmt = &portal.statement;
        let prepared = self
            .prepare(&stmt.statement.sql, &stmt.parameter_types)
            .await?;
        let mut values = Vec::with_capacity(portal.parameter_len());
        for i in 0..portal.parameter_len() {
            let pg = prepared.parameters.get(i).cloned().unwrap_or(Type::TEXT);
            values.push(parameter(portal, i, &pg)?);
        }
        let (ctx, _) = self.queries.session().await.map_err(query_error)?;
        let read_only = datafusion::execution::context::SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false);
        let mut frame = ctx
            .sql_with_options(&prepared.sql, read_only)
            .await
            .map_err(query_error)?;
        if !values.is_empty() {
            frame = frame
                .with_param_values(ParamValues::List(
                    values.into_iter().map(Into::into).collect(),
                ))
                .map_err(query_error)?;
        }
        let schema: SchemaRef = Arc::new(frame.schema().as_arrow().clone());
        let batches = frame.collect().await.map_err(query_error)?;
        rows_response(&schema, batches, &portal.result_column_format)
    }
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

/// The Postgres type of an Arrow type.
fn pg_type(t: &DataType) -> Type {
    match t {
        DataType::Boolean => Type::BOOL,
        DataType::Int8 | DataType::Int16 | DataType::UInt8 => Type::INT2,
        DataType::Int32 | DataType::UInt16 => Type::INT4,
        DataType::Int64 | DataType::UInt32 | DataType::UInt64 => Type::INT8,
        DataType::Float16 | DataType::Float32 => Type::FLOAT4,
        DataType::Float64 => Type::FLOAT8,
        DataType::Decimal128(..) => Type::NUMERIC,
        DataType::Timestamp(_, None) => Type::TIMESTAMP,
        DataType::Timestamp(_, Some(_)) => Type::TIMESTAMPTZ,
        DataType::Date32 | DataType::Date64 => Type::DATE,
        _ => Type::VARCHAR,
    }
}

fn fields(schema: &SchemaRef, format: &Format) -> Vec<FieldInfo> {
    schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| {
            FieldInfo::new(
                f.name().clone(),
                None,
                None,
                pg_type(f.data_type()),
                format.format_for(i),
            )
        })
        .collect()
}

fn rows_response(
    schema: &SchemaRef,
    batches: Vec<RecordBatch>,
    format: &Format,
) -> PgWireResult<Response> {
    let fields = Arc::new(fields(schema, format));
    let mut rows = Vec::new();
    let mut encoder = DataRowEncoder::new(fields.clone());
    for batch in &batches {
        // Timestamps in microseconds (Postgres's unit), a column at a time.
        let columns: Vec<arrow::array::ArrayRef> = batch
            .columns()
            .iter()
            .map(|c| match c.data_type() {
                DataType::Timestamp(unit, zone) if *unit != TimeUnit::Microsecond => {
                    arrow::compute::cast(
                        c,
                        &DataType::Timestamp(TimeUnit::Microsecond, zone.clone()),
                    )
                    .map_err(|e| user_error("22000", e.to_string()))
                }
                _ => Ok(c.clone()),
            })
            .collect::<PgWireResult<_>>()?;
        for row in 0..batch.num_rows() {
            for column in &columns {
                encode(&mut encoder, column.as_ref(), row)?;
            }
            rows.push(Ok(encoder.take_row()));
        }
    }
    Ok(Response::Query(QueryResponse::new(
        fields,
        stream::iter(rows),
    )))
}

/// Encodes one value: typed where Postgres has the type, as text otherwise.
fn encode(encoder: &mut DataRowEncoder, column: &dyn Array, row: usize) -> PgWireResult<()> {
    macro_rules! prim {
        ($t:ty, $as:ty) => {{
            let a = column.as_primitive::<$t>();
            let v: Option<$as> = a.is_valid(row).then(|| a.value(row) as $as);
            encoder.encode_field(&v)
        }};
    }
    match column.data_type() {
        DataType::Boolean => {
            let a = column.as_boolean();
            encoder.encode_field(&a.is_valid(row).then(|| a.value(row)))
        }
        DataType::Int8 => prim!(Int8Type, i16),
        DataType::Int16 => prim!(Int16Type, i16),
        DataType::UInt8 => prim!(UInt8Type, i16),
        DataType::Int32 => prim!(Int32Type, i32),
        DataType::UInt16 => prim!(UInt16Type, i32),
        DataType::Int64 => prim!(Int64Type, i64),
        DataType::UInt32 => prim!(UInt32Type, i64),
        DataType::UInt64 => prim!(UInt64Type, i64),
        DataType::Float32 => prim!(Float32Type, f32),
        DataType::Float64 => prim!(Float64Type, f64),
        DataType::Decimal128(_, scale) => {
            let a = column.as_primitive::<Decimal128Type>();
            let v = a
                .is_valid(row)
                .then(|| rust_decimal::Decimal::from_i128_with_scale(a.value(row), *scale as u32));
            encoder.encode_field(&v)
        }
        DataType::Date32 => {
            let a = column.as_primitive::<Date32Type>();
            let v = a.is_valid(row).then(|| a.value_as_date(row)).flatten();
            encoder.encode_field(&v)
        }
        DataType::Timestamp(TimeUnit::Microsecond, zone) => {
            let a = column.as_primitive::<arrow::datatypes::TimestampMicrosecondType>();
            let t = a
                .is_valid(row)
                .then(|| chrono::DateTime::from_timestamp_micros(a.value(row)))
                .flatten();
            match zone {
                None => encoder.encode_field(&t.map(|t| t.naive_utc())),
                Some(_) => encoder.encode_field(&t),
            }
        }
        _ => {
            let v = column
                .is_valid(row)
                .then(|| arrow::util::display::array_value_to_string(column, row))
                .transpose()
                .map_err(|e| user_error("22000", e.to_string()))?;
            encoder.encode_field(&v)
        }
    }
}
