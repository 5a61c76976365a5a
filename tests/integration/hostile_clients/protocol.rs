//! Values beyond what a driver expects, protocol messages that break the rules,
//! and requests forged by web pages.

use super::*;

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
