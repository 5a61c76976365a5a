//! `headwater serve`: clients declare a table and a view over HTTP and the
//! Postgres protocol, read it back (tokio-postgres, HTTP JSON, and the
//! `headwater query` command), see it in `/v1/views`, `/v1/jobs` and
//! `/metrics`; a password and a bearer token keep others out; the server is
//! SIGKILLed and started again over its data directory, and the view comes
//! back with the same rows; a dropped view is gone.

use crate::common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Server, spawn_server};

const TOKEN: &str = "s3cret-token";
const PASSWORD: &str = "pg-pass";

fn start(data: &Path) -> Server {
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
        .args([
            "--checkpoint-interval",
            "200ms",
            "--token",
            TOKEN,
            "--password",
            PASSWORD,
        ])
        .arg("--data-dir")
        .arg(data)
        // The bids file, and the data directory's own files (sink output).
        .arg("--allow-path")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sql/data"))
        .arg("--allow-path")
        .arg(data);
    spawn_server(command)
}

/// One HTTP/1.1 request; returns the status and the body.
fn request(addr: &str, method: &str, path: &str, token: Option<&str>, body: &str) -> (u16, String) {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/sql\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
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
        let n = usize::from_str_radix(size.trim(), 16).unwrap();
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        body = &rest[n + 2..];
    }
    out
}

fn sql(server: &Server, statements: &str) -> serde_json::Value {
    let (status, body) = request(&server.http, "POST", "/v1/sql", Some(TOKEN), statements);
    assert_eq!(status, 200, "{statements}: {body}");
    serde_json::from_str(&body).unwrap()
}

fn bids_file() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/sql/data/bids.jsonl")
        .display()
        .to_string()
}

/// Bids and the top price per auction, from the file.
fn reference() -> BTreeMap<i64, (i64, i64)> {
    let mut stats = BTreeMap::new();
    for line in std::fs::read_to_string(bids_file()).unwrap().lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let s = stats
            .entry(v["auction"].as_i64().unwrap())
            .or_insert((0i64, i64::MIN));
        *s = (s.0 + 1, s.1.max(v["price"].as_i64().unwrap()));
    }
    stats
}

async fn connect(
    addr: &str,
    password: &str,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (host, port) = addr.rsplit_once(':').unwrap();
    let (client, connection) = tokio_postgres::Config::new()
        .host(host)
        .port(port.parse().unwrap())
        .user("reader")
        .password(password)
        .connect(tokio_postgres::NoTls)
        .await?;
    tokio::spawn(connection);
    Ok(client)
}

