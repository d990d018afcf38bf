//! A GEMM whose operands are addressed through offset tables (an "implicit GEMM").
//!
//! A stride-1 convolution is a matrix product whose operands are windows of the (padded)
//! image. Giving the kernel the offset of every row and column lets it read those windows
//! in place, where im2col would first copy every patch (25 copies of each pixel for a 5x5
//! kernel) and a packing GEMM would copy them once more.
//!
//! The kernel keeps an `R x (V vectors)` block of C in vector registers and walks a block of
//! the shared dimension, loading `V` vectors of a row of B and broadcasting `R` elements of
//! A per step; the blocks after the first add to C. It is written once over a small set of
//! vector operations and compiled for AVX-512 (32 registers of 16 f32: blocks up to 8 x 3
//! or 16 x 1) and for AVX2 with FMA (16 registers of 8 f32: blocks up to 6 x 2 or 8 x 1). Machines with neither take the im2col
//! path instead (see [`available`]); a plain loop keeps the function total for them.

use crate::gemm::Gemm;

/// The left operand A (`m x k`), broadcast one element at a time.
pub enum Lhs<'a, T> {
    /// `A(i, p) = a[rows[i] + cols[p]]`: read in place (a convolution's image windows).
    Gathered { a: &'a [T], rows: &'a [usize], cols: &'a [usize] },
    /// Copied once into blocks of rows ([`PackedLhs`]): for an A that many products share
    /// (a convolution's weights), so a block's elements for one step sit side by side and
    /// the kernel needs one pointer instead of one per row.
    Packed(&'a PackedLhs<T>),
}

/// Rows of A per packed block.
const PACK_ROWS: usize = 16;

/// A copied into blocks of [`PACK_ROWS`] rows, each block stored step by step:
/// `data[(block * k + p) * PACK_ROWS + r] = A(block * PACK_ROWS + r, p)` (zero past `m`).
pub struct PackedLhs<T> {
    data: Vec<T>,
    m: usize,
    k: usize,
}

impl<T: Gemm> PackedLhs<T> {
    /// Packs the `m x k` matrix whose elements `at(i, p)` gives.
    pub fn new(m: usize, k: usize, at: impl Fn(usize, usize) -> T) -> Self {
        let blocks = m.div_ceil(PACK_ROWS);
        let mut data = vec![T::ZERO; blocks * k * PACK_ROWS];
        for i in 0..m {
            let (block, r) = (i / PACK_ROWS, i % PACK_ROWS);
            for p in 0..k {
                data[(block * k + p) * PACK_ROWS + r] = at(i, p);
            }
        }
        PackedLhs { data, m, k }
    }
}

/// Operands of `C[i][j] (+)= sum_p A(i, p) * B[b_rows[p] + j]`.
pub struct Operands<'a, T> {
    lhs: Lhs<'a, T>,
    b: &'a [T],
    /// Offset of row `p` of B, whose elements `j` are consecutive.
    b_rows: &'a [usize],
    m: usize,
    /// Largest entry of `b_rows`.
    b_max: usize,
    /// Largest offset a gathered A reads (its largest row plus largest column offset).
    a_reach: Option<usize>,
}

impl<'a, T: Gemm> Operands<'a, T> {
    /// Checks that every element of A lies inside its slice and that B has a row per step.
    pub fn new(lhs: Lhs<'a, T>, b: &'a [T], b_rows: &'a [usize]) -> Self {
        let (m, k, a_reach) = match &lhs {
            Lhs::Gathered { a, rows, cols } => {
                let reach = largest(rows).zip(largest(cols)).map(|(r, c)| r + c);
                assert_a_holds(reach, a);
                (rows.len(), cols.len(), reach)
            }
            Lhs::Packed(packed) => (packed.m, packed.k, None),
        };
        assert_eq!(
            b_rows.len(),
            k,
            "implicit_gemm: A has {k} columns, B has {} rows",
            b_rows.len()
        );
        Operands { lhs, b, b_rows, m, b_max: largest(b_rows).unwrap_or(0), a_reach }
    }

