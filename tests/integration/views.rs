//! Materialized views read over the Postgres protocol while (and after) a
//! job runs: point lookups, scans, a join of two views, NULLs and timestamps,
//! from tokio-postgres (extended and simple protocol) and from psql; bad
//! queries get a SQLSTATE and the session goes on. Results are checked
//! against a plain-Rust count over the same events.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Server {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn bids() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/sql/data/bids.jsonl")
        .display()
        .to_string()
}

/// Starts `headwater run` over a script of views; returns once it prints its address.
fn start(script: &str) -> Server {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("job.sql"), script).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_headwater"))
        .args([
            "run",
            "job.sql",
            "--parallelism",
            "2",
            "--pg-port",
            "0",
            "--http-port",
            "0",
            "--checkpoint-interval",
            "200ms",
        ])
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("the server prints its address")
            .unwrap();
        if let Some(addr) = line.strip_prefix("postgres: ") {
            break addr.to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    Server {
        child,
        addr,
        _dir: dir,
    }
}

const SCRIPT: &str = "
CREATE TABLE bids (
  auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, date_time TIMESTAMP(3),
  WATERMARK FOR date_time AS date_time - INTERVAL '1' SECOND
) WITH ('connector' = 'filesystem', 'path' = '{bids}', 'format' = 'json');

CREATE MATERIALIZED VIEW auction_stats AS
SELECT auction, count(*) AS bids, max(price) AS highest, sum(price) AS total,
       max(CASE WHEN channel = 'nowhere' THEN price END) AS never
FROM bids GROUP BY auction;

CREATE MATERIALIZED VIEW auction_bidders AS
SELECT auction, count(DISTINCT bidder) AS bidders FROM bids GROUP BY auction;

-- A declared key: the latest bid per auction (an upsert of an append-only query).
CREATE MATERIALIZED VIEW latest_bid WITH (primary_key = 'auction') AS
SELECT auction, bidder, price FROM bids;

CREATE MATERIALIZED VIEW per_window AS
SELECT window_start, window_end, count(*) AS bids
FROM TUMBLE(bids, date_time, INTERVAL '10' SECOND)
GROUP BY window_start, window_end;
";

/// (bids, top, total) and distinct bidders per auction, from the file itself.
fn reference() -> (BTreeMap<i64, (i64, i64, i64)>, BTreeMap<i64, i64>) {
    let mut stats: BTreeMap<i64, (i64, i64, i64)> = BTreeMap::new();
    let mut bidders: BTreeMap<i64, std::collections::BTreeSet<i64>> = BTreeMap::new();
    for line in std::fs::read_to_string(bids()).unwrap().lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let (a, b, p) = (
            v["auction"].as_i64().unwrap(),
            v["bidder"].as_i64().unwrap(),
            v["price"].as_i64().unwrap(),
        );
        let s = stats.entry(a).or_insert((0, i64::MIN, 0));
        *s = (s.0 + 1, s.1.max(p), s.2 + p);
        bidders.entry(a).or_default().insert(b);
    }
    (
        stats,
        bidders
            .into_iter()
            .map(|(a, s)| (a, s.len() as i64))
            .collect(),
    )
}

async fn connect(addr: &str) -> tokio_postgres::Client {
    let (host, port) = addr.rsplit_once(':').unwrap();
    let (client, connection) = tokio_postgres::Config::new()
        .host(host)
        .port(port.parse().unwrap())
        .user("headwater")
        .dbname("headwater")
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
}

