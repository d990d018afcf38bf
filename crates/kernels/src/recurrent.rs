//! The elementwise half of an LSTM step, fused: from the gate pre-activations
//! `a = [a_i, a_f, a_g, a_o]` (one row of `4 H` per batch element, PyTorch's gate order) and
//! the previous cell state `c`,
//!
//! ```text
//! i = σ(a_i), f = σ(a_f), g = tanh(a_g), o = σ(a_o)
//! c' = f c + i g,  h' = o tanh(c')
//! ```
//!
//! in one pass instead of a dozen, and the gradient of both outputs in one pass back. The
//! forward keeps the activations (`i, f, g, o, tanh c'`) for the backward.

use rayon::prelude::*;

mod elman;
mod gru;
mod sequence;
pub use elman::{
    Activation, elman_sequence_backward, elman_sequence_forward, elman_sequence_weight_grads,
};
pub use gru::{GruTape, gru_sequence_backward, gru_sequence_forward, gru_sequence_weight_grads};
pub use sequence::{
    Recurrence, RecurrentWeights, SequenceTape, TimeMajor, lstm_sequence_backward,
    lstm_sequence_forward, lstm_sequence_weight_grads,
};

use crate::Float;
use crate::parallel::start_parallel;
use crate::simd::{WidestLoop, run_widest};

/// A cell costs about this many elementwise operations (five transcendental functions):
/// what decides whether a step is worth sharing among threads.
const CELL_COST: usize = 8;

/// Rows per task when a step is shared: a fixed split, so results never depend on the
/// thread count (they would not anyway: rows are independent).
fn rows_per_task(rows: usize) -> usize {
    rows.div_ceil(8).max(1)
}

/// A logistic function that never overflows (`exp` of non-positive values only) and
/// vectorises (no branch the compiler cannot turn into a select).
#[inline(always)]
fn sigmoid<T: Float>(x: T) -> T {
    let non_positive = if x > T::ZERO { -x } else { x };
    let e = non_positive.exp_vectorisable();
    let p = T::ONE / (T::ONE + e);
    if x > T::ZERO { p } else { e * p }
}

/// One row: separate slices as arguments, so that the compiler knows the outputs alias
/// nothing and vectorises the loop (behind a struct's fields it would have to check).
/// (Each slice is its own argument: references inside an array or struct lose that.)
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn forward_row<T: Float>(
    (ai, af, ag, ao): (&[T], &[T], &[T], &[T]),
    c: &[T],
    out_h: &mut [T],
    out_c: &mut [T],
    act_i: &mut [T],
    act_f: &mut [T],
    act_g: &mut [T],
    act_o: &mut [T],
    act_tc: &mut [T],
) {
    let h = c.len();
    let (ai, af, ag, ao) = (&ai[..h], &af[..h], &ag[..h], &ao[..h]);
    let (out_h, out_c) = (&mut out_h[..h], &mut out_c[..h]);
    let (act_i, act_f, act_g) = (&mut act_i[..h], &mut act_f[..h], &mut act_g[..h]);
    let (act_o, act_tc) = (&mut act_o[..h], &mut act_tc[..h]);
    for k in 0..h {
        let i = sigmoid(ai[k]);
        let f = sigmoid(af[k]);
        let g = ag[k].tanh_vectorisable();
        let o = sigmoid(ao[k]);
        let c_next = f * c[k] + i * g;
        let tc = c_next.tanh_vectorisable();
        out_c[k] = c_next;
        out_h[k] = o * tc;
        act_i[k] = i;
        act_f[k] = f;
        act_g[k] = g;
        act_o[k] = o;
        act_tc[k] = tc;
    }
}

struct Forward<'a, T> {
    gates: &'a [T],
    c: &'a [T],
    hidden: usize,
    hc: &'a mut [T],
    acts: &'a mut [T],
}

impl<T: Float> WidestLoop for Forward<'_, T> {
    type Output = ();
    #[inline(always)]
    fn run(self) {
        let h = self.hidden;
        let rows = self.c.len() / h.max(1);
        for r in 0..rows {
            // Every slice re-cut to exactly `h`, so the loop below has no bounds checks and
            // vectorises.
            let a = &self.gates[r * 4 * h..(r + 1) * 4 * h];
            let (ai, af, ag, ao) = (&a[..h], &a[h..2 * h], &a[2 * h..3 * h], &a[3 * h..4 * h]);
            let c = &self.c[r * h..(r + 1) * h];
            let (out_h, out_c) = self.hc[r * 2 * h..(r + 1) * 2 * h].split_at_mut(h);
            let out_c = &mut out_c[..h];
            let act = &mut self.acts[r * 5 * h..(r + 1) * 5 * h];
            let (act_i, rest) = act.split_at_mut(h);
            let (act_f, rest) = rest.split_at_mut(h);
            let (act_g, rest) = rest.split_at_mut(h);
            let (act_o, act_tc) = rest.split_at_mut(h);
            let act_tc = &mut act_tc[..h];
            forward_row((ai, af, ag, ao), c, out_h, out_c, act_i, act_f, act_g, act_o, act_tc);
        }
    }
}

