//! The HTTP API (axum): `POST /v1/sql` runs statements (sent as
//! `application/sql` or `application/json`) and streams rows back as JSON
//! (or as an Arrow IPC stream, for `Accept:
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
use bytes::Bytes;
use futures::{StreamExt, stream};
use serde::Serialize;
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use super::engine::{Engine, Outcome, StatementError, query_error};
use super::jobs::escape;
use super::session::Session;

/// The media type of an Arrow IPC stream.
pub const ARROW_STREAM: &str = "application/vnd.apache.arrow.stream";
/// The header that carries a statement's command tag in an Arrow answer.
pub const COMMAND_HEADER: &str = "x-headwater-command";

struct Http {
    engine: Engine,
    token: Option<String>,
    /// The `Host` names a request may carry; `None`: any (a token guards
    /// a server bound beyond loopback).
    hosts: Option<Vec<String>>,
}

/// Serves the HTTP API on `listener` until the process ends, to at most
/// the engine's connection limit at once.
pub async fn serve(listener: TcpListener, engine: Engine, token: Option<String>) {
    let bound = listener.local_addr().ok();
    let hosts = match bound {
        Some(addr)
            if !addr.ip().is_loopback() && !addr.ip().is_unspecified() && token.is_some() =>
        {
            None
        }
        Some(addr) if addr.ip().is_unspecified() && token.is_some() => None,
        Some(addr) => Some(vec![
            "localhost".to_string(),
            "127.0.0.1".to_string(),
            "[::1]".to_string(),
            match addr.ip() {
                std::net::IpAddr::V6(ip) => format!("[{ip}]"),
                ip => ip.to_string(),
            },
        ]),
        None => Some(vec!["localhost".to_string(), "127.0.0.1".to_string()]),
    };
    let limit = engine.limits().max_connections;
    let state = Arc::new(Http {
        engine,
        token,
        hosts,
    });
    let app = Router::new()
        .route("/v1/sql", post(sql))
        .route("/v1/views", get(views))
        .route("/v1/jobs", get(jobs))
        .route("/metrics", get(metrics))
        .layer(middleware::from_fn_with_state(state.clone(), authorize))
        .with_state(state);
    let listener = super::http_connections::LimitedListener::new(listener, limit);
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!("the HTTP server stopped: {e}");
    }
}

