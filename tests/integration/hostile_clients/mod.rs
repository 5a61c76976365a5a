//! A hostile client against the real `headwater serve`: names that are
//! paths, files outside the allowed directories, statements that would
//! overflow the stack or exhaust memory, endless queries, raw protocol
//! messages that break the rules, web pages that forge requests. After each,
//! the server still answers, nothing outside the allowed directory was read,
//! written or deleted, its memory stayed bounded, and the client got an error
//! with a SQLSTATE. Postgres tools' own catalog queries (psql's `\d`,
//! SQLAlchemy's, Grafana's, DBeaver's) get answers.

mod limits;
mod protocol;
mod run;
mod sandbox;
mod tools;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::{Server, pg_connect, spawn_server};

/// The files a test may give the server, and a canary outside them.
struct Dirs {
    data: tempfile::TempDir,
    allowed: tempfile::TempDir,
    outside: tempfile::TempDir,
}

impl Dirs {
    fn new() -> Self {
        let dirs = Dirs {
            data: tempfile::tempdir().unwrap(),
            allowed: tempfile::tempdir().unwrap(),
            outside: tempfile::tempdir().unwrap(),
        };
        std::fs::write(dirs.outside.path().join("secret.txt"), "the canary\n").unwrap();
        dirs
    }

    /// The outside directory holds only the canary, unchanged.
    fn outside_untouched(&self) {
        let names: Vec<String> = std::fs::read_dir(self.outside.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["secret.txt"], "files appeared outside the sandbox");
        let canary = std::fs::read_to_string(self.outside.path().join("secret.txt")).unwrap();
        assert_eq!(canary, "the canary\n");
    }
}

/// `headwater serve` over the test's directories, allowed its one directory.
fn start(dirs: &Dirs, extra: &[&str]) -> Server {
    let mut command = Command::new(env!("CARGO_BIN_EXE_headwater"));
    command
        .args([
            "serve",
            "--pg-port",
            "0",
            "--http-port",
            "0",
            "--parallelism",
            "2",
        ])
        .args(["--checkpoint-interval", "200ms", "--query-memory", "64MiB"])
        .arg("--data-dir")
        .arg(dirs.data.path())
        .arg("--allow-path")
        .arg(dirs.allowed.path())
        .args(extra);
    spawn_server(command)
}

/// The server with no `--allow-path`.
fn start_without_sandbox(dirs: &Dirs) -> Server {
    let mut command = Command::new(env!("CARGO_BIN_EXE_headwater"));
    command
        .args(["serve", "--pg-port", "0", "--http-port", "0"])
        .arg("--data-dir")
        .arg(dirs.data.path());
    spawn_server(command)
}

/// One HTTP/1.1 request with these headers; the status and the body.
fn http(addr: &str, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
    let method = if path == "/v1/sql" { "POST" } else { "GET" };
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\n");
    if !headers.iter().any(|(h, _)| h.eq_ignore_ascii_case("host")) {
        head.push_str(&format!("Host: {addr}\r\n"));
    }
    for (h, v) in headers {
        head.push_str(&format!("{h}: {v}\r\n"));
    }
    write!(
        stream,
        "{head}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer[9..12].parse().unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    let body = if head.to_lowercase().contains("transfer-encoding: chunked") {
        dechunk(body)
    } else {
        body.to_string()
    };
    (status, body)
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest.get(n + 2..).unwrap_or("");
    }
    out
}

/// SQL over HTTP as `application/sql`: the status and the JSON answer.
fn sql(server: &Server, statements: &str) -> (u16, serde_json::Value) {
    let (status, body) = http(
        &server.http,
        "/v1/sql",
        &[("Content-Type", "application/sql")],
        statements,
    );
    let value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    (status, value)
}

/// The SQLSTATE of a failed HTTP statement.
fn http_error(server: &Server, statements: &str) -> String {
    let (status, answer) = sql(server, statements);
    assert_ne!(status, 200, "{statements}: {answer}");
    answer["error"]["code"].as_str().unwrap().to_string()
}

/// The SQLSTATE of a failed Postgres statement.
async fn pg_error(client: &tokio_postgres::Client, statement: &str) -> String {
    let e = client
        .simple_query(statement)
        .await
        .expect_err(&statement.chars().take(80).collect::<String>());
    e.code()
        .unwrap_or_else(|| panic!("no SQLSTATE: {e}"))
        .code()
        .to_string()
}

/// The server answers both protocols, holds less than 1.5 GiB, and left the
/// outside directory alone.
async fn assert_healthy(server: &mut Server, dirs: &Dirs) {
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "the server died"
    );
    let client = pg_connect(&server.pg).await;
    let rows = client.simple_query("SELECT 1").await.unwrap();
    assert!(!rows.is_empty());
    let (status, _) = sql(server, "SELECT 1");
    assert_eq!(status, 200);
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.child.id())).unwrap();
    let rss_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    assert!(rss_kib < 1536 * 1024, "the server holds {rss_kib} KiB");
    dirs.outside_untouched();
}

fn bids_table(name: &str, path: &Path, extra: &str) -> String {
    format!(
        "CREATE TABLE {name} (auction BIGINT, price BIGINT) WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json'{extra})",
        path.display()
    )
}

fn write_bids(dir: &Path, name: &str, lines: &[String]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

/// The rows of a simple query's answer.
fn rows(messages: &[tokio_postgres::SimpleQueryMessage]) -> usize {
    messages
        .iter()
        .filter(|m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(_)))
        .count()
}

async fn wait_for_rows(client: &tokio_postgres::Client, query: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(rows) = client.query(query, &[]).await
            && !rows.is_empty()
        {
            return;
        }
        assert!(Instant::now() < deadline, "{query} never had rows");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