/// The step's outputs `[h', c']` (a row of `2 H` per batch element) into `hc`, and the
/// activations `[i, f, g, o, tanh c']` (`5 H` per row) into `acts`, from `gates` (`4 H` per
/// row) and `c` (`H` per row).
///
/// ```
/// use tapegrad_kernels::recurrent::lstm_cell_forward;
/// // One unit, all pre-activations 0: i = f = o = 1/2, g = 0, so c' = c / 2.
/// let (mut hc, mut acts) = (vec![0.0f64; 2], vec![0.0f64; 5]);
/// lstm_cell_forward(&[0.0; 4], &[2.0], 1, &mut hc, &mut acts);
/// assert_eq!(hc, [0.5 * 1f64.tanh(), 1.0]);
/// assert_eq!(&acts[..4], &[0.5, 0.5, 0.0, 0.5]);
/// ```
///
/// # Panics
/// If the buffers' lengths disagree with `hidden` and the row count of `c`.
pub fn lstm_cell_forward<T: Float>(
    gates: &[T],
    c: &[T],
    hidden: usize,
    hc: &mut [T],
    acts: &mut [T],
) {
    let rows = c.len().checked_div(hidden).unwrap_or(0);
    assert!(
        c.len() == rows * hidden
            && gates.len() == 4 * c.len()
            && hc.len() == 2 * c.len()
            && acts.len() == 5 * c.len(),
        "lstm_cell_forward: buffer sizes"
    );
    if !start_parallel(c.len() * CELL_COST) {
        run_widest(Forward { gates, c, hidden, hc, acts });
        return;
    }
    let k = rows_per_task(rows);
    hc.par_chunks_mut(2 * hidden * k)
        .zip(acts.par_chunks_mut(5 * hidden * k))
        .zip(gates.par_chunks(4 * hidden * k).zip(c.par_chunks(hidden * k)))
        .for_each(|((hc, acts), (gates, c))| run_widest(Forward { gates, c, hidden, hc, acts }));
}

/// One row of the backward, its slices as arguments for the same reason as `forward_row`.
#[allow(clippy::too_many_arguments, clippy::type_complexity)]
#[inline(always)]
fn backward_row<T: Float>(
    (i, f, g, o, tc): (&[T], &[T], &[T], &[T], &[T]),
    c: &[T],
    (dh, dc_next): (&[T], &[T]),
    dai: &mut [T],
    daf: &mut [T],
    dag: &mut [T],
    dao: &mut [T],
    dc_prev: &mut [T],
) {
    let h = c.len();
    let (i, f, g, o, tc) = (&i[..h], &f[..h], &g[..h], &o[..h], &tc[..h]);
    let (dh, dc_next) = (&dh[..h], &dc_next[..h]);
    let (dai, daf, dag, dao) = (&mut dai[..h], &mut daf[..h], &mut dag[..h], &mut dao[..h]);
    let dc_prev = &mut dc_prev[..h];
    for k in 0..h {
        let dcell = dc_next[k] + dh[k] * o[k] * (T::ONE - tc[k] * tc[k]);
        dai[k] = dcell * g[k] * i[k] * (T::ONE - i[k]);
        daf[k] = dcell * c[k] * f[k] * (T::ONE - f[k]);
        dag[k] = dcell * i[k] * (T::ONE - g[k] * g[k]);
        dao[k] = dh[k] * tc[k] * o[k] * (T::ONE - o[k]);
        dc_prev[k] = dcell * f[k];
    }
}

struct Backward<'a, T> {
    acts: &'a [T],
    c: &'a [T],
    dhc: &'a [T],
    hidden: usize,
    dgates: &'a mut [T],
    dc: &'a mut [T],
}

impl<T: Float> WidestLoop for Backward<'_, T> {
    type Output = ();
    #[inline(always)]
    fn run(self) {
        let h = self.hidden;
        let rows = self.c.len() / h.max(1);
        for r in 0..rows {
            let act = &self.acts[r * 5 * h..(r + 1) * 5 * h];
            let (i, f, g, o, tc) = (
                &act[..h],
                &act[h..2 * h],
                &act[2 * h..3 * h],
                &act[3 * h..4 * h],
                &act[4 * h..5 * h],
            );
            let c = &self.c[r * h..(r + 1) * h];
            let (dh, dc_next) = self.dhc[r * 2 * h..(r + 1) * 2 * h].split_at(h);
            let dc_next = &dc_next[..h];
            let dg = &mut self.dgates[r * 4 * h..(r + 1) * 4 * h];
            let (dai, rest) = dg.split_at_mut(h);
            let (daf, rest) = rest.split_at_mut(h);
            let (dag, dao) = rest.split_at_mut(h);
            let dao = &mut dao[..h];
            let dc_prev = &mut self.dc[r * h..(r + 1) * h];
            backward_row((i, f, g, o, tc), c, (dh, dc_next), dai, daf, dag, dao, dc_prev);
        }
    }
}

