//! Files outside the allowed directories, names that are paths, and a catalog
//! that stays loadable across restarts.

use super::*;

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
    // The views fail because their table did, and say so.
    assert!(
        body.contains("reads table `bids`, which failed to start"),
        "{body}"
    );
    let client = pg_connect(&server.pg).await;
    assert_eq!(rows(&client.simple_query("SELECT 1").await.unwrap()), 1);
    assert!(server.child.try_wait().unwrap().is_none());
    let _ = &mut server;
    dirs.outside_untouched();
}
