//! The HTTP API (axum): `POST /v1/sql` runs statements and answers rows as
//! JSON (or as an Arrow IPC stream, for `Accept:
//! application/vnd.apache.arrow.stream`); `GET /v1/views` and `GET /v1/jobs`
//! describe what the server keeps; `GET /metrics` has every counter in the
//! Prometheus text format. With a token, every request needs
//! `Authorization: Bearer <token>`.

use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;
use tokio::net::TcpListener;

use super::engine::{Engine, Outcome, StatementError};
use super::jobs::escape;

/// The media type of an Arrow IPC stream.
pub const ARROW_STREAM: &str = "application/vnd.apache.arrow.stream";
/// The header that carries a statement's command tag in an Arrow answer.
pub const COMMAND_HEADER: &str = "x-headwater-command";

struct Http {
    engine: Engine,
    token: Option<String>,
}

/// Serves the HTTP API on `listener` until the process ends.
pub async fn serve(listener: TcpListener, engine: Engine, token: Option<String>) {
    let state = Arc::new(Http { engine, token });
    let app = Router::new()
        .route("/v1/sql", post(sql))
        .route("/v1/views", get(views))
        .route("/v1/jobs", get(jobs))
        .route("/metrics", get(metrics))
        .layer(middleware::from_fn_with_state(state.clone(), authorize))
        .with_state(state);
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!("the HTTP server stopped: {e}");
    }
}

async fn authorize(State(http): State<Arc<Http>>, request: Request, next: Next) -> Response {
    if let Some(token) = &http.token {
        let presented = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if presented != Some(token.as_str()) {
            let mut response = error_response(
                StatusCode::UNAUTHORIZED,
                &StatementError::new(
                    "28000",
                    "a bearer token is required (Authorization: Bearer <token>)",
                ),
                None,
            );
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return response;
        }
    }
    next.run(request).await
}

fn json_response(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn error_response(status: StatusCode, e: &StatementError, statement: Option<usize>) -> Response {
    #[derive(Serialize)]
    struct Error<'a> {
        code: &'a str,
        message: &'a str,
        /// The failed statement's number (1-based) in the request.
        #[serde(skip_serializing_if = "Option::is_none")]
        statement: Option<usize>,
    }
    let body = serde_json::json!({
        "error": Error { code: e.code, message: &e.message, statement }
    });
    json_response(status, body.to_string())
}

/// The SQL of a request: the body as text, or `{"sql": ".."}` as JSON.
fn request_sql(headers: &HeaderMap, body: &str) -> Result<String, StatementError> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !is_json {
        return Ok(body.to_string());
    }
    #[derive(serde::Deserialize)]
    struct Request {
        sql: String,
    }
    serde_json::from_str::<Request>(body)
        .map(|r| r.sql)
        .map_err(|e| {
            StatementError::new("08P01", format!("the body is not {{\"sql\": \"..\"}}: {e}"))
        })
}

async fn sql(State(http): State<Arc<Http>>, headers: HeaderMap, body: String) -> Response {
    let sql = match request_sql(&headers, &body) {
        Ok(sql) => sql,
        Err(e) => return error_response(StatusCode::BAD_REQUEST, &e, None),
    };
    let statements = super::engine::split_statements(&sql);
    if statements.is_empty() {
        return error_response(
            StatusCode::BAD_REQUEST,
            &StatementError::new("42601", "no statement in the request"),
            None,
        );
    }
    let mut outcomes = Vec::new();
    for (i, statement) in statements.iter().enumerate() {
        match http.engine.execute(statement).await {
            Ok(outcome) => outcomes.push(outcome),
            Err(e) => {
                let status = if e.code.starts_with("XX") || e.code.starts_with("58") {
                    StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    StatusCode::BAD_REQUEST
                };
                return error_response(status, &e, Some(i + 1));
            }
        }
    }
    let wants_arrow = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains(ARROW_STREAM));
    let result = if wants_arrow {
        arrow_answer(outcomes.pop())
    } else {
        json_answer(&outcomes)
    };
    result.unwrap_or_else(|e| error_response(StatusCode::INTERNAL_SERVER_ERROR, &e, None))
}

/// The last statement's rows as an Arrow IPC stream (its tag in a header
/// when it has no rows).
fn arrow_answer(outcome: Option<Outcome>) -> Result<Response, StatementError> {
    let failed = |e: arrow::error::ArrowError| StatementError::new("XX000", e.to_string());
    match outcome {
        Some(Outcome::Rows { schema, batches }) => {
            let mut bytes = Vec::new();
            let mut writer =
                arrow::ipc::writer::StreamWriter::try_new(&mut bytes, &schema).map_err(failed)?;
            for batch in &batches {
                writer.write(batch).map_err(failed)?;
            }
            writer.finish().map_err(failed)?;
            drop(writer);
            Ok(([(header::CONTENT_TYPE, ARROW_STREAM)], bytes).into_response())
        }
        Some(Outcome::Done { tag }) => {
            let mut response = StatusCode::OK.into_response();
            if let Ok(value) = HeaderValue::from_str(&tag) {
                response.headers_mut().insert(COMMAND_HEADER, value);
            }
            Ok(response)
        }
        None => Ok(StatusCode::NO_CONTENT.into_response()),
    }
}

