//! Gradient checkpointing: the same gradients as without it (parameters, dropout's masks,
//! create_graph, grad), with a fraction of the saved bytes.

use tapegrad::prelude::*;
use tapegrad::tape::{checkpoint, tape_stats};

/// A deep MLP's blocks: `depth` linear layers with tanh and dropout.
fn blocks(depth: usize) -> Vec<Linear> {
    manual_seed(11);
    (0..depth)
        .map(|_| {
            let mut l = Linear::new(32, 32);
            l.to_dtype(DType::F64);
            l
        })
        .collect()
}

fn run_block(layers: &[Linear], x: &Tensor) -> Tensor {
    layers.iter().fold(x.clone(), |h, l| {
        F::dropout_with(&l.forward(&h).tanh(), F::DropoutOptions::default().p(0.1))
    })
}

fn grads(layers: &[Linear]) -> Vec<Vec<f64>> {
    layers.iter().flat_map(|l| l.parameters()).map(|p| p.grad().unwrap().to_vec::<f64>()).collect()
}

/// The loss of the MLP over `segments` checkpointed segments (0: no checkpointing), and the
/// saved bytes the tape held after the forward pass.
fn loss(layers: &std::rc::Rc<Vec<Linear>>, x: &Tensor, segments: usize) -> (Tensor, usize) {
    let depth = layers.len();
    let mut h = x.clone();
    match depth.checked_div(segments) {
        None => h = run_block(layers, &h),
        Some(per) => {
            for s in 0..segments {
                let layers = layers.clone();
                h = checkpoint(move |t| run_block(&layers[s * per..(s + 1) * per], &t[0]), &[h]);
            }
        }
    }
    let loss = h.square().mean();
    (loss, tape_stats().saved_bytes)
}

#[test]
fn gradients_match_and_saved_bytes_drop_by_the_segments() {
    let layers = std::rc::Rc::new(blocks(16));
    let x = Tensor::randn_dtype(&[64, 32], DType::F64);
    manual_seed(5);
    let (plain, plain_bytes) = loss(&layers, &x, 0);
    plain.backward();
    let want = grads(&layers);
    for l in layers.iter() {
        l.zero_grad();
    }
    manual_seed(5); // the same dropout masks
    let (check, check_bytes) = loss(&layers, &x, 4);
    assert_eq!(check.item(), plain.item());
    check.backward();
    assert_eq!(grads(&layers), want, "the same gradients, bit for bit");
    // Four segments keep their inputs only: about a sixteenth of the activations.
    assert!(check_bytes * 8 < plain_bytes, "{check_bytes} vs {plain_bytes}");
}

#[test]
fn second_derivatives_and_grad_go_through_a_checkpoint() {
    let w = Tensor::from_vec(vec![0.3f64, -0.7, 1.1], &[3]).requires_grad();
    let x = Tensor::from_vec(vec![1.0f64, 2.0, -1.0], &[3]).requires_grad();
    let f = |w: &Tensor, x: &Tensor| (&(w * x).tanh() * x).exp().sum();
    let reference = f(&w, &x);
    let gw = grad(&[&reference], &[&w], GradOptions::new().create_graph(true)).remove(0).unwrap();
    let want = grad(&[&gw.sum()], &[&x], GradOptions::new()).remove(0).unwrap().to_vec::<f64>();

    let w2 = w.clone();
    let y = checkpoint(move |t| f(&w2, &t[0]), std::slice::from_ref(&x));
    let gw = grad(&[&y], &[&w], GradOptions::new().create_graph(true)).remove(0).unwrap();
    let got = grad(&[&gw.sum()], &[&x], GradOptions::new()).remove(0).unwrap().to_vec::<f64>();
    assert_eq!(got, want);
}
