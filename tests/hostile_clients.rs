//! A hostile client against the real `headwater serve`: names that are
//! paths, files outside the allowed directories, statements that would
//! overflow the stack or exhaust memory, endless queries, raw protocol
//! messages that break the rules, web pages that forge requests. After each,
//! the server still answers, nothing outside the allowed directory was read,
//! written or deleted, its memory stayed bounded, and the client got an error
//! with a SQLSTATE. Postgres tools' own catalog queries (psql's `\d`,
//! SQLAlchemy's, Grafana's, DBeaver's) get answers.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::pg_connect;

struct Server {
    child: Child,
    pg: String,
    http: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

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

fn start(dirs: &Dirs, extra: &[&str]) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_headwater"))
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
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut pg, mut http) = (None, None);
    while pg.is_none() || http.is_none() {
        let line = lines.next().expect("the addresses").unwrap();
        if let Some(a) = line.strip_prefix("postgres: ") {
            pg = Some(a.to_string());
        }
        if let Some(a) = line.strip_prefix("http: http://") {
            http = Some(a.to_string());
        }
    }
    std::thread::spawn(move || for _ in lines {});
    Server {
        child,
        pg: pg.unwrap(),
        http: http.unwrap(),
    }
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_and_names_stay_inside_the_sandbox() {
    let dirs = Dirs::new();
    let mut server = start(&dirs, &[]);
    let client = pg_connect(&server.pg).await;
    let secret = dirs.outside.path().join("secret.txt");

    // A table over a file outside: refused, over both protocols, with no content.
    let statement = bids_table("stolen", &secret, "");
    assert_eq!(pg_error(&client, &statement).await, "42501");
    let (_, answer) = sql(&server, &statement);
    assert_eq!(answer["error"]["code"], "42501");
    assert!(!answer.to_string().contains("canary"));
    assert_eq!(
        http_error(&server, &bids_table("etc", Path::new("/etc/passwd"), "")),
        "42501"
    );
    // A sink, a dead-letter directory, and `..` out of the allowed one.
    let inside = write_bids(
        dirs.allowed.path(),
        "bids.jsonl",
        &["{\"auction\":1,\"price\":5}".into()],
    );
    let sink = bids_table("out", &dirs.outside.path().join("out"), "");
    assert_eq!(pg_error(&client, &sink).await, "42501");
    let dlq = bids_table(
        "b",
        &inside,
        &format!(
            ", 'decode-error' = 'dlq', 'decode-error.path' = '{}'",
            dirs.outside.path().display()
        ),
    );
    assert_eq!(pg_error(&client, &dlq).await, "42501");
    let climbing = dirs
        .allowed
        .path()
        .join("..")
        .join(dirs.outside.path().file_name().unwrap())
        .join("secret.txt");
    assert_eq!(
        pg_error(&client, &bids_table("up", &climbing, "")).await,
        "42501"
    );
    assert_healthy(&mut server, &dirs).await;

    // Names are identifiers, never paths: a view named like a directory is
    // refused, and the directory is still there.
    client
        .batch_execute(&bids_table("bids", &inside, ""))
        .await
        .unwrap();
    for name in [
        format!("\"{}\"", dirs.outside.path().display()),
        "\"a.b\"".to_string(),
        "\"../x\"".to_string(),
    ] {
        let statement = format!(
            "CREATE MATERIALIZED VIEW {name} AS SELECT auction, count(*) AS n FROM bids GROUP BY auction"
        );
        assert_eq!(pg_error(&client, &statement).await, "42602", "{name}");
    }
    assert_healthy(&mut server, &dirs).await;

    // `v` and `"v"` are one name (Postgres' case rules): the second is refused.
    client
        .batch_execute("CREATE MATERIALIZED VIEW v AS SELECT auction, count(*) AS n FROM bids GROUP BY auction")
        .await
        .unwrap();
    assert_eq!(
        pg_error(
            &client,
            "CREATE MATERIALIZED VIEW \"v\" AS SELECT auction FROM bids GROUP BY auction"
        )
        .await,
        "42P07"
    );
    // A table a view reads cannot be dropped; the error names the view.
    let e = client.batch_execute("DROP TABLE bids").await.unwrap_err();
    assert_eq!(e.code().unwrap().code(), "2BP01");
    let message = e.as_db_error().unwrap().message();
    assert!(
        message.contains("`v`") || message.contains(" v "),
        "{message}"
    );
    assert_healthy(&mut server, &dirs).await;

    // A trailing comment and non-ASCII text do not merge or break kept
    // statements: the server comes back after a SIGKILL with all of them.
    let (status, answer) = sql(
        &server,
        &format!(
            "-- ünïcödé ☃ /* ; */\n{} -- trailing; comment",
            bids_table("more_bids", &inside, "")
        ),
    );
    assert_eq!(status, 200, "{answer}");
    client
        .batch_execute("CREATE MATERIALIZED VIEW w AS SELECT price, count(*) AS n FROM more_bids GROUP BY price /* ; */")
        .await
        .unwrap();
    drop(client);
    drop(server);
    let mut server = start(&dirs, &[]);
    let client = pg_connect(&server.pg).await;
    wait_for_rows(&client, "SELECT n FROM w").await;
    wait_for_rows(&client, "SELECT n FROM v").await;
    assert_healthy(&mut server, &dirs).await;
    drop(client);
    drop(server);

    // Started again without the allowed directory, the statements over its
    // files fail and are reported; the server runs all the same.
    let mut server = start_without_sandbox(&dirs);
    let (_, body) = http(&server.http, "/v1/jobs", &[], "");
    assert!(body.contains("failed"), "{body}");
    let client = pg_connect(&server.pg).await;
    assert_eq!(rows(&client.simple_query("SELECT 1").await.unwrap()), 1);
    assert!(server.child.try_wait().unwrap().is_none());
    let _ = &mut server;
    dirs.outside_untouched();
}

