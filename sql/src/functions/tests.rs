//! Flink's functions against the outputs Flink documents (its
//! `sql_functions.yml` and the examples of its function pages), run
//! through the same parse, rewrite and planning path as a job's queries.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::sql::parser::Statement as DfStatement;

use crate::catalog::Tables;

/// The value of `expr`, as Arrow displays it, or `NULL`.
async fn eval(expr: &str) -> Result<String, String> {
    let tables: Tables = Arc::new(Mutex::new(HashMap::new()));
    let ctx = crate::planner::session(&tables);
    let sql = format!("SELECT {expr} AS v");
    let statement = crate::script::read_script(&sql)
        .map_err(|e| e.to_string())?
        .remove(0);
    let parsed = crate::planner::parse(&statement).map_err(|e| e.to_string())?;
    let plan = ctx
        .state()
        .statement_to_plan(DfStatement::Statement(Box::new(parsed)))
        .await
        .map_err(|e| e.to_string())?;
    let batches = ctx
        .execute_logical_plan(plan)
        .await
        .map_err(|e| e.to_string())?
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    let column = batches[0].column(0);
    let options = FormatOptions::default().with_null("NULL");
    let formatter =
        ArrayFormatter::try_new(column.as_ref(), &options).map_err(|e| e.to_string())?;
    Ok(formatter.value(0).to_string())
}

