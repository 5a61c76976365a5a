//! Built-in jobs the `headwater job` command runs, until SQL scripts can say
//! the same (`headwater run job.sql`).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use headwater_operators::sources::orders::order_schema;
use headwater_runtime::BoxError;
use headwater_runtime::state::{StateDescriptor, ValueState};
use serde::{Deserialize, Serialize};

use crate::prelude::*;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct OrderEvent {
    event_id: String,
    customer_id: i64,
    amount: f64,
}

/// A customer's running count. Without the event id, the multiset of counts
/// is the same however the events of two source subtasks interleave.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct RunningCount {
    customer_id: i64,
    /// The customer's events so far, this one included.
    events: i64,
}

/// Counts each customer's events in keyed state.
#[derive(Clone)]
struct CountPerCustomer {
    count: Arc<ValueState<i64>>,
}

impl KeyedProcessFunction<i64, OrderEvent, RunningCount> for CountPerCustomer {
    fn process_element(
        &mut self,
        event: OrderEvent,
        ctx: &mut ProcessContext<'_, i64>,
        out: &mut Vec<RunningCount>,
    ) -> Result<(), BoxError> {
        let n = ctx.value(&self.count)?.unwrap_or(0) + 1;
        ctx.set_value(&self.count, &n)?;
        out.push(RunningCount {
            customer_id: event.customer_id,
            events: n,
        });
        Ok(())
    }
}

/// `order-metrics`: order events (JSON lines, as `headwater generate orders`
/// writes them) → per customer and minute, the events and their amount
/// (`<output>/windows/`), and per event the customer's running count
/// (`<output>/counts/`).
pub fn order_metrics(env: &StreamEnvironment, input: &Path, output: &Path) -> crate::Result<()> {
    let events = env.source(
        FileSource::json(input, order_schema())
            .with_event_time(EventTimeSpec::column("event_time", Duration::from_secs(5))),
    );
    events
        .clone()
        .key_by(&["customer_id"])?
        .window(Tumbling::of(Duration::from_secs(60)))?
        .aggregate(vec![
            count(lit(1)).alias("events"),
            // Money summed exactly, in any order: decimal, not float.
            sum(datafusion::prelude::cast(
                col("amount"),
                arrow::datatypes::DataType::Decimal128(18, 2),
            ))
            .alias("amount"),
        ])?
        .sink(FileSink::json(output.join("windows")))?;
    events
        .typed::<OrderEvent>()?
        .key_by(|e| e.customer_id)?
        .process(CountPerCustomer {
            count: Arc::new(ValueState::unregistered(StateDescriptor::new("events"))),
        })?
        .sink(FileSink::json(output.join("counts")))?;
    Ok(())
}
