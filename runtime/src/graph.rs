//! The job graph: operators and the edges between them, as the user declared them.
//!
//! A [`JobGraph`] is logical: one node per operator, with a parallelism. The
//! [`crate::job`] module turns it into tasks: one per subtask of each chain of
//! operators that can run without a channel between them.

use std::fmt;
use std::sync::Arc;

use crate::error::{BoxError, RuntimeError};
use crate::operator::{Operator, SubtaskInfo};
use crate::source::{EventTimeSpec, Source};

/// The index of a node in its [`JobGraph`].
pub type NodeId = usize;

/// Builds one source instance per subtask.
pub type SourceFactory =
    Arc<dyn Fn(&SubtaskInfo) -> Result<Box<dyn Source>, BoxError> + Send + Sync>;
/// Builds one operator instance per subtask.
pub type OperatorFactory =
    Arc<dyn Fn(&SubtaskInfo) -> Result<Box<dyn Operator>, BoxError> + Send + Sync>;

/// How rows travel along an edge from the subtasks of one operator to those of the next.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Partitioning {
    /// Subtask `i` sends to subtask `i`. Needs equal parallelism; such an edge
    /// may be chained away entirely.
    Forward,
    /// By the hash of the named key columns: each key goes to the one subtask
    /// that owns its key group.
    Hash(Vec<String>),
    /// Every row to every subtask.
    Broadcast,
    /// Batches round-robin over the subtasks, to even out load.
    Rebalance,
}

impl fmt::Display for Partitioning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Partitioning::Forward => f.write_str("forward"),
            Partitioning::Hash(keys) => write!(f, "hash({})", keys.join(", ")),
            Partitioning::Broadcast => f.write_str("broadcast"),
            Partitioning::Rebalance => f.write_str("rebalance"),
        }
    }
}

/// What a node runs.
#[derive(Clone)]
pub enum NodeKind {
    Source {
        factory: SourceFactory,
        event_time: EventTimeSpec,
        /// Its own idle timeout, in place of the job's.
        idle_timeout: Option<std::time::Duration>,
    },
    Operator {
        factory: OperatorFactory,
    },
}

/// One operator of the job graph.
#[derive(Clone)]
pub struct Node {
    pub id: NodeId,
    pub name: String,
    pub parallelism: usize,
    pub kind: NodeKind,
    /// Whether the node may share a task with its upstream over a forward edge.
    pub chainable: bool,
}

impl Node {
    pub fn is_source(&self) -> bool {
        matches!(self.kind, NodeKind::Source { .. })
    }
}

impl fmt::Debug for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Node")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("parallelism", &self.parallelism)
            .field("source", &self.is_source())
            .finish()
    }
}

/// A connection from an output of one node to an input of another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edge {
    pub from: NodeId,
    /// `None` for the main output, or the name of a side output.
    pub side_output: Option<String>,
    pub to: NodeId,
    /// Which input of `to` this edge feeds (0 for single-input operators).
    pub to_input: usize,
    pub partitioning: Partitioning,
}

/// Operators and edges. Edges always point from an earlier node to a later one,
/// so the graph has no cycle.
#[derive(Debug, Clone, Default)]
pub struct JobGraph {
    pub name: String,
    nodes: Vec<Node>,
    edges: Vec<Edge>,
}

