//! The blocked f32 matrix product behind the own kernels, in the usual form: a block of B is
//! copied into panels of `NR` columns and a block of A into panels of `MR` rows, each in the
//! order the inner kernel reads it, and the kernel keeps an `MR x NR` tile of C in registers
//! while it runs along the shared dimension. A row-major A (rows a positive stride apart) is
//! not copied: the kernel broadcasts from its rows where they are.
//!
//! Why not `matrixmultiply` for everything: it copies a row-major A, and a column-major B,
//! one element at a time, and those are the layouts of `x Wᵀ` and `dy W`, the products of
//! every linear layer forward and backward. The instruction sets' modules ([`super::avx512`],
//! [`super::avx2`]) copy whole panels of row- and column-major operands a vector (or, for
//! AVX2's column-major A, six floats) at a time, through register transposes where the copy
//! turns rows into columns, and the rest element by element.
//!
//! Every instruction set sums each element of C in the same order (step by step along a
//! block of the shared dimension, one rounding per multiply-add, then `acc + beta c`, or
//! `acc + bias` for a product into a fresh C with a bias row), so the result has the same
//! bits whichever kernel or thread computed it.

use std::cell::RefCell;

/// Length of the shared dimension per block: a panel of B (`KC x NR`, 16 or 32 KiB) stays in
/// the first-level cache while the panels of A pass it.
pub(super) const KC: usize = 256;
/// Rows of A per block (a multiple of every kernel's `MR`): the copied block stays in the
/// second-level cache.
const MC: usize = 120;
/// Columns of B per block: each panel of A's rows meets the whole copied block (1 MiB).
/// (Blocks of 256 columns for CPUs with a smaller second-level cache were tried:
/// docs/BENCHMARKS.md.)
const NC: usize = 1024;

/// One instruction set's register tile and copies.
pub(super) trait Microkernel {
    /// Rows of C in the register tile: each step broadcasts one element of A per row.
    const MR: usize;
    /// Columns of C in the register tile (whole vectors).
    const NR: usize;

    /// `c = acc + beta c` (or `acc + bias`, [`Tile`]) on `tile`'s corner of C after `kc`
    /// steps, each one row of the B panel `b` times one column of A: an A panel (`lda`
    /// `None`: step `p` of row `i` at `a[p * MR + i]`) or A's own rows (`Some(lda)`: at
    /// `a[i * lda + p]`).
    ///
    /// # Safety
    /// The CPU must have the instruction set; `a` holds `kc x MR` floats (a panel) or the
    /// tile's rows of `kc` floats `lda` apart, `b` `kc x NR` (64-byte aligned); the tile's
    /// corner lies inside C, accessed by no one else.
    unsafe fn tile(kc: usize, a: (*const f32, Option<isize>), b: *const f32, tile: Tile);

    /// Copies a `kc x nc` block of B into panels of `NR` columns, each `kc` rows of `NR`
    /// adjacent floats, columns past `nc` zero.
    ///
    /// # Safety
    /// The CPU must have the instruction set; the block must lie inside B and `dst` hold
    /// `kc x nc.next_multiple_of(NR)` floats, 64-byte aligned.
    unsafe fn pack_b(block: (usize, usize), b: (*const f32, isize, isize), dst: *mut f32);

    /// Copies an `mc x kc` block of A into panels of `MR` rows, each `kc` steps of `MR`
    /// adjacent floats, rows past `mc` zero.
    ///
    /// # Safety
    /// The CPU must have the instruction set; the block must lie inside A and `dst` hold
    /// `mc.next_multiple_of(MR) x kc` floats.
    unsafe fn pack_a(block: (usize, usize), a: (*const f32, isize, isize), dst: *mut f32);