/// Refuses a request from a page that rebinds its name to this server (its
/// `Host` is not this server's), and one without the token.
async fn authorize(State(http): State<Arc<Http>>, request: Request, next: Next) -> Response {
    if let Some(hosts) = &http.hosts {
        let host = request
            .headers()
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let name = match host.rfind(':') {
            Some(i) if !host[i..].contains(']') => &host[..i],
            _ => host,
        };
        if !hosts.iter().any(|h| h.eq_ignore_ascii_case(name)) {
            return error_response(
                StatusCode::FORBIDDEN,
                &StatementError::new(
                    "28000",
                    format!(
                        "the Host `{host}` is not this server's: requests must name it as localhost or its address"
                    ),
                ),
                None,
            );
        }
    }
    if let Some(token) = &http.token {
        let presented = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        let same: bool = presented.as_bytes().ct_eq(token.as_bytes()).into();
        if !same {
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

fn error_json(e: &StatementError, statement: Option<usize>) -> String {
    #[derive(Serialize)]
    struct Error<'a> {
        code: &'a str,
        message: &'a str,
        /// The failed statement's number (1-based) in the request.
        #[serde(skip_serializing_if = "Option::is_none")]
        statement: Option<usize>,
    }
    serde_json::to_string(&Error {
        code: e.code,
        message: &e.message,
        statement,
    })
    .unwrap_or_else(|_| "{}".to_string())
}

fn error_response(status: StatusCode, e: &StatementError, statement: Option<usize>) -> Response {
    json_response(
        status,
        format!("{{\"error\":{}}}", error_json(e, statement)),
    )
}

/// The SQL of a request: `application/sql` (the statements as they are), or
/// `application/json` (`{"sql": ".."}`). Nothing else: a web page can send
/// plain text or a form to any server without asking, but not these.
fn request_sql(headers: &HeaderMap, body: &str) -> Result<String, (StatusCode, StatementError)> {
    let media = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    match media.as_str() {
        "application/sql" => Ok(body.to_string()),
        "application/json" => {
            #[derive(serde::Deserialize)]
            struct Request {
                sql: String,
            }
            serde_json::from_str::<Request>(body)
                .map(|r| r.sql)
                .map_err(|e| {
                    (
                        StatusCode::BAD_REQUEST,
                        StatementError::new(
                            "08P01",
                            format!("the body is not {{\"sql\": \"..\"}}: {e}"),
                        ),
                    )
                })
        }
        other => Err((
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            StatementError::new(
                "08P01",
                format!(
                    "send SQL as application/sql, or as application/json {{\"sql\": \"..\"}}, not `{other}`"
                ),
            ),
        )),
    }
}

fn status_of(e: &StatementError) -> StatusCode {
    if e.code.starts_with("XX") || e.code.starts_with("58") {
        StatusCode::INTERNAL_SERVER_ERROR
    } else if e.code == "57014" {
        StatusCode::REQUEST_TIMEOUT
    } else if e.code == "53200" || e.code == "54001" {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::BAD_REQUEST
    }
}

async fn sql(State(http): State<Arc<Http>>, headers: HeaderMap, body: String) -> Response {
    let sql = match request_sql(&headers, &body) {
        Ok(sql) => sql,
        Err((status, e)) => return error_response(status, &e, None),
    };
    let statements = super::engine::split_statements(&sql);
    if statements.is_empty() {
        return error_response(
            StatusCode::BAD_REQUEST,
            &StatementError::new("42601", "no statement in the request"),
            None,
        );
    }
    let wants_arrow = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains(ARROW_STREAM));
    // Every statement runs (a query is planned and started) before the
    // answer begins, so that any error gets an HTTP status and the number of
    // its statement; the rows then stream, statement by statement.
    let mut session = Session::default();
    let mut outcomes = Vec::new();
    for (i, statement) in statements.iter().enumerate() {
        match http.engine.execute(statement, &mut session).await {
            Ok(outcome) => outcomes.push((i, outcome)),
            Err(e) => return error_response(status_of(&e), &e, Some(i + 1)),
        }
    }
    if wants_arrow {
        return arrow_answer(outcomes.pop().map(|(_, o)| o));
    }
    let (sender, receiver) = mpsc::channel::<Bytes>(4);
    tokio::spawn(async move {
        let _ = json_answer(outcomes, &sender).await;
    });
    let body = stream::unfold(receiver, |mut receiver| async move {
        receiver
            .recv()
            .await
            .map(|chunk| (Ok::<_, std::io::Error>(chunk), receiver))
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(body),
    )
        .into_response()
}

/// The last statement's rows as an Arrow IPC stream, batch by batch (its
/// tag in a header when it has no rows).
fn arrow_answer(outcome: Option<Outcome>) -> Response {
    let rows = match outcome {
        Some(Outcome::Rows(rows)) => rows,
        Some(Outcome::Done { tag }) => {
            let mut response = StatusCode::OK.into_response();
            if let Ok(value) = HeaderValue::from_str(&tag) {
                response.headers_mut().insert(COMMAND_HEADER, value);
            }
            return response;
        }
        None => return StatusCode::NO_CONTENT.into_response(),
    };
    let schema = rows.schema.clone();
    let writer = match arrow::ipc::writer::StreamWriter::try_new(Vec::new(), &schema) {
        Ok(writer) => writer,
        Err(e) => {
            return error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                &StatementError::new("XX000", e.to_string()),
                None,
            );
        }
    };
    let chunks = stream::unfold(
        (rows.stream, Some(writer)),
        |(mut batches, writer)| async move {
            let mut writer = writer?;
            let chunk = match batches.next().await {
                Some(Ok(batch)) => writer.write(&batch).map(|()| true),
                Some(Err(e)) => {
                    let e = query_error(e);
                    return Some((Err(std::io::Error::other(e.message)), (batches, None)));
                }
                None => writer.finish().map(|()| false),
            };
            match chunk {
                Ok(more) => {
                    let bytes = Bytes::from(std::mem::take(writer.get_mut()));
                    Some((Ok(bytes), (batches, more.then_some(writer))))
                }
                Err(e) => Some((Err(std::io::Error::other(e.to_string())), (batches, None))),
            }
        },
    );
    (
        [(header::CONTENT_TYPE, ARROW_STREAM)],
        Body::from_stream(chunks),
    )
        .into_response()
}

/// Every statement's result, as JSON: rows as objects, streamed batch by
/// batch, or a command tag. A query that fails once its rows have started
/// (a timeout, too much memory) ends the answer with `"error"` next to
/// `"results"`.
async fn json_answer(
    outcomes: Vec<(usize, Outcome)>,
    out: &mpsc::Sender<Bytes>,
) -> Result<(), mpsc::error::SendError<Bytes>> {
    let send = |text: String| out.send(Bytes::from(text));
    send("{\"results\":[".to_string()).await?;
    for (n, (i, outcome)) in outcomes.into_iter().enumerate() {
        let separator = if n == 0 { "" } else { "," };
        match outcome {
            Outcome::Done { tag } => {
                send(format!(
                    "{separator}{{\"command\":{}}}",
                    serde_json::Value::from(tag)
                ))
                .await?;
            }
            Outcome::Rows(mut rows) => {
                let columns = serde_json::to_string(&columns(&rows.schema)).unwrap_or_default();
                send(format!("{separator}{{\"columns\":{columns},\"rows\":[")).await?;
                let mut count = 0usize;
                while let Some(batch) = rows.stream.next().await {
                    let encoded = batch
                        .map_err(query_error)
                        .and_then(|b| rows_json(&b).map(|t| (t, b.num_rows())));
                    match encoded {
                        Ok((text, rows_in_batch)) => {
                            let comma = if count > 0 && rows_in_batch > 0 {
                                ","
                            } else {
                                ""
                            };
                            count += rows_in_batch;
                            send(format!("{comma}{text}")).await?;
                        }
                        Err(e) => {
                            let e = error_json(&e, Some(i + 1));
                            return send(format!("]}}],\"error\":{e}}}")).await;
                        }
                    }
                }
                send(format!("],\"row_count\":{count}}}")).await?;
            }
        }
    }
    send("]}".to_string()).await
}

/// A batch's rows as JSON objects separated by commas (no brackets), NULLs
/// included.
fn rows_json(batch: &RecordBatch) -> Result<String, StatementError> {
    if batch.num_rows() == 0 {
        return Ok(String::new());
    }
    let failed = |e: arrow::error::ArrowError| StatementError::new("XX000", e.to_string());
    let mut writer = arrow::json::WriterBuilder::new()
        .with_explicit_nulls(true)
        .build::<_, arrow::json::writer::JsonArray>(Vec::new());
    writer.write(batch).map_err(failed)?;
    writer.finish().map_err(failed)?;
    let bytes = writer.into_inner();
    let text = String::from_utf8_lossy(&bytes);
    let inner = text.trim();
    let inner = inner.strip_prefix('[').unwrap_or(inner);
    let inner = inner.strip_suffix(']').unwrap_or(inner);
    Ok(inner.to_string())
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
