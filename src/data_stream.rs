//! The Arrow-level stream: batches, DataFusion expressions, named columns.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use datafusion::logical_expr::Expr;
use headwater_operators::decode_error::{DEAD_LETTER_OUTPUT, dead_letter_schema};
use headwater_operators::sinks::{CollectReceiver, CollectSink, SinkSpec};
use headwater_operators::transform::{Filter, Project, Union};
use headwater_runtime::graph::{Edge, OperatorFactory};
use headwater_runtime::time::{schema_with_event_time, user_schema};
use headwater_runtime::{NodeId, Operator, Partitioning};

use crate::env::StreamEnvironment;
use crate::error::{HeadwaterError, Result};
use crate::typed::Stream;

/// A stream of Arrow batches: the output of one operator, and how the next
/// operator will receive it.
#[derive(Clone)]
pub struct DataStream {
    pub(crate) env: StreamEnvironment,
    pub(crate) node: NodeId,
    pub(crate) side_output: Option<String>,
    /// With the event-time column.
    pub(crate) schema: SchemaRef,
    pub(crate) partitioning: Partitioning,
    /// The input schema of a window operator, whose late rows this stream can give.
    pub(crate) late_schema: Option<(NodeId, SchemaRef)>,
}

impl DataStream {
    pub(crate) fn new(
        env: StreamEnvironment,
        node: NodeId,
        side_output: Option<String>,
        schema: SchemaRef,
    ) -> Self {
        DataStream {
            env,
            node,
            side_output,
            schema,
            partitioning: Partitioning::Forward,
            late_schema: None,
        }
    }

    /// The columns of the stream's rows.
    pub fn schema(&self) -> SchemaRef {
        user_schema(&self.schema)
    }

