//! The views of a bounded job stay readable after its input ends, for as long
//! as `headwater run` serves them: the published copies live in the job's
//! temporary state directory, which is kept until the last reader is done.

use crate::common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const KEYS: i64 = 150_000;
const ROWS: i64 = 400_000;

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_view_is_read_whole_after_the_job_ends() {
    let dir = tempfile::tempdir().unwrap();
    let mut reference: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
    {
        let mut file = std::io::BufWriter::new(
            std::fs::File::create(dir.path().join("events.jsonl")).unwrap(),
        );
        for i in 0..ROWS {
            let customer = (i * 7919) % KEYS;
            let amount = i % 97;
            let r = reference.entry(customer).or_default();
            r.0 += 1;
            r.1 += amount;
            writeln!(
                file,
                r#"{{"customer_id":{customer},"amount":{amount},"note":"{}"}}"#,
                "x".repeat((i % 40) as usize)
            )
            .unwrap();
        }
    }
    std::fs::write(
        dir.path().join("job.sql"),
        "CREATE TABLE events (customer_id BIGINT, amount BIGINT, note VARCHAR)
         WITH ('connector' = 'filesystem', 'path' = 'events.jsonl', 'format' = 'json');
         CREATE MATERIALIZED VIEW per_customer AS
         SELECT customer_id, count(*) AS n, sum(amount) AS total, max(note) AS longest
         FROM events GROUP BY customer_id;",
    )
    .unwrap();
    // The job's temporary state directory goes here, to be looked at.
    let tmp = dir.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_headwater"))
        .env("TMPDIR", &tmp)
        .args(["run", "job.sql", "--pg-port", "0", "--http-port", "0"])
        .args(["--parallelism", "2", "--checkpoint-interval", "300ms"])
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let server = Server(child);
    let mut lines = stdout.lines();
    let addr = loop {
        let line = lines.next().expect("an address").unwrap();
        if let Some(addr) = line.strip_prefix("postgres: ") {
            break addr.to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    let (ended_tx, ended_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            if line.contains("input ended") {
                let _ = ended_tx.send(());
            }
        }
    });
    ended_rx
        .recv_timeout(Duration::from_secs(120))
        .expect("the bounded job ends");
    // Give the process time to clean up after the job, as it did before.
    tokio::time::sleep(Duration::from_millis(500)).await;
    // RocksDB opens a copy's files as it reads them (only the first few at
    // once): the published copies' files must still be there.
    let copies = sst_files_of_view_copies(&tmp);
    assert!(
        copies > 0,
        "the published copies of the view are gone from {}",
        tmp.display()
    );

    let client = common::pg_connect(&addr).await;
    let started = Instant::now();
    for round in 0..3 {
        let rows = client
            .query("SELECT customer_id, n, total FROM per_customer", &[])
            .await
            .unwrap_or_else(|e| panic!("round {round}: the view cannot be read: {e:?}"));
        let got: BTreeMap<i64, (i64, i64)> = rows
            .iter()
            .map(|r| (r.get(0), (r.get(1), r.get(2))))
            .collect();
        assert_eq!(got.len(), reference.len(), "round {round}");
        assert!(
            got == reference,
            "round {round}: rows differ from the input's counts"
        );
        let one: i64 = client
            .query_one("SELECT n FROM per_customer WHERE customer_id = 4242", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(one, reference[&4242].0);
    }
    // A range on the key reads that range, across batches and key groups.
    let rows = client
        .query(
            "SELECT customer_id, n FROM per_customer WHERE customer_id >= 1000 AND customer_id < 91000",
            &[],
        )
        .await
        .unwrap();
    let got: BTreeMap<i64, i64> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let expected: BTreeMap<i64, i64> = reference
        .range(1000..91000)
        .map(|(&k, &(n, _))| (k, n))
        .collect();
    assert!(got == expected, "the key range's rows differ");
    // A LIMIT reaches the scan, which stops reading there.
    let plan = client
        .simple_query("EXPLAIN SELECT customer_id, total FROM per_customer LIMIT 7")
        .await
        .unwrap();
    let plan: String = plan
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(1).map(str::to_string),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        plan.contains("StreamingTableExec") && plan.contains("fetch=7"),
        "the limit does not reach the view's scan:\n{plan}"
    );
    let limited = client
        .query("SELECT customer_id, total FROM per_customer LIMIT 7", &[])
        .await
        .unwrap();
    assert_eq!(limited.len(), 7);
    for row in &limited {
        let key: i64 = row.get(0);
        assert_eq!(reference[&key].1, row.get::<_, i64>(1));
    }
    assert!(started.elapsed() < Duration::from_secs(120));
    drop(server);
}

/// SST files in the view copies (`*.view-<checkpoint>` directories) under `dir`.
fn sst_files_of_view_copies(dir: &std::path::Path) -> usize {
    let mut count = 0;
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            if path
                .extension()
                .is_some_and(|e| e.to_string_lossy().starts_with("view-"))
            {
                count += std::fs::read_dir(&path)
                    .unwrap()
                    .flatten()
                    .filter(|f| f.file_name().to_string_lossy().ends_with(".sst"))
                    .count();
            } else {
                count += sst_files_of_view_copies(&path);
            }
        }
    }
    count
}
