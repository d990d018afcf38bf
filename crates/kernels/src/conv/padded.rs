//! The zero-padded copy of images that the implicit GEMMs and the depthwise sums read
//! their windows from, split into stride phases so that a strided window is a run of
//! consecutive elements.

use super::Geometry;
use crate::Real;
use crate::implicit_gemm::B_SLACK;
use crate::short_copy::copy_row;
use crate::simd::{WidestLoop, run_widest};
use crate::strided::LANES;

/// Where the padded copy keeps each pixel. With strides `(sh, sw)` a plane is split into
/// its `sh x sw` phases (phase `(a, q)` holds the padded pixels `(a + sh r, q + sw c)`),
/// each stored row by row, `phase_len` elements a row: the pixels under one kernel tap for
/// consecutive output pixels of a row are then consecutive, and those of the next output
/// row follow `phase_len` elements later. One phase (stride 1) is the plain padded plane.
#[derive(Clone, Copy, Debug)]
pub(super) struct Window {
    /// Rows of a phase.
    pub(super) phase_rows: usize,
    /// Elements of a row of a phase.
    pub(super) phase_len: usize,
    /// Phases of the rows and of the columns (the strides).
    pub(super) phases: (usize, usize),
}

impl Window {
    /// A window of `rows x cols` padded pixels, stored in `phases` (of the rows, of the
    /// columns).
    pub(super) fn new((rows, cols): (usize, usize), phases: (usize, usize)) -> Self {
        Window { phase_rows: rows.div_ceil(phases.0), phase_len: cols.div_ceil(phases.1), phases }
    }

    /// Elements of one phase.
    #[inline(always)]
    pub(super) fn phase(&self) -> usize {
        self.phase_rows * self.phase_len
    }

    /// Elements of one plane.
    #[inline(always)]
    pub(super) fn plane(&self) -> usize {
        self.phases.0 * self.phases.1 * self.phase()
    }

    /// Offset of padded pixel `(r, col)` of plane `c`.
    #[inline(always)]
    pub(super) fn at(&self, c: usize, r: usize, col: usize) -> usize {
        let (sh, sw) = self.phases;
        let phase = (r % sh) * sw + col % sw;
        c * self.plane() + phase * self.phase() + (r / sh) * self.phase_len + col / sw
    }
}

/// A zero-padded copy of one image after another: planes of `h x w` placed at (`top`,
/// `left`) (negative values crop) inside the padded planes of `window` (`hp x wp`),
/// followed by slack for the products that read it whole vectors at a time (see
/// [`slack`]). Every
/// image fills the same positions, so the zero border is written once per buffer and each
/// image only copies its rows.
pub(super) struct Padded<T> {
    buf: Vec<T>,
    planes: usize,
    size: (usize, usize),
    padded: (usize, usize),
    window: Window,
    top: isize,
    left: isize,
}

impl<T: Real> Padded<T> {
    pub(super) fn new(
        planes: usize,
        size: (usize, usize),
        padded: (usize, usize),
        phases: (usize, usize),
        (top, left): (isize, isize),
    ) -> Self {
        let window = Window::new(padded, phases);
        Padded {
            buf: vec![T::ZERO; planes * window.plane() + slack(&window)],
            planes,
            size,
            padded,
            window,
            top,
            left,
        }
    }

    /// The padded copy of `src`: its planes, which may be fewer than the buffer holds (the
    /// last images of a batch); the planes after them keep what they held.
    /// Where the copy keeps each pixel.
    pub(super) fn window(&self) -> Window {
        self.window
    }

    pub(super) fn of(&mut self, src: &[T]) -> &[T] {
        // With the widest vectors: a stride's phases are split in vector shuffles.
        run_widest(Fill { pad: &mut *self, src });
        &self.buf
    }
}

/// [`Padded::of`]'s copy, as a loop for [`run_widest`].
struct Fill<'a, T> {
    pad: &'a mut Padded<T>,
    src: &'a [T],
}