    /// The schema as operators see it: the rows' columns and the event-time column.
    pub fn schema_with_event_time(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// Sets the parallelism of the operator that makes this stream.
    pub fn with_parallelism(self, parallelism: usize) -> Result<Self> {
        self.env
            .builder()
            .graph
            .set_parallelism(self.node, parallelism)?;
        Ok(self)
    }

    /// Names the operator that produces this stream, as Flink's `uid`. The name
    /// is the operator's id in checkpoints: a job restored from a savepoint
    /// gives each operator the state stored under its name. Without one, an
    /// operator is named by its kind and place (`filter`, `filter_2`, ..), so
    /// adding an operator before it changes its name; name every stateful
    /// operator of a job that will be changed and restored.
    pub fn uid(self, name: &str) -> Result<DataStream> {
        self.env.builder().graph.rename(self.node, name)?;
        Ok(self)
    }

    /// Keeps the rows for which `predicate` is true.
    pub fn filter(self, predicate: Expr) -> Result<DataStream> {
        let filter = Filter::try_new(&predicate, &self.schema)?;
        let schema = self.schema.clone();
        self.then(
            "filter",
            schema,
            Arc::new(move |_| Ok(Box::new(filter.clone()) as Box<dyn Operator>)),
        )
    }

    /// Computes the listed columns. Name a computed column with `.alias(..)`.
    pub fn select(self, exprs: Vec<Expr>) -> Result<DataStream> {
        let project = Project::try_new(&exprs, &self.schema)?;
        let schema = project.schema();
        self.then(
            "select",
            schema,
            Arc::new(move |_| Ok(Box::new(project.clone()) as Box<dyn Operator>)),
        )
    }

    /// Sends each row to the subtask that owns its key, by the hash of `columns`.
    pub fn key_by(mut self, columns: &[&str]) -> Result<DataStream> {
        for c in columns {
            if self.schema.index_of(c).is_err() {
                return Err(HeadwaterError::Pipeline(format!(
                    "key_by: no column `{c}` in the stream (columns: {})",
                    names(&self.schema())
                )));
            }
        }
        if columns.is_empty() {
            return Err(HeadwaterError::Pipeline(
                "key_by needs at least one column".into(),
            ));
        }
        self.partitioning = Partitioning::Hash(columns.iter().map(|c| c.to_string()).collect());
        Ok(self)
    }

    /// Spreads batches round-robin over the next operator's subtasks.
    pub fn rebalance(mut self) -> DataStream {
        self.partitioning = Partitioning::Rebalance;
        self
    }

    /// Sends every row to every subtask of the next operator.
    pub fn broadcast(mut self) -> DataStream {
        self.partitioning = Partitioning::Broadcast;
        self
    }

    /// The rows of this stream and of `others`, which must have the same columns.
    pub fn union(self, others: Vec<DataStream>) -> Result<DataStream> {
        for other in &others {
            if !same_columns(&self.schema, &other.schema) {
                return Err(HeadwaterError::Pipeline(format!(
                    "union of streams with different columns: ({}) and ({})",
                    typed_names(&self.schema()),
                    typed_names(&other.schema())
                )));
            }
        }
        let schemas: Vec<_> = std::iter::once(&self)
            .chain(&others)
            .map(|s| s.schema.clone())
            .collect();
        let operator = Union::new(&schemas);
        let union = self.then(
            "union",
            operator.schema(),
            Arc::new(move |_| Ok(Box::new(operator.clone()) as Box<dyn Operator>)),
        )?;
        for other in others {
            other.connect_to(union.node)?;
        }
        Ok(union)
    }

    /// The rows a source could not decode, under the `dlq` policy: the raw row,
    /// the error, and where it was.
    pub fn dead_letters(&self) -> DataStream {
        DataStream::new(
            self.env.clone(),
            self.node,
            Some(DEAD_LETTER_OUTPUT.to_string()),
            schema_with_event_time(&dead_letter_schema()),
        )
    }

    /// Writes the stream to a sink.
    pub fn sink(self, spec: impl SinkSpec) -> Result<()> {
        let factory = spec.factory(&self.schema)?;
        let name = spec.default_name();
        let schema = self.schema.clone();
        self.then(&name, schema, factory)?;
        Ok(())
    }

    /// Hands the stream's batches back to this program. Read the receiver while
    /// the job runs: it holds only a few batches.
    pub fn collect(self) -> Result<CollectReceiver> {
        let (sink, receiver) = CollectSink::new(16);
        self.sink(sink)?;
        Ok(receiver)
    }

    /// The stream as typed rows of `T`, matched to columns by field name.
    /// Every field of `T` must be a column of the stream; extra columns are ignored.
    pub fn typed<T: crate::typed::Row>(self) -> Result<Stream<T>> {
        Stream::try_from_data_stream(self)
    }

    /// Adds an operator of your own, which makes batches of `schema` (with the
    /// event-time column), fed by this stream.
    pub fn apply(
        self,
        name: &str,
        schema: SchemaRef,
        factory: OperatorFactory,
    ) -> Result<DataStream> {
        self.then(name, schema, factory)
    }

    /// Adds an operator fed by this stream.
    pub(crate) fn then(
        self,
        base_name: &str,
        schema: SchemaRef,
        factory: OperatorFactory,
    ) -> Result<DataStream> {
        let name = self.env.unique_name(base_name);
        let parallelism = {
            let b = self.env.builder();
            let upstream = b.graph.node(self.node).parallelism;
            // Forward edges keep the upstream's parallelism, so they chain.
            if self.partitioning == Partitioning::Forward {
                upstream
            } else {
                b.config.default_parallelism
            }
        };
        let node = self
            .env
            .builder()
            .graph
            .add_operator(&name, parallelism, factory)?;
        let env = self.env.clone();
        self.connect_to(node)?;
        Ok(DataStream::new(env, node, None, schema))
    }

    fn connect_to(self, to: NodeId) -> Result<()> {
        let mut b = self.env.builder();
        let mut partitioning = self.partitioning;
        if partitioning == Partitioning::Forward
            && b.graph.node(self.node).parallelism != b.graph.node(to).parallelism
        {
            partitioning = Partitioning::Rebalance;
        }
        b.graph.add_edge(Edge {
            from: self.node,
            side_output: self.side_output,
            to,
            to_input: 0,
            partitioning,
        })?;
        Ok(())
    }
}

fn typed_names(schema: &SchemaRef) -> String {
    schema
        .fields()
        .iter()
        .map(|f| format!("{} {}", f.name(), f.data_type()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn names(schema: &SchemaRef) -> String {
    schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn same_columns(a: &SchemaRef, b: &SchemaRef) -> bool {
    a.fields().len() == b.fields().len()
        && a.fields()
            .iter()
            .zip(b.fields())
            .all(|(x, y)| x.name() == y.name() && x.data_type() == y.data_type())
}
