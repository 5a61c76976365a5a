//! From the job graph to tasks: which operators share a task (chaining).
//!
//! An operator joins the task of its upstream when the edge between them is a
//! forward edge of the main output, the upstream has no other main-output edge,
//! and the operator has no other input. A batch then passes from one to the next
//! as a function call, with no channel and no copy.

use std::fmt;

use crate::graph::{JobGraph, NodeId, Partitioning};

/// Operators that run in one task, head first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainPlan {
    pub nodes: Vec<NodeId>,
    pub parallelism: usize,
}

/// The chains of a job, and the edges that cross between them.
#[derive(Debug, Clone)]
pub struct PhysicalPlan {
    pub chains: Vec<ChainPlan>,
    /// For each node, the index of its chain.
    pub chain_of: Vec<usize>,
    names: Vec<String>,
    crossings: Vec<(NodeId, Option<String>, NodeId, Partitioning)>,
}

impl PhysicalPlan {
    pub fn new(graph: &JobGraph) -> PhysicalPlan {
        let mut chains: Vec<ChainPlan> = Vec::new();
        let mut chain_of = vec![usize::MAX; graph.nodes().len()];
        for node in graph.nodes() {
            match chained_upstream(graph, node.id) {
                Some(up) => {
                    let c = chain_of[up];
                    chains[c].nodes.push(node.id);
                    chain_of[node.id] = c;
                }
                None => {
                    chain_of[node.id] = chains.len();
                    chains.push(ChainPlan {
                        nodes: vec![node.id],
                        parallelism: node.parallelism,
                    });
                }
            }
        }
        let crossings = graph
            .edges()
            .iter()
            .filter(|e| chain_of[e.from] != chain_of[e.to])
            .map(|e| (e.from, e.side_output.clone(), e.to, e.partitioning.clone()))
            .collect();
        let names = graph.nodes().iter().map(|n| n.name.clone()).collect();
        PhysicalPlan {
            chains,
            chain_of,
            names,
            crossings,
        }
    }

    /// The number of tasks: one per subtask of every chain.
    pub fn task_count(&self) -> usize {
        self.chains.iter().map(|c| c.parallelism).sum()
    }
}

/// The upstream node `node` chains onto, if it can.
fn chained_upstream(graph: &JobGraph, node: NodeId) -> Option<NodeId> {
    let n = graph.node(node);
    if n.is_source() || !n.chainable {
        return None;
    }
    let mut inputs = graph.inputs_of(node);
    let edge = inputs.next()?;
    if inputs.next().is_some()
        || edge.side_output.is_some()
        || edge.partitioning != Partitioning::Forward
    {
        return None;
    }
    let main_outputs = graph
        .outputs_of(edge.from)
        .filter(|e| e.side_output.is_none())
        .count();
    (main_outputs == 1 && graph.node(edge.from).parallelism == n.parallelism).then_some(edge.from)
}

impl fmt::Display for PhysicalPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, chain) in self.chains.iter().enumerate() {
            let names: Vec<&str> = chain
                .nodes
                .iter()
                .map(|n| self.names[*n].as_str())
                .collect();
            writeln!(
                f,
                "task {i}: {} [parallelism {}]",
                names.join(" -> "),
                chain.parallelism
            )?;
        }
        for (from, side, to, partitioning) in &self.crossings {
            let side = side.as_ref().map(|s| format!(".{s}")).unwrap_or_default();
            writeln!(
                f,
                "edge: {}{side} -> {} [{partitioning}]",
                self.names[*from], self.names[*to]
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::graph::{Edge, OperatorFactory, SourceFactory};
    use crate::source::EventTimeSpec;

    fn no_source() -> SourceFactory {
        Arc::new(|_| Err("unused".into()))
    }

    fn no_op() -> OperatorFactory {
        Arc::new(|_| Err("unused".into()))
    }

    #[test]
    fn forward_edges_chain_and_exchanges_split() {
        let mut g = JobGraph::new("t");
        let src = g
            .add_source("src", 2, EventTimeSpec::ArrivalTime, no_source())
            .unwrap();
        let filter = g.add_operator("filter", 2, no_op()).unwrap();
        let keyed = g.add_operator("keyed", 3, no_op()).unwrap();
        let sink = g.add_operator("sink", 3, no_op()).unwrap();
        let dlq = g.add_operator("dlq", 2, no_op()).unwrap();
        g.connect(src, filter, Partitioning::Forward).unwrap();
        g.connect(filter, keyed, Partitioning::Hash(vec!["k".into()]))
            .unwrap();
        g.connect(keyed, sink, Partitioning::Forward).unwrap();
        g.add_edge(Edge {
            from: src,
            side_output: Some("dead".into()),
            to: dlq,
            to_input: 0,
            partitioning: Partitioning::Forward,
        })
        .unwrap();
        g.validate(128).unwrap();
        let plan = PhysicalPlan::new(&g);
        let chains: Vec<Vec<NodeId>> = plan.chains.iter().map(|c| c.nodes.clone()).collect();
        assert_eq!(
            chains,
            vec![vec![src, filter], vec![keyed, sink], vec![dlq]]
        );
        assert_eq!(plan.task_count(), 2 + 3 + 2);
        let text = plan.to_string();
        assert!(
            text.contains("task 0: src -> filter [parallelism 2]"),
            "{text}"
        );
        assert!(text.contains("edge: filter -> keyed [hash(k)]"), "{text}");
        assert!(text.contains("edge: src.dead -> dlq [forward]"), "{text}");
    }

    #[test]
    fn a_fan_out_or_a_second_input_breaks_the_chain() {
        let mut g = JobGraph::new("t");
        let a = g
            .add_source("a", 1, EventTimeSpec::ArrivalTime, no_source())
            .unwrap();
        let b = g
            .add_source("b", 1, EventTimeSpec::ArrivalTime, no_source())
            .unwrap();
        let union = g.add_operator("union", 1, no_op()).unwrap();
        let left = g.add_operator("left", 1, no_op()).unwrap();
        let right = g.add_operator("right", 1, no_op()).unwrap();
        g.connect(a, union, Partitioning::Forward).unwrap();
        g.connect(b, union, Partitioning::Forward).unwrap();
        g.connect(union, left, Partitioning::Forward).unwrap();
        g.connect(union, right, Partitioning::Forward).unwrap();
        let plan = PhysicalPlan::new(&g);
        assert_eq!(plan.chains.len(), 5);
    }

    #[test]
    fn invalid_graphs_are_refused_with_names() {
        let mut g = JobGraph::new("t");
        let a = g
            .add_source("a", 2, EventTimeSpec::ArrivalTime, no_source())
            .unwrap();
        let b = g.add_operator("b", 3, no_op()).unwrap();
        let err = g
            .connect(a, b, Partitioning::Forward)
            .unwrap_err()
            .to_string();
        assert!(err.contains("`a`") && err.contains("`b`"), "{err}");
        assert!(
            g.add_operator("a", 1, no_op())
                .unwrap_err()
                .to_string()
                .contains("two operators")
        );
        let err = g.validate(128).unwrap_err().to_string();
        assert!(err.contains("`b` has no input"), "{err}");
    }
}
