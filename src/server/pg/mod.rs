//! The Postgres wire protocol (through `pgwire`): psql, JDBC, tokio-postgres
//! and BI tools read the views with the simple and the extended query
//! protocol. Every query runs over all views as of one completed checkpoint,
//! under the server's limits; rows stream as the query makes them; a
//! `CancelRequest` stops the statement its connection is running.

mod cancel;
mod encode;
mod params;

use std::fmt::Debug;
use std::sync::Arc;

use arrow::datatypes::{Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::common::ParamValues;
use futures::{Sink, SinkExt};
use pgwire::api::auth::md5pass::{Md5PasswordAuthStartupHandler, hash_md5_password};
use pgwire::api::auth::noop::NoopStartupHandler;
use pgwire::api::auth::{
    AuthSource, DefaultServerParameterProvider, LoginInfo, Password, StartupHandler,
};
use pgwire::api::cancel::CancelHandler;
use pgwire::api::portal::PortalExecutionState;
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{
    ExtendedQueryHandler, SimpleQueryHandler, send_execution_response, send_query_response,
};
use pgwire::api::results::{
    DescribePortalResponse, DescribeStatementResponse, FieldInfo, QueryResponse, Response, Tag,
};
use pgwire::api::stmt::{QueryParser, StoredStatement};
use pgwire::api::store::Entry;
use pgwire::api::store::PortalStore;
use pgwire::api::{
    ClientInfo, ClientPortalStore, DEFAULT_NAME, PgWireConnectionState, PgWireServerHandlers, Type,
};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::extendedquery::Execute;
use pgwire::messages::response::EmptyQueryResponse;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use encode::Numeric;

use cancel::{Cancels, Registered, Statements};

use super::engine::{self, Engine, Outcome, StatementError};
use super::guard::{cancellable, cancelled};
use super::session::Session;

/// Serves `engine` on `listener` until the process ends; with a password,
/// clients log in with it (MD5, any user name). Past the engine's connection
/// limit, a new connection gets SQLSTATE 53300 and is closed.
pub async fn serve(listener: TcpListener, engine: Engine, password: Option<String>) {
    let connections = Arc::new(tokio::sync::Semaphore::new(engine.limits().max_connections));
    let cancels = Arc::new(Cancels::default());
    let backend = Arc::new(Backend {
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
            cancels: cancels.clone(),
        }),
        backend,
        cancels,
    });
    loop {
        let Ok((mut socket, _)) = listener.accept().await else {
            continue;
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            tokio::spawn(async move {
                let _ = socket.write_all(&too_many_connections()).await;
                let _ = socket.shutdown().await;
            });
            continue;
        };
        let handlers = handlers.clone();
        tokio::spawn(async move {
            if let Err(e) = pgwire::tokio::process_socket(socket, None, handlers).await {
                tracing::debug!("a Postgres connection ended: {e}");
            }
            drop(permit);
        });
    }
}

/// A FATAL ErrorResponse (53300), written before the client's startup.
fn too_many_connections() -> Vec<u8> {
    let mut fields = Vec::new();
    for (tag, value) in [
        (b'S', "FATAL"),
        (b'V', "FATAL"),
        (b'C', "53300"),
        (b'M', "sorry, too many clients already"),
    ] {
        fields.push(tag);
        fields.extend_from_slice(value.as_bytes());
        fields.push(0);
    }
    fields.push(0);
    let mut message = vec![b'E'];
    message.extend_from_slice(&((fields.len() + 4) as i32).to_be_bytes());
    message.extend(fields);
    message
}

struct Handlers {
    backend: Arc<Backend>,
    startup: Arc<Startup>,
    cancels: Arc<Cancels>,
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

    fn cancel_handler(&self) -> Arc<impl CancelHandler> {
        self.cancels.clone()
    }
}

