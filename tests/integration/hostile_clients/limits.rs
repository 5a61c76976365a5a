//! Statements that would crash the server or exhaust it: each fails alone.

use super::*;

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
    // Planning is bounded too: a statement that takes long to plan (a chain
    // of 1,000 terms, under the size limit: about a second on a slow
    // machine, far more than a millisecond on any) stops at the timeout.
    client
        .batch_execute("SET statement_timeout = '1ms'")
        .await
        .unwrap();
    let chain = format!("SELECT 1{}", "+1".repeat(1000));
    let started = Instant::now();
    assert_eq!(pg_error(&client, &chain).await, "57014");
    assert!(
        started.elapsed() < Duration::from_millis(700),
        "the timeout waited for planning: {:?}",
        started.elapsed()
    );
    client
        .batch_execute("SET statement_timeout = '300ms'")
        .await
        .unwrap();
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

    // HTTP has its own limit: idle connections past it get 503 (53300),
    // and a closed one frees its place.
    let mut idle: Vec<std::net::TcpStream> = (0..6)
        .map(|_| std::net::TcpStream::connect(&server.http).unwrap())
        .collect();
    // The server accepts them in its own time (slowly on a busy machine), so
    // ask until it is full, for a while at most.
    let (status, body) = http_until(&server.http, 503);
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("53300"), "{body}");
    idle.pop();
    let (status, body) = http_until(&server.http, 200);
    assert_eq!(status, 200, "{body}");
    drop(idle);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_healthy(&mut server, &dirs).await;
}

/// `GET /v1/views` until it answers `status`, for ten seconds at most; the
/// last answer.
fn http_until(addr: &str, status: u16) -> (u16, String) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let answer = http(addr, "/v1/views", &[], "");
        if answer.0 == status || std::time::Instant::now() > deadline {
            return answer;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