    /// The same operands with a gathered A read from `a` instead (the same offset tables,
    /// checked against the maxima already found): Winograd's 36 products of a round differ
    /// only in where their A starts.
    pub fn with_a(&self, a: &'a [T]) -> Self {
        let Lhs::Gathered { rows, cols, .. } = self.lhs else {
            panic!("implicit_gemm: with_a needs a gathered A")
        };
        assert_a_holds(self.a_reach, a);
        Operands { lhs: Lhs::Gathered { a, rows, cols }, ..*self }
    }
}

fn assert_a_holds<T>(reach: Option<usize>, a: &[T]) {
    if let Some(reach) = reach {
        assert!(reach < a.len(), "implicit_gemm: A's offsets reach past its {} elements", a.len());
    }
}

/// The largest offset of a table. Winograd's products build thousands of operands per
/// training step, and without AVX-512 a maximum of 64-bit integers is a compare-and-blend
/// sequence per element.
fn largest(offsets: &[usize]) -> Option<usize> {
    #[cfg(target_arch = "x86_64")]
    {
        /// # Safety
        /// The CPU must have AVX-512F.
        #[target_feature(enable = "avx512f")]
        unsafe fn vectorized(offsets: &[usize]) -> Option<usize> {
            crate::simd::debug_assert_avx512_on();
            offsets.iter().copied().max()
        }
        // Not `available()`: that is also true on CPUs with AVX2 alone.
        if crate::simd::avx512_enabled() {
            // SAFETY: the CPU has AVX-512F.
            return unsafe { vectorized(offsets) };
        }
    }
    offsets.iter().copied().max()
}

/// Elements of slack that B needs past the last element it holds: the kernel loads whole
/// vectors and only stores the columns that exist.
pub(crate) const B_SLACK: usize = 64;

/// The instruction sets with a vector kernel, widest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    /// AVX-512F: 32 registers of 512 bits.
    Avx512,
    /// AVX2 with FMA: 16 registers of 256 bits (a smaller tile of C).
    Avx2,
}

/// The vector kernel this CPU runs, if any: AVX-512F unless switched off (see
/// [`crate::simd::avx512_enabled`]), else AVX2 with FMA (see [`crate::simd::avx2_enabled`]).
pub(crate) fn isa() -> Option<Isa> {
    if crate::simd::avx512_enabled() {
        Some(Isa::Avx512)
    } else if cfg!(target_arch = "x86_64") && crate::simd::avx2_enabled() {
        Some(Isa::Avx2)
    } else {
        None
    }
}

/// Whether a vector kernel runs on this CPU (the implicit convolutions then apply).
pub(crate) fn available() -> bool {
    isa().is_some()
}

/// The element types with a vector kernel.
pub trait ImplicitGemm: Gemm + crate::transpose::Transpose {
    /// Elements per AVX-512 vector register (AVX2's hold half as many).
    const LANES: usize;

    /// The kernel over all of C in the instruction set `isa`.
    ///
    /// # Safety
    /// The CPU must have `isa`, and the operands must pass [`implicit_gemm`]'s checks.
    unsafe fn vector_kernel(
        isa: Isa,
        ops: &Operands<'_, Self>,
        b_offset: usize,
        n: usize,
        c: &mut [Self],
        ldc: usize,
        accumulate: bool,
    );
}

/// Elements per vector of the kernel this CPU runs (C's columns are computed this many at
/// a time): what a layout choice should fill.
pub(crate) fn lanes<T: ImplicitGemm>() -> usize {
    match isa() {
        Some(Isa::Avx2) => T::LANES / 2,
        _ => T::LANES,
    }
}