struct Backend {
    engine: Engine,
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

/// No authentication, or the password's; then the connection is registered
/// for cancel requests and gets its session.
struct Startup {
    md5: Option<Md5PasswordAuthStartupHandler<PasswordSource, DefaultServerParameterProvider>>,
    backend: Arc<Backend>,
    cancels: Arc<Cancels>,
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
            Some(md5) => md5.on_startup(client, message).await?,
            None => self.backend.on_startup(client, message).await?,
        }
        if matches!(client.state(), PgWireConnectionState::ReadyForQuery)
            && client.session_extensions().get::<Registered>().is_none()
        {
            let (pid, secret) = client.pid_and_secret_key();
            let key = (pid, secret.to_bytes().to_vec());
            let statements = Arc::new(Statements::default());
            self.cancels
                .connections
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(key.clone(), statements.clone());
            client.session_extensions().insert(statements);
            client.session_extensions().insert(Registered {
                key,
                cancels: self.cancels.clone(),
            });
            client
                .session_extensions()
                .insert(tokio::sync::Mutex::new(Session::default()));
        }
        Ok(())
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

fn statement_error(e: StatementError) -> PgWireError {
    user_error(e.code, e.message)
}

/// The connection's session and a token for the statement that starts now.
fn connection<C: ClientInfo>(client: &C) -> (Arc<tokio::sync::Mutex<Session>>, CancellationToken) {
    let extensions = client.session_extensions();
    let session = extensions.get_or_insert_with(|| tokio::sync::Mutex::new(Session::default()));
    let token = extensions
        .get::<Arc<Statements>>()
        .map_or_else(CancellationToken::new, |s| s.start());
    (session, token)
}

impl Backend {
    /// Runs `work` unless the statement is cancelled first.
    async fn unless_cancelled<T>(
        token: &CancellationToken,
        work: impl Future<Output = Result<T, StatementError>>,
    ) -> Result<T, StatementError> {
        tokio::select! {
            result = work => result,
            () = token.cancelled() => Err(cancelled()),
        }
    }
}

#[async_trait]
impl SimpleQueryHandler for Backend {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
    {
        let (session, token) = connection(client);
        let mut session = session.lock().await;
        let mut responses = Vec::new();
        for statement in engine::split_statements(query) {
            let outcome =
                Self::unless_cancelled(&token, self.engine.execute(&statement, &mut session)).await;
            match outcome {
                Ok(outcome) => responses.push(response(outcome, &Format::UnifiedText, &token)?),
                Err(e) => {
                    responses.push(Response::Error(Box::new(ErrorInfo::new(
                        "ERROR".into(),
                        e.code.into(),
                        e.message,
                    ))));
                    break;
                }
            }
        }
        if responses.is_empty() {
            responses.push(Response::EmptyQuery);
        }
        Ok(responses)
    }
}

/// A statement's outcome as a Postgres response, its rows streaming.
fn response(
    outcome: Outcome,
    format: &Format,
    token: &CancellationToken,
) -> PgWireResult<Response> {
    match outcome {
        Outcome::Rows(rows) => {
            let fields = encode::fields(&rows.schema, format)
                .ok_or_else(|| user_error("08P01", "wrong number of result format codes"))?;
            let fields = Arc::new(fields);
            let stream = cancellable(rows.stream, token.clone());
            Ok(Response::Query(QueryResponse::new(
                fields.clone(),
                encode::rows(fields, stream),
            )))
        }
        Outcome::Done { tag } => Ok(Response::Execution(Tag::new(&tag))),
    }
}

/// A statement the extended protocol passes to the engine as it is:
/// no parameters, no result columns.
fn is_command(sql: &str) -> bool {
    engine::changes_catalog(sql)
        || super::session::SESSION_COMMANDS.contains(&engine::lead(sql, 1).as_str())
}

/// A prepared statement: its text, parameter types and result columns.
#[derive(Debug, Clone)]
pub struct Prepared {
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
            schema: Arc::new(Schema::empty()),
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
        encode::fields(&stmt.schema, format.unwrap_or(&Format::UnifiedText))
            .ok_or_else(|| user_error("08P01", "wrong number of result format codes"))
    }
}

impl Backend {
    /// The parameter types and result columns (in `format`) of `sql`,
    /// planned unless the client cancels first.
    async fn describe<C: ClientInfo>(
        &self,
        client: &C,
        sql: &str,
        given: &[Option<Type>],
        format: &Format,
    ) -> PgWireResult<(Vec<Type>, Vec<FieldInfo>)> {
        let (_, token) = connection(client);
        let (prepared, _) = Self::unless_cancelled(&token, self.prepare(sql, given))
            .await
            .map_err(statement_error)?;
        let fields = encode::fields(&prepared.schema, format)
            .ok_or_else(|| user_error("08P01", "wrong number of result format codes"))?;
        Ok((prepared.parameters, fields))
    }

    /// Plans `sql` over the views: its parameter types and result columns.
    async fn prepare(
        &self,
        sql: &str,
        given: &[Option<Type>],
    ) -> Result<(Prepared, Option<datafusion::prelude::DataFrame>), StatementError> {
        if is_command(sql) {
            let prepared = Prepared {
                sql: sql.to_string(),
                parameters: Vec::new(),
                schema: Arc::new(Schema::empty()),
            };
            return Ok((prepared, None));
        }
        let frame = self.engine.plan(sql).await?;
        let inferred = frame
            .logical_plan()
            .get_parameter_types()
            .map_err(engine::query_error)?;
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
                .map(|t| encode::pg_type(&Arc::new(arrow::datatypes::Field::new("", t, true))));
            parameters.push(from_client.or(from_plan).unwrap_or(Type::TEXT));
        }
        let prepared = Prepared {
            sql: sql.to_string(),
            parameters,
            schema: Arc::new(frame.schema().as_arrow().clone()),
        };
        Ok((prepared, Some(frame)))
    }
}