impl<T: Real> WidestLoop for Fill<'_, T> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        let ((h, w), (hp, wp), (top, left)) =
            (self.pad.size, self.pad.padded, (self.pad.top, self.pad.left));
        let window = self.pad.window;
        // Source columns that land inside the padded plane.
        let col_lo = (-left).max(0) as usize;
        let col_hi = ((wp as isize - left).max(0) as usize).min(w);
        debug_assert!(
            self.src.len().is_multiple_of((h * w).max(1))
                && self.src.len() <= self.pad.planes * h * w,
            "padded copy: the source is not whole planes that fit the buffer"
        );
        let planes = self.pad.planes.min(self.src.len() / (h * w).max(1));
        if col_lo < col_hi {
            for plane in 0..planes {
                for r in 0..h {
                    let row = r as isize + top;
                    if row < 0 || row >= hp as isize {
                        continue;
                    }
                    let src_row = &self.src[(plane * h + r) * w..(plane * h + r + 1) * w];
                    let first = (col_lo as isize + left) as usize;
                    let dst = window.at(plane, row as usize, first);
                    if window.phases.1 == 1 {
                        copy_row(
                            &mut self.pad.buf[dst..dst + col_hi - col_lo],
                            &src_row[col_lo..col_hi],
                        );
                        continue;
                    }
                    let values = &src_row[col_lo..col_hi];
                    if window.phases.1 == 2 {
                        // The usual stride: even and odd columns split in vector shuffles.
                        let second = window.at(plane, row as usize, first + 1);
                        let pairs = values.len() / 2;
                        if values.len() % 2 == 1 {
                            self.pad.buf[dst + pairs] = values[2 * pairs];
                        }
                        let (even, odd) = disjoint_pair(&mut self.pad.buf, dst, second, pairs);
                        split_pairs(&values[..2 * pairs], even, odd);
                        continue;
                    }
                    // Each phase of the row from every `phases`-th source column.
                    for q in 0..window.phases.1.min(values.len()) {
                        let dst = window.at(plane, row as usize, first + q);
                        let phase = values[q..].iter().step_by(window.phases.1);
                        for (d, &v) in self.pad.buf[dst..].iter_mut().zip(phase) {
                            *d = v;
                        }
                    }
                }
            }
        }
    }
}

/// Offsets in the padded input `window` of the first pixel under each kernel tap of the
/// input channels `first_channel..first_channel + cg`, in weight order `(c, ki, kj)`.
pub(super) fn tap_offsets(geo: &Geometry, first_channel: usize, window: &Window) -> Vec<usize> {
    let (dh, dw) = geo.opts.dilation;
    let mut offsets = Vec::with_capacity(geo.k());
    for c in first_channel..first_channel + geo.cg() {
        for ki in 0..geo.kh {
            for kj in 0..geo.kw {
                offsets.push(window.at(c, ki * dh, kj * dw));
            }
        }
    }
    offsets
}

/// Elements a padded copy keeps past its last plane: the GEMM kernel's [`B_SLACK`], or a
/// phase's row and a vector for the depthwise sums, whose wide outputs read whole vectors
/// up to a row past a phase's end (their values reach only outputs that are dropped).
fn slack(window: &Window) -> usize {
    B_SLACK.max(window.phase_len + LANES)
}

/// Two disjoint runs of `len` elements of `buf`, starting at `first` and `second`.
#[inline(always)]
fn disjoint_pair<T>(
    buf: &mut [T],
    first: usize,
    second: usize,
    len: usize,
) -> (&mut [T], &mut [T]) {
    if first < second {
        let (head, tail) = buf.split_at_mut(second);
        (&mut head[first..first + len], &mut tail[..len])
    } else {
        let (head, tail) = buf.split_at_mut(first);
        let (second, first) = (&mut head[second..second + len], &mut tail[..len]);
        (first, second)
    }
}

/// `even[m] = src[2m]`, `odd[m] = src[2m + 1]`: a row split into its even and odd columns,
/// a block of [`LANES`] pairs at a time (a loop over pairs left rows of a few vectors to
/// its scalar remainder).
#[inline(always)]
fn split_pairs<T: Real>(src: &[T], even: &mut [T], odd: &mut [T]) {
    let blocks = src.chunks_exact(2 * LANES);
    let done = (src.len() - blocks.remainder().len()) / 2;
    for (m, pair) in blocks.remainder().chunks_exact(2).enumerate() {
        even[done + m] = pair[0];
        odd[done + m] = pair[1];
    }
    for ((block, e), o) in blocks.zip(even.chunks_exact_mut(LANES)).zip(odd.chunks_exact_mut(LANES))
    {
        let block: &[T; 2 * LANES] = block.try_into().expect("a block of pairs");
        let (e, o): (&mut [T; LANES], &mut [T; LANES]) =
            (e.try_into().expect("a vector"), o.try_into().expect("a vector"));
        for k in 0..LANES {
            e[k] = block[2 * k];
            o[k] = block[2 * k + 1];
        }
    }
}
