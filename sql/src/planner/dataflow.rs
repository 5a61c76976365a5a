//! The dataflow a script builds: a job graph, and streams between its nodes.

use std::sync::Arc;

use datafusion::arrow::datatypes::{FieldRef, Schema, SchemaRef};
use datafusion::logical_expr::Expr;
use headwater_operators::changelog::CHANGE_COLUMN;
use headwater_operators::decode_error::{DEAD_LETTER_OUTPUT, dead_letter_schema};
use headwater_operators::sinks::{FileSink, SinkSpec};
use headwater_operators::transform::{Filter, Project, Union};
use headwater_operators::view::{ViewRegistry, ViewSink};
use headwater_runtime::graph::{Edge, OperatorFactory};
use headwater_runtime::time::{EVENT_TIME_FIELD, schema_with_event_time};
use headwater_runtime::{JobGraph, NodeId, Operator, Partitioning};

use crate::connectors::{DeadLetters, SourceTable};

/// The output of one node, and how the next node receives it.
#[derive(Debug, Clone)]
pub struct Stream {
    pub node: NodeId,
    /// The rows' columns and the event-time column.
    pub schema: SchemaRef,
    pub partitioning: Partitioning,
}

/// A job graph under construction.
pub struct Dataflow {
    pub graph: JobGraph,
    pub parallelism: usize,
    /// Each table is read once: its source (with the declared columns) by table name.
    pub sources: std::collections::HashMap<String, Stream>,
    /// How long keyed state of deduplication is kept (`SET 'table.exec.state.ttl'`).
    pub state_ttl: Option<std::time::Duration>,
    /// The statement being planned: its operators are named `scope/kind`.
    scope: String,
    /// Every statement's scope so far.
    scopes: std::collections::HashSet<String>,
    /// INSERTs whose sinks are added once the script is planned.
    pub(super) inserts: Vec<super::inserts::PendingInsert>,
}

impl Dataflow {
    pub fn new(name: &str, parallelism: usize) -> Self {
        Dataflow {
            graph: JobGraph::new(name),
            parallelism: parallelism.max(1),
            sources: Default::default(),
            state_ttl: None,
            scope: String::new(),
            scopes: Default::default(),
            inserts: Vec::new(),
        }
    }

    /// Starts planning a statement whose operators get ids under `scope`:
    /// `insert:<table>`, `view:<name>` or `print:<hash of the query>`, with
    /// `#2`, `#3`, ... for a second statement of the same scope. Operator ids
    /// are what a restore matches state by, so they come from what a statement
    /// is, never from how many statements came before it.
    pub fn begin_statement(&mut self, scope: &str) {
        let scope = if self.scopes.contains(scope) {
            (2..)
                .map(|i| format!("{scope}#{i}"))
                .find(|s| !self.scopes.contains(s))
                .expect("an unused scope")
        } else {
            scope.to_string()
        };
        self.scopes.insert(scope.clone());
        self.scope = scope;
    }

    /// The scope of the statement being planned.
    pub fn scope(&self) -> &str {
        &self.scope
    }

    /// Names the next operators under `scope`, a statement's that has begun.
    pub fn resume_statement(&mut self, scope: &str) {
        debug_assert!(self.scopes.contains(scope));
        self.scope = scope.to_string();
    }

    /// The id of the statement's next operator of kind `base`.
    fn operator_name(&self, base: &str) -> String {
        self.unique_name(&format!("{}/{base}", self.scope))
    }

    fn unique_name(&self, base: &str) -> String {
        if !self.graph.has_node(base) {
            return base.to_string();
        }
        (2..)
            .map(|i| format!("{base}_{i}"))
            .find(|n| !self.graph.has_node(n))
            .expect("an unused name")
    }

    /// Adds a source reading `table`; its dead letters go to their directory.
    pub fn source(&mut self, name: &str, table: &SourceTable) -> Result<Stream, String> {
        let name = self.unique_name(name);
        let node = self
            .graph
            .add_source(
                &name,
                self.parallelism,
                table.event_time.clone(),
                table.spec.factory(),
            )
            .map_err(|e| e.to_string())?;
        if let Some(timeout) = table.spec.idle_timeout() {
            self.graph.set_idle_timeout(node, timeout);
        }
        if let Some(dead_letters) = &table.dead_letters {
            let letters = Stream {
                node,
                schema: schema_with_event_time(&dead_letter_schema()),
                partitioning: Partitioning::Forward,
            };
            let sink_name = format!("{name}/dead_letters");
            let sink: Box<dyn SinkSpec> = match dead_letters {
                DeadLetters::Directory(dir) => Box::new(FileSink::json(dir)),
                DeadLetters::Kafka(sink) => {
                    let mut sink = sink.clone();
                    if sink.transactional_id_prefix.is_none() {
                        // Unique to the job and the source, and stable
                        // across its restarts.
                        sink.transactional_id_prefix =
                            Some(format!("headwater-{}-{sink_name}", self.graph.name));
                    }
                    Box::new(sink)
                }
            };
            self.sink_from(letters, Some(DEAD_LETTER_OUTPUT), sink.as_ref(), &sink_name)?;
        }
        Ok(Stream {
            node,
            schema: schema_with_event_time(&table.produces),
            partitioning: Partitioning::Forward,
        })
    }

    /// Adds an operator fed by `input`.
    pub fn then(
        &mut self,
        input: Stream,
        name: &str,
        schema: SchemaRef,
        parallelism: Option<usize>,
        factory: OperatorFactory,
    ) -> Result<Stream, String> {
        self.then_from(input, None, name, schema, parallelism, factory)
    }

