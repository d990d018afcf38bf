//! docs/API.md, PyTorch to tapegrad, is generated here: every row's tapegrad column is an
//! expression this test compiles and runs, so the table cannot name what does not exist.
//! `UPDATE_API_MD=1 cargo test --test api_table` rewrites the file; otherwise the test fails
//! when the file differs from the rows.

#![allow(unused_variables, dead_code, clippy::redundant_clone, clippy::cloned_ref_to_slice_refs)]

use std::time::Duration;
use tapegrad::ops::Reduction;
use tapegrad::prelude::*;

use tapegrad::data::DistributedSampler;
use tapegrad::tape::tape_stats;
use tapegrad_distributed::{
    DdpOptions, DistributedDataParallel, GroupOptions, Payload, ProcessGroup, ReduceOp,
    SyncBatchNorm,
};

/// The values every row may use, named as in the PyTorch column.
struct Vars {
    x: Tensor,
    a: Tensor,
    b: Tensor,
    p: Tensor,
    img: Tensor,
    weight: Tensor,
    bias: Tensor,
    seq: Tensor,
    logits: Tensor,
    labels: Tensor,
    probs: Tensor,
    idx: Tensor,
    mask: Tensor,
    model: Sequential,
    params: Vec<Tensor>,
    path: std::path::PathBuf,
}

fn vars() -> Vars {
    manual_seed(0);
    let model = Sequential::new().add(Linear::new(3, 4)).add(ReLU).add(Linear::new(4, 2));
    let path = std::env::temp_dir().join(format!(
        "tapegrad-api-{}-{:?}.safetensors",
        std::process::id(),
        std::thread::current().id()
    ));
    Vars {
        x: Tensor::randn(&[2, 3]),
        a: Tensor::randn(&[2, 3]),
        b: Tensor::randn(&[2, 3]),
        p: Tensor::randn(&[3]).requires_grad(),
        img: Tensor::randn(&[2, 3, 8, 8]),
        weight: Tensor::randn(&[4, 3, 3, 3]),
        bias: Tensor::randn(&[4]),
        seq: Tensor::randn(&[5, 2, 3]),
        logits: Tensor::randn(&[4, 5]),
        labels: Tensor::from_vec(vec![0i64, 4, 2, 1], &[4]),
        probs: Tensor::randn(&[4, 5]).softmax(1),
        idx: Tensor::from_vec(vec![0i64, 2], &[2]),
        mask: Tensor::randn(&[2, 3]).gt(&Tensor::zeros(&[2, 3])),
        params: model.parameters(),
        model,
        path,
    }
}

struct Row {
    section: &'static str,
    torch: &'static str,
    ours: String,
    note: &'static str,
    run: fn(),
}

/// The rows from `(section, PyTorch's spelling, our expression[, the difference and why])`:
/// each expression is shown as written and run with the names of [`Vars`] bound (given to
/// the macro in the same call as the rows, so that the expressions can see them).
macro_rules! table {
    (vars $vars:tt; $(($section:literal, $torch:literal, $ours:expr $(, $note:literal)?)),* $(,)?) => {
        vec![$(
            Row {
                section: $section,
                torch: $torch,
                ours: stringify!($ours).to_string(),
                note: concat!("" $(, $note)?),
                run: || {
                    let Vars $vars = vars();
                    let _ = $ours;
                },
            }
        ),*]
    };
}