impl JobGraph {
    pub fn new(name: impl Into<String>) -> Self {
        JobGraph {
            name: name.into(),
            nodes: Vec::new(),
            edges: Vec::new(),
        }
    }

    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    pub fn edges(&self) -> &[Edge] {
        &self.edges
    }

    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id]
    }

    /// Whether a node of this name exists.
    pub fn has_node(&self, name: &str) -> bool {
        self.nodes.iter().any(|n| n.name == name)
    }

    /// Adds a source running as `parallelism` subtasks.
    pub fn add_source(
        &mut self,
        name: impl Into<String>,
        parallelism: usize,
        event_time: EventTimeSpec,
        factory: SourceFactory,
    ) -> Result<NodeId, RuntimeError> {
        self.add_node(
            name.into(),
            parallelism,
            NodeKind::Source {
                factory,
                event_time,
                idle_timeout: None,
            },
        )
    }

    /// Gives source `node` an idle timeout of its own (a partition, or the
    /// whole subtask, with no rows for this long stops holding the
    /// watermark back), in place of the job's.
    pub fn set_idle_timeout(&mut self, node: NodeId, timeout: std::time::Duration) {
        if let Some(Node {
            kind: NodeKind::Source { idle_timeout, .. },
            ..
        }) = self.nodes.get_mut(node)
        {
            *idle_timeout = Some(timeout);
        }
    }

    /// Adds an operator (or a sink) running as `parallelism` subtasks.
    pub fn add_operator(
        &mut self,
        name: impl Into<String>,
        parallelism: usize,
        factory: OperatorFactory,
    ) -> Result<NodeId, RuntimeError> {
        self.add_node(name.into(), parallelism, NodeKind::Operator { factory })
    }

    /// Changes a node's parallelism. Forward edges to or from it that no longer
    /// join equal parallelisms become rebalance edges.
    pub fn set_parallelism(&mut self, id: NodeId, parallelism: usize) -> Result<(), RuntimeError> {
        if parallelism == 0 {
            return Err(RuntimeError::InvalidGraph(format!(
                "`{}` has parallelism 0",
                self.nodes[id].name
            )));
        }
        self.nodes[id].parallelism = parallelism;
        for edge in &mut self.edges {
            if (edge.from == id || edge.to == id)
                && edge.partitioning == Partitioning::Forward
                && self.nodes[edge.from].parallelism != self.nodes[edge.to].parallelism
            {
                edge.partitioning = Partitioning::Rebalance;
            }
        }
        Ok(())
    }

    /// Renames a node. A node's name is its id in checkpoints: state is
    /// restored to the node of the same name.
    pub fn rename(&mut self, id: NodeId, name: impl Into<String>) -> Result<(), RuntimeError> {
        let name = name.into();
        if name.is_empty() {
            return Err(RuntimeError::InvalidGraph(
                "an operator name is empty".into(),
            ));
        }
        if self.nodes[id].name != name && self.has_node(&name) {
            return Err(RuntimeError::InvalidGraph(format!(
                "two operators are named `{name}`"
            )));
        }
        self.nodes[id].name = name;
        Ok(())
    }

    /// Keeps a node in a task of its own even on a forward edge.
    pub fn disable_chaining(&mut self, id: NodeId) {
        self.nodes[id].chainable = false;
    }

    fn add_node(
        &mut self,
        name: String,
        parallelism: usize,
        kind: NodeKind,
    ) -> Result<NodeId, RuntimeError> {
        if self.has_node(&name) {
            return Err(RuntimeError::InvalidGraph(format!(
                "two operators are named `{name}`"
            )));
        }
        if parallelism == 0 {
            return Err(RuntimeError::InvalidGraph(format!(
                "`{name}` has parallelism 0"
            )));
        }
        let id = self.nodes.len();
        self.nodes.push(Node {
            id,
            name,
            parallelism,
            kind,
            chainable: true,
        });
        Ok(id)
    }

    /// Connects the main output of `from` to input 0 of `to`.
    pub fn connect(
        &mut self,
        from: NodeId,
        to: NodeId,
        partitioning: Partitioning,
    ) -> Result<(), RuntimeError> {
        self.add_edge(Edge {
            from,
            side_output: None,
            to,
            to_input: 0,
            partitioning,
        })
    }

    /// Adds an edge in full: a side output, or an input other than 0.
    pub fn add_edge(&mut self, edge: Edge) -> Result<(), RuntimeError> {
        let (Some(from), Some(to)) = (self.nodes.get(edge.from), self.nodes.get(edge.to)) else {
            return Err(RuntimeError::InvalidGraph(format!(
                "edge {} -> {} names a node that does not exist",
                edge.from, edge.to
            )));
        };
        if edge.from >= edge.to {
            return Err(RuntimeError::InvalidGraph(format!(
                "edge `{}` -> `{}` points backwards; a job graph has no cycles",
                from.name, to.name
            )));
        }
        if to.is_source() {
            return Err(RuntimeError::InvalidGraph(format!(
                "source `{}` cannot have an input",
                to.name
            )));
        }
        if edge.partitioning == Partitioning::Forward && from.parallelism != to.parallelism {
            return Err(RuntimeError::InvalidGraph(format!(
                "forward edge `{}` (parallelism {}) -> `{}` (parallelism {}) needs equal parallelism; \
                 use rebalance or hash",
                from.name, from.parallelism, to.name, to.parallelism
            )));
        }
        if let Partitioning::Hash(keys) = &edge.partitioning
            && keys.is_empty()
        {
            return Err(RuntimeError::InvalidGraph(format!(
                "hash edge `{}` -> `{}` has no key columns",
                from.name, to.name
            )));
        }
        self.edges.push(edge);
        Ok(())
    }

    /// The edges into `node`.
    pub fn inputs_of(&self, node: NodeId) -> impl Iterator<Item = &Edge> {
        self.edges.iter().filter(move |e| e.to == node)
    }

    /// The edges out of `node`, main and side outputs.
    pub fn outputs_of(&self, node: NodeId) -> impl Iterator<Item = &Edge> {
        self.edges.iter().filter(move |e| e.from == node)
    }

    /// Checks what a job needs before it starts: every operator has an input,
    /// and inputs are numbered without gaps.
    pub fn validate(&self, max_parallelism: u32) -> Result<(), RuntimeError> {
        if !self.nodes.iter().any(Node::is_source) {
            return Err(RuntimeError::InvalidGraph("the job has no source".into()));
        }
        for node in &self.nodes {
            if node.parallelism > max_parallelism as usize {
                return Err(RuntimeError::InvalidGraph(format!(
                    "`{}` has parallelism {}, above the max parallelism {max_parallelism}",
                    node.name, node.parallelism
                )));
            }
            if node.is_source() {
                continue;
            }
            let inputs: Vec<usize> = self.inputs_of(node.id).map(|e| e.to_input).collect();
            if inputs.is_empty() {
                return Err(RuntimeError::InvalidGraph(format!(
                    "operator `{}` has no input",
                    node.name
                )));
            }
            let count = inputs.iter().max().map_or(0, |m| m + 1);
            if let Some(missing) = (0..count).find(|i| !inputs.contains(i)) {
                return Err(RuntimeError::InvalidGraph(format!(
                    "operator `{}` has no edge into its input {missing}",
                    node.name
                )));
            }
        }
        Ok(())
    }
}
