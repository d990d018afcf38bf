//! Every panic names the caller: both the panic's own location (what a backtrace-less panic
//! prints first) and the message's "(at file:line)" point at the line of this file that made
//! the bad call, never at a line inside the library.

use std::cell::RefCell;
use std::panic::{self, AssertUnwindSafe, Location};
use std::sync::Once;

use tapegrad::data::{DataLoader, select_rows};
use tapegrad::prelude::*;
use tapegrad::tape::{Backward, record};

thread_local! {
    static PANIC_SITE: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Runs `f`, which must panic, and returns the panic's message and the `file:line` the
/// panic reports. The hook is installed once; it runs on the panicking thread, so tests
/// running in parallel see their own sites.
fn panic_site(f: impl FnOnce()) -> (String, String) {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            let site = info.location().map(|l| format!("{}:{}", l.file(), l.line()));
            PANIC_SITE.with(|s| *s.borrow_mut() = site);
            previous(info);
        }));
    });
    let payload = panic::catch_unwind(AssertUnwindSafe(f)).expect_err("expected a panic");
    let message = payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default();
    let site = PANIC_SITE.with(|s| s.borrow_mut().take()).expect("the hook saw the panic");
    (message, site)
}

/// Asserts that the panic `f` raises is reported at `line` of this file, and, when the
/// message carries a location, that it names the same line.
#[track_caller]
fn assert_reported_at(line: u32, f: impl FnOnce()) -> String {
    let (message, site) = panic_site(f);
    let here = format!("{}:{line}", file!());
    assert_eq!(site, here, "panic reported at {site}, message: {message}");
    if message.contains("(at ") {
        assert!(message.contains(&here), "the message names another line: {message}");
    }
    message
}

macro_rules! reported_here {
    ($e:expr) => {{
        let line = line!();
        assert_reported_at(line, || {
            let _ = $e;
        })
    }};
}

#[test]
fn constructors() {
    let m = reported_here!(Tensor::randn_dtype(&[2], DType::I64));
    assert!(m.contains("float dtype"), "{m}");
    reported_here!(Tensor::rand_dtype(&[2], DType::I64));
    reported_here!(Tensor::zeros(&[1 << 40, 1 << 40]));
    reported_here!(Tensor::ones(&[1 << 40, 1 << 40]));
    reported_here!(Tensor::full(&[1 << 40, 1 << 40], 2.0));
    reported_here!(Tensor::randn(&[1 << 40, 1 << 40]));
    reported_here!(Tensor::from_vec(vec![1.0f32; 5], &[2, 3]));
    reported_here!(Tensor::arange(0.0, 1.0, -1.0));
    reported_here!(Tensor::ones(&[2]).item());
}

#[test]
fn tensor_arithmetic_and_shape_ops() {
    let ints = Tensor::from_vec(vec![1i64, 2], &[2]);
    reported_here!(&ints * 2.0);
    reported_here!(-&ints);
    reported_here!(ints.sum_to_shape(&[]));
    let x = Tensor::ones(&[2, 3]);
    reported_here!(&x + &Tensor::ones(&[4]));
    reported_here!(x.matmul(&Tensor::ones(&[2, 2])));
    reported_here!(x.reshape(&[4, -1]));
    reported_here!(x.narrow(1, 2, 2));
    reported_here!(x.broadcast_to(&[4, 3, 2]));
    reported_here!(x.transpose(0, 5));
    reported_here!(x.index_select(1, &Tensor::from_vec(vec![-1i64], &[1])));
    reported_here!(x.gather(1, &Tensor::from_vec(vec![3i64, 0], &[2, 1])));
    reported_here!(x.pad(&[(usize::MAX, 0)], 0.0));
    reported_here!(x.repeat(&[usize::MAX, 2]));
    reported_here!(cat(&[&x, &Tensor::ones(&[2, 4, 1])], 0));
}

