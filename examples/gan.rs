//! A GAN learns a 2-D mixture of eight Gaussians on a circle: a generator maps noise to
//! points, a discriminator tells real from generated, and they train against each other
//! (non-saturating loss, Adam with beta1 = 0.5). Writes a PNG of real vs generated samples.
//!
//! Run it with `cargo run --release --example gan` (`--steps N`, `--out DIR`).

mod common;

use std::f64::consts::TAU;
use std::path::PathBuf;

use tapegrad::nn::{Forward, LeakyReLU, Linear, Module, Optimizer, ReLU, Sequential};
use tapegrad::prelude::*;

const MODES: usize = 8;
const RADIUS: f64 = 2.0;
const STD: f64 = 0.05;

fn modes() -> Vec<(f64, f64)> {
    (0..MODES)
        .map(|k| {
            (
                (TAU * k as f64 / MODES as f64).cos() * RADIUS,
                (TAU * k as f64 / MODES as f64).sin() * RADIUS,
            )
        })
        .collect()
}

fn real_batch(n: usize) -> Tensor {
    let centers = modes();
    let pick = (Tensor::rand(&[n]) * MODES as f64).to_vec::<f32>();
    let c: Vec<f32> = pick
        .iter()
        .flat_map(|&p| {
            let (x, y) = centers[(p as usize).min(MODES - 1)];
            [x as f32, y as f32]
        })
        .collect();
    &Tensor::from_vec(c, &[n, 2]) + &(Tensor::randn(&[n, 2]) * STD)
}

/// How well the generator covers the mixture.
pub struct Outcome {
    /// Fraction of generated samples within 4 standard deviations of some mode.
    pub near_a_mode: f64,
    /// How many of the eight modes received at least 2% of the samples.
    pub modes_covered: usize,
}

pub fn run(steps: usize, out: Option<PathBuf>, verbose: bool) -> Outcome {
    manual_seed(5);
    let generator = Sequential::new()
        .add(Linear::new(2, 128))
        .add(ReLU)
        .add(Linear::new(128, 128))
        .add(ReLU)
        .add(Linear::new(128, 2));
    let discriminator = Sequential::new()
        .add(Linear::new(2, 128))
        .add(LeakyReLU::new().negative_slope(0.2))
        .add(Linear::new(128, 128))
        .add(LeakyReLU::new().negative_slope(0.2))
        .add(Linear::new(128, 1));
    let mut opt_g = Adam::new(generator.parameters(), 1e-3).betas((0.5, 0.999));
    let mut opt_d = Adam::new(discriminator.parameters(), 1e-3).betas((0.5, 0.999));
    let batch = 256;
    let ones = Tensor::ones(&[batch, 1]);
    let zeros = Tensor::zeros(&[batch, 1]);
    for step in 0..=steps {
        // Discriminator: real -> 1, generated -> 0 (the generator's output is detached).
        let fake = generator.forward(&Tensor::randn(&[batch, 2])).detach();
        let d_loss =
            &F::binary_cross_entropy_with_logits(&discriminator.forward(&real_batch(batch)), &ones)
                + &F::binary_cross_entropy_with_logits(&discriminator.forward(&fake), &zeros);
        opt_d.zero_grad();
        d_loss.backward();
        opt_d.step();
        // Generator: make the discriminator say 1.
        let fake = generator.forward(&Tensor::randn(&[batch, 2]));
        let g_loss = F::binary_cross_entropy_with_logits(&discriminator.forward(&fake), &ones);
        opt_g.zero_grad();
        g_loss.backward();
        opt_g.step();
        if verbose && step % 500 == 0 {
            println!(
                "step {step:>5}  discriminator loss {:.3}  generator loss {:.3}",
                d_loss.item(),
                g_loss.item()
            );
        }
    }

    let samples = {
        let _no_grad = no_grad();
        generator.forward(&Tensor::randn(&[2000, 2])).to_vec::<f32>()
    };
    let points: Vec<(f64, f64)> = samples.chunks(2).map(|p| (p[0] as f64, p[1] as f64)).collect();
    let centers = modes();
    let mut per_mode = [0usize; MODES];
    let mut near = 0;
    for &(x, y) in &points {
        let (k, d) = centers
            .iter()
            .enumerate()
            .map(|(k, &(cx, cy))| (k, ((x - cx).powi(2) + (y - cy).powi(2)).sqrt()))
            .fold((0, f64::INFINITY), |a, b| if b.1 < a.1 { b } else { a });
        if d < 4.0 * STD {
            near += 1;
            per_mode[k] += 1;
        }
    }
    let outcome = Outcome {
        near_a_mode: near as f64 / points.len() as f64,
        modes_covered: per_mode.iter().filter(|&&c| c * 50 >= points.len()).count(),
    };
    if verbose {
        println!(
            "{:.1}% of generated samples lie within 4 sigma of a mode; {} of {MODES} modes covered",
            100.0 * outcome.near_a_mode,
            outcome.modes_covered
        );
    }
    if let Some(dir) = out {
        let real: Vec<(f64, f64)> =
            real_batch(500).to_vec::<f32>().chunks(2).map(|p| (p[0] as f64, p[1] as f64)).collect();
        let path = dir.join("gan.png");
        common::write_chart(
            &path,
            &[common::Panel {
                title: "REAL VS GENERATED".into(),
                series: vec![
                    common::Series { name: "REAL".into(), points: real, color: [40, 90, 200] },
                    common::Series {
                        name: "GENERATED".into(),
                        points: points[..500].to_vec(),
                        color: [200, 60, 40],
                    },
                ],
                scatter: true,
            }],
        )
        .expect("write the PNG");
        if verbose {
            println!("samples drawn in {}", path.display());
        }
    }
    outcome
}

#[allow(dead_code)]
fn main() {
    common::check_args(
        "usage: cargo run --release --example gan -- [--steps N (default 3000)] [--out DIR \
        (default target/gan)] [--threads N (default 2)]",
        &["--steps", "--out", "--threads"],
    );
    let _ = tapegrad::set_num_threads(common::flag("--threads", 2));
    let out = PathBuf::from(common::flag_str("--out").unwrap_or_else(|| "target/gan".into()));
    run(common::flag("--steps", 3000), Some(out), true);
}
