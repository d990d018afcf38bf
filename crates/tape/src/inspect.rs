//! Looking at the tape: list its nodes, print a tensor's graph, export Graphviz DOT.

use std::fmt;
use std::panic::Location;

use crate::node::NodeKey;
use crate::tape::with_tape;
use crate::{DType, Tensor};

/// One recorded node, as seen from outside the tape.
///
/// ```
/// use tapegrad_tape::{Tensor, tape_nodes};
/// let x = Tensor::ones(&[2]).requires_grad();
/// let _y = &x * 2.0;
/// let nodes = tape_nodes();
/// let last = nodes.last().unwrap();
/// assert_eq!((last.op, last.shape.as_slice()), ("mul_scalar", &[2][..]));
/// ```
#[derive(Clone, Debug)]
pub struct NodeInfo {
    /// The node's position in record order (its sequence number).
    pub id: u64,
    /// The operation (`"leaf"` for leaves).
    pub op: &'static str,
    /// Where the operation (or `requires_grad()`) was called.
    pub location: &'static Location<'static>,
    /// Output shape.
    pub shape: Vec<usize>,
    /// Output dtype.
    pub dtype: DType,
    /// The ids of the inputs that take part in differentiation; `None` for constants and
    /// for inputs already freed.
    pub inputs: Vec<Option<u64>>,
    /// Whether this is a leaf.
    pub is_leaf: bool,
    /// Bytes this node holds for backward.
    pub saved_bytes: usize,
}

fn info(tape: &crate::tape::Tape, key: NodeKey) -> Option<NodeInfo> {
    let n = tape.nodes.get(key)?;
    Some(NodeInfo {
        id: n.seq,
        op: n.op,
        location: n.location,
        shape: n.data().shape.to_vec(),
        dtype: n.dtype,
        inputs: n.inputs.iter().map(|k| k.and_then(|k| tape.nodes.get(k)).map(|i| i.seq)).collect(),
        is_leaf: n.is_leaf(),
        saved_bytes: n.data().saved_bytes,
    })
}

/// Every node on this thread's tape, in record order.
///
/// ```
/// let n = tapegrad_tape::tape_nodes().len();
/// assert_eq!(n, tapegrad_tape::tape_stats().nodes);
/// ```
pub fn tape_nodes() -> Vec<NodeInfo> {
    with_tape(|tape| {
        let mut nodes: Vec<NodeInfo> = tape.nodes.keys().filter_map(|k| info(tape, k)).collect();
        nodes.sort_by_key(|n| n.id);
        nodes
    })
}

/// The part of the tape a tensor depends on, in record order. Print it for a listing,
/// or export it with [`Graph::to_dot`].
///
/// ```
/// use tapegrad_tape::Tensor;
/// let x = Tensor::ones(&[2]).requires_grad();
/// let y = &(&x * 2.0) + &x;
/// let g = y.graph();
/// assert_eq!(g.nodes().len(), 3);
/// assert!(g.to_string().contains("mul_scalar"));
/// assert!(g.to_dot().starts_with("digraph"));
/// ```
#[derive(Clone, Debug)]
pub struct Graph {
    nodes: Vec<NodeInfo>,
}

impl Graph {
    /// The nodes, in record order (the output last).
    ///
    /// ```
    /// use tapegrad_tape::Tensor;
    /// let x = Tensor::ones(&[2]).requires_grad();
    /// let y = &x * 2.0;
    /// let ops: Vec<&str> = y.graph().nodes().iter().map(|n| n.op).collect();
    /// assert_eq!(ops, ["leaf", "mul_scalar"]);
    /// ```
    pub fn nodes(&self) -> &[NodeInfo] {
        &self.nodes
    }

    /// The graph in Graphviz DOT: one box per node labelled with op, shape and call site,
    /// edges from inputs to the operations that use them.
    ///
    /// ```
    /// use tapegrad_tape::Tensor;
    /// let x = Tensor::ones(&[2]).requires_grad();
    /// let g = (&x * 2.0).graph();
    /// let (leaf, op) = (g.nodes()[0].id, g.nodes()[1].id);
    /// let dot = g.to_dot();
    /// assert!(dot.starts_with("digraph tape {") && dot.contains(&format!("n{leaf} -> n{op};")));
    /// ```
    pub fn to_dot(&self) -> String {
        let mut s = String::from(
            "digraph tape {\n  rankdir=BT;\n  node [shape=box, fontname=monospace];\n",
        );
        for n in &self.nodes {
            let style = if n.is_leaf { ", style=filled, fillcolor=lightblue" } else { "" };
            s.push_str(&format!(
                "  n{} [label=\"#{} {}\\n{:?} {}\\n{}:{}\"{style}];\n",
                n.id,
                n.id,
                n.op,
                n.shape,
                n.dtype,
                n.location.file(),
                n.location.line()
            ));
            for input in n.inputs.iter().flatten() {
                s.push_str(&format!("  n{input} -> n{};\n", n.id));
            }
        }
        s.push_str("}\n");
        s
    }
}

/// One line per node: id, op, shape, dtype, inputs and call site.
impl fmt::Display for Graph {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for n in &self.nodes {
            let inputs: Vec<String> = n
                .inputs
                .iter()
                .map(|i| i.map_or_else(|| "const".to_string(), |i| format!("#{i}")))
                .collect();
            let from = if n.is_leaf { String::new() } else { format!(" <- {}", inputs.join(", ")) };
            writeln!(
                f,
                "#{:<4} {:<14} {:?} {}{from}  at {}",
                n.id, n.op, n.shape, n.dtype, n.location
            )?;
        }
        Ok(())
    }
}

impl Tensor {
    /// The recorded graph this tensor depends on (empty if it does not track gradients).
    ///
    /// ```
    /// use tapegrad_tape::Tensor;
    /// let x = Tensor::ones(&[1]).requires_grad();
    /// assert_eq!((&x * 2.0).graph().nodes().len(), 2);
    /// ```
    pub fn graph(&self) -> Graph {
        let Some(root) = self.node_key() else { return Graph { nodes: Vec::new() } };
        with_tape(|tape| {
            let mut seen = std::collections::HashSet::new();
            let mut stack = vec![root];
            let mut nodes = Vec::new();
            while let Some(k) = stack.pop() {
                if !seen.insert(k) {
                    continue;
                }
                if let Some(n) = tape.nodes.get(k) {
                    stack.extend(n.inputs.iter().flatten().copied());
                }
                nodes.extend(info(tape, k));
            }
            nodes.sort_by_key(|n| n.id);
            Graph { nodes }
        })
    }
}
