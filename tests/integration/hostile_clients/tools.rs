//! Postgres tools find the views where they look.

use super::*;

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