/// (expression, Flink's answer).
const CASES: &[(&str, &str)] = &[
    // Conditional and arithmetic.
    ("IF(5 > 3, 5, 3)", "5"),
    ("IF(1 > 3, 'a', 'b')", "b"),
    // Only the chosen branch runs: no division by zero.
    ("IF(0 = 0, 0, 10 / 0)", "0"),
    ("MOD(7, 3)", "1"),
    ("MOD(-7, 3)", "-1"),
    ("MOD(7, -3)", "1"),
    // Strings.
    ("REGEXP_EXTRACT('foothebar', 'foo(.*?)(bar)', 2)", "bar"),
    ("REGEXP_EXTRACT('foothebar', 'foo(.*?)(bar)')", "foothebar"),
    ("REGEXP_EXTRACT('foothebar', 'foo(.*?)(bar)', 1)", "the"),
    ("REGEXP_EXTRACT('foothebar', 'x(y)', 1)", "NULL"),
    ("REGEXP_EXTRACT('foothebar', 'foo(.*?)(bar)', 3)", "NULL"),
    ("SPLIT_INDEX('Hello,World,!', ',', 1)", "World"),
    ("SPLIT_INDEX('Hello,World', ',', 5)", "NULL"),
    ("SPLIT_INDEX('Hello,World', ',', -1)", "NULL"),
    ("SPLIT_INDEX('a,,b', ',', 1)", ""),
    ("LOCATE('bar', 'foobarbar')", "4"),
    ("LOCATE('bar', 'foobarbar', 5)", "7"),
    ("LOCATE('xbar', 'foobar')", "0"),
    ("INSTR('Hello World', 'World')", "7"),
    ("INSTR('Hello World', 'x')", "0"),
    ("CHAR_LENGTH('Hello')", "5"),
    ("CHAR_LENGTH('Grüße')", "5"),
    ("CHARACTER_LENGTH('')", "0"),
    // Dates and times: the session time zone is UTC.
    (
        "DATE_FORMAT(TIMESTAMP '2020-03-07 14:05:09', 'yyyy-MM-dd')",
        "2020-03-07",
    ),
    (
        "DATE_FORMAT(TIMESTAMP '2020-03-07 14:05:09.123', 'yyyy-MM-dd HH:mm:ss.SSS')",
        "2020-03-07 14:05:09.123",
    ),
    (
        "DATE_FORMAT(TIMESTAMP '2020-03-07 14:05:09', 'EEE, d MMM yyyy h:mm a')",
        "Sat, 7 Mar 2020 2:05 PM",
    ),
    ("DATE_FORMAT('2020-03-07 14:05:09', 'yyyyMMdd')", "20200307"),
    ("FROM_UNIXTIME(44)", "1970-01-01 00:00:44"),
    ("FROM_UNIXTIME(1583589909, 'yyyy-MM-dd')", "2020-03-07"),
    (
        "UNIX_TIMESTAMP('1970-01-01 08:00:01.001', 'yyyy-MM-dd HH:mm:ss.SSS')",
        "28801",
    ),
    (
        "UNIX_TIMESTAMP('1970-01-01 08:00:01.001 +0800', 'yyyy-MM-dd HH:mm:ss.SSS X')",
        "1",
    ),
    (
        "UNIX_TIMESTAMP('1970-01-01 08:00:01.001 +0800', 'yyyy-MM-dd HH:mm:ss.SSS')",
        "-9223372036854775808",
    ),
    (
        "UNIX_TIMESTAMP('1970-01-01 08:00:01.001', 'yyyy-MM-dd HH:mm:ss.SSS X')",
        "-9223372036854775808",
    ),
    ("UNIX_TIMESTAMP('1970-01-01 00:01:40')", "100"),
    ("TO_TIMESTAMP('2020-03-07 14:05:09')", "2020-03-07T14:05:09"),
    (
        "TO_TIMESTAMP('07/03/2020 14:05', 'dd/MM/yyyy HH:mm')",
        "2020-03-07T14:05:00",
    ),
    ("TO_TIMESTAMP('not a time')", "NULL"),
    ("TO_TIMESTAMP_LTZ(1500000000, 0)", "2017-07-14T02:40:00Z"),
    (
        "TO_TIMESTAMP_LTZ(1500000000123, 3)",
        "2017-07-14T02:40:00.123Z",
    ),
    ("TIMESTAMPADD(WEEK, 1, DATE '2003-01-02')", "2003-01-09"),
    (
        "TIMESTAMPADD(MONTH, 1, TIMESTAMP '2020-01-31 10:00:00')",
        "2020-02-29T10:00:00",
    ),
    (
        "TIMESTAMPADD(HOUR, -3, TIMESTAMP '2020-01-01 01:00:00')",
        "2019-12-31T22:00:00",
    ),
    (
        "TIMESTAMPDIFF(DAY, TIMESTAMP '2003-01-02 10:00:00', TIMESTAMP '2003-01-03 10:00:00')",
        "1",
    ),
    (
        "TIMESTAMPDIFF(DAY, TIMESTAMP '2003-01-03 10:00:00', TIMESTAMP '2003-01-02 10:00:01')",
        "0",
    ),
    (
        "TIMESTAMPDIFF(MONTH, TIMESTAMP '2020-01-31 00:00:00', TIMESTAMP '2020-02-29 00:00:00')",
        "1",
    ),
    (
        "TIMESTAMPDIFF(MONTH, TIMESTAMP '2020-01-15 12:00:00', TIMESTAMP '2020-02-15 11:00:00')",
        "0",
    ),
    (
        "TIMESTAMPDIFF(YEAR, DATE '2000-02-29', DATE '2004-02-28')",
        "3",
    ),
    (
        "TIMESTAMPDIFF(SECOND, TIMESTAMP '2020-01-01 00:00:00', TIMESTAMP '2020-01-01 00:01:30')",
        "90",
    ),
    // JSON: the examples of Flink's documentation.
    (r#"JSON_VALUE('{"a": true}', '$.a')"#, "true"),
    (
        r#"JSON_VALUE('{"a": true}', '$.a' RETURNING BOOLEAN)"#,
        "true",
    ),
    (
        r#"JSON_VALUE('{"a": true}', 'lax $.b' DEFAULT FALSE ON EMPTY)"#,
        "false",
    ),
    (
        r#"JSON_VALUE('{"a": true}', 'strict $.b' DEFAULT FALSE ON ERROR)"#,
        "false",
    ),
    (
        r#"JSON_VALUE('{"a.b": [0.998,0.996]}','$.["a.b"][0]' RETURNING DOUBLE)"#,
        "0.998",
    ),
    (
        r#"JSON_VALUE('{"contains blank": "right"}', 'strict $.[''contains blank'']' NULL ON EMPTY DEFAULT 'wrong' ON ERROR)"#,
        "right",
    ),
    (r#"JSON_VALUE('{"n": 42}', '$.n' RETURNING INT) + 1"#, "43"),
    (r#"JSON_VALUE('not json', '$.a')"#, "NULL"),
    (r#"JSON_QUERY('{ "a": { "b": 1 } }', '$.a')"#, r#"{"b":1}"#),
    ("JSON_QUERY('[1, 2]', '$')", "[1,2]"),
    ("JSON_QUERY(CAST(NULL AS STRING), '$')", "NULL"),
    (
        r#"JSON_QUERY('{"a":[{"c":"c1"},{"c":"c2"}]}', 'lax $.a[*].c')"#,
        r#"["c1","c2"]"#,
    ),
    (
        "JSON_QUERY('{}', '$' WITH CONDITIONAL ARRAY WRAPPER)",
        "[{}]",
    ),
    (
        "JSON_QUERY('[1, 2]', '$' WITH CONDITIONAL ARRAY WRAPPER)",
        "[1,2]",
    ),
    (
        "JSON_QUERY('[1, 2]', '$' WITH UNCONDITIONAL ARRAY WRAPPER)",
        "[[1,2]]",
    ),
    ("JSON_QUERY('1', '$')", "NULL"),
    ("JSON_QUERY('1', '$' WITH CONDITIONAL ARRAY WRAPPER)", "[1]"),
    (
        "JSON_QUERY('{}', 'lax $.invalid' EMPTY OBJECT ON EMPTY)",
        "{}",
    ),
    (
        "JSON_QUERY('{}', 'strict $.invalid' EMPTY ARRAY ON ERROR)",
        "[]",
    ),
];

#[tokio::test]
async fn flink_documented_outputs() {
    let mut failures = Vec::new();
    for (expr, expected) in CASES {
        match eval(expr).await {
            Ok(got) if got == *expected => {}
            Ok(got) => failures.push(format!("{expr}: Flink gives `{expected}`, we gave `{got}`")),
            Err(e) => failures.push(format!("{expr}: error {e}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn errors_name_the_problem() {
    let cases = [
        ("JSON_VALUE('{}', '$.a' ERROR ON EMPTY)", "selects nothing"),
        (
            "JSON_VALUE('{\"a\": \"x\"}', '$.a' RETURNING INT ERROR ON ERROR)",
            "is not a Int32",
        ),
        (
            "JSON_VALUE('{}', '$.a' RETURNING DATE)",
            "RETURNING DATE is not supported",
        ),
        (
            "TIMESTAMPDIFF(FORTNIGHT, DATE '2020-01-01', DATE '2020-02-01')",
            "unknown time unit FORTNIGHT",
        ),
        (
            "DATE_FORMAT(TIMESTAMP '2020-01-01 00:00:00', 'yyyy-qq')",
            "unknown pattern letter 'q'",
        ),
        ("TO_TIMESTAMP_LTZ(1, 12)", "precision is 0"),
        ("SPLIT_INDEX('a', ',', 'x')", "INTEGER"),
        ("TO_TIMESTAMP(1700000000)", "use TO_TIMESTAMP_LTZ(n, 0)"),
        (
            "DATE_FORMAT(TIMESTAMP '2020-01-01 00:00:00', 5)",
            "the pattern is a STRING",
        ),
        (
            "TIMESTAMPADD(DAY, 1.5, DATE '2020-01-01')",
            "the count is an INTEGER",
        ),
        ("LOCATE('a')", "takes 2 to 3 arguments"),
    ];
    for (expr, message) in cases {
        match eval(expr).await {
            Err(e) => assert!(
                e.contains(message),
                "{expr}: `{e}` does not say `{message}`"
            ),
            Ok(v) => panic!("{expr} gave {v}, not an error"),
        }
    }
}