/// The rows of a simple query's answer.
fn rows(messages: &[tokio_postgres::SimpleQueryMessage]) -> usize {
    messages
        .iter()
        .filter(|m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(_)))
        .count()
}

/// The server with no `--allow-path`.
fn start_without_sandbox(dirs: &Dirs) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_headwater"))
        .args(["serve", "--pg-port", "0", "--http-port", "0"])
        .arg("--data-dir")
        .arg(dirs.data.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut pg, mut http) = (None, None);
    while pg.is_none() || http.is_none() {
        let line = lines.next().expect("the addresses").unwrap();
        if let Some(a) = line.strip_prefix("postgres: ") {
            pg = Some(a.to_string());
        }
        if let Some(a) = line.strip_prefix("http: http://") {
            http = Some(a.to_string());
        }
    }
    std::thread::spawn(move || for _ in lines {});
    Server {
        child,
        pg: pg.unwrap(),
        http: http.unwrap(),
    }
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_that_would_crash_or_exhaust_the_server_fail_alone() {
    let dirs = Dirs::new();
    let mut server = start(&dirs, &["--max-connections", "6"]);
    let client = pg_connect(&server.pg).await;

    // 20,000 terms, over both protocols.
    let long = format!("SELECT 1{}", "+1".repeat(20_000));
    assert_eq!(pg_error(&client, &long).await, "54001");
    assert_eq!(http_error(&server, &long), "54001");
    // Just under the limit, the deep tree plans and runs.
    let deep = format!("SELECT 1{} AS n", "+1".repeat(1000));
    let answer = client.simple_query(&deep).await.unwrap();
    let tokio_postgres::SimpleQueryMessage::Row(row) = &answer[1] else {
        panic!("{answer:?}")
    };
    assert_eq!(row.get(0), Some("1001"));
    assert_healthy(&mut server, &dirs).await;

    // A generator asked for strings of a terabyte each: refused when a job
    // would read it.
    client
        .batch_execute("CREATE TABLE g (s VARCHAR) WITH ('connector' = 'datagen', 'fields.s.length' = '1000000000000')")
        .await
        .unwrap();
    let e = pg_error(
        &client,
        "CREATE MATERIALIZED VIEW gv AS SELECT s, count(*) AS n FROM g GROUP BY s",
    )
    .await;
    assert!(e.starts_with("42"), "{e}");
    // DECIMAL(300,200) is refused, not wrapped.
    let e = pg_error(
        &client,
        "CREATE TABLE d (x DECIMAL(300,200)) WITH ('connector' = 'datagen', 'number-of-rows' = '1')",
    )
    .await;
    assert_eq!(e, "0A000");
    assert_healthy(&mut server, &dirs).await;

    // Deeply nested JSON in an input line: the line is a bad line, the job
    // keeps the others.
    let deep = format!(
        "{{\"auction\":{}1{}}}",
        "[".repeat(200_000),
        "]".repeat(200_000)
    );
    let lines = vec![
        "{\"auction\":1,\"price\":5}".to_string(),
        deep,
        "{\"auction\":2,\"price\":7}".to_string(),
    ];
    let path = write_bids(dirs.allowed.path(), "deep.jsonl", &lines);
    client
        .batch_execute(&bids_table("deep", &path, ", 'decode-error' = 'skip'"))
        .await
        .unwrap();
    client
        .batch_execute("CREATE MATERIALIZED VIEW deep_count AS SELECT auction, count(*) AS n FROM deep GROUP BY auction")
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let rows = client
            .query("SELECT auction FROM deep_count ORDER BY auction", &[])
            .await
            .unwrap();
        let auctions: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
        if auctions == [1, 2] {
            break;
        }
        assert!(Instant::now() < deadline, "{auctions:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_healthy(&mut server, &dirs).await;

    // A query past its memory: 53200, and the server lives on.
    let e = pg_error(
        &client,
        "SELECT count(DISTINCT (value * 7919) % 50000000) FROM generate_series(1, 50000000)",
    )
    .await;
    assert_eq!(e, "53200");
    assert_healthy(&mut server, &dirs).await;

    // Three billion rows stream: the client reads some, then cancels; the
    // server never holds them.
    let rows = client
        .query_raw(
            "SELECT * FROM generate_series(1, 3000000000)",
            Vec::<i64>::new(),
        )
        .await
        .unwrap();
    futures::pin_mut!(rows);
    let mut read = 0;
    while read < 200_000 {
        use futures::StreamExt;
        rows.next().await.unwrap().unwrap();
        read += 1;
    }
    client
        .cancel_token()
        .cancel_query(tokio_postgres::NoTls)
        .await
        .unwrap();
    let stopped = loop {
        use futures::StreamExt;
        match rows.next().await {
            Some(Ok(_)) => continue,
            Some(Err(e)) => break e,
            None => panic!("the query ran to its end"),
        }
    };
    assert_eq!(stopped.code().unwrap().code(), "57014");
    assert_healthy(&mut server, &dirs).await;

    // A statement timeout, set by the session.
    client
        .batch_execute("SET statement_timeout = '300ms'")
        .await
        .unwrap();
    let started = Instant::now();
    let e = pg_error(
        &client,
        "SELECT count(*) FROM generate_series(1, 100000000000)",
    )
    .await;
    assert_eq!(e, "57014");
    assert!(started.elapsed() < Duration::from_secs(10));
    let shown = client.simple_query("SHOW statement_timeout").await.unwrap();
    let tokio_postgres::SimpleQueryMessage::Row(row) = &shown[1] else {
        panic!("{shown:?}")
    };
    assert_eq!(row.get(0), Some("300ms"));
    client
        .batch_execute("RESET statement_timeout")
        .await
        .unwrap();
    assert_healthy(&mut server, &dirs).await;

    // Past the connection limit: refused with 53300; one closed frees a place.
    let mut open = Vec::new();
    let refused = loop {
        let (host, port) = server.pg.rsplit_once(':').unwrap();
        match tokio_postgres::Config::new()
            .host(host)
            .port(port.parse().unwrap())
            .user("u")
            .connect(tokio_postgres::NoTls)
            .await
        {
            Ok((c, conn)) => {
                tokio::spawn(conn);
                open.push(c);
                assert!(open.len() < 10, "no limit");
            }
            Err(e) => break e,
        }
    };
    assert!(
        refused.to_string().contains("too many")
            || refused.code().is_some_and(|c| c.code() == "53300"),
        "{refused}"
    );
    open.pop();
    drop(client);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let client = pg_connect(&server.pg).await;
    client.simple_query("SELECT 1").await.unwrap();
    drop(open);
    drop(client);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_healthy(&mut server, &dirs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_values_and_protocol_errors_never_panic() {
    let dirs = Dirs::new();
    let mut server = start(&dirs, &[]);
    let client = pg_connect(&server.pg).await;

    // NUMERIC beyond rust_decimal: scale 30, and 38 digits, both ways.
    let rows = client
        .query("SELECT CAST(1 AS DECIMAL(38,30)) AS a, CAST('-12345678901234567890123456789012345678' AS DECIMAL(38,0)) AS b", &[])
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    let text = client
        .simple_query("SELECT CAST(1 AS DECIMAL(38,30)) AS a, CAST('-12345678901234567890123456789012345678' AS DECIMAL(38,0)) AS b")
        .await
        .unwrap();
    let tokio_postgres::SimpleQueryMessage::Row(row) = &text[1] else {
        panic!("{text:?}")
    };
    assert_eq!(row.get(0), Some("1.000000000000000000000000000000"));
    assert_eq!(row.get(1), Some("-12345678901234567890123456789012345678"));
    assert_healthy(&mut server, &dirs).await;

    // A Bind with two format codes for three parameters, then one with two
    // result formats for one column: errors, and the connection goes on.
    let mut raw = RawPg::connect(&server.pg);
    raw.send(b'P', &parse("SELECT $1::int4 + $2::int4 + $3::int4"));
    raw.send(b'B', &bind(&[0, 0], &["1", "2", "3"], &[]));
    raw.send(b'E', &[0, 0, 0, 0, 0]);
    raw.send(b'S', &[]);
    let answer = raw.until_ready();
    assert!(
        answer.contains("08P01") || answer.contains("22023"),
        "{answer}"
    );
    raw.send(b'P', &parse("SELECT 1"));
    raw.send(b'B', &bind(&[], &[], &[1, 1]));
    raw.send(b'E', &[0, 0, 0, 0, 0]);
    raw.send(b'S', &[]);
    let answer = raw.until_ready();
    assert!(answer.contains("08P01"), "{answer}");
    raw.send(b'Q', b"SELECT 41 + 1\0");
    assert!(raw.until_ready().contains("42"));
    assert_healthy(&mut server, &dirs).await;

    // Web pages: another Host (DNS rebinding), plain text or a form (CSRF).
    let (status, _) = http(
        &server.http,
        "/v1/sql",
        &[
            ("Host", "attacker.example:80"),
            ("Content-Type", "application/sql"),
        ],
        "SELECT 1",
    );
    assert_eq!(status, 403);
    for media in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
    ] {
        let (status, body) = http(
            &server.http,
            "/v1/sql",
            &[("Content-Type", media)],
            "SELECT 1",
        );
        assert_eq!(status, 415, "{media}: {body}");
    }
    let (status, _) = http(
        &server.http,
        "/v1/sql",
        &[("Content-Type", "application/json")],
        "{\"sql\": \"SELECT 1\"}",
    );
    assert_eq!(status, 200);
    assert_healthy(&mut server, &dirs).await;
}

/// A Postgres connection spoken by hand, for messages no driver sends.
struct RawPg {
    stream: std::net::TcpStream,
}

impl RawPg {
    fn connect(addr: &str) -> Self {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut body = 196608i32.to_be_bytes().to_vec();
        body.extend_from_slice(b"user\0raw\0\0");
        let mut message = ((body.len() + 4) as i32).to_be_bytes().to_vec();
        message.extend(body);
        stream.write_all(&message).unwrap();
        let mut raw = RawPg { stream };
        raw.until_ready();
        raw
    }

    fn send(&mut self, tag: u8, body: &[u8]) {
        let mut message = vec![tag];
        message.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
        message.extend_from_slice(body);
        self.stream.write_all(&message).unwrap();
    }

    /// Every message up to ReadyForQuery, as lossy text.
    fn until_ready(&mut self) -> String {
        let mut text = String::new();
        loop {
            let mut head = [0u8; 5];
            self.stream.read_exact(&mut head).unwrap();
            let len = i32::from_be_bytes(head[1..5].try_into().unwrap()) as usize;
            let mut body = vec![0u8; len - 4];
            self.stream.read_exact(&mut body).unwrap();
            text.push(head[0] as char);
            text.push_str(&String::from_utf8_lossy(&body));
            if head[0] == b'Z' {
                return text;
            }
        }
    }
}

fn parse(sql: &str) -> Vec<u8> {
    let mut body = vec![0u8]; // the unnamed statement
    body.extend_from_slice(sql.as_bytes());
    body.push(0);
    body.extend_from_slice(&0i16.to_be_bytes());
    body
}

fn bind(formats: &[i16], values: &[&str], result_formats: &[i16]) -> Vec<u8> {
    let mut body = vec![0u8, 0u8]; // unnamed portal, unnamed statement
    body.extend_from_slice(&(formats.len() as i16).to_be_bytes());
    for f in formats {
        body.extend_from_slice(&f.to_be_bytes());
    }
    body.extend_from_slice(&(values.len() as i16).to_be_bytes());
    for v in values {
        body.extend_from_slice(&(v.len() as i32).to_be_bytes());
        body.extend_from_slice(v.as_bytes());
    }
    body.extend_from_slice(&(result_formats.len() as i16).to_be_bytes());
    for f in result_formats {
        body.extend_from_slice(&f.to_be_bytes());
    }
    body
}

/// The first queries SQLAlchemy (and so pandas and Superset), Grafana and
/// DBeaver send, and psql's `\d`: each gets an answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_tools_find_the_views_in_the_catalog() {
    let dirs = Dirs::new();
    let mut server = start(&dirs, &[]);
    let path = write_bids(
        dirs.allowed.path(),
        "bids.jsonl",
        &(0..50)
            .map(|i| format!("{{\"auction\":{},\"price\":{i}}}", i % 5))
            .collect::<Vec<_>>(),
    );
    let client = pg_connect(&server.pg).await;
    client
        .batch_execute(&bids_table("bids", &path, ""))
        .await
        .unwrap();
    client
        .batch_execute("CREATE MATERIALIZED VIEW auction_totals AS SELECT auction, sum(price) AS total FROM bids GROUP BY auction")
        .await
        .unwrap();
    wait_for_rows(&client, "SELECT total FROM auction_totals").await;

    for query in [
        // SQLAlchemy, on connecting.
        "select pg_catalog.version()",
        "select current_schema()",
        "show standard_conforming_strings",
        "show transaction isolation level",
        "SELECT pg_catalog.pg_class.relname FROM pg_catalog.pg_class JOIN pg_catalog.pg_namespace ON pg_catalog.pg_namespace.oid = pg_catalog.pg_class.relnamespace WHERE pg_catalog.pg_class.relkind = ANY (ARRAY['r', 'p', 'v', 'm']) AND pg_catalog.pg_namespace.nspname != 'pg_catalog'",
        // Grafana's Postgres source.
        "SELECT current_setting('server_version_num')::int/100 as version",
        "select quote_ident(table_name) as \"table\" from information_schema.tables where quote_ident(table_schema) not in ('information_schema', 'pg_catalog') order by 1",
        // DBeaver.
        "SELECT current_schema(),session_user",
        "SHOW search_path",
        "select n.oid, n.nspname from pg_catalog.pg_namespace n order by nspname",
        // psql's \d, as it asks it.
        "SELECT n.nspname as \"Schema\", c.relname as \"Name\", CASE c.relkind WHEN 'r' THEN 'table' WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view' END as \"Type\" FROM pg_catalog.pg_class c LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r','p','v','m','S','f','') AND n.nspname <> 'pg_catalog' AND n.nspname !~ '^pg_toast' AND n.nspname <> 'information_schema' AND pg_catalog.pg_table_is_visible(c.oid) ORDER BY 1,2",
    ] {
        let answer = client.simple_query(query).await;
        assert!(answer.is_ok(), "{query}: {answer:?}");
    }
    let version = client
        .simple_query("select pg_catalog.version()")
        .await
        .unwrap();
    let tokio_postgres::SimpleQueryMessage::Row(row) = &version[1] else {
        panic!()
    };
    assert!(
        row.get(0).unwrap().starts_with("PostgreSQL 16"),
        "{:?}",
        row.get(0)
    );
    let tables = client
        .simple_query(
            "SELECT table_name FROM information_schema.tables WHERE table_name = 'auction_totals'",
        )
        .await
        .unwrap();
    assert_eq!(rows(&tables), 1, "{tables:?}");

    // psql itself.
    let (host, port) = server.pg.rsplit_once(':').unwrap();
    let psql = |args: &[&str]| {
        Command::new("psql")
            .args(["-h", host, "-p", port, "-U", "u", "-d", "headwater", "-X"])
            .args(args)
            .env("PGCONNECT_TIMEOUT", "10")
            .output()
            .expect("psql is installed (scripts/setup.sh)")
    };
    let listed = psql(&["-c", "\\d"]);
    let out = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed.status.success(),
        "{out} {}",
        String::from_utf8_lossy(&listed.stderr)
    );
    assert!(out.contains("auction_totals"), "{out}");
    let described = psql(&["-c", "\\d auction_totals"]);
    let out = String::from_utf8_lossy(&described.stdout);
    assert!(
        described.status.success(),
        "{out} {}",
        String::from_utf8_lossy(&described.stderr)
    );
    assert!(out.contains("auction") && out.contains("total"), "{out}");
    assert_healthy(&mut server, &dirs).await;
}

