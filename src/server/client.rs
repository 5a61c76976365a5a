//! `headwater query`: sends statements to a server's HTTP API and prints the
//! answer as a table (from an Arrow IPC stream, so types are kept).

use arrow::array::RecordBatch;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

use super::http::{ARROW_STREAM, COMMAND_HEADER};

/// What a server answered.
#[derive(Debug)]
pub enum Answer {
    Rows(Vec<RecordBatch>, arrow::datatypes::SchemaRef),
    Done(String),
}

/// Why a query got no answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("`{0}` is not an http:// address such as http://127.0.0.1:6879")]
    BadUrl(String),
    #[error(
        "cannot connect to {address}: {source} (is a server running? `headwater run` or `headwater serve` prints its address)"
    )]
    Connect {
        address: String,
        source: std::io::Error,
    },
    #[error("HTTP: {0}")]
    Http(#[from] hyper::Error),
    #[error("{0}")]
    Request(#[from] hyper::http::Error),
    /// The server refused the statement: its SQLSTATE and message.
    #[error("{code}: {message}")]
    Statement { code: String, message: String },
    #[error("the answer is not an Arrow stream: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
}

/// Sends `sql` to the server at `url` (with a bearer `token`), for the last
/// statement's rows.
pub async fn query(url: &str, token: Option<&str>, sql: &str) -> Result<Answer, ClientError> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| ClientError::BadUrl(url.to_string()))?;
    let (address, base) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
        None => (rest, ""),
    };
    if address.is_empty() {
        return Err(ClientError::BadUrl(url.to_string()));
    }
    let stream = tokio::net::TcpStream::connect(address)
        .await
        .map_err(|source| ClientError::Connect {
            address: address.to_string(),
            source,
        })?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!("HTTP connection: {e}");
        }
    });
    let mut request = Request::post(format!("{base}/v1/sql"))
        .header(hyper::header::HOST, address)
        .header(hyper::header::ACCEPT, ARROW_STREAM)
        .header(hyper::header::CONTENT_TYPE, "application/sql");
    if let Some(token) = token {
        request = request.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let request = request.body(Full::new(Bytes::from(sql.to_string())))?;
    let response = sender.send_request(request).await?;
    let status = response.status();
    let command = response
        .headers()
        .get(COMMAND_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = response.into_body().collect().await?.to_bytes();
    if !status.is_success() {
        return Err(refusal(status, &body));
    }
    if let Some(tag) = command {
        return Ok(Answer::Done(tag));
    }
    if body.is_empty() {
        return Ok(Answer::Done(String::new()));
    }
    let reader = arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(body), None)?;
    let schema = reader.schema();
    let batches = reader.collect::<Result<Vec<_>, _>>()?;
    Ok(Answer::Rows(batches, schema))
}

/// The server's error answer: `{"error": {"code", "message"}}`.
fn refusal(status: hyper::StatusCode, body: &[u8]) -> ClientError {
    let parsed: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let error = parsed.as_ref().and_then(|v| v.get("error"));
    let field = |name: &str| {
        error
            .and_then(|e| e.get(name))
            .and_then(|v| v.as_str())
            .map(str::to_string)
    };
    ClientError::Statement {
        code: field("code").unwrap_or_else(|| status.as_u16().to_string()),
        message: field("message")
            .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_string()),
    }
}
