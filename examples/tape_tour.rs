//! A look at the tape: record a small computation, list its nodes with their call sites,
//! print the graph, export Graphviz DOT, trace the reverse sweep step by step, and watch
//! backward free it.
//!
//! Run it with `cargo run --release --example tape_tour` (add `-- out.dot` to write the DOT
//! file; render it with `dot -Tpng out.dot -o tape.png`).

use tapegrad::prelude::*;
use tapegrad::tape::{tape_nodes, tape_stats};

/// The DOT text of the recorded graph.
pub fn run(verbose: bool) -> String {
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
    dot
}

#[allow(dead_code)]
fn main() {
    let dot = run(true);
    if let Some(path) = std::env::args().nth(1) {
        std::fs::write(&path, dot).expect("write the DOT file");
        println!("wrote {path}");
    }
}