    fn then_from(
        &mut self,
        input: Stream,
        side_output: Option<&str>,
        name: &str,
        schema: SchemaRef,
        parallelism: Option<usize>,
        factory: OperatorFactory,
    ) -> Result<Stream, String> {
        let name = if name.contains('/') {
            self.unique_name(name)
        } else {
            self.operator_name(name)
        };
        let upstream = self.graph.node(input.node).parallelism;
        let parallelism = parallelism.unwrap_or(match input.partitioning {
            Partitioning::Forward => upstream,
            _ => self.parallelism,
        });
        let node = self
            .graph
            .add_operator(&name, parallelism, factory)
            .map_err(|e| e.to_string())?;
        self.connect(&input, side_output, node, 0)?;
        Ok(Stream {
            node,
            schema,
            partitioning: Partitioning::Forward,
        })
    }

    /// Adds an operator of two inputs: `left` feeds its input 0, `right` its input 1.
    pub fn join(
        &mut self,
        left: Stream,
        right: Stream,
        name: &str,
        schema: SchemaRef,
        parallelism: Option<usize>,
        factory: OperatorFactory,
    ) -> Result<Stream, String> {
        let name = self.operator_name(name);
        let node = self
            .graph
            .add_operator(&name, parallelism.unwrap_or(self.parallelism), factory)
            .map_err(|e| e.to_string())?;
        self.connect(&left, None, node, 0)?;
        self.connect(&right, None, node, 1)?;
        Ok(Stream {
            node,
            schema,
            partitioning: Partitioning::Forward,
        })
    }

    fn connect(
        &mut self,
        input: &Stream,
        side_output: Option<&str>,
        to: NodeId,
        to_input: usize,
    ) -> Result<(), String> {
        let mut partitioning = input.partitioning.clone();
        if partitioning == Partitioning::Forward
            && self.graph.node(input.node).parallelism != self.graph.node(to).parallelism
        {
            partitioning = Partitioning::Rebalance;
        }
        self.graph
            .add_edge(Edge {
                from: input.node,
                side_output: side_output.map(String::from),
                to,
                to_input,
                partitioning,
            })
            .map_err(|e| e.to_string())
    }

    pub fn project(&mut self, input: Stream, exprs: &[Expr]) -> Result<Stream, String> {
        let project = Project::try_new(exprs, &input.schema).map_err(|e| e.to_string())?;
        let schema = project.schema();
        self.then(
            input,
            "select",
            schema,
            None,
            Arc::new(move |_| Ok(Box::new(project.clone()) as Box<dyn Operator>)),
        )
    }

    pub fn filter(&mut self, input: Stream, predicate: &Expr) -> Result<Stream, String> {
        let filter = Filter::try_new(predicate, &input.schema).map_err(|e| e.to_string())?;
        let schema = input.schema.clone();
        self.then(
            input,
            "filter",
            schema,
            None,
            Arc::new(move |_| Ok(Box::new(filter.clone()) as Box<dyn Operator>)),
        )
    }

    pub fn union(&mut self, inputs: Vec<Stream>) -> Result<Stream, String> {
        if inputs.is_empty() {
            return Err("a union of nothing".into());
        }
        let schemas: Vec<_> = inputs.iter().map(|s| s.schema.clone()).collect();
        let union = Union::new(&schemas);
        let mut inputs = inputs.into_iter();
        let first = inputs.next().ok_or("a union of nothing")?;
        let stream = self.then(
            first,
            "union",
            union.schema(),
            None,
            Arc::new(move |_| Ok(Box::new(union.clone()) as Box<dyn Operator>)),
        )?;
        for input in inputs {
            self.connect(&input, None, stream.node, 0)?;
        }
        Ok(stream)
    }

    /// Keeps `input` as materialized view `name`, by `key`, published to `registry`.
    pub fn view(
        &mut self,
        mut input: Stream,
        name: &str,
        key: &[String],
        registry: &ViewRegistry,
        max_parallelism: u32,
    ) -> Result<(), String> {
        let columns: Vec<FieldRef> = input
            .schema
            .fields()
            .iter()
            .filter(|f| f.name() != CHANGE_COLUMN && f.name() != EVENT_TIME_FIELD)
            .cloned()
            .collect();
        let schema = Arc::new(Schema::new(columns));
        let key_indices = key
            .iter()
            .map(|k| {
                schema
                    .index_of(k)
                    .map_err(|_| format!("view `{name}`: no key column `{k}`"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let sink = ViewSink {
            name: name.to_string(),
            job: self.graph.name.clone(),
            schema: schema.clone(),
            key: key_indices.clone(),
            registry: registry.clone(),
        };
        // A view without key columns holds one row: one subtask keeps it.
        let parallelism = if key.is_empty() {
            input.partitioning = Partitioning::Rebalance;
            Some(1)
        } else {
            input.partitioning = Partitioning::Hash(key.to_vec());
            None
        };
        let out_schema = input.schema.clone();
        let stream = self.then(
            input,
            "view",
            out_schema,
            parallelism,
            Arc::new(move |_| Ok(sink.operator()?)),
        )?;
        let parallelism = self.graph.node(stream.node).parallelism;
        let job = self.graph.name.clone();
        registry.declare(
            name,
            &job,
            schema,
            key_indices,
            parallelism,
            max_parallelism,
        );
        Ok(())
    }

    /// Writes the statement's `input` to a sink.
    pub fn sink(&mut self, input: Stream, spec: &dyn SinkSpec) -> Result<(), String> {
        self.sink_from(input, None, spec, "sink")
    }

    fn sink_from(
        &mut self,
        input: Stream,
        side_output: Option<&str>,
        spec: &dyn SinkSpec,
        name: &str,
    ) -> Result<(), String> {
        let factory = spec.factory(&input.schema).map_err(|e| e.to_string())?;
        let schema = input.schema.clone();
        self.then_from(input, side_output, name, schema, None, factory)?;
        Ok(())
    }
}