/// `c[i * ldc + j] (+)= sum_p A(i, p) B[b_offset + b_rows[p] + j]` for `i < m`, `j < n`.
///
/// B must hold [`B_SLACK`] readable elements past `b_offset + max(b_rows) + n` (their
/// values only reach columns that are not stored).
pub(crate) fn implicit_gemm<T: ImplicitGemm>(
    ops: &Operands<'_, T>,
    b_offset: usize,
    n: usize,
    c: &mut [T],
    ldc: usize,
    accumulate: bool,
) {
    implicit_gemm_in(isa(), ops, b_offset, n, c, ldc, accumulate);
}

/// [`implicit_gemm`] in the instruction set `isa` (none: a plain loop), which the CPU must
/// have.
fn implicit_gemm_in<T: ImplicitGemm>(
    isa: Option<Isa>,
    ops: &Operands<'_, T>,
    b_offset: usize,
    n: usize,
    c: &mut [T],
    ldc: usize,
    accumulate: bool,
) {
    let m = ops.m;
    if m == 0 || n == 0 {
        return;
    }
    assert!(n <= ldc || m == 1, "implicit_gemm: rows of C overlap");
    assert!(c.len() >= (m - 1) * ldc + n, "implicit_gemm: C too short");
    assert!(
        ops.b_rows.is_empty() || b_offset + ops.b_max + n + B_SLACK <= ops.b.len(),
        "implicit_gemm: B's offsets reach past its {} elements",
        ops.b.len()
    );
    if let Some(isa) = isa {
        // SAFETY: the caller chose an instruction set the CPU has; offsets checked above
        // and in Operands::new.
        return unsafe { T::vector_kernel(isa, ops, b_offset, n, c, ldc, accumulate) };
    }
    for i in 0..m {
        for j in 0..n {
            let mut sum = if accumulate { c[i * ldc + j] } else { T::ZERO };
            for (p, &b_row) in ops.b_rows.iter().enumerate() {
                let a = match &ops.lhs {
                    Lhs::Gathered { a, rows, cols } => a[rows[i] + cols[p]],
                    Lhs::Packed(packed) => {
                        packed.data[((i / PACK_ROWS) * packed.k + p) * PACK_ROWS + i % PACK_ROWS]
                    }
                };
                sum += a * ops.b[b_offset + b_row + j];
            }
            c[i * ldc + j] = sum;
        }
    }
}

/// What one panel of the vector kernel computes: columns `j0..j0 + width` of rows
/// `rows.0..rows.1` of C, summed over the steps `steps.0..steps.1` (written to C, or added
/// to it when `accumulate`).
struct Panel<'o, 'c, T> {
    ops: &'o Operands<'o, T>,
    rows: (usize, usize),
    /// The steps `p` of the shared dimension this panel sums (one block of them).
    steps: (usize, usize),
    /// Where the panel's columns start in B's rows.
    b0: usize,
    c: &'c mut [T],
    j0: usize,
    width: usize,
    ldc: usize,
    accumulate: bool,
}

/// Bytes of a packed A that one pass over C's columns may stream: the rows of a pass are
/// read again for every panel of columns, so they should stay in the core's L2 cache
/// (1 to 2 MB on current x86 server cores) beside the panel of B they meet.
const PACKED_BYTES_PER_PASS: usize = 256 << 10;

/// Rows of C (a multiple of the block of `rows`) computed across all of its columns before
/// the next rows start. A packed A larger than [`PACKED_BYTES_PER_PASS`] (the weights of a
/// layer of a few hundred channels, up to the 4 MB from which convolutions take im2col)
/// would otherwise be streamed from memory once per panel of 48 columns; a gathered A
/// (image windows) is read in place and keeps one pass.
fn rows_per_pass<T>(ops: &Operands<'_, T>, rows: usize, bytes: usize) -> usize {
    let k = ops.b_rows.len();
    match ops.lhs {
        Lhs::Packed(_) if k > 0 => (PACKED_BYTES_PER_PASS / (k * bytes) / rows).max(1) * rows,
        _ => ops.m.max(1),
    }
}