    /// [`sgemm`] for one to four rows of C and a B whose rows are `ldb` apart with adjacent
    /// columns: B's rows are read where they are, as the steps of one tile per run of
    /// columns, instead of copied into panels that so few rows of A would pass once. Each
    /// element gets [`product`]'s sums and bits.
    ///
    /// # Safety
    /// As [`sgemm`], with `m` from one to four, `k` not zero and B at `(b, ldb, 1)`.
    unsafe fn few_rows(
        shape: (usize, usize, usize),
        a: (*const f32, isize, isize),
        b: (*const f32, isize),
        scale: (f32, *const f32),
        c: (*mut f32, isize),
    );

    /// `Cᵀ` of a product into at most `NR / 4` columns, written into the `n` rows of `ct`
    /// (`ldct` apart), with the sums [`product`] forms for `Cᵀ = Bᵀ Aᵀ`, when the
    /// instruction set has a kernel for it and A's rows are adjacent along the shared
    /// dimension: reads A's rows in square blocks, transposed in registers, instead of
    /// copying Aᵀ into panels. With `add_to_first`, the first block's sums are added to what
    /// `ct` holds (as the tile adds `c` with beta one); otherwise `ct` is only written.
    /// Returns whether it did.
    ///
    /// # Safety
    /// As [`sgemm`] for A and B; `ct` holds `n` rows of `m` floats `ldct` apart.
    unsafe fn narrow(
        _shape: (usize, usize, usize),
        _a: (*const f32, isize, isize),
        _b: (*const f32, isize, isize),
        _ct: (*mut f32, isize),
        _add_to_first: bool,
    ) -> bool {
        false
    }
}

/// A cache line of floats: the copy buffers are made of these so the kernel's vector loads
/// of B are aligned.
#[repr(C, align(64))]
#[derive(Clone, Copy)]
struct Line([f32; 16]);