/// `headwater run` serves its views to the same clients: its script is
/// trusted, their statements are not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_script_serves_hostile_clients_and_lives_on() {
    let dirs = Dirs::new();
    let path = write_bids(
        dirs.allowed.path(),
        "bids.jsonl",
        &(0..20)
            .map(|i| format!("{{\"auction\":{},\"price\":{i}}}", i % 4))
            .collect::<Vec<_>>(),
    );
    let script = dirs.allowed.path().join("job.sql");
    std::fs::write(
        &script,
        format!(
            "{};\nCREATE MATERIALIZED VIEW totals AS SELECT auction, sum(price) AS total FROM bids GROUP BY auction;",
            bids_table("bids", &path, "")
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_headwater"))
        .arg("run")
        .arg(&script)
        .args([
            "--pg-port",
            "0",
            "--http-port",
            "0",
            "--query-memory",
            "64MiB",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut pg, mut http_addr) = (None, None);
    while pg.is_none() || http_addr.is_none() {
        let line = lines.next().expect("the addresses").unwrap();
        if let Some(a) = line.strip_prefix("postgres: ") {
            pg = Some(a.to_string());
        }
        if let Some(a) = line.strip_prefix("http: http://") {
            http_addr = Some(a.to_string());
        }
    }
    std::thread::spawn(move || for _ in lines {});
    let mut server = Server {
        child,
        pg: pg.unwrap(),
        http: http_addr.unwrap(),
    };
    let client = pg_connect(&server.pg).await;
    wait_for_rows(&client, "SELECT total FROM totals").await;

    // No statement of a client changes anything here.
    let stolen = bids_table("stolen", &dirs.outside.path().join("secret.txt"), "");
    assert_eq!(pg_error(&client, &stolen).await, "25006");
    assert_eq!(
        http_error(&server, "DROP MATERIALIZED VIEW totals"),
        "25006"
    );
    let long = format!("SELECT 1{}", "+1".repeat(20_000));
    assert_eq!(pg_error(&client, &long).await, "54001");
    assert_eq!(
        pg_error(
            &client,
            "SELECT count(DISTINCT (value * 7919) % 50000000) FROM generate_series(1, 50000000)"
        )
        .await,
        "53200"
    );
    client
        .batch_execute("SET statement_timeout = '200ms'")
        .await
        .unwrap();
    assert_eq!(
        pg_error(
            &client,
            "SELECT count(*) FROM generate_series(1, 100000000000)"
        )
        .await,
        "57014"
    );
    // The view is still there, whole.
    let rows = client.query("SELECT total FROM totals", &[]).await.unwrap();
    assert_eq!(rows.len(), 4);
    assert_healthy(&mut server, &dirs).await;
}