/// Bytes of B that one block of steps reads for a panel of columns: the shared dimension
/// is walked in blocks, each over every block of rows before the next, so that the panel's
/// rows of B stay in the L1 cache from one block of rows to the next. Walked whole, a deep
/// product (a 128-channel 4 x 4 layer sums 2,048 steps) streamed its B strip, 256 KB, from
/// L2 for every block of rows, and the multiply-adds waited on the loads. The packed A
/// streams through L1 beside it (a cache line per step for a block of rows), so B takes
/// three eighths of L1: 18 KB of 48, 12 KB of Zen 3's 32 (where 24 KB ran its stride-2
/// layers' forward 5-10% slower; docs/BENCHMARKS.md, fifty-fourth session).
fn b_bytes_per_block() -> usize {
    crate::cache::caches().l1_data * 3 / 8
}

/// Steps of the shared dimension per block, for panels `panel_bytes` wide. (The floor of
/// 32 keeps C's loads and stores between blocks few against the multiply-adds; today's
/// widest panel, three vectors of 64 bytes, gets 96 with a 48 KB L1.)
fn steps_per_block(panel_bytes: usize) -> usize {
    (b_bytes_per_block() / panel_bytes.max(1)).max(32)
}

/// The panel shapes (rows `R` x vectors `V` of C in registers) for 32 vector registers:
/// blocks of 8 or 16 rows, up to three vectors each (at most 24 accumulators, the vectors
/// of B and a broadcast).
macro_rules! panels_for_32_registers {
    ($packed:ident, $vectors:ident, $rows:ident, $args:ident) => {
        match ($packed, $vectors, $rows) {
            (true, 1, 16) => panel::<16, 1, true>($args),
            (true, 1, 8) => panel::<8, 1, true>($args),
            (true, 2, 8 | 16) => panel::<8, 2, true>($args),
            (true, _, 8 | 16) => panel::<8, 3, true>($args),
            (false, 1, 8) => panel::<8, 1, false>($args),
            (false, 2, 8) => panel::<8, 2, false>($args),
            (false, _, 8) => panel::<8, 3, false>($args),
            (p, v, r) => panels_for_32_registers!(@small p, v, r, $args),
        }
    };
    (@small $p:ident, $v:ident, $r:expr, $args:ident) => {
        match ($p, $v, $r) {
            (true, 1, 4) => panel::<4, 1, true>($args),
            (true, 2, 4) => panel::<4, 2, true>($args),
            (true, _, 4) => panel::<4, 3, true>($args),
            (false, 1, 4) => panel::<4, 1, false>($args),
            (false, 2, 4) => panel::<4, 2, false>($args),
            (false, _, 4) => panel::<4, 3, false>($args),
            (true, 1, 2) => panel::<2, 1, true>($args),
            (true, 2, 2) => panel::<2, 2, true>($args),
            (true, _, 2) => panel::<2, 3, true>($args),
            (false, 1, 2) => panel::<2, 1, false>($args),
            (false, 2, 2) => panel::<2, 2, false>($args),
            (false, _, 2) => panel::<2, 3, false>($args),
            (true, 1, _) => panel::<1, 1, true>($args),
            (true, 2, _) => panel::<1, 2, true>($args),
            (true, _, _) => panel::<1, 3, true>($args),
            (false, 1, _) => panel::<1, 1, false>($args),
            (false, 2, _) => panel::<1, 2, false>($args),
            (false, _, _) => panel::<1, 3, false>($args),
        }
    };
}