#[test]
fn functional_ops_and_losses() {
    let x = Tensor::ones(&[1, 1, 4, 4]);
    reported_here!(F::conv2d(&x, &Tensor::ones(&[1, 2, 3, 3]), None));
    reported_here!(F::conv2d_with(
        &x,
        &Tensor::ones(&[1, 1, 3, 3]),
        None,
        ConvOptions::default().stride(0)
    ));
    reported_here!(F::max_pool2d(&x, 5));
    reported_here!(F::avg_pool2d_with(&x, 2, AvgPool2dOptions::default().padding(2)));
    reported_here!(F::pad_with(&x, &[4, 0], PadMode::Reflect));
    reported_here!(F::cross_entropy_with(
        &Tensor::ones(&[2, 3]),
        &Tensor::ones(&[2, 3]),
        CrossEntropyLoss::new().label_smoothing(2.0)
    ));
    reported_here!(MSELoss::new().forward(&x, &Tensor::ones(&[3])));
    let logits = Tensor::ones(&[2, 3]);
    reported_here!(F::cross_entropy(&logits, &Tensor::from_vec(vec![0i64, 3], &[2])));
    reported_here!(F::embedding(&Tensor::from_vec(vec![-1i64], &[1]), &logits));
    let p = Tensor::from_vec(vec![1.5f32], &[1]);
    reported_here!(F::binary_cross_entropy(&p, &Tensor::ones(&[1])));
    reported_here!(x.i((0, 0, 9)));
    reported_here!(x.select(1, 2));
    reported_here!(x.add_(&Tensor::ones(&[2])));
}

#[test]
fn layers_called_directly_or_through_dyn_layer() {
    let linear = Linear::new(3, 2);
    reported_here!(linear.forward(&Tensor::ones(&[4, 5])));
    let model = Sequential::new().add(Linear::new(3, 2)).add(ReLU);
    reported_here!(model.forward(&Tensor::ones(&[4, 5])));
    let boxed: Box<dyn Layer> = Box::new(Linear::new(3, 2));
    reported_here!(boxed.forward(&Tensor::ones(&[4, 5])));
}

#[test]
fn optimizer_step_on_a_view() {
    let w = Tensor::randn(&[3, 2]).t().detach().requires_grad();
    (&w * 2.0).sum().backward();
    let mut opt = SGD::new(vec![w], 0.1);
    let m = reported_here!(opt.step());
    assert!(m.contains("non-contiguous"), "{m}");
}

#[test]
fn data_loading() {
    reported_here!(DataLoader::new(Tensor::ones(&[4, 2]), Tensor::ones(&[3]), 2));
    reported_here!(DataLoader::new(Tensor::ones(&[4, 2]), Tensor::ones(&[4]), 0));
    reported_here!(select_rows(&Tensor::ones(&[4, 2]), &[4]));
}

#[test]
fn a_custom_rule_that_misreads_its_context() {
    let x = Tensor::ones(&[2]).requires_grad();
    let y = record("custom", Location::caller(), &[&x], Tensor::ones(&[2]), || {
        Backward::new(|ctx| {
            let line = line!() + 2;
            assert_reported_at(line, || {
                let _ = ctx.saved(3);
            });
            let line = line!() + 2;
            assert_reported_at(line, || {
                let _ = ctx.needs_input_grad(2);
            });
            let line = line!() + 2;
            assert_reported_at(line, || {
                let _ = ctx.output();
            });
            tapegrad::tape::smallvec::smallvec![Some(ctx.grad().clone())]
        })
    });
    y.sum().backward();
    assert_eq!(x.grad().unwrap().to_vec::<f32>(), vec![1.0, 1.0]);
}

#[test]
fn reductions_and_joins() {
    let ints = Tensor::from_vec(vec![1i64, 2], &[2]);
    let m = reported_here!(ints.sum());
    assert!(m.starts_with("sum:") && m.contains("float"), "{m}");
    reported_here!(ints.mean());
    reported_here!(ints.sum_dim(0, false));
    let x = Tensor::ones(&[2, 3]);
    reported_here!(x.norm_dim(2.0, 7, false));
    reported_here!(stack(&[&x, &x], 5));
}
