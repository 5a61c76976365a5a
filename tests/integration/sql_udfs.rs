//! Rust functions called from SQL: a scalar UDF and an aggregate UDF,
//! registered through `SqlOptions`, in a tumbling-window job over a file at
//! parallelism 2. The rows must equal a plain Rust reference over the same
//! events.

use crate::common;

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, StringArray};
use arrow::datatypes::{DataType, Int64Type};
use datafusion::common::{Result as DfResult, ScalarValue};
use datafusion::logical_expr::{Accumulator, ColumnarValue, Volatility, create_udaf, create_udf};
use headwater::runtime::JobConfig;
use headwater::sql::{SqlOptions, plan_script};

/// `band(price)`: 'low', 'mid' or 'high'.
fn band(price: i64) -> &'static str {
    match price {
        p if p >= 900 => "high",
        p if p >= 300 => "mid",
        _ => "low",
    }
}

/// `sum_of_squares(x)`, an aggregate with one BIGINT of state.
#[derive(Debug, Default)]
struct SumOfSquares(i64);

impl Accumulator for SumOfSquares {
    fn update_batch(&mut self, values: &[ArrayRef]) -> DfResult<()> {
        let v = values[0].as_primitive::<Int64Type>();
        self.0 += v.iter().flatten().map(|x| x * x).sum::<i64>();
        Ok(())
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> DfResult<()> {
        let v = states[0].as_primitive::<Int64Type>();
        self.0 += v.iter().flatten().sum::<i64>();
        Ok(())
    }

    fn state(&mut self) -> DfResult<Vec<ScalarValue>> {
        Ok(vec![ScalarValue::Int64(Some(self.0))])
    }

    fn evaluate(&mut self) -> DfResult<ScalarValue> {
        Ok(ScalarValue::Int64(Some(self.0)))
    }

    fn size(&self) -> usize {
        std::mem::size_of::<Self>()
    }
}

fn options() -> SqlOptions {
    let band_udf = create_udf(
        "band",
        vec![DataType::Int64],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            let prices = ColumnarValue::values_to_arrays(args)?;
            let prices = prices[0].as_primitive::<Int64Type>();
            let bands: StringArray = prices.iter().map(|p| p.map(band)).collect();
            Ok(ColumnarValue::Array(Arc::new(bands)))
        }),
    );
    let squares = create_udaf(
        "sum_of_squares",
        vec![DataType::Int64],
        Arc::new(DataType::Int64),
        Volatility::Immutable,
        Arc::new(|_| Ok(Box::new(SumOfSquares::default()))),
        Arc::new(vec![DataType::Int64]),
    );
    SqlOptions {
        name: "udfs".into(),
        parallelism: 2,
        udfs: vec![band_udf],
        udafs: vec![squares],
        ..Default::default()
    }
}

/// The events of `tests/sql/data/bids.jsonl`: (auction, price, channel, ms).
fn bids() -> Vec<(i64, i64, String, i64)> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sql/data/bids.jsonl");
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let ms = match &v["date_time"] {
                serde_json::Value::Number(n) => n.as_i64().unwrap(),
                serde_json::Value::String(s) => chrono::DateTime::parse_from_rfc3339(s)
                    .unwrap()
                    .timestamp_millis(),
                other => panic!("date_time {other}"),
            };
            (
                v["auction"].as_i64().unwrap(),
                v["price"].as_i64().unwrap(),
                v["channel"].as_str().unwrap().to_string(),
                ms,
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_udfs_run_in_a_windowed_sql_job() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let data = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sql/data/bids.jsonl");
    let sql = format!(
        "CREATE TABLE bids (
           auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, date_time TIMESTAMP(3),
           WATERMARK FOR date_time AS date_time - INTERVAL '1' SECOND
         ) WITH ('connector' = 'filesystem', 'path' = '{data}', 'format' = 'json');
         CREATE TABLE out (auction BIGINT, band STRING, window_start TIMESTAMP(3), squares BIGINT)
         WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');
         INSERT INTO out
         SELECT auction, band(max(price)), window_start, sum_of_squares(price)
         FROM TUMBLE(bids, date_time, INTERVAL '10' SECOND)
         WHERE channel <> 'api'
         GROUP BY auction, window_start, window_end;",
        out.display()
    );
    let job = plan_script(&sql, &options())
        .await
        .expect("the script plans");
    let config = JobConfig {
        state_dir: Some(dir.path().join("state")),
        ..JobConfig::default()
    };
    let handle = headwater::runtime::start(job.graph, config).unwrap();
    handle.wait().await.expect("the job finishes");

    // The reference: the same windows, by hand.
    let mut windows: BTreeMap<(i64, i64), (i64, i64)> = BTreeMap::new();
    for (auction, price, channel, ms) in bids() {
        if channel == "api" {
            continue;
        }
        let w = windows
            .entry((auction, ms.div_euclid(10_000) * 10_000))
            .or_default();
        w.0 = w.0.max(price);
        w.1 += price * price;
    }
    let mut expected: Vec<String> = windows
        .iter()
        .map(|((auction, start), (max, squares))| {
            let start = chrono::DateTime::from_timestamp_millis(*start)
                .unwrap()
                .naive_utc()
                .format("%Y-%m-%dT%H:%M:%S");
            format!(
                r#"{{"auction":{auction},"band":"{}","squares":{squares},"window_start":"{start}"}}"#,
                band(*max)
            )
        })
        .collect();
    expected.sort();
    // Keys in name order, as the reference writes them.
    let mut got: Vec<String> = common::committed_rows(&out)
        .iter()
        .map(|line| {
            serde_json::from_str::<serde_json::Value>(line)
                .unwrap()
                .to_string()
        })
        .collect();
    got.sort();
    assert!(!got.is_empty());
    assert_eq!(got, expected);
}