/// Every statement's result: rows as JSON objects, or its command tag.
fn json_answer(outcomes: &[Outcome]) -> Result<Response, StatementError> {
    let mut body = String::from("{\"results\":[");
    for (i, outcome) in outcomes.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        match outcome {
            Outcome::Rows { schema, batches } => {
                let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
                let columns = serde_json::to_string(&columns(schema))
                    .map_err(|e| StatementError::new("XX000", e.to_string()))?;
                let _ = write!(
                    body,
                    "{{\"columns\":{columns},\"row_count\":{rows},\"rows\":{}}}",
                    rows_json(batches)?
                );
            }
            Outcome::Done { tag } => {
                let _ = write!(
                    body,
                    "{{\"command\":{}}}",
                    serde_json::Value::from(tag.as_str())
                );
            }
        }
    }
    body.push_str("]}");
    Ok(json_response(StatusCode::OK, body))
}

/// Rows as a JSON array of objects, NULLs included.
fn rows_json(batches: &[RecordBatch]) -> Result<String, StatementError> {
    let failed = |e: arrow::error::ArrowError| StatementError::new("XX000", e.to_string());
    let mut writer = arrow::json::WriterBuilder::new()
        .with_explicit_nulls(true)
        .build::<_, arrow::json::writer::JsonArray>(Vec::new());
    let refs: Vec<&RecordBatch> = batches.iter().collect();
    writer.write_batches(&refs).map_err(failed)?;
    writer.finish().map_err(failed)?;
    let bytes = writer.into_inner();
    Ok(if bytes.is_empty() {
        "[]".to_string()
    } else {
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

#[derive(Serialize)]
struct Column {
    name: String,
    #[serde(rename = "type")]
    data_type: String,
    nullable: bool,
}

fn columns(schema: &SchemaRef) -> Vec<Column> {
    schema
        .fields()
        .iter()
        .map(|f| Column {
            name: f.name().clone(),
            data_type: f.data_type().to_string(),
            nullable: f.is_nullable(),
        })
        .collect()
}

async fn views(State(http): State<Arc<Http>>) -> Response {
    #[derive(Serialize)]
    struct View {
        name: String,
        job: String,
        key: Vec<String>,
        columns: Vec<Column>,
        /// The checkpoint readers see it at (none before the first).
        checkpoint: Option<u64>,
    }
    let registry = &http.engine.queries.registry;
    let versions = registry.read_versions();
    let views: Vec<View> = registry
        .list()
        .into_iter()
        .filter_map(|(name, job)| {
            let (schema, key, _) = registry.describe(&name)?;
            Some(View {
                key: key
                    .iter()
                    .map(|&i| schema.field(i).name().clone())
                    .collect(),
                columns: columns(&schema),
                checkpoint: versions.get(&name).copied(),
                name,
                job,
            })
        })
        .collect();
    let body = serde_json::json!({ "views": views });
    json_response(StatusCode::OK, body.to_string())
}

async fn jobs(State(http): State<Arc<Http>>) -> Response {
    let body = serde_json::json!({ "jobs": http.engine.jobs.list() });
    json_response(StatusCode::OK, body.to_string())
}

async fn metrics(State(http): State<Arc<Http>>) -> Response {
    let mut out = String::new();
    http.engine.jobs.prometheus(&mut out);
    let counters = &http.engine.counters;
    let _ = writeln!(out, "# TYPE headwater_queries_total counter");
    let _ = writeln!(
        out,
        "headwater_queries_total {}",
        counters.queries.load(Ordering::Relaxed)
    );
    let _ = writeln!(out, "# TYPE headwater_query_errors_total counter");
    let _ = writeln!(
        out,
        "headwater_query_errors_total {}",
        counters.failed.load(Ordering::Relaxed)
    );
    let _ = writeln!(out, "# TYPE headwater_query_seconds_total counter");
    let _ = writeln!(
        out,
        "headwater_query_seconds_total {:.6}",
        counters.micros.load(Ordering::Relaxed) as f64 / 1e6
    );
    let versions = http.engine.queries.registry.read_versions();
    let _ = writeln!(out, "# TYPE headwater_view_checkpoint gauge");
    for (name, job) in http.engine.queries.registry.list() {
        let version = versions.get(&name).copied().unwrap_or(0);
        let _ = writeln!(
            out,
            "headwater_view_checkpoint{{view=\"{}\",job=\"{}\"}} {version}",
            escape(&name),
            escape(&job)
        );
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        Body::from(out),
    )
        .into_response()
}