#[async_trait]
impl ExtendedQueryHandler for Backend {
    type Statement = Prepared;
    type QueryParser = Parser;

    fn query_parser(&self) -> Arc<Parser> {
        self.parser.clone()
    }

    /// Runs a portal. pgwire's own Execute gathers all of a query's rows
    /// before sending them; asked for all rows (`max_rows` 0, what drivers
    /// send), this one streams them. With a row limit (a JDBC fetch size),
    /// pgwire's suspended portals hold at most that many rows.
    async fn on_execute<C>(&self, client: &mut C, message: Execute) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Prepared>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let name = message.name.as_deref().unwrap_or(DEFAULT_NAME);
        let portal = match client.portal_store().get_portal(name) {
            Some(Entry::Value(portal)) if message.max_rows == 0 => portal,
            _ => return self._on_execute(client, message).await,
        };
        if !matches!(*portal.state().lock().await, PortalExecutionState::Initial) {
            return self._on_execute(client, message).await;
        }
        if !matches!(client.state(), PgWireConnectionState::ReadyForQuery) {
            return Err(PgWireError::NotReadyForQuery);
        }
        client.set_state(PgWireConnectionState::QueryInProgress);
        match ExtendedQueryHandler::do_query(self, client, &portal, 0).await? {
            Response::Query(rows) => send_query_response(client, rows, false).await?,
            Response::Execution(tag) => send_execution_response(client, tag).await?,
            Response::Error(e) => {
                client
                    .send(PgWireBackendMessage::ErrorResponse((*e).into()))
                    .await?
            }
            Response::EmptyQuery => {
                client
                    .feed(PgWireBackendMessage::EmptyQueryResponse(
                        EmptyQueryResponse::new(),
                    ))
                    .await?
            }
            _ => return Err(user_error("0A000", "this statement is not supported here")),
        }
        client.set_state(PgWireConnectionState::ReadyForQuery);
        Ok(())
    }

    async fn do_describe_statement<C>(
        &self,
        client: &mut C,
        target: &StoredStatement<Prepared>,
    ) -> PgWireResult<DescribeStatementResponse>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Prepared>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let (parameters, fields) = self
            .describe(
                client,
                &target.statement.sql,
                &target.parameter_types,
                &Format::UnifiedText,
            )
            .await?;
        Ok(DescribeStatementResponse::new(parameters, fields))
    }

    async fn do_describe_portal<C>(
        &self,
        client: &mut C,
        target: &Portal<Prepared>,
    ) -> PgWireResult<DescribePortalResponse>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Prepared>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let stmt = &target.statement;
        let (_, fields) = self
            .describe(
                client,
                &stmt.statement.sql,
                &stmt.parameter_types,
                &target.result_column_format,
            )
            .await?;
        Ok(DescribePortalResponse::new(fields))
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Prepared>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Prepared>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let (session, token) = connection(client);
        let mut session = session.lock().await;
        let sql = &portal.statement.statement.sql;
        if is_command(sql) {
            let outcome =
                Self::unless_cancelled(&token, self.engine.execute(sql, &mut session)).await;
            return response(
                outcome.map_err(statement_error)?,
                &portal.result_column_format,
                &token,
            );
        }
        let started = std::time::Instant::now();
        let deadline = self.engine.deadline(&session);
        let run = async {
            let (prepared, frame) = deadline
                .run(self.prepare(sql, &portal.statement.parameter_types))
                .await??;
            let frame = frame.expect("a query has a plan");
            let values = params::parameters(portal, &prepared.parameters)
                .map_err(|e| StatementError::new("22023", e.to_string()))?;
            let frame = if values.is_empty() {
                frame
            } else {
                frame
                    .with_param_values(ParamValues::List(
                        values.into_iter().map(Into::into).collect(),
                    ))
                    .map_err(engine::query_error)?
            };
            self.engine.stream(frame, deadline).await
        };
        let result = Self::unless_cancelled(&token, run).await;
        self.engine.record(started, result.is_ok());
        response(
            result.map_err(statement_error)?,
            &portal.result_column_format,
            &token,
        )
    }
}