thread_local! {
    /// The copies of A's and B's blocks, kept per thread between products.
    static BUFFERS: RefCell<(Vec<Line>, Vec<Line>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// A pointer to at least `len` floats of `buffer`, grown if needed.
fn floats(buffer: &mut Vec<Line>, len: usize) -> *mut f32 {
    let lines = len.div_ceil(16);
    if buffer.len() < lines {
        buffer.resize(lines, Line([0.0; 16]));
    }
    buffer.as_mut_ptr().cast()
}

/// `c = a b + beta c` for an `m x k` A and a `k x n` B at the given strides (in elements),
/// into a C whose rows are `ldc` apart and whose elements in a row are adjacent. When
/// `beta` is zero, C is not read, and `bias` (if not null: `n` floats) is added to every
/// row: `c = a b + bias`.
///
/// # Safety
/// The CPU must have `K`'s instruction set; every element the strides reach from `a`, `b`
/// and `c` must be valid (C's need not be initialised when `beta` is zero), and `c`'s
/// elements must not be accessed by anyone else during the call; `bias` is null, or `beta`
/// is zero and it points to `n` readable floats.
pub(super) unsafe fn sgemm<K: Microkernel>(
    (m, k, n): (usize, usize, usize),
    a: (*const f32, isize, isize),
    b: (*const f32, isize, isize),
    (beta, bias): (f32, *const f32),
    c: (*mut f32, isize),
) {
    // The transposed forms add C (with beta one) or the bias to the first block's sums, as
    // the tile does; another beta would be added after multiplying C.
    let transposable = beta == 0.0 || beta == 1.0;
    if (1..=FEW_STEPS).contains(&k) && m > 4 {
        // SAFETY: forwarded from the caller.
        return unsafe { few_steps::<K>((m, k, n), a, b, (beta, bias), c) };
    }
    if n <= K::NR / 4 && m >= K::NR && transposable {
        // SAFETY: forwarded from the caller.
        return unsafe { narrow::<K>((m, k, n), a, b, (beta, bias), c) };
    }
    let (b, rsb, csb) = b;
    if m <= K::NR / 4 && n >= K::NR && k > 0 && rsb == 1 && transposable {
        // SAFETY: forwarded from the caller.
        if unsafe { few_rows_transposed::<K>((m, k, n), a, (b, csb), (beta, bias), c) } {
            return;
        }
    }
    if (1..=4).contains(&m) && k > 0 && csb == 1 {
        // SAFETY: forwarded from the caller; B's columns are adjacent.
        return unsafe { K::few_rows((m, k, n), a, (b, rsb), (beta, bias), c) };
    }
    // SAFETY: forwarded from the caller.
    unsafe { product::<K>((m, k, n), a, Right::Strided((b, rsb, csb)), (beta, bias), c) }
}

/// The depth up to which a product takes [`few_steps`]: the register tile's fixed cost per
/// call (clearing its sums, storing them through a buffer) outweighs its few steps.
const FEW_STEPS: usize = 8;

/// [`sgemm`] for a shallow product (an outer product, a layer with a few inputs, the input
/// gradient of a layer with a few outputs): C four rows at a time through
/// [`Microkernel::few_rows`], each reading the few rows of B (copied row-major first when
/// its columns are not adjacent: `k x n` floats, against C's `m x n`). The same sums as
/// [`product`]'s, so the same bits.
///
/// # Safety
/// As [`sgemm`], with `k` from one to [`FEW_STEPS`].
unsafe fn few_steps<K: Microkernel>(
    (m, k, n): (usize, usize, usize),
    (a, rsa, csa): (*const f32, isize, isize),
    (b, rsb, csb): (*const f32, isize, isize),
    scale: (f32, *const f32),
    (c, ldc): (*mut f32, isize),
) {
    let copy: Vec<f32>;
    let (b, ldb) = if csb == 1 {
        (b, rsb)
    } else {
        // SAFETY: element (p, j) of B (the caller's guarantee).
        copy = (0..k * n)
            .map(|i| unsafe { *b.offset((i / n) as isize * rsb + (i % n) as isize * csb) })
            .collect();
        (copy.as_ptr(), n as isize)
    };
    for i in (0..m).step_by(4) {
        let rows = (m - i).min(4);
        let a = (a.wrapping_offset(i as isize * rsa), rsa, csa);
        let c = (c.wrapping_offset(i as isize * ldc), ldc);
        // SAFETY: rows i.. of A and C (the caller's guarantee); B's `k` rows `ldb` apart
        // with adjacent columns.
        unsafe { K::few_rows((rows, k, n), a, (b, ldb), scale, c) };
    }
}

/// [`sgemm`] for a C of a few columns (a matrix-vector product, a layer with one or two
/// outputs) and many rows, as `Cᵀ = Bᵀ Aᵀ` into a buffer: the register tile's vectors
/// then run along A's rows rather than along C's few columns, most of whose lanes would
/// be zeros. Each element is the same sequence of multiply-adds (the factors of each
/// product swap, which changes no rounding), and C (beta one) or the bias is added to the
/// first block's sums as the tile adds it, so the bits are [`product`]'s.
///
/// # Safety
/// As [`sgemm`], with beta zero or one.
unsafe fn narrow<K: Microkernel>(
    (m, k, n): (usize, usize, usize),
    (a, rsa, csa): (*const f32, isize, isize),
    (b, rsb, csb): (*const f32, isize, isize),
    (beta, bias): (f32, *const f32),
    (c, ldc): (*mut f32, isize),
) {
    let add_to_first = beta != 0.0 || !bias.is_null();
    let mut ct = vec![0.0f32; n * m];
    if add_to_first {
        for i in 0..m {
            for j in 0..n {
                // SAFETY: (i, j) lies inside C, j inside the bias row (the caller's
                // guarantee); C is read only when beta is not zero.
                ct[j * m + i] = unsafe {
                    if beta != 0.0 {
                        *c.offset(i as isize * ldc + j as isize)
                    } else {
                        *bias.add(j)
                    }
                };
            }
        }
    }
    // SAFETY: Bᵀ and Aᵀ reach the caller's elements of B and A; the buffer is `n x m`.
    unsafe {
        let buffer = (ct.as_mut_ptr(), m as isize);
        if !K::narrow((m, k, n), (a, rsa, csa), (b, rsb, csb), buffer, add_to_first) {
            let beta = if add_to_first { 1.0 } else { 0.0 };
            let (bt, at) = ((b, csb, rsb), Right::Strided((a, csa, rsa)));
            product::<K>((n, k, m), bt, at, (beta, std::ptr::null()), buffer)
        }
    };
    for i in 0..m {
        for j in 0..n {
            // SAFETY: (i, j) lies inside C.
            unsafe { c.offset(i as isize * ldc + j as isize).write(ct[j * m + i]) };
        }
    }
}

/// [`sgemm`] for a C of a few rows (a matrix-vector product from the left, a batch of one)
/// and a B whose columns are adjacent along the shared dimension (`Wᵀ` of a layer's
/// weight), when the instruction set has [`Microkernel::narrow`]: the same transposed
/// form, `C = (Bᵀ Aᵀ)ᵀ`, which reads B's columns in square blocks through register
/// transposes into the sums, instead of copying them into panels that so few rows of A
/// would pass once; into C itself, whose rows are `Cᵀ`'s columns. Returns whether it ran.
///
/// # Safety
/// As [`sgemm`], with beta zero or one and B at `(b, 1, csb)`.
unsafe fn few_rows_transposed<K: Microkernel>(
    (m, k, n): (usize, usize, usize),
    (a, rsa, csa): (*const f32, isize, isize),
    (b, csb): (*const f32, isize),
    (beta, bias): (f32, *const f32),
    (c, ldc): (*mut f32, isize),
) -> bool {
    if !bias.is_null() {
        for i in 0..m {
            // SAFETY: row i of C holds `n` floats, as does the bias row.
            unsafe { std::ptr::copy_nonoverlapping(bias, c.offset(i as isize * ldc), n) };
        }
    }
    let add_to_first = beta != 0.0 || !bias.is_null();
    // SAFETY: Bᵀ's rows are B's columns and Aᵀ's columns A's rows; C holds `Cᵀ`'s `m`
    // columns as rows `ldc` apart (the caller's guarantees).
    let done = unsafe { K::narrow((n, k, m), (b, csb, 1), (a, csa, rsa), (c, ldc), add_to_first) };
    if !done && !bias.is_null() {
        // The bias row is C's start for the product after all.
        // SAFETY: forwarded from the caller.
        unsafe {
            let b = Right::Strided((b, 1, csb));
            product::<K>((m, k, n), (a, rsa, csa), b, (1.0, std::ptr::null()), (c, ldc));
        }
        return true;
    }
    done
}

/// [`sgemm`] with B already in `K`'s panels ([`pack_whole`]): the same blocks, kernel and
/// order of sums, so the same bits, without the copy.
///
/// # Safety
/// As [`sgemm`] for A and C; A has `panels.k` columns; `panels` were made for `K`.
pub(super) unsafe fn sgemm_packed<K: Microkernel>(
    m: usize,
    a: (*const f32, isize, isize),
    panels: &Panels,
    beta: f32,
    c: (*mut f32, isize),
) {
    // SAFETY: forwarded from the caller.
    unsafe {
        product::<K>((m, panels.k, panels.n), a, Right::Packed(panels), (beta, std::ptr::null()), c)
    }
}

/// A whole `k x n` B copied into panels, block by block in the order [`product`] visits
/// them: block `(jc, pc)` (columns from `jc`, shared dimension from `pc`) at
/// [`block_offset`].
pub(super) struct Panels {
    k: usize,
    n: usize,
    data: Vec<Line>,
}

/// Where block `(jc, pc)` of a `k x n` B starts among panels `nr` wide: the blocks of
/// earlier column ranges are `NC` wide, and each block is `kc` steps of its width rounded up
/// to whole panels.
fn block_offset((k, n): (usize, usize), nr: usize, jc: usize, pc: usize) -> usize {
    jc * k + pc * NC.min(n - jc).next_multiple_of(nr)
}

/// Copies a whole `k x n` B into `K`'s panels, for products that reuse it; `None` for an
/// empty B or one whose panels' size (`k` rows of `n` rounded up to whole panels) overflows.
///
/// # Safety
/// The CPU must have `K`'s instruction set; every element the strides reach from `b` must
/// be valid.
pub(super) unsafe fn pack_whole<K: Microkernel>(
    (k, n): (usize, usize),
    (b, rsb, csb): (*const f32, isize, isize),
) -> Option<Panels> {
    let floats = n.checked_next_multiple_of(K::NR)?.checked_mul(k).filter(|&f| f > 0)?;
    let mut data = vec![Line([0.0; 16]); floats.div_ceil(16)];
    let dst = data.as_mut_ptr().cast::<f32>();
    for jc in (0..n).step_by(NC) {
        let nc = NC.min(n - jc);
        for pc in (0..k).step_by(KC) {
            let kc = KC.min(k - pc);
            // SAFETY: the block lies inside B; its panels end at or before the next block's
            // offset, inside `data` (k x n rounded up to whole panels).
            unsafe {
                let block = b.offset(pc as isize * rsb + jc as isize * csb);
                K::pack_b((kc, nc), (block, rsb, csb), dst.add(block_offset((k, n), K::NR, jc, pc)))
            };
        }
    }
    Some(Panels { k, n, data })
}

/// Bytes after which addresses map to the same set of the first-level data cache again:
/// its size over its ways (48 KiB over 12 on current AMD and Intel cores, 32 KiB over 8 on
/// older ones).
const CACHE_SET_PERIOD: usize = 4096;

/// Whether rows `stride` floats apart all fall into the same first-level cache set, so a
/// register tile reading its rows in place evicts them from each other (and the panel of
/// B): A's rows are copied into panels then, when enough panels of B reuse the copy.
fn shares_cache_sets(stride: isize) -> bool {
    (stride.unsigned_abs() * size_of::<f32>()).is_multiple_of(CACHE_SET_PERIOD)
}

/// B as a product reads it: strided, copied block by block, or already in panels.
enum Right<'a> {
    Strided((*const f32, isize, isize)),
    Packed(&'a Panels),
}

/// The blocked product behind [`sgemm`] and [`sgemm_packed`].
///
/// # Safety
/// As [`sgemm`].
unsafe fn product<K: Microkernel>(
    (m, k, n): (usize, usize, usize),
    (a, rsa, csa): (*const f32, isize, isize),
    right: Right<'_>,
    (beta, bias): (f32, *const f32),
    (c, ldc): (*mut f32, isize),
) {
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        // SAFETY: forwarded from the caller.
        return unsafe { scale((m, n), (beta, bias), c, ldc) };
    }
    BUFFERS.with(|buffers| {
        // A product never runs inside another on the same thread; should it, it copies into
        // buffers of its own.
        let mut own = (Vec::new(), Vec::new());
        let mut borrowed = buffers.try_borrow_mut();
        let (a_buffer, b_buffer) = match borrowed.as_deref_mut() {
            Ok(pair) => pair,
            Err(_) => &mut own,
        };
        // An A whose rows are adjacent along the shared dimension (the activations of
        // `x Wᵀ` and `dy W`) is read where it is: its copy would be a transposition, and
        // the kernel reads a tile's rows from the first-level cache either way. Unless the
        // rows are a multiple of the cache's set period apart and many panels of B pass
        // them: the tile's rows would compete for one set, evicting each other for every
        // panel, and the copy costs less than that from about eight panels on.
        let in_place = csa == 1 && rsa > 0 && !(shares_cache_sets(rsa) && n >= 8 * K::NR);
        let a_pack = floats(a_buffer, MC.min(m.next_multiple_of(K::MR)) * KC);
        let b_pack = match right {
            Right::Strided(_) => floats(b_buffer, KC * NC.min(n.next_multiple_of(K::NR))),
            Right::Packed(_) => std::ptr::null_mut(),
        };
        for jc in (0..n).step_by(NC) {
            let nc = NC.min(n - jc);
            for pc in (0..k).step_by(KC) {
                let kc = KC.min(k - pc);
                // Later blocks of the shared dimension add to what the first wrote (the
                // bias with it).
                let (beta, bias) = if pc == 0 { (beta, bias) } else { (1.0, std::ptr::null()) };
                let b_panels: *const f32 = match right {
                    Right::Strided((b, rsb, csb)) => {
                        // SAFETY: the block lies inside B (the caller's guarantee for the
                        // whole product); the buffer holds `kc x nc` floats rounded up to
                        // whole panels.
                        unsafe {
                            let block = b.offset(pc as isize * rsb + jc as isize * csb);
                            K::pack_b((kc, nc), (block, rsb, csb), b_pack)
                        };
                        b_pack
                    }
                    // SAFETY: `pack_whole::<K>` wrote this block there.
                    Right::Packed(panels) => unsafe {
                        panels.data.as_ptr().cast::<f32>().add(block_offset((k, n), K::NR, jc, pc))
                    },
                };
                for ic in (0..m).step_by(MC) {
                    let mc = MC.min(m - ic);
                    let block = a.wrapping_offset(ic as isize * rsa + pc as isize * csa);
                    if !in_place {
                        // SAFETY: as for B.
                        unsafe { K::pack_a((mc, kc), (block, rsa, csa), a_pack) };
                    }
                    for ir in (0..mc).step_by(K::MR) {
                        for jr in (0..nc).step_by(K::NR) {
                            let tile = Tile {
                                rows: K::MR.min(mc - ir),
                                cols: K::NR.min(nc - jr),
                                c: c.wrapping_offset((ic + ir) as isize * ldc + (jc + jr) as isize),
                                ldc,
                                beta,
                                bias: bias_from(bias, jc + jr),
                            };
                            let a_panel = if in_place {
                                (block.wrapping_offset(ir as isize * rsa), Some(rsa))
                            } else {
                                (a_pack.wrapping_add(ir * kc).cast_const(), None)
                            };
                            // SAFETY: the panels were written above with `kc` steps each
                            // (or A's rows are read in place: the tile's rows of the block
                            // lie inside A); the tile's rows and columns lie inside C.
                            unsafe { K::tile(kc, a_panel, b_panels.add(jr * kc), tile) };
                        }
                    }
                }
            }
        }
    })
}

/// `c = beta c` (the bias row, or zero, when `beta` is zero, whatever C held), for a
/// product with an empty shared dimension.
///
/// # Safety
/// As [`sgemm`]'s C and bias.
unsafe fn scale((m, n): (usize, usize), (beta, bias): (f32, *const f32), c: *mut f32, ldc: isize) {
    for i in 0..m {
        for j in 0..n {
            // SAFETY: (i, j) lies inside C, j inside the bias row; C is read only when
            // beta is not zero.
            unsafe {
                let at = c.offset(i as isize * ldc + j as isize);
                let value = match (beta == 0.0, bias.is_null()) {
                    (true, true) => 0.0,
                    (true, false) => *bias.add(j),
                    (false, _) => beta * *at,
                };
                at.write(value);
            }
        }
    }
}

/// The bias row from column `j` on: null (no bias) stays null.
pub(super) fn bias_from(bias: *const f32, j: usize) -> *const f32 {
    if bias.is_null() { bias } else { bias.wrapping_add(j) }
}

/// Where a kernel writes: a `rows x cols` corner (at most `MR x NR`) of C at `c`, with the
/// bias row's elements for its columns at `bias` (null for none; only with `beta` zero).
pub(super) struct Tile {
    pub rows: usize,
    pub cols: usize,
    pub c: *mut f32,
    pub ldc: isize,
    pub beta: f32,
    pub bias: *const f32,
}

/// The rows of A or columns of B that one panel copies: line `i < count` starts at
/// `first + i * across`.
#[derive(Clone, Copy)]
pub(super) struct Lines {
    pub first: *const f32,
    pub across: isize,
    pub count: usize,
}

impl Lines {
    /// Where line `i` starts (computed without a promise to stay inside the operand: only
    /// lines below `count` are read).
    pub fn start(self, i: usize) -> *const f32 {
        self.first.wrapping_offset(i as isize * self.across)
    }
}

/// Copies `kc` steps of lines whose steps are `along` apart, one element at a time: step
/// `p` of line `i` goes to `dst[p * width + i]` for `i < width` (lines past `count` zero).
///
/// # Safety
/// Each line below `count` must hold `kc` readable floats `along` apart; `dst` must hold
/// `kc x width` floats.
pub(super) unsafe fn copy_strided(
    kc: usize,
    lines: Lines,
    along: isize,
    dst: *mut f32,
    width: usize,
) {
    for p in 0..kc {
        for i in 0..width {
            let value = if i < lines.count {
                // SAFETY: step p of line i.
                unsafe { *lines.start(i).offset(p as isize * along) }
            } else {
                0.0
            };
            // SAFETY: inside the destination.
            unsafe { *dst.add(p * width + i) = value };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(i: usize) -> f32 {
        ((i * 7919 % 1009) as f32 - 504.0) / 97.0
    }

    /// Every shortcut [`sgemm`] takes (shallow products, a few rows read in place or
    /// through transposes, a few columns through transposes) gives the bits of the blocked
    /// [`product`] itself, for each instruction set this CPU has: row- and column-major
    /// operands, beta zero, one and one half, with and without a bias.
    #[test]
    fn every_shortcut_has_the_bits_of_the_blocked_product() {
        fn check<K: Microkernel>() {
            let mut shapes = vec![];
            for k in [1, 2, 3, 8] {
                for (m, n) in [(5, 1), (13, 3), (37, 17), (9, 40), (6, 130)] {
                    shapes.push((m, k, n));
                }
            }
            for m in 1..=8 {
                for (k, n) in [(9, 35), (300, 33), (600, 130)] {
                    shapes.push((m, k, n));
                }
            }
            for n in 1..=8 {
                shapes.push((40, 300, n));
                shapes.push((70, 9, n));
            }
            for (m, k, n) in shapes {
                let cases = [(false, false), (false, true), (true, false), (true, true)];
                for ((ta, tb), (beta, with_bias)) in cases.into_iter().flat_map(|layouts| {
                    [(0.0, false), (0.0, true), (1.0, false), (0.5, false)].map(|s| (layouts, s))
                }) {
                    let a: Vec<f32> = (0..m * k).map(value).collect();
                    let b: Vec<f32> = (0..k * n).map(|i| value(i + 3)).collect();
                    let bias: Vec<f32> = (0..n).map(|i| value(i + 11)).collect();
                    let bias = if with_bias { bias.as_ptr() } else { std::ptr::null() };
                    let strides = |rows: usize, cols: usize, t: bool| {
                        if t { (1, rows as isize) } else { (cols as isize, 1) }
                    };
                    let ((rsa, csa), (rsb, csb)) = (strides(m, k, ta), strides(k, n, tb));
                    let start: Vec<f32> = (0..m * n).map(|i| value(i + 8)).collect();
                    let (mut want, mut got) = (start.clone(), start);
                    // SAFETY: the CPU has K's instruction set (the caller's check); A and B
                    // are whole matrices at those strides, C is m x n with rows n apart.
                    unsafe {
                        let (a, b) = ((a.as_ptr(), rsa, csa), (b.as_ptr(), rsb, csb));
                        let plain = (want.as_mut_ptr(), n as isize);
                        product::<K>((m, k, n), a, Right::Strided(b), (beta, bias), plain);
                        sgemm::<K>((m, k, n), a, b, (beta, bias), (got.as_mut_ptr(), n as isize));
                    }
                    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                    let what = format!("{m}x{k}x{n} ta {ta} tb {tb} beta {beta} bias {with_bias}");
                    assert_eq!(bits(&got), bits(&want), "{what}");
                }
            }
        }
        if crate::simd::avx512_enabled() {
            check::<super::super::avx512::Avx512>();
        }
        if crate::simd::avx2_enabled() {
            check::<super::super::avx2::Avx2>();
        }
    }
}
