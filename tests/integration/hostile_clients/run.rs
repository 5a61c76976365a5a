//! `headwater run`: the same clients, a trusted script.

use super::*;

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
    let mut command = Command::new(env!("CARGO_BIN_EXE_headwater"));
    command.arg("run").arg(&script).args([
        "--pg-port",
        "0",
        "--http-port",
        "0",
        "--query-memory",
        "64MiB",
    ]);
    let mut server = spawn_server(command);
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