/// The gradients of the gate pre-activations (`4 H` per row) and of the previous cell
/// state (`H` per row) from the gradients of `[h', c']` (`dhc`, `2 H` per row), the
/// forward's `acts` and `c`.
///
/// ```
/// use tapegrad_kernels::recurrent::{lstm_cell_backward, lstm_cell_forward};
/// let (mut hc, mut acts) = (vec![0.0f64; 2], vec![0.0f64; 5]);
/// lstm_cell_forward(&[0.0; 4], &[2.0], 1, &mut hc, &mut acts);
/// let (mut dgates, mut dc) = (vec![0.0; 4], vec![0.0]);
/// lstm_cell_backward(&acts, &[2.0], &[0.0, 1.0], 1, &mut dgates, &mut dc); // d c' = 1
/// assert_eq!(dc, [0.5]); // d c' / d c = f
/// assert_eq!(dgates[1], 2.0 * 0.25); // d c' / d a_f = c f (1 - f)
/// ```
///
/// # Panics
/// If the buffers' lengths disagree with `hidden` and the row count of `c`.
pub fn lstm_cell_backward<T: Float>(
    acts: &[T],
    c: &[T],
    dhc: &[T],
    hidden: usize,
    dgates: &mut [T],
    dc: &mut [T],
) {
    let rows = c.len().checked_div(hidden).unwrap_or(0);
    assert!(
        c.len() == rows * hidden
            && acts.len() == 5 * c.len()
            && dhc.len() == 2 * c.len()
            && dgates.len() == 4 * c.len()
            && dc.len() == c.len(),
        "lstm_cell_backward: buffer sizes"
    );
    if !start_parallel(c.len() * CELL_COST) {
        run_widest(Backward { acts, c, dhc, hidden, dgates, dc });
        return;
    }
    let k = rows_per_task(rows);
    dgates
        .par_chunks_mut(4 * hidden * k)
        .zip(dc.par_chunks_mut(hidden * k))
        .zip(acts.par_chunks(5 * hidden * k).zip(c.par_chunks(hidden * k)))
        .zip(dhc.par_chunks(2 * hidden * k))
        .for_each(|(((dgates, dc), (acts, c)), dhc)| {
            run_widest(Backward { acts, c, dhc, hidden, dgates, dc })
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A step large enough to be shared among threads gives, row by row, what each row
    /// gives alone (which runs serially).
    #[test]
    fn a_shared_step_equals_its_rows_alone() {
        let (rows, h) = (64, 256);
        let value = |i: usize| ((i * 7919 % 1000) as f32 / 250.0) - 2.0;
        let gates: Vec<f32> = (0..rows * 4 * h).map(value).collect();
        let c: Vec<f32> = (0..rows * h).map(|i| value(i + 17)).collect();
        let dhc: Vec<f32> = (0..rows * 2 * h).map(|i| value(i + 31)).collect();
        let (mut hc, mut acts) = (vec![0.0; rows * 2 * h], vec![0.0; rows * 5 * h]);
        lstm_cell_forward(&gates, &c, h, &mut hc, &mut acts);
        let (mut dg, mut dc) = (vec![0.0; rows * 4 * h], vec![0.0; rows * h]);
        lstm_cell_backward(&acts, &c, &dhc, h, &mut dg, &mut dc);
        for r in 0..rows {
            let (mut hc1, mut acts1) = (vec![0.0; 2 * h], vec![0.0; 5 * h]);
            let c1 = &c[r * h..(r + 1) * h];
            lstm_cell_forward(&gates[r * 4 * h..(r + 1) * 4 * h], c1, h, &mut hc1, &mut acts1);
            assert_eq!(hc1, &hc[r * 2 * h..(r + 1) * 2 * h], "row {r}");
            let (mut dg1, mut dc1) = (vec![0.0; 4 * h], vec![0.0; h]);
            lstm_cell_backward(&acts1, c1, &dhc[r * 2 * h..(r + 1) * 2 * h], h, &mut dg1, &mut dc1);
            assert_eq!(dg1, &dg[r * 4 * h..(r + 1) * 4 * h], "row {r}");
            assert_eq!(dc1, &dc[r * h..(r + 1) * h], "row {r}");
        }
    }
}
