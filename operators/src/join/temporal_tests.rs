//! The temporal join, row by row: which version each left row joins, when
//! it comes out, deletions, late rows, and versions dropped as superseded.

use std::sync::Arc;

use arrow::array::{Int64Array, RecordBatch, StringArray, TimestampMillisecondArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use headwater_runtime::time::event_time_field;
use headwater_runtime::{BoxError, Collector, EventTime, Operator, OperatorContext, SubtaskInfo};

use super::TemporalJoin;
use crate::changelog::change_field;
use crate::join::{JoinInput, JoinType};

#[derive(Default)]
struct Rows(Vec<String>);

#[async_trait]
impl Collector for Rows {
    async fn collect(&mut self, batch: RecordBatch) -> Result<(), BoxError> {
        for row in 0..batch.num_rows() {
            // Every column, the event time as milliseconds.
            let cells: Vec<String> = (0..batch.num_columns())
                .map(|c| {
                    let array = batch.column(c);
                    match array.as_any().downcast_ref::<TimestampMillisecondArray>() {
                        Some(times) => times.value(row).to_string(),
                        None => arrow::util::display::array_value_to_string(array, row).unwrap(),
                    }
                })
                .collect();
            self.0.push(cells.join(" "));
        }
        Ok(())
    }

    async fn collect_side(&mut self, _: &str, _: RecordBatch) -> Result<(), BoxError> {
        Ok(())
    }
}

/// `k BIGINT, v BIGINT` (and `_change` for a changelog), then event time.
fn schema(changelog: bool) -> SchemaRef {
    let mut fields = vec![
        Arc::new(Field::new("k", DataType::Int64, true)),
        Arc::new(Field::new("v", DataType::Int64, true)),
    ];
    if changelog {
        fields.push(change_field());
    }
    fields.push(event_time_field());
    Arc::new(Schema::new(fields))
}

/// Rows `(k, v, time, change)` of an input.
fn batch(changelog: bool, rows: &[(Option<i64>, i64, i64, &str)]) -> RecordBatch {
    let mut columns: Vec<arrow::array::ArrayRef> = vec![
        Arc::new(rows.iter().map(|r| r.0).collect::<Int64Array>()),
        Arc::new(rows.iter().map(|r| Some(r.1)).collect::<Int64Array>()),
    ];
    if changelog {
        columns.push(Arc::new(
            rows.iter().map(|r| Some(r.3)).collect::<StringArray>(),
        ));
    }
    columns.push(Arc::new(TimestampMillisecondArray::from(
        rows.iter().map(|r| r.2).collect::<Vec<_>>(),
    )));
    RecordBatch::try_new(schema(changelog), columns).unwrap()
}

struct Harness {
    operator: Box<dyn Operator>,
    ctx: OperatorContext,
    changelog: bool,
}

impl Harness {
    async fn new(join_type: JoinType, changelog: bool) -> Self {
        let input = |changelog| JoinInput {
            schema: schema(changelog),
            key: vec!["k".into()],
            output: vec!["k".into(), "v".into()],
        };
        let names: Vec<String> = ["lk", "lv", "rk", "rv"].map(String::from).to_vec();
        let join = TemporalJoin::try_new(join_type, &input(false), &input(changelog), &names, None)
            .unwrap();
        let subtask = SubtaskInfo::new("join", 0, 1, 128);
        let mut harness = Harness {
            operator: join.operator(&subtask).unwrap(),
            ctx: OperatorContext::standalone(subtask),
            changelog,
        };
        harness.operator.open(&mut harness.ctx).await.unwrap();
        harness
    }

    async fn send(&mut self, side: usize, rows: &[(Option<i64>, i64, i64, &str)]) -> Vec<String> {
        self.ctx.current_input = side;
        let mut out = Rows::default();
        let batch = batch(side == 1 && self.changelog, rows);
        self.operator
            .process_batch(batch, &mut self.ctx, &mut out)
            .await
            .unwrap();
        out.0
    }

    async fn watermark(&mut self, time: i64) -> Vec<String> {
        let mut out = Rows::default();
        self.operator
            .on_watermark(EventTime(time), &mut self.ctx, &mut out)
            .await
            .unwrap();
        self.ctx.current_watermark = Some(EventTime(time));
        out.0
    }
}

#[tokio::test]
async fn a_left_row_joins_the_version_current_at_its_time_once_the_watermark_passes_it() {
    let mut join = Harness::new(JoinType::Inner, false).await;
    // Versions of key 1 at 10 and 20, and of key 2 at 30, out of order.
    join.send(
        1,
        &[
            (Some(1), 200, 20, ""),
            (Some(1), 100, 10, ""),
            (Some(2), 7, 30, ""),
        ],
    )
    .await;
    // Rows wait for the watermark; one before any version joins nothing.
    let out = join
        .send(
            0,
            &[
                (Some(1), 1, 15, ""),
                (Some(1), 2, 20, ""),
                (Some(1), 3, 5, ""),
            ],
        )
        .await;
    assert!(out.is_empty());
    assert_eq!(join.watermark(14).await, Vec::<String>::new());
    assert_eq!(join.watermark(25).await, ["1 1 1 100 15", "1 2 1 200 20"]);
    // A version that arrives before the watermark passes a row still counts.
    join.send(0, &[(Some(2), 4, 40, "")]).await;
    join.send(1, &[(Some(2), 8, 35, "")]).await;
    assert_eq!(join.watermark(40).await, ["2 4 2 8 40"]);
}

#[tokio::test]
async fn a_left_join_pads_rows_without_a_version_and_a_deletion_ends_the_versions() {
    let mut join = Harness::new(JoinType::Left, true).await;
    join.send(
        1,
        &[
            (Some(1), 100, 10, "+I"),
            (Some(1), 100, 20, "-U"),
            (Some(1), 110, 20, "+U"),
            (Some(1), 110, 30, "-D"),
        ],
    )
    .await;
    let out = join
        .send(
            0,
            &[
                (Some(1), 1, 5, ""),
                (Some(1), 2, 12, ""),
                (Some(1), 3, 25, ""),
                (Some(1), 4, 31, ""),
                (None, 5, 31, ""),
            ],
        )
        .await;
    // A NULL key joins nothing, at once.
    assert_eq!(out, [" 5   31"]);
    assert_eq!(
        join.watermark(40).await,
        ["1 1   5", "1 2 1 100 12", "1 3 1 110 25", "1 4   31"]
    );
}

#[tokio::test]
async fn superseded_versions_are_dropped_and_a_late_row_joins_what_is_stored() {
    let mut join = Harness::new(JoinType::Left, false).await;
    join.send(1, &[(Some(1), 100, 10, ""), (Some(1), 200, 20, "")])
        .await;
    join.watermark(30).await;
    // Late rows join at once: the version at 20 is still there; the one at
    // 10 went when the watermark passed 20, so a row at 15 finds no version
    // (as in Flink, which drops versions the watermark has superseded).
    let out = join
        .send(0, &[(Some(1), 1, 25, ""), (Some(1), 2, 15, "")])
        .await;
    assert_eq!(out, ["1 1 1 200 25", "1 2   15"]);
}