/// The panel shapes for 16 vector registers: packed rows in blocks of 8 x 1 or 4 x 2
/// (dividing the packing's 16), gathered rows in blocks of 6 x 1 or 6 x 2: at most 12
/// accumulators, the vectors of B and a broadcast (4 rows of three would take all sixteen,
/// and the compiler then keeps an accumulator on the stack). Twelve accumulators hide the
/// multiply-add's latency that eight only just cover.
macro_rules! panels_for_16_registers {
    ($packed:ident, $vectors:ident, $rows:ident, $args:ident) => {
        match ($packed, $vectors, $rows) {
            (true, 1, 8 | 16) => panel::<8, 1, true>($args),
            (false, 1, 6 | 8) => panel::<6, 1, false>($args),
            (true, 1, 4) => panel::<4, 1, true>($args),
            (false, 1, 4) => panel::<4, 1, false>($args),
            (true, _, 4 | 8 | 16) => panel::<4, 2, true>($args),
            (false, _, 6 | 8) => panel::<6, 2, false>($args),
            (false, _, 4) => panel::<4, 2, false>($args),
            (true, 1, 2) => panel::<2, 1, true>($args),
            (true, _, 2) => panel::<2, 2, true>($args),
            (false, 1, 2) => panel::<2, 1, false>($args),
            (false, _, 2) => panel::<2, 2, false>($args),
            (true, 1, _) => panel::<1, 1, true>($args),
            (true, _, _) => panel::<1, 2, true>($args),
            (false, 1, _) => panel::<1, 1, false>($args),
            (false, _, _) => panel::<1, 2, false>($args),
        }
    };
}

