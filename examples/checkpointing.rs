//! Gradient checkpointing: a deep MLP's forward pass keeps what backward needs (the tape's
//! saved bytes); checkpointed in segments, it keeps only each segment's input and runs the
//! segment again during backward. Prints the saved bytes after forward and at their peak in
//! backward (sampled by gradient hooks on the layers' outputs), the step time for 0, 2, 4
//! and 8 segments, and checks that the gradients are the same.
//!
//! Run it with `cargo run --release --example checkpointing`.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Instant;

use tapegrad::prelude::*;
use tapegrad::tape::{checkpoint, tape_stats};

const DEPTH: usize = 32;

fn layers() -> Rc<Vec<Linear>> {
    manual_seed(2);
    Rc::new((0..DEPTH).map(|_| Linear::new(256, 256)).collect())
}

/// The layers in turn; each output gets a hook that samples the tape's saved bytes when
/// backward reaches it (so the peak during backward can be read).
fn block(layers: &[Linear], x: &Tensor, peak: &Rc<Cell<usize>>) -> Tensor {
    layers.iter().fold(x.clone(), |h, l| {
        let out = l.forward(&h).tanh();
        let peak = peak.clone();
        let _sampler = out.register_hook(move |_| {
            peak.set(peak.get().max(tape_stats().saved_bytes));
            None
        });
        out
    })
}

/// Saved bytes after the forward pass and at their peak during backward, seconds for
/// forward and backward, and the first layer's weight gradient, with `segments`
/// checkpointed segments (0: none).
pub fn run(segments: usize, batch: usize) -> (usize, usize, f64, Vec<f32>) {
    let layers = layers();
    let peak = Rc::new(Cell::new(0));
    let x = Tensor::randn(&[batch, 256]);
    let start = Instant::now();
    let h = match DEPTH.checked_div(segments) {
        None => block(&layers, &x, &peak),
        Some(per) => (0..segments).fold(x, |h, s| {
            let (layers, peak) = (layers.clone(), peak.clone());
            checkpoint(move |t| block(&layers[s * per..(s + 1) * per], &t[0], &peak), &[h])
        }),
    };
    let loss = h.square().mean();
    let saved = tape_stats().saved_bytes;
    loss.backward();
    let seconds = start.elapsed().as_secs_f64();
    (saved, peak.get(), seconds, layers[0].weight.grad().unwrap().to_vec::<f32>())
}

#[allow(dead_code)]
fn main() {
    let (_, _, _, reference) = run(0, 256);
    let mib = |bytes: usize| bytes as f64 / (1 << 20) as f64;
    println!("a {DEPTH}-layer MLP (256 wide, batch 256), one forward and backward:");
    for segments in [0, 2, 4, 8] {
        let (saved, peak, seconds, grad) = run(segments, 256);
        println!(
            "{segments:>2} segments: {:>6.2} MiB saved after forward, peak {:>6.2} MiB in \
             backward, {:>5.1} ms, gradients {}",
            mib(saved),
            mib(peak),
            seconds * 1e3,
            if grad == reference { "identical" } else { "DIFFERENT" }
        );
    }
}
