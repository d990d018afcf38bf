//! A look at the tape: record a small computation, list its nodes with their call sites,
//! print the graph, export Graphviz DOT, trace the reverse sweep step by step, and watch
//! backward free it.
//!
//! Run it with `cargo run --release --example tape_tour` (add `-- graph.dot sweep.dot` to
//! write the graph and the order of the reverse sweep as DOT files; render them with
//! `dot -Tpng graph.dot -o graph.png`).

use tapegrad::prelude::*;
use tapegrad::tape::{tape_nodes, tape_stats};

/// The DOT text of the recorded graph, and of the reverse sweep over it (each node
/// numbered by its step, each edge labelled with the norm of the gradient it carried).
pub fn run(verbose: bool) -> (String, String) {
    let w = Tensor::from_vec(vec![0.5f32, -1.0, 2.0, 0.25], &[2, 2]).requires_grad();
    let x = Tensor::from_vec(vec![1.0f32, 2.0], &[2, 1]);
    let h = w.matmul(&x).tanh();
    let loss = (&h * &h).sum();

    let dot = loss.graph().to_dot();
    if verbose {
        println!(
            "{} nodes on the tape, {} bytes held for backward",
            tape_stats().nodes,
            tape_stats().saved_bytes
        );
        println!("\nthe graph of `loss`, in record order:\n{}", loss.graph());
        for n in tape_nodes() {
            println!("node #{} {:<8} shape {:?} recorded at {}", n.id, n.op, n.shape, n.location);
        }
        println!("\nGraphviz:\n{dot}");
    }
    // Watch the chain rule run: each step of the sweep, what reached it and what it sent on.
    let trace = tapegrad::tape::BackwardTrace::start();
    loss.backward();
    let steps = trace.finish();
    let sweep = sweep_dot(&steps);
    if verbose {
        println!("\nthe reverse sweep, step by step:");
        for step in &steps {
            println!("{step}");
        }
    }
    if verbose {
        println!("after backward: {} nodes (only the leaf is left)", tape_stats().nodes);
        println!("dloss/dw = {}", w.grad().expect("w requires grad"));
    }
    (dot, sweep)
}

/// The sweep as a graph: gradients flow from the loss to the leaf, in the order taken.
fn sweep_dot(steps: &[tapegrad::tape::TraceStep]) -> String {
    let mut s =
        String::from("digraph sweep {\n  rankdir=TB;\n  node [shape=box, fontname=monospace];\n");
    for (i, step) in steps.iter().enumerate() {
        s.push_str(&format!(
            "  n{} [label=\"step {}: #{} {}\\ngradient norm {:.3}\"];\n",
            step.node,
            i + 1,
            step.node,
            step.op,
            step.grad.norm
        ));
        for (input, grad) in &step.sent {
            if let (Some(input), Some(grad)) = (input, grad) {
                s.push_str(&format!(
                    "  n{} -> n{input} [label=\"{:.3}\", fontname=monospace];\n",
                    step.node, grad.norm
                ));
            }
        }
    }
    s.push_str("}\n");
    s
}

#[allow(dead_code)]
fn main() {
    let (dot, sweep) = run(true);
    for (path, text) in std::env::args().skip(1).zip([dot, sweep]) {
        std::fs::write(&path, text).expect("write the DOT file");
        println!("wrote {path}");
    }
}