/// The kernel of one instruction set and float type: `$ops` is its module of
/// [`crate::vectors`], `$feature` its target features, `$panels` its choice of panel shapes, of
/// at most `$vectors` vectors per row and blocks of `$gathered` gathered rows.
macro_rules! vector_kernel {
    ($name:ident, $t:ty, $ops:ident, $feature:literal, $panels:ident, $vectors:literal,
     $gathered:literal) => {
        /// The vector kernel over all of C.
        ///
        /// # Safety
        /// The CPU must have the module's target features, and the operands must pass
        /// [`implicit_gemm`]'s checks.
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $feature)]
        unsafe fn $name(
            ops: &Operands<'_, $t>,
            b_offset: usize,
            n: usize,
            c: &mut [$t],
            ldc: usize,
            accumulate: bool,
        ) {
            use crate::vectors::$ops as v;
            // Blocks of 8 or 16 rows divide the usual channel counts evenly; fewer rows
            // than that take the smallest block that holds them (one input channel: one
            // row). Gathered rows need a pointer each, so their blocks stop at `$gathered`
            // rows (8, or 6 with 16 registers) to stay in registers.
            let packed = matches!(ops.lhs, Lhs::Packed(_));
            let rows = if packed {
                ops.m.next_power_of_two().min(16)
            } else if ops.m >= $gathered {
                $gathered
            } else {
                ops.m.next_power_of_two()
            };
            let pass = rows_per_pass(ops, rows, std::mem::size_of::<$t>());
            let k = ops.b_rows.len();
            let mut first = 0;
            while first < ops.m {
                let end = (first + pass).min(ops.m);
                // The rows left after the last whole block take the smallest block that
                // holds them, instead of a whole block of repeated rows (98 rows in blocks
                // of 8 would compute 104).
                let whole = first + (end - first) / rows * rows;
                let tail = end - whole;
                let mut j = 0;
                while j < n {
                    // Up to `$vectors` vectors per row of a block: a narrow output (a 14-pixel
                    // image row) takes one. Gathered rows take at most two: the compiler loads
                    // a block's eight broadcasts ahead of their multiply-adds, and with three
                    // vectors' accumulators that needs more than 32 registers, and the loop
                    // spills and shuffles accumulators every step.
                    let widest = if packed { $vectors } else { $vectors.min(2) };
                    let vectors = (n - j).div_ceil(v::LANES).min(widest);
                    let width = (vectors * v::LANES).min(n - j);
                    let block_steps =
                        steps_per_block(vectors * v::LANES * std::mem::size_of::<$t>());
                    let mut p0 = 0;
                    loop {
                        let p1 = (p0 + block_steps).min(k);
                        for (block, range) in
                            [(rows, (first, whole)), (tail.next_power_of_two(), (whole, end))]
                        {
                            if range.0 < range.1 {
                                let args = Panel {
                                    ops,
                                    rows: range,
                                    steps: (p0, p1),
                                    b0: b_offset + j,
                                    c: &mut *c,
                                    j0: j,
                                    width,
                                    ldc,
                                    accumulate: accumulate || p0 > 0,
                                };
                                // SAFETY: forwarded; each panel stays within columns j..j + width
                                // and rows range.0..range.1 of C.
                                unsafe { dispatch(packed, vectors, block, args) };
                            }
                        }
                        p0 = p1;
                        if p0 >= k {
                            break;
                        }
                    }
                    j += width;
                }
                first = end;
            }

            /// The panel for `rows`-row blocks of `vectors` vectors.
            #[target_feature(enable = $feature)]
            unsafe fn dispatch(packed: bool, vectors: usize, rows: usize, args: Panel<'_, '_, $t>) {
                // SAFETY: every arm forwards the caller's guarantees.
                unsafe { $panels!(packed, vectors, rows, args) }
            }

            /// Columns `j0..j0 + width` of rows `first..end` of C (whose B columns start
            /// at `b0`), `R` rows at a time, summed over the steps `p0..p1`.
            #[target_feature(enable = $feature)]
            unsafe fn panel<const R: usize, const V: usize, const PACKED: bool>(
                Panel {
                    ops,
                    rows: (first, end),
                    steps: (p0, p1),
                    b0,
                    c,
                    j0,
                    width,
                    ldc,
                    accumulate,
                }: Panel<'_, '_, $t>,
            ) {
                use crate::vectors::$ops as v;
                let last = v::tail_mask(width - (V - 1) * v::LANES);
                let full = width == V * v::LANES;
                let (b, cp) = (ops.b.as_ptr(), c.as_mut_ptr());
                let mut i0 = first;
                while i0 < end {
                    let rows = (end - i0).min(R);
                    let mut acc = [[v::zero(); V]; R];
                    match &ops.lhs {
                        Lhs::Packed(packed) => {
                            // This block's elements for step p: R consecutive values.
                            let start =
                                ((i0 / PACK_ROWS) * packed.k + p0) * PACK_ROWS + i0 % PACK_ROWS;
                            // Wrapping: with k = 0 the packing is empty and nothing is read.
                            // Otherwise `start` is an element of row block i0 / 16 (p0 < k),
                            // which the packing made k * PACK_ROWS long, and R divides 16.
                            let mut ap = packed.data.as_ptr().wrapping_add(start);
                            for &b_row in &ops.b_rows[p0..p1] {
                                // SAFETY: B reads end below b_offset + max(b_rows) + n
                                // + B_SLACK <= b.len(), as implicit_gemm checked.
                                let bp = unsafe { b.add(b0 + b_row) };
                                let mut bv = [v::zero(); V];
                                for (k, value) in bv.iter_mut().enumerate() {
                                    // SAFETY: within the B row above (V vectors <= n +
                                    // B_SLACK).
                                    *value = unsafe { v::load(bp.add(k * v::LANES)) };
                                }
                                for r in 0..R {
                                    // SAFETY: ap walks one packed block of PACK_ROWS rows,
                                    // whose rows past m are zero padding.
                                    let av = v::splat(unsafe { *ap.add(r) });
                                    for k in 0..V {
                                        acc[r][k] = v::fmadd(av, bv[k], acc[r][k]);
                                    }
                                }
                                // SAFETY: the next step p of the same packed block.
                                ap = unsafe { ap.add(PACK_ROWS) };
                            }
                        }
                        Lhs::Gathered { a, rows: a_rows, cols } => {
                            // Rows past the end repeat the last one: computed, never stored.
                            let a = a.as_ptr();
                            let mut row_ptr = [a; R];
                            for (r, ptr) in row_ptr.iter_mut().enumerate() {
                                // SAFETY: row offsets of A were checked against its length
                                // by Operands::new.
                                *ptr = unsafe { a.add(a_rows[i0 + r.min(rows - 1)]) };
                            }
                            for (&a_col, &b_row) in cols[p0..p1].iter().zip(&ops.b_rows[p0..p1]) {
                                // SAFETY: as above for B; row + column offsets of A were
                                // checked by Operands::new.
                                let bp = unsafe { b.add(b0 + b_row) };
                                let mut bv = [v::zero(); V];
                                for (k, value) in bv.iter_mut().enumerate() {
                                    // SAFETY: within the B row above (V vectors <= n +
                                    // B_SLACK).
                                    *value = unsafe { v::load(bp.add(k * v::LANES)) };
                                }
                                for r in 0..R {
                                    // SAFETY: row + column offsets of A were checked by
                                    // Operands::new.
                                    let av = v::splat(unsafe { *row_ptr[r].add(a_col) });
                                    for k in 0..V {
                                        acc[r][k] = v::fmadd(av, bv[k], acc[r][k]);
                                    }
                                }
                            }
                        }
                    }
                    for (r, acc) in acc.iter().enumerate().take(rows) {
                        for (k, &sum) in acc.iter().enumerate() {
                            // SAFETY: row i0 + r < m and columns below j0 + width <= n
                            // lie inside C, as implicit_gemm checked.
                            unsafe {
                                let p = cp.add((i0 + r) * ldc + j0 + k * v::LANES);
                                let mut value = sum;
                                // AVX2's masked loads and stores are many times slower
                                // than plain ones on AMD cores: only a partial vector
                                // takes them.
                                if k + 1 < V || full {
                                    if accumulate {
                                        value = v::add(value, v::load(p));
                                    }
                                    v::store(p, value);
                                } else {
                                    if accumulate {
                                        value = v::add(value, v::load_masked(p, last));
                                    }
                                    v::store_masked(p, last, value);
                                }
                            }
                        }
                    }
                    i0 += rows;
                }
            }
        }
    };
}