/// The view's rows once it holds every bid.
async fn full_view(client: &tokio_postgres::Client, bids: i64) -> BTreeMap<i64, (i64, i64)> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let rows = client
            .query("SELECT auction, bids, highest FROM auction_stats", &[])
            .await
            .unwrap();
        let view: BTreeMap<i64, (i64, i64)> = rows
            .iter()
            .map(|r| (r.get(0), (r.get(1), r.get(2))))
            .collect();
        if view.values().map(|v| v.0).sum::<i64>() == bids {
            return view;
        }
        assert!(Instant::now() < deadline, "the view never held every bid");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_declare_read_and_keep_views() {
    let data = tempfile::tempdir().unwrap();
    let server = start(data.path());
    let expected = reference();
    let bids: i64 = expected.values().map(|v| v.0).sum();

    // Without the token: refused.
    let (status, body) = request(&server.http, "POST", "/v1/sql", None, "SELECT 1");
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("28000"), "{body}");
    // Without the password: refused.
    assert!(connect(&server.pg, "wrong").await.is_err());

    // A table over HTTP; a view over the Postgres protocol.
    let created = sql(
        &server,
        &format!(
            "CREATE TABLE bids (auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, date_time TIMESTAMP(3))
             WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json')",
            bids_file()
        ),
    );
    assert_eq!(created["results"][0]["command"], "CREATE TABLE");
    let client = connect(&server.pg, PASSWORD).await.unwrap();
    client
        .batch_execute(
            "CREATE MATERIALIZED VIEW auction_stats AS
             SELECT auction, count(*) AS bids, max(price) AS highest FROM bids GROUP BY auction",
        )
        .await
        .unwrap();
    assert_eq!(full_view(&client, bids).await, expected);

    // The same rows as JSON, a point lookup through the key.
    let (auction, (n, top)) = expected.iter().next().map(|(a, v)| (*a, *v)).unwrap();
    let answer = sql(
        &server,
        &format!("SELECT auction, bids, highest FROM auction_stats WHERE auction = {auction}"),
    );
    let row = &answer["results"][0]["rows"][0];
    assert_eq!(
        (
            row["auction"].as_i64(),
            row["bids"].as_i64(),
            row["highest"].as_i64()
        ),
        (Some(auction), Some(n), Some(top))
    );
    assert_eq!(answer["results"][0]["columns"][0]["type"], "Int64");
    // A range on the key (a bounded scan of each key group) against the reference.
    let (low, high) = (
        *expected.keys().nth(2).unwrap(),
        *expected.keys().nth(6).unwrap(),
    );
    let answer = sql(
        &server,
        &format!(
            "SELECT count(*) AS n FROM auction_stats WHERE auction >= {low} AND auction < {high}"
        ),
    );
    assert_eq!(answer["results"][0]["rows"][0]["n"].as_i64(), Some(4));
    // An error names its SQLSTATE and the statement.
    let (status, body) = request(
        &server.http,
        "POST",
        "/v1/sql",
        Some(TOKEN),
        "SELECT 1; SELECT * FROM nowhere",
    );
    assert_eq!(status, 400);
    let error: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(error["error"]["code"], "42P01", "{body}");
    assert_eq!(error["error"]["statement"], 2);

    // What the server keeps.
    let (_, views) = request(&server.http, "GET", "/v1/views", Some(TOKEN), "");
    let views: serde_json::Value = serde_json::from_str(&views).unwrap();
    assert_eq!(views["views"][0]["name"], "auction_stats");
    assert_eq!(views["views"][0]["key"][0], "auction");
    assert!(views["views"][0]["checkpoint"].as_u64().unwrap() > 0);
    let (_, jobs) = request(&server.http, "GET", "/v1/jobs", Some(TOKEN), "");
    let jobs: serde_json::Value = serde_json::from_str(&jobs).unwrap();
    assert_eq!(jobs["jobs"][0]["name"], "auction_stats");
    assert_eq!(jobs["jobs"][0]["rows_read"].as_i64(), Some(bids), "{jobs}");
    let (_, metrics) = request(&server.http, "GET", "/metrics", Some(TOKEN), "");
    assert!(
        metrics.contains("# TYPE headwater_operator_rows_in_total counter"),
        "{metrics}"
    );
    assert!(
        metrics.contains("headwater_job_checkpoints_completed_total{job=\"auction_stats\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("headwater_view_checkpoint{view=\"auction_stats\""),
        "{metrics}"
    );

    // The command prints a table; a bad query fails with its SQLSTATE.
    let url = format!("http://{}", server.http);
    let out = Command::new(env!("CARGO_BIN_EXE_headwater"))
        .args(["query", "--url", &url, "--token", TOKEN])
        .arg(format!(
            "SELECT auction, bids, highest FROM auction_stats WHERE auction = {auction}"
        ))
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{printed}");
    assert!(
        printed.contains(&format!("| {auction} ")) && printed.contains("(1 row)"),
        "{printed}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_headwater"))
        .args([
            "query",
            "--url",
            &url,
            "--token",
            TOKEN,
            "SELECT nope FROM auction_stats",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("42703"));

    // SIGKILL, and start again over the data directory: the view is back.
    drop(client);
    drop(server);
    let server = start(data.path());
    let client = connect(&server.pg, PASSWORD).await.unwrap();
    assert_eq!(full_view(&client, bids).await, expected);

    // Dropped: gone, and its name is free again.
    client
        .batch_execute("DROP MATERIALIZED VIEW auction_stats")
        .await
        .unwrap();
    let error = client
        .query("SELECT * FROM auction_stats", &[])
        .await
        .unwrap_err();
    assert_eq!(error.code().unwrap().code(), "42P01");
    let error = client
        .batch_execute("CREATE VIEW v AS SELECT 1")
        .await
        .unwrap_err();
    assert_eq!(error.code().unwrap().code(), "0A000");
}

/// The jobs the server lists: (name, state).
fn jobs(server: &Server) -> Vec<(String, String)> {
    let (_, body) = request(&server.http, "GET", "/v1/jobs", Some(TOKEN), "");
    let jobs: serde_json::Value = serde_json::from_str(&body).unwrap();
    jobs["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| {
            (
                j["name"].as_str().unwrap().to_string(),
                j["state"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn wait_until_finished(server: &Server, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let jobs = jobs(server);
        if jobs.iter().filter(|(_, s)| s == "finished").count() == count {
            return;
        }
        assert!(Instant::now() < deadline, "jobs never finished: {jobs:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A job keeps its name and its own checkpoints across restarts of the
/// server, whatever happened to the jobs declared before it.
#[test]
fn a_job_keeps_its_name_and_checkpoints_when_an_earlier_job_is_stopped() {
    let data = tempfile::tempdir().unwrap();
    let out = data.path().join("out");
    let server = start(data.path());
    sql(
        &server,
        &format!(
            "CREATE TABLE bids (auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, date_time TIMESTAMP(3))
             WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');
             CREATE TABLE out (auction BIGINT, price BIGINT)
             WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');
             INSERT INTO out SELECT auction, price FROM bids WHERE price < 0;
             INSERT INTO out SELECT auction, price FROM bids;",
            bids_file(),
            out.display()
        ),
    );
    wait_until_finished(&server, 2);
    let bids = reference().values().map(|v| v.0).sum::<i64>() as usize;
    let written = committed(&out);
    assert_eq!(written, bids);
    sql(&server, "STOP JOB insert_out_1");

    // SIGKILL, and start again: the second job is still `insert_out_2`, and
    // it resumes from its own last checkpoint (its input was all read), so
    // nothing is written twice.
    drop(server);
    let server = start(data.path());
    wait_until_finished(&server, 1);
    let names: Vec<String> = jobs(&server).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["insert_out_2"]);
    assert_eq!(
        committed(&out),
        bids,
        "rows written again after the restart"
    );
}

/// Rows in the committed files of a filesystem sink.
fn committed(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            !name.starts_with('_') && !name.starts_with('.') && name.ends_with(".jsonl")
        })
        .map(|e| std::fs::read_to_string(e.path()).unwrap().lines().count())
        .sum()
}
