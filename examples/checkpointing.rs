//! Gradient checkpointing: a deep MLP's forward pass keeps what backward needs (the tape's
//! saved bytes); checkpointed in segments, it keeps only each segment's input and runs the
//! segment again during backward. Prints the saved bytes and the step time for 0, 2, 4 and
//! 8 segments, and checks that the gradients are the same.
//!
//! Run it with `cargo run --release --example checkpointing`.

use std::rc::Rc;
use std::time::Instant;

use tapegrad::prelude::*;
use tapegrad::tape::{checkpoint, tape_stats};

const DEPTH: usize = 32;

fn layers() -> Rc<Vec<Linear>> {
    manual_seed(2);
    Rc::new((0..DEPTH).map(|_| Linear::new(256, 256)).collect())
}

fn block(layers: &[Linear], x: &Tensor) -> Tensor {
    layers.iter().fold(x.clone(), |h, l| l.forward(&h).tanh())
}

/// Saved bytes after the forward pass, seconds for forward and backward, and the first
/// layer's weight gradient, with `segments` checkpointed segments (0: none).
pub fn run(segments: usize, batch: usize) -> (usize, f64, Vec<f32>) {
    let layers = layers();
    let x = Tensor::randn(&[batch, 256]);
    let start = Instant::now();
    let h = match DEPTH.checked_div(segments) {
        None => block(&layers, &x),
        Some(per) => (0..segments).fold(x, |h, s| {
            let layers = layers.clone();
            checkpoint(move |t| block(&layers[s * per..(s + 1) * per], &t[0]), &[h])
        }),
    };
    let loss = h.square().mean();
    let saved = tape_stats().saved_bytes;
    loss.backward();
    let seconds = start.elapsed().as_secs_f64();
    (saved, seconds, layers[0].weight.grad().unwrap().to_vec::<f32>())
}

#[allow(dead_code)]
fn main() {
    let (_, _, reference) = run(0, 256);
    println!("a {DEPTH}-layer MLP (256 wide, batch 256), one forward and backward:");
    for segments in [0, 2, 4, 8] {
        let (saved, seconds, grad) = run(segments, 256);
        let same = grad == reference;
        println!(
            "{segments:>2} segments: {:>7.2} MiB saved for backward, {:>6.1} ms, gradients {}",
            saved as f64 / (1 << 20) as f64,
            seconds * 1e3,
            if same { "identical" } else { "DIFFERENT" }
        );
    }
}