vector_kernel!(avx512_f32, f32, avx512_f32, "avx512f", panels_for_32_registers, 3, 8);
vector_kernel!(avx512_f64, f64, avx512_f64, "avx512f", panels_for_32_registers, 3, 8);
vector_kernel!(avx2_f32, f32, avx2_f32, "avx2,fma", panels_for_16_registers, 2, 6);
vector_kernel!(avx2_f64, f64, avx2_f64, "avx2,fma", panels_for_16_registers, 2, 6);

macro_rules! implicit_gemm_for {
    ($t:ty, $lanes:literal, $avx512:ident, $avx2:ident) => {
        impl ImplicitGemm for $t {
            const LANES: usize = $lanes;

            unsafe fn vector_kernel(
                isa: Isa,
                ops: &Operands<'_, $t>,
                b_offset: usize,
                n: usize,
                c: &mut [$t],
                ldc: usize,
                accumulate: bool,
            ) {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: forwarded from the caller, who checked the CPU has `isa`.
                unsafe {
                    match isa {
                        Isa::Avx512 => $avx512(ops, b_offset, n, c, ldc, accumulate),
                        Isa::Avx2 => $avx2(ops, b_offset, n, c, ldc, accumulate),
                    }
                }
                #[cfg(not(target_arch = "x86_64"))]
                {
                    let _ = (isa, ops, b_offset, n, c, ldc, accumulate);
                    unreachable!("no vector kernel off x86_64")
                }
            }
        }
    };
}

implicit_gemm_for!(f32, 16, avx512_f32, avx2_f32);
implicit_gemm_for!(f64, 8, avx512_f64, avx2_f64);

#[cfg(test)]
mod tests {
    use super::*;