fn rows() -> Vec<Row> {
    table! {
        vars { x, a, b, p, img, weight, bias, seq, logits, labels, probs, idx, mask, model, params, path };
        // Tensors.
        (
            "Tensors",
            "torch.tensor([[1., 2.]])",
            Tensor::from_vec(vec![1.0f32, 2.0], &[1, 2]),
            "data and shape given apart; the element type picks the dtype"
        ),
        (
            "Tensors",
            "torch.zeros(2, 3) / ones / full",
            Tensor::full(&[2, 3], 7.0),
            "`zeros`, `ones` likewise; f32 like PyTorch's default dtype"
        ),
        (
            "Tensors",
            "torch.zeros(2, 3, dtype=torch.float64)",
            Tensor::zeros_dtype(&[2, 3], DType::F64),
            "`_dtype` forms take the dtype"
        ),
        ("Tensors", "torch.randn(2, 3) / rand", Tensor::randn(&[2, 3])),
        (
            "Tensors",
            "torch.randint(0, 10, (64,))",
            Tensor::randint(0, 10, &[64]),
            "int64, like PyTorch's"
        ),
        (
            "Tensors",
            "torch.randperm(10)",
            Tensor::randperm(10),
            "int64; shuffle rows with `x.index_select(0, &perm)`"
        ),
        ("Tensors", "torch.rand_like(x) / torch.randn_like(x)", (x.rand_like(), x.randn_like())),
        (
            "Tensors",
            "torch.bernoulli(probs) / torch.multinomial(probs, 2, replacement=True)",
            (probs.bernoulli(), probs.multinomial(2, true)),
            "samples are not recorded (no gradient), as in PyTorch; weights need not sum to one"
        ),
        ("Tensors", "torch.arange(0, 5, 1)", Tensor::arange(0.0, 5.0, 1.0)),
        ("Tensors", "torch.eye(3)", Tensor::eye(3), "`eye_dtype(3, DType::F64)` for another dtype"),
        ("Tensors", "torch.zeros_like(x) / ones_like / full_like", x.full_like(2.0)),
        ("Tensors", "x.shape / x.dim() / x.numel()", (x.shape(), x.dim(), x.numel())),
        ("Tensors", "x.dtype / x.to(torch.float64)", x.to_dtype(DType::F64)),
        ("Tensors", "x.item()", x.sum().item(), "always an f64"),
        (
            "Tensors",
            "x.tolist()",
            x.to_vec::<f32>(),
            "flat, row-major; the element type is named"
        ),
        ("Tensors", "x.contiguous()", x.t().contiguous()),
        (
            "Tensors",
            "x.clone()",
            x.clone(),
            "a second handle to the same tensor (PyTorch's `y = x`); values are copy-on-write, so `x.detach()` plus an op gives a copy"
        ),
        ("Tensors", "torch.manual_seed(0)", manual_seed(0)),
        // Arithmetic and elementwise functions.
        (
            "Math",
            "a + b, a - b, a * b, a / b, -a",
            &(&a + &b) * &(-&a),
            "operators take references (`&a + &b`); broadcasting as in PyTorch"
        ),
        ("Math", "a * 2.0", &a * 2.0),
        (
            "Math",
            "torch.exp / log / log1p / sqrt / rsqrt / abs / sin / cos / tanh / sigmoid / erf",
            x.exp().abs().tanh()
        ),
        (
            "Math",
            "torch.tan / asin / acos / atan / sinh / cosh / asinh / acosh / atanh / expm1 / exp2 / log2 / log10",
            x.tan().atan().sinh().asinh().expm1().exp2().log2()
        ),
        ("Math", "torch.atan2(y, x) / torch.logaddexp(a, b)", (a.atan2(&b), a.logaddexp(&b)), "`y.atan2(&x)`: the receiver is the y coordinate, as in PyTorch"),
        (
            "Math",
            "torch.lgamma / torch.digamma / torch.polygamma(n, x)",
            (x.lgamma(), x.digamma(), x.polygamma(2)),
            "trigamma (`polygamma(1)`) exact to rounding and `+inf` at every pole; `polygamma(n, inf)` is 0, not NaN"
        ),
        (
            "Math",
            "torch.sign / floor / ceil / round / trunc / frac",
            x.sign().floor().ceil().round().trunc().frac(),
            "gradient 0 (frac: 1); `round` takes halves to even, as PyTorch"
        ),
        (
            "Math",
            "torch.mm / torch.bmm / torch.mv / torch.dot / torch.outer",
            (a.mm(&b.transpose(0, 1)), a.flatten(0, -1).outer(&b.flatten(0, -1))),
            "PyTorch's ranks checked (`bmm` does not broadcast); `matmul` does all of them"
        ),
        (
            "Math",
            "torch.diagonal(x, offset, dim1, dim2) / torch.trace / torch.diff(x, n, dim)",
            (a.diagonal(1, 0, 1), a.mm(&b.transpose(0, 1)).trace(), a.diff(1, -1)),
            "`diff` without `prepend`/`append` (concatenate first)"
        ),
        (
            "Math",
            "torch.cdist(x1, x2, p=2)",
            cdist(&a, &b, 2.0),
            "matrix products for Euclidean distances over more than 25 rows, as PyTorch"
        ),
        (
            "Math",
            "torch.linalg.cholesky(a @ a.T + torch.eye(2)) / torch.linalg.solve_triangular(L, b, upper=False)",
            {
                let spd = &a.matmul(&a.t()) + &Tensor::eye(2);
                let l = linalg::cholesky(&spd);
                (l.clone(), linalg::solve_triangular(&l, &b, false))
            },
            "the module `linalg`; `solve_triangular_with` takes `SolveTriangularOptions::default().left(false).unitriangular(true)`"
        ),
        (
            "Math",
            "torch.linalg.solve(A, b) / torch.linalg.inv(A) / torch.linalg.det(A) / torch.linalg.slogdet(A)",
            {
                let m = &a.matmul(&a.t()) + &Tensor::eye(2);
                (linalg::solve(&m, &b), linalg::inv(&m), linalg::det(&m), linalg::slogdet(&m))
            },
            "LU with partial pivoting; a singular matrix is an error for `solve` and `inv`; `slogdet` returns the pair `(sign, logabsdet)`"
        ),
        (
            "Math",
            "torch.linalg.qr(A) / torch.linalg.qr(A, mode='complete')",
            {
                let (q, r) = linalg::qr(&a);
                (q, r, linalg::qr_with(&a, linalg::QrMode::Complete))
            },
            "Householder reflections with LAPACK's signs; `QrMode::R` is differentiable too"
        ),
        (
            "Math",
            "torch.linalg.lstsq(A, B).solution / torch.linalg.cross(a, b) / torch.linalg.matrix_power(A, -2)",
            {
                let m = &a.matmul(&a.t()) + &Tensor::eye(2);
                let v3 = Tensor::randn(&[4, 3]);
                (linalg::lstsq(&a, &b), linalg::cross(&v3, &v3.flip(&[1]), -1), linalg::matrix_power(&m, -2))
            },
            "`lstsq` returns the solution (by QR; a rank-deficient matrix is an error); `cross` takes `dim` (PyTorch's default -1)"
        ),
        (
            "Math",
            "torch.linalg.eigh(A) / torch.linalg.eigvalsh(A) / torch.linalg.svd(A, full_matrices=False) / torch.linalg.svdvals(A)",
            {
                let sym = &a.matmul(&a.t()) + &Tensor::eye(2);
                let reduced = linalg::SvdOptions::default().full_matrices(false);
                (linalg::eigh(&sym), linalg::eigvalsh(&sym), linalg::svd_with(&a, reduced), linalg::svdvals(&a))
            },
            "tridiagonal QL (`eigh`) and one-sided Jacobi (`svd`), in f64; `eigh` reads the lower triangle (PyTorch's `UPLO='L'`); `svd(&a)` is `full_matrices=True`; vectors' signs may differ from PyTorch's"
        ),
        (
            "Math",
            "torch.linalg.pinv(A) / torch.linalg.matrix_rank(A) / torch.linalg.matrix_norm(A, ord='nuc') / torch.linalg.cond(A)",
            {
                let nuclear = linalg::MatrixNormOptions::default().ord(linalg::MatrixOrd::Nuc);
                (linalg::pinv(&a), linalg::matrix_rank(&a), linalg::matrix_norm_with(&a, nuclear), linalg::cond(&a.matmul(&a.t())))
            },
            "`pinv_with` / `matrix_rank_with` take `RankTolerance::default().atol(..).rtol(..)`; `MatrixOrd` is `ord` ('fro', 'nuc', ±1, ±2, ±inf); `cond` is the 2-norm's"
        ),
        ("Math", "x ** 2 / torch.pow(x, y)", x.pow(2.0)),
        (
            "Math",
            "torch.clamp(x, min=0, max=1)",
            x.clamp(Some(0.0), Some(1.0)),
            "either bound may be `None`"
        ),
        ("Math", "torch.maximum(a, b) / minimum", a.maximum(&b)),
        (
            "Math",
            "a == b, a > b, ... (torch.eq, gt, ...)",
            a.gt(&b),
            "a bool tensor, as in PyTorch"
        ),
        ("Math", "torch.isnan(x) / isinf / isfinite", x.isfinite(), "bool tensors; integer tensors are finite"),
        ("Math", "mask1 & mask2 / mask1 | mask2 / ~mask", mask.logical_and(&mask.logical_not()).logical_or(&mask), "`&`, `|` and `~` are methods: the operators stay arithmetic"),
        ("Math", "mask.float() / x.bool()", (mask.to_dtype(DType::F32), x.to_dtype(DType::Bool))),
        ("Math", "mask.sum() (a count)", mask.to_dtype(DType::F32).sum(), "convert first: reductions take float tensors"),
        (
            "Math",
            "torch.where(cond, a, b)",
            where_(&mask, &a, &b),
            "`where_`: `where` is a Rust keyword; the condition is a bool mask (a numeric one counts non-zero as true)"
        ),
        ("Math", "a @ b / torch.matmul(a, b)", a.matmul(&b.t())),
        ("Math", "torch.tril(x, diagonal=0) / torch.triu(x, diagonal=1)", x.tril(0).add(&x.triu(1)), "over the last two dimensions"),
        (
            "Math",
            "torch.einsum('bij,bjk->bik', a, b) / torch.einsum('ii', m)",
            einsum("...ij,...kj->...ik", &[&img, &img]).add(&einsum("...ii->...", &[&img]).sum()),
            "`einsum(equation, &[&a, &b])`: letters, `...`, implicit outputs, diagonals and size-1 broadcasting as in PyTorch; contracted left to right"
        ),
        ("Math", "torch.roll(x, shifts=1, dims=1) / torch.roll(x, 2)", x.roll(&[1], &[1]).add(&x.roll(&[2], &[])), "shifts and dims as slices; no dims rolls the flattened tensor"),
        ("Math", "torch.bmm(a, b) / batched @", img.matmul(&img.transpose(-1, -2)), "`matmul` broadcasts batch dimensions"),
        ("Math", "F.relu / F.silu / F.gelu", x.relu().silu().gelu()),
        ("Math", "F.gelu(x, approximate='tanh')", x.gelu_with(GeluApproximate::Tanh)),
        (
            "Math",
            "F.leaky_relu(x, negative_slope=0.2)",
            x.leaky_relu_with(0.2),
            "`x.leaky_relu()` is the default slope 0.01"
        ),
        ("Math", "F.elu(x, alpha=1.0)", x.elu_with(1.0)),
        (
            "Math",
            "F.softplus(x, beta=2, threshold=20)",
            x.softplus_with(SoftplusOptions::default().beta(2.0))
        ),
        ("Math", "F.softmax(x, dim=-1) / F.log_softmax", x.softmax(-1).log_softmax(-1)),
        (
            "Math",
            "F.hardswish / F.hardsigmoid / F.relu6 / F.mish / F.selu",
            x.hardswish().hardsigmoid().relu6().mish().selu()
        ),
        (
            "Math",
            "F.logsigmoid / F.softsign / F.tanhshrink / F.celu(x, alpha=0.5)",
            x.logsigmoid().softsign().tanhshrink().celu_with(0.5)
        ),
        ("Math", "F.hardtanh(x, min_val=-2, max_val=2)", x.hardtanh_with(-2.0, 2.0), "`x.hardtanh()` is [-1, 1]"),
        ("Math", "F.glu(x, dim=-1)", img.glu(-1), "the dimension is always given"),
        ("Math", "F.prelu(x, weight)", img.prelu(&Tensor::full(&[3], 0.25)), "one slope, or one per channel (dimension 1)"),
        // Reductions.
        ("Reductions", "x.sum() / x.mean()", x.sum().add(&x.mean())),
        (
            "Reductions",
            "x.sum(dim=1, keepdim=True)",
            x.sum_dim(1, true),
            "`sum_dim` and `mean_dim`: Rust has no overloading; `keepdim` is always spelled out"
        ),
        ("Reductions", "x.mean(dim=-1)", x.mean_dim(-1, false)),
        ("Reductions", "x.var(dim=1, correction=1)", x.var_dim(1, 1.0, false)),
        (
            "Reductions",
            "img.mean(dim=(2, 3)) / img.sum(dim=(0, 2)) / img.var(dim=(0, 2, 3))",
            img.mean_dims(&[2, 3], false)
                .add(&img.sum_dims(&[0, 2], false).sum())
                .add(&img.var_dims(&[0, 2, 3], 1.0, false).sum()),
            "`sum_dims`, `mean_dims` and `var_dims` take several dimensions at once"
        ),
        ("Reductions", "x.max() / x.min()", x.max()),
        (
            "Reductions",
            "x.std() / x.std(dim=1, correction=0, keepdim=True)",
            x.std(1.0).add(&x.std_dim(1, 0.0, true).sum()),
            "`std_dim`, `std_dims` as for var; the gradient is 0 where the deviation is 0"
        ),
        (
            "Reductions",
            "torch.sort(x, dim=1, descending=True) / torch.argsort(x, dim=1)",
            (x.sort(1, true), x.argsort(1, false)),
            "stable: equal elements keep their order; NaN sorts above every number"
        ),
        ("Reductions", "torch.amax(x, dim=(0, 1), keepdim=True) / torch.amin(x, 1)", (x.amax(&[0, 1], true), x.amin(&[1], false)), "the gradient split evenly among ties (`max_dim` gives it to the chosen index)"),
        ("Reductions", "torch.topk(x, 2, dim=1) / torch.topk(x, 2, largest=False)", (x.topk(2, 1), x.topk_with(2, -1, false)), "always sorted"),
        ("Reductions", "x.max(dim=1) (values, indices)", x.max_dim(1, false)),
        ("Reductions", "x.argmax(dim=1)", x.argmax(Some(1), false)),
        ("Reductions", "x.prod() / x.prod(dim=1)", x.prod_dim(1, false)),
        ("Reductions", "x.cumsum(dim=1)", x.cumsum(1)),
        ("Reductions", "x.cumprod(dim=1)", x.cumprod(1)),
        ("Reductions", "torch.logsumexp(x, dim=1)", x.logsumexp(1, false)),
        ("Reductions", "x.norm(p=2) / torch.norm(x, dim=1)", x.norm_dim(2.0, 1, false)),
        // Shapes and indexing.
        (
            "Shapes and indexing",
            "x.reshape(3, -1) / x.view(3, -1)",
            x.reshape(&[3, -1]),
            "one method for both: views are made when the layout allows"
        ),
        (
            "Shapes and indexing",
            "x.T / x.transpose(0, 1) / x.permute(1, 0)",
            x.transpose(0, 1).permute(&[1, 0])
        ),
        (
            "Shapes and indexing",
            "x.unsqueeze(0) / x.squeeze(0) / x.squeeze()",
            x.unsqueeze(0).squeeze_dim(0).squeeze()
        ),
        ("Shapes and indexing", "x.flatten(1)", img.flatten(1, -1), "start and end both given"),
        (
            "Shapes and indexing",
            "x.expand(4, 2, 3) / x.repeat(2, 1)",
            x.expand(&[4, 2, 3]).repeat(&[1, 2, 1])
        ),
        (
            "Shapes and indexing",
            "x.repeat_interleave(2, dim=1) / torch.movedim(x, -1, 0)",
            (x.repeat_interleave(2, 1), x.movedim(-1, 0)),
            "one repeat count for every element (no tensor of counts); dim given (flatten first for none)"
        ),
        (
            "Shapes and indexing",
            "b[:1].expand_as(x) / x.reshape_as(x.t())",
            (b.narrow(0, 0, 1).expand_as(&x), x.reshape_as(&x.t()))
        ),
        ("Shapes and indexing", "x[:, -1]", x.i((.., -1))),
        ("Shapes and indexing", "x[1, 1:]", x.i((1, 1..))),
        ("Shapes and indexing", "x[:, ::2]", x.i((.., step_by(.., 2)))),
        ("Shapes and indexing", "x.select(1, -1)", x.select(1, -1)),
        ("Shapes and indexing", "x.narrow(1, 0, 2)", x.narrow(1, 0, 2)),
        ("Shapes and indexing", "x.unfold(1, 2, 1)", x.unfold(1, 2, 1)),
        ("Shapes and indexing", "x.split(2, dim=1) / x.chunk(2, dim=1)", x.split(2, 1)),
        ("Shapes and indexing", "x.unbind(1)", x.unbind(1)),
        ("Shapes and indexing", "torch.cat([a, b], dim=0) / torch.stack", cat(&[&a, &b], 0)),
        ("Shapes and indexing", "torch.flip(x, dims=[1])", x.flip(&[1])),
        (
            "Shapes and indexing",
            "x.index_select(1, idx)",
            x.index_select(1, &idx),
            "indices are int64 tensors"
        ),
        (
            "Shapes and indexing",
            "x.gather(1, index) / scatter_add / index_add",
            x.gather(1, &idx.reshape(&[1, 2]).expand(&[2, 2]))
        ),
        (
            "Shapes and indexing",
            "x[mask] = 0 (setitem)",
            x.masked_fill(&mask, 0.0),
            "no item assignment: views are values here (writing a view does not reach its source); `masked_fill` and `where_` return the result"
        ),
        ("Shapes and indexing", "x.masked_fill(mask, value)", x.masked_fill(&mask, f64::NEG_INFINITY), "float tensors (int64 ones: convert, fill, convert back)"),
        ("Shapes and indexing", "x[mask] / x.masked_select(mask)", x.masked_select(&mask), "one-dimensional, as in PyTorch"),
        // In-place updates.
        (
            "In-place",
            "x.add_(y) / sub_ / mul_ / div_",
            x.add_(&a).mul_(0.5),
            "values change for every handle of the tensor"
        ),
        ("In-place", "x += y", {
            let mut y = x.clone();
            y += &a;
        }),
        ("In-place", "x.zero_() / x.fill_(v) / x.copy_(src)", x.copy_(&a).fill_(1.0).zero_()),
        (
            "In-place",
            "with torch.no_grad(): p -= lr * p.grad",
            {
                p.sum().backward();
                let _g = no_grad();
                p.sub_(&(&p.grad().unwrap() * 0.1));
            },
            "saved values are copy-on-write snapshots: an in-place change never corrupts backward, so PyTorch's \"modified by an inplace operation\" error has no counterpart"
        ),
        // Autograd.
        (
            "Autograd",
            "torch.tensor(..., requires_grad=True) / x.requires_grad_()",
            Tensor::randn(&[3]).requires_grad(),
            "a builder that returns the leaf"
        ),
        (
            "Autograd",
            "x.requires_grad (the flag)",
            p.tracks_grad(),
            "`requires_grad()` is the builder, so the getter is `tracks_grad()`"
        ),
        ("Autograd", "loss.backward()", p.square().sum().backward()),
        (
            "Autograd",
            "loss.backward(retain_graph=True)",
            p.square().sum().backward_with(None, BackwardOptions::new().retain_graph(true))
        ),
        ("Autograd", "x.grad / x.grad = None", {
            p.sum().backward();
            let g = p.grad();
            p.zero_grad();
        }),
        (
            "Autograd",
            "torch.autograd.grad(y, x, create_graph=True)",
            grad(&[&p.square().sum()], &[&p], GradOptions::new().create_graph(true))
        ),
        ("Autograd", "x.detach()", p.detach()),
        (
            "Autograd",
            "with torch.no_grad():",
            {
                let _guard = no_grad();
            },
            "a guard: gradients are off until it drops"
        ),
        ("Autograd", "x.retain_grad()", (&p * 2.0).retain_grad()),
        (
            "Autograd",
            "torch.autograd.gradcheck(f, inputs)",
            gradcheck(
                |t| t[0].square().sum(),
                &[Tensor::randn_dtype(&[3], DType::F64).requires_grad()],
                &GradcheckOptions::default()
            )
        ),
        (
            "Autograd",
            "torch.autograd.Function",
            apply(DoubleIt, &[&p]),
            "implement `Function` (forward and backward with a context)"
        ),
        ("Autograd", "x.register_hook(fn)", { let h = &p * 2.0; let handle = h.register_hook(|g| Some(g.clamp(Some(-1.0), Some(1.0)))); h.sum().backward(); handle.remove(); }, "a handle's `remove()` takes the hook off; dropping it keeps the hook"),
        ("Autograd", "(no counterpart: a trace of the reverse sweep)", { let trace = tapegrad::tape::BackwardTrace::start(); p.square().sum().backward(); trace.finish() }, "each step's node, op, call site, incoming gradient and what it sent on, for learning"),
        ("Autograd", "torch.utils.checkpoint.checkpoint(f, x, use_reentrant=False)", { let w = p.clone(); tapegrad::tape::checkpoint(move |t| (&t[0] * &w).tanh(), &[x.i(0)]).sum().backward(); }, "non-reentrant: the same graph, its saved tensors recomputed when backward reaches them"),
        ("Autograd", "p.register_post_accumulate_grad_hook(fn)", p.register_post_accumulate_grad_hook(|g| println!("{}", g.norm(2.0)))),
        ("Autograd", "with torch.autograd.detect_anomaly():", { let _anomaly = tapegrad::tape::detect_anomaly(); }, "a guard; `detect_anomaly_with(false)` checks NaN only (for -inf masks)"),
        ("Autograd", "with fwAD.dual_level(): d = fwAD.make_dual(x, v)", { let _level = tapegrad::forward_ad::dual_level(); let d = tapegrad::forward_ad::make_dual(&x, &a); }, "a guard; one level at a time, as in PyTorch"),
        ("Autograd", "fwAD.unpack_dual(y).tangent", { let _level = tapegrad::forward_ad::dual_level(); let y = tapegrad::forward_ad::make_dual(&x, &a).tanh(); tapegrad::forward_ad::unpack_dual(&y).tangent }, "`None` for a tensor that does not depend on a dual one (a zero tangent)"),
        ("Autograd", "torch.autograd.Function.jvp", { struct Double; impl Function for Double { fn name(&self) -> &'static str { "double" } fn forward(&self, x: &[Tensor]) -> Tensor { &x[0] * 2.0 } fn backward(&self, _: &FunctionCtx<'_>, g: &Tensor) -> Vec<Option<Tensor>> { vec![Some(g * 2.0)] } fn jvp(&self, _: &FunctionCtx<'_>, t: &[Option<Tensor>]) -> Option<Tensor> { Some(t[0].as_ref()? * 2.0) } } }, "`None`: no forward rule (a dual input then panics, naming the function)"),
        ("Autograd", "torch.func.vjp / jvp / jacrev / jacfwd / hessian / hvp", tapegrad::ops::func::hessian(|t| t[0].square().sum(), &[x.clone()]), "functions of `&[Tensor]`; results in one `Vec` per input"),
        ("Autograd", "torch.autograd.functional.jacobian(f, x, strategy=...)", tapegrad::ops::func::jacobian(|t| t[0].exp(), &[x.clone()], tapegrad::ops::func::Strategy::Auto)),
        // Functional.
        (
            "torch.nn.functional",
            "F.linear(x, w, b)",
            F::linear(&x, &Tensor::randn(&[4, 3]), None)
        ),
        ("torch.nn.functional", "F.conv2d(x, w, b)", F::conv2d(&img, &weight, Some(&bias))),
        (
            "torch.nn.functional",
            "F.conv2d(x, w, b, stride=2, padding=1, dilation=1, groups=1)",
            F::conv2d_with(
                &img,
                &weight,
                Some(&bias),
                ConvOptions::default().stride(2).padding(1).dilation(1).groups(1)
            ),
            "keywords through the options value: one builder method per keyword"
        ),
        (
            "torch.nn.functional",
            "F.conv2d(x, w, padding='same')",
            F::conv2d_with(&img, &weight, None, ConvOptions::default().padding(Padding::Same))
        ),
        (
            "torch.nn.functional",
            "F.conv1d(x, w, b, ...)",
            F::conv1d_with(
                &seq.permute(&[1, 2, 0]),
                &Tensor::randn(&[4, 3, 3]),
                None,
                ConvOptions::default().padding(1)
            )
        ),
        (
            "torch.nn.functional",
            "F.conv_transpose2d(x, w, b, stride=2, output_padding=1)",
            F::conv_transpose2d_with(
                &img,
                &Tensor::randn(&[3, 2, 3, 3]),
                None,
                ConvOptions::default().stride(2).padding(1).output_padding(1)
            )
        ),
        (
            "torch.nn.functional",
            "F.conv_transpose1d(x, w, b, stride=2, output_padding=1)",
            F::conv_transpose1d_with(
                &seq.permute(&[1, 2, 0]),
                &Tensor::randn(&[3, 2, 3]),
                None,
                ConvOptions::default().stride(2).output_padding(1)
            )
        ),
        ("torch.nn.functional", "F.max_pool2d(x, 2)", F::max_pool2d(&img, 2)),
        (
            "torch.nn.functional",
            "F.max_pool2d(x, 3, stride=2, padding=1, dilation=1, ceil_mode=True)",
            F::max_pool2d_with(
                &img,
                3,
                MaxPool2dOptions::default().stride(2).padding(1).dilation(1).ceil_mode(true)
            )
        ),
        (
            "torch.nn.functional",
            "F.max_pool2d(x, 2, return_indices=True)",
            F::max_pool2d_with_indices(&img, 2, MaxPool2dOptions::default()),
            "its own function: the result type differs"
        ),
        (
            "torch.nn.functional",
            "F.avg_pool2d(x, 3, stride=1, padding=1, ceil_mode=False, count_include_pad=False, divisor_override=None)",
            F::avg_pool2d_with(
                &img,
                3,
                AvgPool2dOptions::default().stride(1).padding(1).count_include_pad(false)
            )
        ),
        ("torch.nn.functional", "F.adaptive_avg_pool2d(x, 1)", F::adaptive_avg_pool2d(&img, 1)),
        ("torch.nn.functional", "F.adaptive_max_pool2d(x, (2, 3))", F::adaptive_max_pool2d(&img, (2, 3))),
        (
            "torch.nn.functional",
            "F.max_pool1d(x, 3, stride=2, padding=1, dilation=1, ceil_mode=True)",
            F::max_pool1d_with(
                &img.flatten(2, -1),
                3,
                MaxPool1dOptions::default().stride(2).padding(1).dilation(1).ceil_mode(true)
            ),
            "`[N, C, L]`; `max_pool1d_with_indices` for `return_indices=True`"
        ),
        (
            "torch.nn.functional",
            "F.avg_pool1d(x, 3, stride=1, padding=1, count_include_pad=False)",
            F::avg_pool1d_with(
                &img.flatten(2, -1),
                3,
                AvgPool1dOptions::default().stride(1).padding(1).count_include_pad(false)
            )
        ),
        (
            "torch.nn.functional",
            "F.adaptive_avg_pool1d(x, 4) / F.adaptive_max_pool1d(x, 1)",
            (F::adaptive_avg_pool1d(&img.flatten(2, -1), 4), F::adaptive_max_pool1d(&img.flatten(2, -1), 1))
        ),
        ("torch.nn.functional", "F.interpolate(x, size=(6, 8))", F::interpolate(&img, &[6, 8])),
        (
            "torch.nn.functional",
            "F.unfold(x, 3, dilation=1, padding=1, stride=2) / F.fold(cols, (8, 8), 3, padding=1, stride=2)",
            F::fold_with(
                &F::unfold_with(&img, 3, UnfoldOptions::default().dilation(1).padding(1).stride(2)),
                8,
                3,
                UnfoldOptions::default().padding(1).stride(2)
            ),
            "kernel (and fold's output size) first, one value or a pair; the keywords in `UnfoldOptions`"
        ),
        (
            "torch.nn.functional",
            "F.interpolate(x, scale_factor=2, mode='bilinear', align_corners=True)",
            F::interpolate_with(
                &img,
                InterpolateOptions::scale_factor(2.0)
                    .mode(InterpolateMode::Bilinear)
                    .align_corners(true)
            ),
            "size or scale factor first (`InterpolateOptions::size` or `::scale_factor`), then the keywords; modes nearest, nearest-exact, linear, bilinear, trilinear"
        ),
        (
            "torch.nn.functional",
            "F.normalize(x, p=2.0, dim=1, eps=1e-12) / F.cosine_similarity(a, b, dim=1, eps=1e-8)",
            F::normalize_with(&x, NormalizeOptions::default().p(2.0).dim(1).eps(1e-12))
                .add(&F::cosine_similarity_with(&x, &x, CosineSimilarityOptions::default().dim(1)).unsqueeze(1))
        ),
        (
            "torch.nn.functional",
            "F.pairwise_distance(a, b, p=2.0, eps=1e-6, keepdim=False)",
            F::pairwise_distance_with(&a, &b, PairwiseDistanceOptions::default().p(2.0).eps(1e-6).keepdim(false))
        ),
        (
            "torch.nn.functional",
            "F.one_hot(labels, num_classes=5)",
            F::one_hot(&labels, Some(5)),
            "`None` for PyTorch's `-1` (the largest label plus one)"
        ),
        ("torch.nn.functional", "F.pad(x, (1, 1, 2, 0))", F::pad(&img, &[1, 1, 2, 0])),
        (
            "torch.nn.functional",
            "F.pad(x, (1, 1), mode='reflect') / 'replicate' / 'circular' / value=",
            F::pad_with(&img, &[1, 1], PadMode::Reflect),
            "mode and value are one `PadMode`"
        ),
        (
            "torch.nn.functional",
            "F.dropout(x, p=0.2, training=self.training)",
            F::dropout_with(&x, F::DropoutOptions::default().p(0.2).training(true))
        ),
        (
            "torch.nn.functional",
            "F.layer_norm(x, (3,), weight, bias, eps=1e-5)",
            F::layer_norm_with(&x, &[3], LayerNormOptions::default().eps(1e-5))
        ),
        (
            "torch.nn.functional",
            "F.scaled_dot_product_attention(q, k, v, attn_mask, dropout_p, is_causal, scale)",
            F::scaled_dot_product_attention_with(&seq, &seq, &seq, AttentionOptions::default().is_causal(true)),
            "a bool mask (true: attend) or a float mask to add; rows with every key masked give zeros"
        ),
        (
            "torch.nn.functional",
            "F.group_norm(x, 3, weight, bias, eps=1e-5)",
            F::group_norm_with(&img, 3, GroupNormOptions::default().eps(1e-5))
        ),
        (
            "torch.nn.functional",
            "F.instance_norm(x, weight=w, bias=b, eps=1e-5)",
            F::instance_norm_with(&img, InstanceNormOptions::default().eps(1e-5)),
            "running statistics are not offered: the input's own, PyTorch's default"
        ),
        (
            "torch.nn.functional",
            "F.batch_norm(x, running_mean, running_var, weight, bias, training, momentum, eps)",
            F::batch_norm_with(
                &img,
                None,
                BatchNormOptions::default().training(true).momentum(0.1)
            ),
            "running mean and variance travel together as `BatchNormStats`"
        ),
        (
            "torch.nn.functional",
            "F.embedding(idx, table)",
            F::embedding(&idx, &Tensor::randn(&[5, 3]))
        ),
        (
            "torch.nn.functional",
            "F.embedding_bag(input, table, offsets, mode='sum', per_sample_weights=w, padding_idx=0)",
            {
                let input = Tensor::from_vec(vec![1i64, 2, 0, 2], &[4]);
                let options = F::EmbeddingBagOptions::default()
                    .offsets(&Tensor::from_vec(vec![0i64, 1], &[2]))
                    .mode(F::EmbeddingBagMode::Sum)
                    .per_sample_weights(&Tensor::ones(&[4]))
                    .padding_idx(0);
                F::embedding_bag_with(&input, &Tensor::randn(&[3, 4]), options)
            },
            "`EmbeddingBagOptions` holds the keywords; `max_norm`, `norm_type`, `scale_grad_by_freq` and `sparse` are not there (dense gradients only)"
        ),
        (
            "torch.nn.functional",
            "F.grid_sample(x, grid, mode='bilinear', padding_mode='border', align_corners=True)",
            {
                let options = F::GridSampleOptions::default()
                    .mode(F::GridSampleMode::Bilinear)
                    .padding_mode(F::GridSamplePadding::Border)
                    .align_corners(true);
                F::grid_sample_with(&Tensor::randn(&[2, 3, 8, 8]), &Tensor::zeros(&[2, 4, 4, 2]), options)
            },
            "4-D inputs (no volumes); modes bilinear and nearest, paddings zeros and border (no `reflection`, no `bicubic`); differentiable in the image and the grid to any order (its gradients, when their graph is recorded, are themselves recorded ops)"
        ),
        (
            "torch.nn.functional",
            "F.affine_grid(theta, size, align_corners=False)",
            F::affine_grid(&Tensor::randn(&[2, 2, 3]), &[2, 3, 8, 8], false)
        ),
        (
            "torch.nn.functional",
            "F.cross_entropy(logits, labels)",
            F::cross_entropy(&logits, &labels)
        ),
        (
            "torch.nn.functional",
            "F.cross_entropy(logits, labels, weight=w, ignore_index=-100, reduction='sum', label_smoothing=0.1)",
            F::cross_entropy_with(
                &logits,
                &labels,
                CrossEntropyLoss::new()
                    .weight(&Tensor::ones(&[5]))
                    .ignore_index(-100)
                    .reduction(Reduction::Sum)
                    .label_smoothing(0.1)
            ),
            "a loss's keywords are the loss type itself (the same value as the `nn` module)"
        ),
        (
            "torch.nn.functional",
            "F.cross_entropy(logits, probs)",
            F::cross_entropy(&logits, &probs)
        ),
        (
            "torch.nn.functional",
            "F.nll_loss(logp, labels, reduction='none')",
            F::nll_loss_with(&logits.log_softmax(1), &labels, Reduction::None),
            "a `Reduction` alone converts into any loss's keywords"
        ),
        (
            "torch.nn.functional",
            "F.mse_loss / F.l1_loss(a, b, reduction=...)",
            F::mse_loss_with(&a, &b, Reduction::Sum)
        ),
        (
            "torch.nn.functional",
            "F.smooth_l1_loss(a, b, beta=0.5) / F.huber_loss(a, b, delta=)",
            F::smooth_l1_loss_with(&a, &b, SmoothL1Loss::new().beta(0.5))
        ),
        (
            "torch.nn.functional",
            "F.binary_cross_entropy(p, y, weight=)",
            F::binary_cross_entropy(&a.sigmoid(), &b.sigmoid())
        ),
        (
            "torch.nn.functional",
            "F.binary_cross_entropy_with_logits(x, y, pos_weight=pw)",
            F::binary_cross_entropy_with_logits_with(
                &a,
                &b.sigmoid(),
                BCEWithLogitsLoss::new().pos_weight(&Tensor::ones(&[3]))
            )
        ),
        (
            "torch.nn.functional",
            "(errors)",
            F::try_cross_entropy_with(&logits, &labels, Reduction::Mean),
            "every function panics naming the caller's line; `try_` forms return `Result`"
        ),
        // Layers.
        ("Layers", "nn.Linear(3, 4) / nn.Linear(3, 4, bias=False)", Linear::no_bias(3, 4)),
        (
            "Layers",
            "nn.Conv2d(3, 4, 3, stride=2, padding=1, dilation=1, groups=1, bias=False)",
            Conv2d::with_groups(3, 3, 3, 3).stride(2).padding(1).dilation(1).no_bias(),
            "keywords as builder methods on the layer; `groups` through `with_groups`"
        ),
        (
            "Layers",
            "nn.Conv2d(..., padding='same')",
            Conv2d::new(3, 4, 3).padding(Padding::Same).forward(&img)
        ),
        ("Layers", "nn.Conv1d(3, 4, 3, padding=1)", Conv1d::new(3, 4, 3).padding(1)),
        (
            "Layers",
            "nn.ConvTranspose1d(4, 2, 3, stride=2, padding=1, output_padding=1)",
            ConvTranspose1d::new(4, 2, 3).stride(2).padding(1).output_padding(1)
        ),
        (
            "Layers",
            "nn.ConvTranspose2d(4, 2, 3, stride=2, padding=1, output_padding=1)",
            ConvTranspose2d::new(4, 2, 3).stride(2).padding(1).output_padding(1)
        ),
        (
            "Layers",
            "nn.MaxPool2d(2) / nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True)",
            MaxPool2d::new(3).stride(1).padding(1).ceil_mode(true).forward(&img)
        ),
        (
            "Layers",
            "nn.AvgPool2d(2, count_include_pad=False)",
            AvgPool2d::new(2).count_include_pad(false).forward(&img)
        ),
        (
            "Layers",
            "nn.AdaptiveAvgPool2d((1, 1))",
            AdaptiveAvgPool2d::new((1, 1)).forward(&img)
        ),
        (
            "Layers",
            "nn.AdaptiveMaxPool2d((2, 2))",
            AdaptiveMaxPool2d::new((2, 2)).forward(&img)
        ),
        (
            "Layers",
            "nn.MaxPool1d(2) / nn.AvgPool1d(3, stride=1, padding=1) / nn.AdaptiveAvgPool1d(1) / nn.AdaptiveMaxPool1d(1)",
            (
                MaxPool1d::new(2).forward(&img.flatten(2, -1)),
                AvgPool1d::new(3).stride(1).padding(1).forward(&img.flatten(2, -1)),
                AdaptiveAvgPool1d::new(1).forward(&img.flatten(2, -1)),
                AdaptiveMaxPool1d::new(1).forward(&img.flatten(2, -1))
            )
        ),
        (
            "Layers",
            "nn.Bilinear(3, 3, 4)(x1, x2) / nn.Unflatten(1, (3, 1))",
            (
                Bilinear::new(3, 3, 4).forward2(&a, &b),
                Unflatten::new(1, &[3, 1]).forward(&a)
            ),
            "two inputs: `forward2`"
        ),
        (
            "Layers",
            "nn.PairwiseDistance(p=1.0) / nn.CosineSimilarity(dim=1)",
            (
                PairwiseDistance::new().p(1.0).forward2(&a, &b),
                CosineSimilarity::new().dim(1).forward2(&a, &b)
            ),
            "two inputs: `forward2`"
        ),
        ("Layers", "nn.BatchNorm2d(3) / nn.BatchNorm1d(3)", BatchNorm2d::new(3).forward(&img)),
        ("Layers", "nn.LayerNorm(3)", LayerNorm::new(&[3]).forward(&x)),
        ("Layers", "nn.GroupNorm(1, 3)", GroupNorm::new(1, 3).forward(&img)),
        (
            "Layers",
            "nn.InstanceNorm2d(3, affine=True, eps=1e-5) / nn.InstanceNorm1d",
            InstanceNorm2d::new(3).affine(true).eps(1e-5).forward(&img),
            "unbatched inputs as in PyTorch; `track_running_stats` is not offered (PyTorch's default is off)"
        ),
        ("Layers", "nn.Dropout(0.5)", Dropout::new(0.5).forward(&x)),
        ("Layers", "nn.Embedding(10, 3)", Embedding::new(10, 3).forward(&idx)),
        (
            "Layers",
            "nn.EmbeddingBag(10, 3, mode='max')(input, offsets)",
            EmbeddingBag::new(10, 3).mode(F::EmbeddingBagMode::Max).forward_bags(&idx, Some(&Tensor::from_vec(vec![0i64], &[1])), None),
            "`forward(x)` for a 2-D input (one bag per row); `forward_bags(input, offsets, per_sample_weights)` for the rest"
        ),
        (
            "Layers",
            "nn.LSTM(3, 8, num_layers=2, batch_first=True) / nn.GRU / nn.RNN",
            LSTM::new(3, 8, 2).batch_first(true).forward(&seq)
        ),
        (
            "Layers",
            "nn.LSTM(3, 8, num_layers=2, dropout=0.2, bidirectional=True) / nn.GRU / nn.RNN",
            GRU::new(3, 8, 2).dropout(0.2).bidirectional(true).forward(&seq),
            "outputs `2 * hidden` wide, states `[2 * layers, B, H]`, PyTorch's `_reverse` names"
        ),
        (
            "Layers",
            "out, (h, c) = lstm(x, (h0, c0))",
            LSTM::new(3, 8, 1).forward_with_state(&seq, None),
            "`forward_with_state` takes and returns the state"
        ),
        (
            "Layers",
            "nn.RNN(3, 8, nonlinearity='relu')",
            RNN::new(3, 8, 1).nonlinearity(Nonlinearity::Relu).forward(&seq)
        ),
        (
            "Layers",
            "h, c = nn.LSTMCell(3, 8)(x, (h, c)) / nn.GRUCell / nn.RNNCell(3, 8, bias=False)",
            {
                let cell = LSTMCell::new(3, 8);
                let (h, c) = cell.forward_with_state(&x, None);
                cell.forward_with_state(&x, Some((&h, &c)))
            },
            "one step; `forward_with_state` takes the state (`None` for zeros); `GRUCell` and `RNNCell` take and return `h` (`forward` starts from zeros); `.no_bias()` for `bias=False`"
        ),
        (
            "Layers",
            "out, weights = nn.MultiheadAttention(3, 1)(seq, seq, seq)",
            MultiheadAttention::new(3, 1).forward(&seq, &seq, &seq),
            "returns `(Tensor, Option<Tensor>)`; `add_bias_kv` and `add_zero_attn` are not offered"
        ),
        (
            "Layers",
            "mha(q, k, v, key_padding_mask=m, need_weights=False, attn_mask=a, average_attn_weights=False, is_causal=True)",
            MultiheadAttention::new(3, 1).forward_with(
                &seq,
                &seq,
                &seq,
                MultiheadAttentionOptions::default()
                    .key_padding_mask(&Tensor::zeros_dtype(&[2, 5], DType::Bool))
                    .need_weights(false)
                    .attn_mask(&Tensor::zeros(&[5, 5]))
                    .average_attn_weights(false)
                    .is_causal(true)
            ),
            "bool masks: true excludes, as in PyTorch; is_causal alone builds the causal mask (PyTorch asks for the mask too)"
        ),
        (
            "Layers",
            "nn.MultiheadAttention(3, 1, dropout=0.1, bias=False, kdim=4, vdim=5, batch_first=True)",
            MultiheadAttention::new(3, 1).dropout(0.1).no_bias().kdim_vdim(4, 5).batch_first(true)
        ),
        (
            "Layers",
            "nn.TransformerEncoderLayer(3, 1, dim_feedforward=8, dropout=0.0, activation='gelu', layer_norm_eps=1e-6, batch_first=False, norm_first=True)",
            TransformerEncoderLayer::new(3, 1)
                .dim_feedforward(8)
                .dropout(0.0)
                .activation(|x| x.gelu())
                .layer_norm_eps(1e-6)
                .batch_first(false)
                .norm_first(true)
                .forward(&seq),
            "`activation` takes any `fn(&Tensor) -> Tensor`; `bias=False` is not offered"
        ),
        (
            "Layers",
            "nn.TransformerEncoder(layer, 2, norm=nn.LayerNorm(3))(seq, mask=m, src_key_padding_mask=p, is_causal=True)",
            TransformerEncoder::new(vec![TransformerEncoderLayer::new(3, 1), TransformerEncoderLayer::new(3, 1)])
                .norm(LayerNorm::new(&[3]))
                .forward_with(
                    &seq,
                    TransformerEncoderOptions::default()
                        .src_mask(&Tensor::zeros(&[5, 5]))
                        .src_key_padding_mask(&Tensor::zeros_dtype(&[2, 5], DType::Bool))
                        .is_causal(true)
                ),
            "takes the layers built, each with its own initialisation (PyTorch copies one); `mask` is `src_mask`"
        ),
        (
            "Layers",
            "nn.TransformerDecoderLayer(3, 1, dim_feedforward=8)(tgt, memory, tgt_mask=m, memory_key_padding_mask=p, tgt_is_causal=True)",
            TransformerDecoderLayer::new(3, 1).dim_feedforward(8).forward_with(
                &seq.narrow(0, 0, 3),
                &seq,
                TransformerDecoderOptions::default()
                    .tgt_mask(&Tensor::zeros(&[3, 3]))
                    .memory_key_padding_mask(&Tensor::zeros_dtype(&[2, 5], DType::Bool))
                    .tgt_is_causal(true)
            ),
            "the same builders as the encoder layer; `TransformerDecoder::new(layers).norm(...)` stacks them"
        ),
        (
            "Layers",
            "nn.Transformer(3, 1, 2, 2, dim_feedforward=8)(src, tgt, src_key_padding_mask=p, tgt_is_causal=True)",
            Transformer::new(3, 1, 2, 2).dim_feedforward(8).forward_with(
                &seq,
                &seq.narrow(0, 0, 3),
                TransformerEncoderOptions::default()
                    .src_key_padding_mask(&Tensor::zeros_dtype(&[2, 5], DType::Bool)),
                TransformerDecoderOptions::default().tgt_is_causal(true)
            ),
            "`nn.Transformer(d_model, nhead, num_encoder_layers, num_decoder_layers)`: the encoder's and the decoder's options separately"
        ),
        (
            "Layers",
            "nn.ReLU() / nn.Tanh() / nn.Sigmoid() / nn.GELU() / nn.SiLU()",
            Sequential::new().add(ReLU).add(Tanh).add(Sigmoid).add(GELU).add(SiLU).forward(&x)
        ),
        ("Layers", "nn.LeakyReLU(0.2)", LeakyReLU::new().negative_slope(0.2).forward(&x)),
        (
            "Layers",
            "nn.Hardswish() / nn.Hardsigmoid() / nn.ReLU6() / nn.Mish() / nn.SELU() / nn.LogSigmoid() / nn.Softsign() / nn.Tanhshrink()",
            Sequential::new()
                .add(Hardswish)
                .add(Hardsigmoid)
                .add(ReLU6)
                .add(Mish)
                .add(SELU)
                .add(LogSigmoid)
                .add(Softsign)
                .add(Tanhshrink)
                .forward(&x)
        ),
        (
            "Layers",
            "nn.ELU(0.5) / nn.CELU(0.5) / nn.Hardtanh(-2, 2) / nn.Softplus(beta=2)",
            Sequential::new()
                .add(ELU::new().alpha(0.5))
                .add(CELU::new().alpha(0.5))
                .add(Hardtanh::new().bounds(-2.0, 2.0))
                .add(Softplus::new().beta(2.0))
                .forward(&x)
        ),
        ("Layers", "nn.GLU(dim=2)", GLU::new().dim(2).forward(&img)),
        ("Layers", "nn.PReLU(num_parameters=3, init=0.1)", PReLU::new().num_parameters(3).init(0.1).forward(&img)),
        ("Layers", "nn.Softmax(dim=1) / nn.LogSoftmax(dim=1)", Sequential::new().add(Softmax { dim: 1 }).add(LogSoftmax { dim: 1 }).forward(&x)),
        ("Layers", "nn.Flatten()", Flatten::new().forward(&img)),
        (
            "Layers",
            "nn.Unfold(kernel_size=2, stride=2) / nn.Fold(output_size=8, kernel_size=2, stride=2)",
            Fold::new(8, 2).stride(2).forward(&Unfold::new(2).stride(2).forward(&img)),
            "also `.dilation(..)` and `.padding(..)`; each size one value or a pair"
        ),
        (
            "Layers",
            "nn.PixelShuffle(2) / nn.PixelUnshuffle(2) / F.pixel_shuffle(x, 2)",
            PixelShuffle { upscale_factor: 2 }
                .forward(&PixelUnshuffle { downscale_factor: 2 }.forward(&img))
                .add(&F::pixel_unshuffle(&F::pixel_shuffle(&img.repeat(&[1, 4, 1, 1]), 2), 2).narrow(1, 0, 3))
        ),
        (
            "Layers",
            "nn.Upsample(scale_factor=2, mode='bilinear') / nn.Identity()",
            Identity.forward(&Upsample::scale_factor(2.0).mode(InterpolateMode::Bilinear).forward(&img))
        ),
        (
            "Layers",
            "nn.Sequential(a, b, c)",
            Sequential::new().add(Linear::new(3, 3)).add(ReLU).forward(&x)
        ),
        (
            "Layers",
            "nn.ModuleList([...])",
            {
                #[derive(Module)]
                struct Stack {
                    blocks: Vec<Linear>,
                }
                Stack { blocks: vec![Linear::new(3, 3)] }.parameters()
            },
            "a `Vec` field of a derived module (names `blocks.0.weight`, ...)"
        ),
        (
            "Layers",
            "model(x) / model.forward(x)",
            model.forward(&x),
            "`forward` from the `Forward` trait; no call operator in Rust"
        ),
        ("Layers", "layer.register_forward_hook(fn) / register_forward_pre_hook(fn)", { let layer = tapegrad::nn::Hooked::new(Linear::new(3, 4)); let h = layer.register_forward_hook(|_, y| Some(y.relu())); layer.forward(&x); h.remove(); }, "wrap the layer in `Hooked` (names and parameters unchanged)"),
        // Writing modules.
        (
            "Modules",
            "class Net(nn.Module): __init__ registers layers",
            {
                #[derive(Module)]
                struct Net {
                    fc: Linear,
                    bn: BatchNorm1d,
                    #[module(skip)]
                    width: String,
                }
                Net { fc: Linear::new(3, 3), bn: BatchNorm1d::new(3), width: "w".into() }
                    .state_dict()
            },
            "`#[derive(Module)]`: fields are found, nothing to register or forget"
        ),
        (
            "Modules",
            "def forward(self, x)",
            {
                struct Twice;
                impl Forward for Twice {
                    fn forward(&self, x: &Tensor) -> Tensor {
                        x * 2.0
                    }
                }
                Twice.forward(&x)
            },
            "`impl Forward`; a forward with several inputs is an inherent method"
        ),
        ("Modules", "self.register_buffer('steps', t)", {
            #[derive(Module)]
            struct Counted {
                #[module(buffer)]
                steps: Tensor,
            }
            Counted { steps: Tensor::zeros(&[1]) }.named_buffers()
        }),
        ("Modules", "self.training (in a custom module)", {
            #[derive(Module, Default)]
            struct Noisy {
                training: TrainingFlag,
            }
            Noisy::default().training.get()
        }),
        ("Modules", "self.w = nn.Parameter(torch.randn(3))", { #[derive(Module)] struct Scale { w: Tensor } Scale { w: Tensor::randn(&[3]).requires_grad() }.parameters() }, "a `Tensor` field is a parameter"),
        ("Modules", "nn.init.xavier_uniform_(layer.weight) / kaiming_normal_ / normal_ / uniform_", { let layer = Linear::new(3, 4); let _g = no_grad(); layer.weight.copy_(&tapegrad::nn::init::xavier_uniform(layer.weight.shape(), 1.0)); }, "`init` functions make values; `copy_` under `no_grad` puts them in place"),
        ("Modules", "nn.init.orthogonal_(w, gain=nn.init.calculate_gain('relu')) / nn.init.trunc_normal_(w, std=0.02)", { let layer = Linear::new(3, 4); let _g = no_grad(); let gain = tapegrad::nn::init::calculate_gain(tapegrad::nn::init::Nonlinearity::Relu); layer.weight.copy_(&tapegrad::nn::init::orthogonal(layer.weight.shape(), gain)); layer.weight.copy_(&tapegrad::nn::init::trunc_normal(layer.weight.shape(), 0.0, 0.02, -2.0, 2.0)); }, "`Nonlinearity` names the gains; `trunc_normal`'s bounds are absolute, as PyTorch's"),
        (
            "Modules",
            "model.parameters() / named_parameters() / buffers",
            model.named_parameters()
        ),
        ("Modules", "model.train() / model.eval()", {
            model.eval();
            model.train();
        }),
        ("Modules", "model.zero_grad()", model.zero_grad()),
        ("Modules", "model.state_dict()", model.state_dict()),
        ("Modules", "model.load_state_dict(sd)", {
            let mut m = Linear::new(3, 2);
            m.load_state_dict(&Linear::new(3, 2).state_dict())
        }),
        (
            "Modules",
            "model.load_state_dict(sd, strict=False)",
            {
                let mut m = Linear::new(3, 2);
                m.load_state_dict_with(&[], false)
            },
            "returns the missing and unexpected names"
        ),
        ("Modules", "model.double() / model.to(torch.float64)", {
            let mut m = Linear::new(3, 2);
            m.to_dtype(DType::F64);
        }),
        ("Modules", "for p in model.parameters(): p.requires_grad = False", {
            let mut m = Linear::new(3, 2);
            m.freeze();
            m.unfreeze();
        }),
        // Losses as modules.
        (
            "Losses",
            "nn.CrossEntropyLoss(label_smoothing=0.1)(logits, labels)",
            CrossEntropyLoss::new().label_smoothing(0.1).forward(&logits, &labels),
            "`forward(input, target)`"
        ),
        (
            "Losses",
            "nn.NLLLoss / nn.MSELoss / nn.L1Loss / nn.SmoothL1Loss / nn.HuberLoss / nn.BCELoss / nn.BCEWithLogitsLoss",
            MSELoss::new().reduction(Reduction::Sum).forward(&a, &b)
        ),
        (
            "Losses",
            "nn.TripletMarginLoss(margin=1.0, p=2, swap=True)(anchor, positive, negative)",
            TripletMarginLoss::new().margin(1.0).p(2.0).swap(true).forward(&a, &b, &(&a * &b)),
            "`forward` takes the three tensors; `F::triplet_margin_loss_with` too"
        ),
        (
            "Losses",
            "nn.CTCLoss(blank=0, zero_infinity=True)(log_probs, targets, input_lengths, target_lengths)",
            CTCLoss::new().zero_infinity(true).forward(
                &Tensor::zeros(&[6, 2, 5]).log_softmax(2),
                &Tensor::from_vec(vec![1i64, 2, 3, 3, 0, 0], &[2, 3]),
                &[6, 5],
                &[3, 1]
            ),
            "lengths are `&[usize]`; targets padded `[N, S]` or concatenated; `F::ctc_loss_with` too"
        ),
        (
            "Losses",
            "nn.MarginRankingLoss(margin=0.5)(x1, x2, y) / nn.CosineEmbeddingLoss(margin=0.2)(x1, x2, y)",
            (
                MarginRankingLoss::new().margin(0.5).forward(&a, &b, &a.sign()),
                CosineEmbeddingLoss::new().margin(0.2).forward(&a, &b, &Tensor::ones(&[a.shape()[0]]))
            )
        ),
        (
            "Losses",
            "nn.HingeEmbeddingLoss / nn.SoftMarginLoss / nn.PoissonNLLLoss(log_input=True, full=True)",
            (
                HingeEmbeddingLoss::new().margin(0.5).forward(&a, &b.sign()),
                SoftMarginLoss::new().forward(&a, &b.sign()),
                PoissonNLLLoss::new().full(true).forward(&a, &b.abs())
            )
        ),
        (
            "Losses",
            "nn.GaussianNLLLoss(full=True, eps=1e-6)(mean, target, var)",
            GaussianNLLLoss::new().full(true).eps(1e-6).forward(&a, &b, &b.square()),
            "the variance's floor clamps its value, not its gradient, as in PyTorch"
        ),
        (
            "Losses",
            "nn.KLDivLoss(reduction='batchmean', log_target=False)(log_q, p) / F.kl_div",
            (
                KLDivLoss::new().batchmean().forward(&logits.log_softmax(1), &probs),
                F::kl_div_with(&logits.log_softmax(1), &probs, Reduction::Sum)
            ),
            "`batchmean()` stands for the reduction PyTorch spells as a string"
        ),
        // Optimizers and schedulers.
        (
            "Optimizers",
            "torch.optim.SGD(params, lr=0.1, momentum=0.9, dampening=0, nesterov=True, weight_decay=1e-4)",
            SGD::new(params, 0.1).momentum(0.9).dampening(0.0).nesterov(true).weight_decay(1e-4),
            "keywords as builder methods"
        ),
        (
            "Optimizers",
            "torch.optim.Adam(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=False)",
            Adam::new(params, 1e-3).betas((0.9, 0.999)).eps(1e-8).weight_decay(0.0).amsgrad(false)
        ),
        (
            "Optimizers",
            "torch.optim.AdamW(params, lr=1e-3, weight_decay=0.01)",
            AdamW::new(params, 1e-3).weight_decay(0.01)
        ),
        (
            "Optimizers",
            "torch.optim.RAdam(params, lr=1e-3, weight_decay=0.01, decoupled_weight_decay=True) / NAdam(params, lr=2e-3, momentum_decay=4e-3) / Adamax(params, lr=2e-3)",
            {
                let radam = RAdam::new(params.clone(), 1e-3).weight_decay(0.01).decoupled_weight_decay(true);
                let nadam = NAdam::new(params.clone(), 2e-3).momentum_decay(4e-3);
                (radam, nadam, Adamax::new(params, 2e-3).betas((0.9, 0.999)))
            }
        ),
        (
            "Optimizers",
            "torch.optim.RMSprop / Adagrad / Adadelta",
            RMSprop::new(params, 1e-2).alpha(0.99).centered(true)
        ),
        (
            "Optimizers",
            "opt = torch.optim.LBFGS(params, lr=1, max_iter=20, history_size=100, line_search_fn='strong_wolfe'); opt.step(closure)",
            {
                let mut opt = LBFGS::new(params, 1.0)
                    .max_iter(20)
                    .history_size(100)
                    .line_search_fn(Some(LineSearch::StrongWolfe));
                opt.step(|| {
                    model.zero_grad();
                    let loss = model.forward(&x).square().mean();
                    loss.backward();
                    loss
                })
            },
            "one parameter group, as PyTorch's; the closure clears the gradients through the model (it cannot borrow the optimizer that calls it), and the `Optimizer` trait's `step()` without a closure panics"
        ),
        ("Optimizers", "opt.zero_grad(); loss.backward(); opt.step()", {
            let mut opt = SGD::new(params, 0.1);
            opt.zero_grad();
            model.forward(&x).sum().backward();
            opt.step();
        }),
        (
            "Optimizers",
            "opt.add_param_group({'params': ps, 'lr': 0.01})",
            SGD::new(params, 0.1).add_param_group(vec![Tensor::zeros(&[1]).requires_grad()], 0.01)
        ),
        (
            "Optimizers",
            "opt.state_dict() / opt.load_state_dict(sd)",
            SGD::new(params, 0.1).state_dict()
        ),
        ("Optimizers", "torch.nn.utils.clip_grad_norm_(params, 1.0) / clip_grad_value_", {
            model.forward(&x).sum().backward();
            clip_grad_norm(&params, 1.0)
        }),
        (
            "Optimizers",
            "StepLR(opt, step_size, gamma) / ExponentialLR / CosineAnnealingLR / LinearLR",
            {
                let mut opt = SGD::new(params, 0.1);
                let mut s = StepLR::new(0.1, 10, 0.5);
                s.step(&mut opt);
            },
            "a scheduler takes the base rate and is stepped with the optimizer"
        ),
        (
            "Optimizers",
            "MultiStepLR(opt, [30, 80], 0.1) / LinearLR / ConstantLR / PolynomialLR / CosineAnnealingWarmRestarts(opt, T_0, T_mult)",
            {
                let mut opt = SGD::new(params, 0.1);
                MultiStepLR::new(0.1, &[30, 80], 0.1).step(&mut opt);
                LinearLR::new(0.1, 1.0 / 3.0, 1.0, 5).step(&mut opt);
                CosineAnnealingWarmRestarts::new(0.1, 10, 2, 0.0).step(&mut opt)
            }
        ),
        (
            "Optimizers",
            "LambdaLR(opt, lambda e: 0.95 ** e)",
            {
                let mut opt = SGD::new(params, 0.1);
                LambdaLR::new(0.1, |e| 0.95f64.powi(e as i32)).step(&mut opt)
            },
            "one function (not a list per parameter group); a checkpoint keeps the epoch and base rate, and the function is given again when the schedule is made"
        ),
        (
            "Optimizers",
            "SequentialLR(opt, [LinearLR(opt, 0.1, total_iters=5), CosineAnnealingLR(opt, 20)], milestones=[5])",
            {
                let mut opt = SGD::new(params, 0.1);
                let warmup = LinearLR::new(0.1, 0.1, 1.0, 5);
                let cosine = CosineAnnealingLR::new(0.1, 20, 0.0);
                SequentialLR::new(vec![Box::new(warmup), Box::new(cosine)], &[5]).step(&mut opt)
            },
            "the schedules as boxes; each counts its epochs from 0 at its milestone, as PyTorch's"
        ),
        (
            "Optimizers",
            "OneCycleLR(opt, max_lr=0.1, epochs=10, steps_per_epoch=100, pct_start=0.25)",
            {
                let mut opt = SGD::new(params, 0.1).momentum(0.9);
                let mut sched = OneCycleLR::new(0.1, 10 * 100).pct_start(0.25);
                sched.apply(&mut opt);
                sched.step(&mut opt)
            },
            "`total_steps` as one count; `apply` sets the first rate and momentum (PyTorch's constructor does); the moved momentum (SGD's, RMSprop's, Adam's first beta) is saved in the optimizer's state; NAdam's cannot be cycled"
        ),
        (
            "Optimizers",
            "CyclicLR(opt, 0.001, 0.01, step_size_up=500, mode='triangular2')",
            {
                let mut opt = SGD::new(params, 0.001).momentum(0.9);
                let mut sched =
                    CyclicLR::new(0.001, 0.01).step_size_up(500).mode(CyclicMode::Triangular2);
                sched.apply(&mut opt);
                sched.step(&mut opt)
            },
            "modes as an enum (`ExpRange { gamma }`); `scale_fn(f, ScaleMode::Cycle)` for a custom scale, given again when resuming"
        ),
        (
            "Optimizers",
            "ReduceLROnPlateau(opt, mode='max', patience=5) / sched.step(val_loss)",
            {
                let mut opt = SGD::new(params, 0.1);
                ReduceLROnPlateau::new().mode(PlateauMode::Max).patience(5).step(0.93, &mut opt)
            },
            "stepped with the metric and the optimizer; its state saves in a checkpoint like the others' (`SchedulerState`)"
        ),
        // Files.
        (
            "Saving and loading",
            "torch.save(model.state_dict(), f) / safetensors save_file",
            save(&model, &path),
            "safetensors files, written atomically; what is saved or loaded comes first, then the path (then options such as `strict`)"
        ),
        ("Saving and loading", "model.load_state_dict(torch.load(f))", {
            save(&model, &path).unwrap();
            let mut m = Sequential::new().add(Linear::new(3, 4)).add(ReLU).add(Linear::new(4, 2));
            load(&mut m, &path)
        }),
        ("Saving and loading", "load_state_dict(load_file(f), strict=False)", {
            save(&model, &path).unwrap();
            load_with(&mut Linear::new(3, 4), &path, false)
        }),
        (
            "Saving and loading",
            "safetensors.torch.save_file(tensors, f) / load_file(f)",
            {
                save_tensors(&[("w".to_string(), x.clone())], &path).unwrap();
                load_tensors(&path)
            },
            "F16 and BF16 entries load as f32"
        ),
        (
            "Saving and loading",
            "torch.save({'model': ..., 'optimizer': ..., 'epoch': 3}, f)",
            save_checkpoint(&model, &SGD::new(params, 0.1), 3, &path),
            "`Checkpoint` for more (scheduler, random state)"
        ),
        (
            "Saving and loading",
            "checkpoint = torch.load(f); model.load_state_dict(...); opt.load_state_dict(...)",
            {
                let opt = SGD::new(params.clone(), 0.1);
                save_checkpoint(&model, &opt, 3, &path).unwrap();
                let mut opt2 = SGD::new(params, 0.1);
                let mut m = model;
                load_checkpoint(&mut m, &mut opt2, &path)
            }
        ),
        // Data.
        (
            "Data",
            "DataLoader(TensorDataset(x, y), batch_size=2, shuffle=True)",
            DataLoader::new(x.clone(), Tensor::from_vec(vec![0i64, 1], &[2]), 2)
                .shuffle(0)
                .epoch(0)
                .count(),
            "batches of two tensors; `epoch(n)` reshuffles by the epoch number"
        ),
        (
            "Data",
            "DistributedSampler(ds, num_replicas=2, rank=0, shuffle=True, seed=0)",
            DistributedSampler::new(4, 2, 0).shuffle(0).indices(0),
            "shuffled with seed 0 by default, as in PyTorch (`in_order()` for `shuffle=False`); `indices(epoch)` is the shard of an epoch (PyTorch's `set_epoch`); pads by wrapping unless `drop_last(true)`"
        ),
        (
            "Data",
            "DataLoader(ds, batch_size=2, sampler=DistributedSampler(ds, 2, 1))",
            DataLoader::new(Tensor::zeros(&[4, 3]), Tensor::zeros(&[4]), 2)
                .sampler(DistributedSampler::new(4, 2, 1))
                .epoch(0)
                .count(),
            "each rank's loader reads its shard; `shuffle` and `sampler` exclude each other, as in PyTorch"
        ),
        (
            "Data",
            "torchvision.datasets.MNIST",
            Mnist::embedded().map(|m| m.train.len()),
            "5,000 digits ship inside the crate; `Mnist::from_dir` reads the full files"
        ),
        (
            "Data",
            "torch.set_num_threads(2)",
            tapegrad::set_num_threads(2),
            "before any tensor work"
        ),
        (
            "Data",
            "torch.set_flush_denormal(True)",
            tapegrad::set_flush_denormal(true),
            "on by default here, inside matrix products, attention and convolutions only (subnormal operands and results read as zero: Intel cores slow down on them); `false` keeps them, PyTorch's default"
        ),
        (
            "Data",
            "torch.autograd memory profiling",
            tape_stats(),
            "what the tape holds now (nodes, saved bytes)"
        ),
        // Data parallelism (tapegrad-distributed; the facade's `distributed` and `mpi` features).
        (
            "Distributed",
            "dist.init_process_group(backend=\"mpi\")",
            ProcessGroup::threads(2).len(),
            "`ProcessGroup::mpi()` in each process under mpirun (feature `mpi`); `ProcessGroup::threads(n)` gives n ranks as threads of one process"
        ),
        (
            "Distributed",
            "dist.init_process_group(..., timeout=timedelta(seconds=60))",
            ProcessGroup::threads_with(1, GroupOptions::default().timeout(Duration::from_secs(60))),
            "`ProcessGroup::try_mpi_with(options)` for MPI; a rank that waits longer names the collective and stops the job"
        ),
        (
            "Distributed",
            "dist.get_rank(), dist.get_world_size()",
            (ProcessGroup::single().rank(), ProcessGroup::single().world_size()),
            "methods of the group handle"
        ),
        (
            "Distributed",
            "dist.all_reduce(t, op=dist.ReduceOp.SUM)",
            ProcessGroup::single().all_reduce(&x, ReduceOp::Sum),
            "returns the result instead of writing into `t`; `ReduceOp::Avg` divides by the world size (floats only); `Max` and `Min` too"
        ),
        (
            "Distributed",
            "dist.broadcast(t, src=0)",
            ProcessGroup::single().broadcast(&x, 0),
            "returns rank 0's values; `broadcast_into(&[tensors], 0)` overwrites tensors in place"
        ),
        (
            "Distributed",
            "dist.all_gather(tensor_list, t)",
            ProcessGroup::single().all_gather(&x),
            "returns the ranks' tensors in rank order"
        ),
        (
            "Distributed",
            "dist.barrier()",
            ProcessGroup::single().barrier(),
            ""
        ),
        (
            "Distributed",
            "dist.all_reduce(t, async_op=True).wait()",
            ProcessGroup::single().all_reduce_async(Payload::from_tensor(&x)).wait(),
            "`_async` forms return a `Work` on flat buffers"
        ),
        (
            "Distributed",
            "torch.distributed.nn.functional.all_reduce(t)",
            tapegrad_distributed::all_reduce(&p, &ProcessGroup::single()),
            "recorded: its backward all-reduces the gradient"
        ),
        (
            "Distributed",
            "DistributedDataParallel(model, bucket_cap_mb=25, broadcast_buffers=True)",
            DistributedDataParallel::new_with(
                Sequential::new().add(Linear::new(3, 4)),
                &ProcessGroup::single(),
                DdpOptions::default().bucket_cap_mb(25.0).broadcast_buffers(true)
            ),
            "`DistributedDataParallel::new(model, &group)` for the defaults; `ddp.backward(&loss)` also averages buckets the loss did not reach (PyTorch's `find_unused_parameters`)"
        ),
        (
            "Distributed",
            "with ddp.no_sync(): loss.backward()",
            DistributedDataParallel::new(Linear::new(3, 1), &ProcessGroup::single()).no_sync(),
            "a guard: gradients accumulate locally until it is dropped"
        ),
        (
            "Distributed",
            "ddp.module",
            DistributedDataParallel::new(Linear::new(3, 1), &ProcessGroup::single()).into_inner(),
            "`module()` borrows, `into_inner()` unwraps"
        ),
        (
            "Distributed",
            "nn.SyncBatchNorm.convert_sync_batchnorm(model)",
            SyncBatchNorm::from_batch_norm(BatchNorm2d::new(4), &ProcessGroup::single()),
            "one layer at a time (a model's field types are static); `SyncBatchNorm::new(c, &group)`"
        ),
        (
            "Distributed",
            "if dist.get_rank() == 0: torch.save(...)",
            ProcessGroup::single().save_on_main(|| save(&model, &path)),
            "collective: every rank learns whether rank 0's save worked; `main_println!(group, ...)` logs once"
        ),
    }
}

/// A custom function for the `Function` row: `2 x`.
struct DoubleIt;

impl Function for DoubleIt {
    fn name(&self) -> &'static str {
        "double_it"
    }
    fn forward(&self, inputs: &[Tensor]) -> Tensor {
        &inputs[0] * 2.0
    }
    fn backward(&self, _: &FunctionCtx<'_>, grad: &Tensor) -> Vec<Option<Tensor>> {
        vec![Some(grad * 2.0)]
    }
}

/// Table-cell text: pipes escaped, the expression's line breaks and indentation folded.
fn cell(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ").replace('|', "\\|")
}

fn render(rows: &[Row]) -> String {
    let mut out = String::from(
        "# PyTorch to tapegrad\n\n\
         Generated by `tests/api_table.rs`, which compiles and runs every tapegrad expression \
         below: `UPDATE_API_MD=1 cargo test --test api_table` rewrites this file; do not edit it \
         by hand. Operations and their gradients are listed with their PyTorch names in \
         docs/OPS.md.\n\n\
         ## The conventions\n\n\
         - **Keywords.** A function's short form takes PyTorch's defaults (`F::conv2d(&x, &w, \
         None)`); the `_with` form takes the keywords as one value: the keyword itself where \
         PyTorch has one (`x.leaky_relu_with(0.2)`, `F::mse_loss_with(&a, &b, Reduction::Sum)`), \
         otherwise an options type with `Default` and a builder method per keyword \
         (`ConvOptions::default().stride(2).padding(1)`). A loss's options are the loss type \
         (`CrossEntropyLoss::new().label_smoothing(0.1)`). Layers and optimizers take their \
         keywords as builder methods on themselves.\n\
         - **Errors.** Every panicking form names the operation, what was wrong and the \
         caller's file and line; `try_` forms return `Result`.\n\
         - **Dimensions** are `isize` (negative counts from the end); sizes are `usize`. Tensor \
         methods take PyTorch's arguments in PyTorch's order, `keepdim` included.\n\
         - **Names** are PyTorch's, in Rust's cases (`CrossEntropyLoss`, `cross_entropy`); a \
         trailing underscore still means in place.\n\n",
    );
    let mut section = "";
    for row in rows {
        if row.section != section {
            section = row.section;
            out.push_str(&format!(
                "\n## {section}\n\n| PyTorch | tapegrad | difference and why |\n|---|---|---|\n"
            ));
        }
        out.push_str(&format!(
            "| `{}` | `{}` | {} |\n",
            cell(row.torch),
            cell(&row.ours),
            cell(row.note)
        ));
    }
    out
}

#[test]
fn api_md_matches_the_rows_and_every_row_runs() {
    let rows = rows();
    for row in &rows {
        (row.run)();
    }
    let _ = std::fs::remove_file(vars().path);
    let text = render(&rows);
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/API.md");
    if std::env::var_os("UPDATE_API_MD").is_some() {
        std::fs::write(path, &text).unwrap();
    }
    let current = std::fs::read_to_string(path).unwrap_or_default();
    // Compared without whitespace: compilers may space a stringified expression differently.
    let squeeze = |s: &str| s.split_whitespace().collect::<String>();
    assert!(
        squeeze(&current) == squeeze(&text),
        "docs/API.md is out of date: run `UPDATE_API_MD=1 cargo test --test api_table`"
    );
}
