//! The regular join's changes, row by row, and its time to live.

use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Int64Array, RecordBatch, StringArray, TimestampMillisecondArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use headwater_runtime::time::event_time_field;
use headwater_runtime::{BoxError, Collector, Operator, OperatorContext, SubtaskInfo};

use super::RegularJoin;
use crate::changelog::change_field;
use crate::join::{JoinInput, JoinType};

#[derive(Default)]
struct Rows(Vec<String>);

#[async_trait]
impl Collector for Rows {
    async fn collect(&mut self, batch: RecordBatch) -> Result<(), BoxError> {
        let columns = batch.num_columns();
        for row in 0..batch.num_rows() {
            // Every column but the event time, as text.
            let cells: Vec<String> = (0..columns - 1)
                .map(|c| {
                    let array = batch.column(c);
                    arrow::util::display::array_value_to_string(array, row).unwrap()
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

/// Rows `(k, v, change)` of an input.
fn batch(changelog: bool, rows: &[(Option<i64>, i64, &str)]) -> RecordBatch {
    let mut columns: Vec<arrow::array::ArrayRef> = vec![
        Arc::new(rows.iter().map(|r| r.0).collect::<Int64Array>()),
        Arc::new(rows.iter().map(|r| Some(r.1)).collect::<Int64Array>()),
    ];
    if changelog {
        columns.push(Arc::new(
            rows.iter().map(|r| Some(r.2)).collect::<StringArray>(),
        ));
    }
    columns.push(Arc::new(TimestampMillisecondArray::from(vec![
        1_000;
        rows.len()
    ])));
    RecordBatch::try_new(schema(changelog), columns).unwrap()
}

struct Harness {
    operator: Box<dyn Operator>,
    ctx: OperatorContext,
    changelogs: [bool; 2],
}

impl Harness {
    fn new(join_type: JoinType, changelogs: [bool; 2], ttl: Option<Duration>) -> Self {
        let input = |changelog| JoinInput {
            schema: schema(changelog),
            key: vec!["k".into()],
            output: vec!["k".into(), "v".into()],
        };
        let names: Vec<String> = ["lk", "lv", "rk", "rv"].map(String::from).to_vec();
        let join = RegularJoin::try_new(
            join_type,
            &input(changelogs[0]),
            &input(changelogs[1]),
            &names,
            None,
            ttl,
        )
        .unwrap();
        let subtask = SubtaskInfo::new("join", 0, 1, 128);
        // Keyed state in a temporary directory.
        Harness {
            operator: join.operator(&subtask).unwrap(),
            ctx: OperatorContext::standalone(subtask),
            changelogs,
        }
    }

    async fn send(&mut self, side: usize, rows: &[(Option<i64>, i64, &str)]) -> Vec<String> {
        self.ctx.current_input = side;
        let mut out = Rows::default();
        let batch = batch(self.changelogs[side], rows);
        self.operator
            .process_batch(batch, &mut self.ctx, &mut out)
            .await
            .unwrap();
        out.0
    }
}

#[tokio::test]
async fn an_inner_join_of_append_inputs_is_append_only_and_counts_duplicates() {
    let mut join = Harness::new(JoinType::Inner, [false, false], None);
    assert!(
        join.send(0, &[(Some(1), 10, ""), (Some(2), 20, "")])
            .await
            .is_empty()
    );
    // The same right row twice joins twice; a NULL key joins nothing.
    let out = join
        .send(1, &[(Some(1), 5, ""), (Some(1), 5, ""), (None, 7, "")])
        .await;
    assert_eq!(out, ["1 10 1 5", "1 10 1 5"]);
    // A second left row of key 1 meets both copies, in one batch with a third.
    let out = join.send(0, &[(Some(1), 11, ""), (Some(1), 11, "")]).await;
    assert_eq!(out, ["1 11 1 5"; 4]);
}

#[tokio::test]
async fn a_left_join_retracts_its_padded_row_when_a_match_arrives_and_back() {
    let mut join = Harness::new(JoinType::Left, [false, true], None);
    assert_eq!(join.send(0, &[(Some(1), 10, "")]).await, ["1 10   +I"]);
    // The first match retracts the padded row; the second only joins.
    assert_eq!(
        join.send(1, &[(Some(1), 5, "+I"), (Some(1), 6, "+I")])
            .await,
        ["1 10   -D", "1 10 1 5 +I", "1 10 1 6 +I"]
    );
    // An update of the right row: retracted and joined again.
    assert_eq!(
        join.send(1, &[(Some(1), 5, "-U"), (Some(1), 7, "+U")])
            .await,
        ["1 10 1 5 -U", "1 10 1 7 +U"]
    );
    // Deleting both right rows brings the padded row back once.
    assert_eq!(
        join.send(1, &[(Some(1), 6, "-D"), (Some(1), 7, "-D")])
            .await,
        ["1 10 1 6 -D", "1 10 1 7 -D", "1 10   +I"]
    );
    // A right row matching no left row emits nothing in a left join.
    assert!(join.send(1, &[(Some(3), 1, "+I")]).await.is_empty());
}

#[tokio::test]
async fn a_full_join_pads_both_sides_and_a_null_key_stays_unmatched() {
    let mut join = Harness::new(JoinType::Full, [true, false], None);
    assert_eq!(
        join.send(1, &[(Some(1), 5, ""), (None, 6, "")]).await,
        ["  1 5 +I", "   6 +I"]
    );
    assert_eq!(
        join.send(0, &[(Some(1), 10, "+I")]).await,
        ["  1 5 -D", "1 10 1 5 +I"]
    );
    // The left row leaves: its pair is retracted and the right row is alone again.
    assert_eq!(
        join.send(0, &[(Some(1), 10, "-D")]).await,
        ["1 10 1 5 -D", "  1 5 +I"]
    );
}

#[tokio::test]
async fn rows_past_their_time_to_live_join_nothing() {
    let mut join = Harness::new(
        JoinType::Inner,
        [false, false],
        Some(Duration::from_millis(300)),
    );
    join.send(0, &[(Some(1), 10, "")]).await;
    assert_eq!(join.send(1, &[(Some(1), 5, "")]).await, ["1 10 1 5"]);
    tokio::time::sleep(Duration::from_millis(600)).await;
    // Both stored rows have expired: a new row finds neither.
    assert!(join.send(1, &[(Some(1), 6, "")]).await.is_empty());
    // Rows written since are there.
    assert_eq!(join.send(0, &[(Some(1), 11, "")]).await, ["1 11 1 6"]);
}

#[tokio::test]
async fn semi_and_anti_joins_emit_left_rows_as_their_matches_come_and_go() {
    let mut semi = Harness::new(JoinType::LeftSemi, [false, true], None);
    assert!(semi.send(0, &[(Some(1), 10, "")]).await.is_empty());
    // Emitted once at its first match, retracted when the last one leaves.
    assert_eq!(
        semi.send(1, &[(Some(1), 5, "+I"), (Some(1), 6, "+I")])
            .await,
        ["1 10 +I"]
    );
    assert!(semi.send(1, &[(Some(1), 5, "-D")]).await.is_empty());
    assert_eq!(semi.send(1, &[(Some(1), 6, "-D")]).await, ["1 10 -D"]);

    let mut anti = Harness::new(JoinType::LeftAnti, [false, false], None);
    assert_eq!(
        anti.send(0, &[(Some(1), 10, ""), (None, 11, "")]).await,
        ["1 10 +I", " 11 +I"]
    );
    assert_eq!(anti.send(1, &[(Some(1), 5, "")]).await, ["1 10 -D"]);
    assert!(anti.send(0, &[(Some(1), 12, "")]).await.is_empty());
}