    /// Every kernel this CPU can run (whatever the switches say), and the plain loop.
    fn kernels() -> Vec<Option<Isa>> {
        let mut isas = vec![None];
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                isas.push(Some(Isa::Avx2));
            }
            if is_x86_feature_detected!("avx512f") {
                isas.push(Some(Isa::Avx512));
            }
        }
        isas
    }

    /// Each kernel against a plain triple loop, over shapes that hit every panel width and
    /// partial row block, in both float types.
    fn check<T: ImplicitGemm + crate::testing::Convert>(tolerance: f64) {
        for isa in kernels() {
            check_kernel::<T>(isa, tolerance);
        }
    }

    fn check_kernel<T: ImplicitGemm + crate::testing::Convert>(isa: Option<Isa>, tolerance: f64) {
        let mut next = crate::testing::uniform(7);
        for &(m, n, k) in &[
            (1, 1, 1),
            (3, 5, 2),
            (13, 17, 9),
            (12, 48, 30),
            (25, 33, 7),
            (8, 100, 41),
            (40, 20, 5),
            (30, 49, 0),
            (20, 16, 9),
            // Several blocks of steps (the last one short) for every panel width.
            (34, 40, 700),
            (9, 50, 1000),
        ] {
            let a: Vec<T> = (0..m * k + 5).map(|_| T::from_f64(next())).collect();
            let b_offset = 2;
            let b: Vec<T> = (0..b_offset + k * n + B_SLACK).map(|_| T::from_f64(next())).collect();
            // A stored column-major, so rows and columns both go through the tables.
            let a_rows: Vec<usize> = (0..m).collect();
            let a_cols: Vec<usize> = (0..k).map(|p| p * m).collect();
            let b_rows: Vec<usize> = (0..k).rev().map(|p| p * n).collect();
            let packed = PackedLhs::new(m, k, |i, p| a[a_rows[i] + a_cols[p]]);
            let gathered = Lhs::Gathered { a: &a, rows: &a_rows, cols: &a_cols };
            for lhs in [gathered, Lhs::Packed(&packed)] {
                let ops = Operands::new(lhs, &b, &b_rows);
                for accumulate in [false, true] {
                    let ldc = n + 3;
                    let mut c: Vec<T> = (0..m * ldc).map(|_| T::from_f64(next())).collect();
                    let before = c.clone();
                    implicit_gemm_in(isa, &ops, b_offset, n, &mut c, ldc, accumulate);
                    for i in 0..m {
                        for j in 0..ldc {
                            let got = c[i * ldc + j].to_f64();
                            if j >= n {
                                assert_eq!(
                                    got,
                                    before[i * ldc + j].to_f64(),
                                    "{isa:?}: column {j} outside C was written"
                                );
                                continue;
                            }
                            let mut want =
                                if accumulate { before[i * ldc + j].to_f64() } else { 0.0 };
                            for p in 0..k {
                                want += a[a_rows[i] + a_cols[p]].to_f64()
                                    * b[b_offset + b_rows[p] + j].to_f64();
                            }
                            // Rounding grows with the number of terms summed.
                            let allowed = tolerance * (k as f64 / 32.0).max(1.0);
                            assert!(
                                (got - want).abs() <= allowed,
                                "{isa:?} ({m}x{n}x{k}) C[{i}][{j}] = {got}, want {want}"
                            );
                        }
                    }
                }
            }
        }
    }

    /// Moving a gathered A checks the new slice against the tables' reach.
    #[test]
    #[should_panic(expected = "reach past its 5 elements")]
    fn with_a_checks_the_new_slice() {
        let a = vec![0.0f32; 10];
        let (rows, cols, b_rows) = ([0, 4], [0, 1, 2], [0, 1, 2]);
        let b = vec![0.0f32; 3 + B_SLACK];
        let ops = Operands::new(Lhs::Gathered { a: &a, rows: &rows, cols: &cols }, &b, &b_rows);
        let _fits = ops.with_a(&a[3..]);
        let _ = ops.with_a(&a[5..]);
    }

    #[test]
    fn matches_a_triple_loop_f32() {
        check::<f32>(1e-5);
    }

    #[test]
    fn matches_a_triple_loop_f64() {
        check::<f64>(1e-13);
    }
}