/// Waits until the views hold the whole (bounded) input.
async fn wait_for_all(client: &tokio_postgres::Client, rows: i64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let seen: i64 = client
            .query_one("SELECT coalesce(sum(bids), 0) FROM auction_stats", &[])
            .await
            .unwrap()
            .get(0);
        if seen == rows {
            return;
        }
        assert!(seen <= rows, "more rows than the input: {seen}");
        assert!(
            Instant::now() < deadline,
            "the views never held all rows: {seen} of {rows}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_answer_postgres_clients() {
    let server = start(&SCRIPT.replace("{bids}", &bids()));
    let client = connect(&server.addr).await;
    let (stats, bidders) = reference();
    let rows: i64 = stats.values().map(|s| s.0).sum();
    wait_for_all(&client, rows).await;

    // Point lookups (extended protocol, a parameter), every key.
    let lookup = client
        .prepare("SELECT bids, highest, total, never FROM auction_stats WHERE auction = $1")
        .await
        .unwrap();
    for (auction, (n, top, total)) in &stats {
        let row = client.query_one(&lookup, &[auction]).await.unwrap();
        assert_eq!(
            (
                row.get::<_, i64>(0),
                row.get::<_, i64>(1),
                row.get::<_, i64>(2)
            ),
            (*n, *top, *total)
        );
        assert_eq!(row.get::<_, Option<i64>>(3), None, "NULL stays NULL");
    }
    assert!(
        client.query(&lookup, &[&999_i64]).await.unwrap().is_empty(),
        "no such key"
    );

    // A scan, and a join of two views on their key.
    let joined = client
        .query(
            "SELECT s.auction, s.bids, b.bidders FROM auction_stats s \
             JOIN auction_bidders b ON s.auction = b.auction ORDER BY s.auction",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(joined.len(), stats.len());
    for row in &joined {
        let auction: i64 = row.get(0);
        assert_eq!(row.get::<_, i64>(1), stats[&auction].0);
        assert_eq!(row.get::<_, i64>(2), bidders[&auction]);
    }

    // A declared key keeps one row per auction: one of its bids.
    let latest = client
        .query("SELECT auction, bidder, price FROM latest_bid", &[])
        .await
        .unwrap();
    assert_eq!(latest.len(), stats.len(), "one row per declared key");
    let all_bids: std::collections::BTreeSet<(i64, i64, i64)> = std::fs::read_to_string(bids())
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["auction"].as_i64().unwrap(),
                v["bidder"].as_i64().unwrap(),
                v["price"].as_i64().unwrap(),
            )
        })
        .collect();
    for row in &latest {
        let bid = (row.get(0), row.get(1), row.get(2));
        assert!(all_bids.contains(&bid), "{bid:?} is not a bid of the input");
    }

    // Timestamps: windows as TIMESTAMP, 10 s apart, their counts adding up.
    let windows = client
        .query(
            "SELECT window_start, window_end, bids FROM per_window ORDER BY window_start",
            &[],
        )
        .await
        .unwrap();
    let mut total = 0;
    for row in &windows {
        let (start, end): (chrono::NaiveDateTime, chrono::NaiveDateTime) = (row.get(0), row.get(1));
        assert_eq!((end - start).num_seconds(), 10);
        assert_eq!(start.and_utc().timestamp() % 10, 0);
        total += row.get::<_, i64>(2);
    }
    assert_eq!(total, rows, "late rows aside, every bid is in a window");

    // The simple protocol.
    let messages = client
        .simple_query("SELECT count(*) FROM auction_stats; SELECT 1")
        .await
        .unwrap();
    let counts: Vec<String> = messages
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(r.get(0).unwrap().to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(counts, vec![stats.len().to_string(), "1".to_string()]);

    // Bad queries: a SQLSTATE each, and the session goes on.
    for (sql, code) in [
        ("SELECT * FROM no_such_view", "42P01"),
        ("SELEC 1", "42601"),
        ("SELECT no_such_column FROM auction_stats", "42703"),
    ] {
        let error = client.query(sql, &[]).await.expect_err(sql);
        let db = error
            .as_db_error()
            .unwrap_or_else(|| panic!("{sql}: {error}"));
        assert_eq!(db.code().code(), code, "{sql}: {}", db.message());
    }
    let still: i64 = client
        .query_one("SELECT count(*) FROM auction_stats", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(still, stats.len() as i64);

    // The real psql.
    let (host, port) = server.addr.rsplit_once(':').unwrap();
    let output = Command::new("psql")
        .args([
            "-h",
            host,
            "-p",
            port,
            "-U",
            "headwater",
            "-d",
            "headwater",
            "-A",
            "-t",
            "-c",
        ])
        .arg("SELECT auction, bids FROM auction_stats WHERE auction = 3")
        .output()
        .expect("psql (postgresql-client) is installed by scripts/setup.sh");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        format!("3|{}", stats[&3].0)
    );
}
