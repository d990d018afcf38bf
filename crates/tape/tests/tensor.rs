//! Tensors as values, with the tape crate alone: printing like PyTorch, storage that
//! crosses threads, and the per-thread random streams.

use tapegrad_tape::{Generator, RngState, Tensor};

#[test]
fn tensors_print_like_pytorch() {
    let t = Tensor::from_vec(vec![1.5f32, -2.25, 3.0, 4.0], &[2, 2]);
    assert_eq!(t.to_string(), "tensor([[ 1.5000, -2.2500],\n        [ 3.0000,  4.0000]])");
    let x = Tensor::from_vec(vec![1.0f64, 2.0], &[2]).requires_grad();
    assert_eq!(x.to_string(), "tensor([1., 2.], dtype=float64, requires_grad=True)");
    assert_eq!((&x * &x).to_string(), "tensor([1., 4.], dtype=float64, grad_fn=<mul>)");
    assert_eq!(format!("{:?}", Tensor::scalar(0.5f32)), "tensor(0.5000, shape=[])");
    let big = Tensor::arange(0.0, 2000.0, 1.0);
    let s = big.to_string();
    assert!(s.starts_with("tensor([   0.,    1.,    2., ..., 1997., 1998., 1999.]"), "{s}");
    assert!(s.contains("shape=[2000]"), "{s}");
    assert_eq!(
        Tensor::from_vec(vec![1e-5f32, 1.0], &[2]).to_string(),
        "tensor([1.0000e-05, 1.0000e+00])"
    );
}

#[test]
fn storage_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<tapegrad_tape::Storage>();
    let t = Tensor::randn(&[4]);
    let storage = t.storage();
    let back = std::thread::spawn(move || storage.len()).join().unwrap();
    assert_eq!(back, 4);
}

#[test]
fn threads_draw_different_streams() {
    let here = Tensor::randn(&[4]).to_vec::<f32>();
    let there = std::thread::spawn(|| Tensor::randn(&[4]).to_vec::<f32>()).join().unwrap();
    let other = std::thread::spawn(|| Tensor::randn(&[4]).to_vec::<f32>()).join().unwrap();
    assert_ne!(here, there);
    assert_ne!(there, other);
}

#[test]
fn state_round_trips_through_hex() {
    let state = Generator::seeded(9).state();
    assert_eq!(RngState::from_hex(&state.to_hex()), Some(state));
    assert_eq!(RngState::from_hex(&"g".repeat(64)), None);
}

/// A thread that ends while one of its own thread-locals still holds a recorded tensor:
/// its destructor frees the tensor's nodes after the tape's other per-thread state may be
/// gone (a failed access there would abort the process instead of ending the thread).
#[test]
fn a_thread_ends_cleanly_with_a_graph_in_its_thread_locals() {
    use std::cell::RefCell;
    thread_local! {
        static HELD: RefCell<Option<Tensor>> = const { RefCell::new(None) };
    }
    let joined = std::thread::spawn(|| {
        let x = Tensor::ones(&[2]).requires_grad();
        // Set up after the tape: torn down before it, and after what the op set up.
        HELD.with(|held| *held.borrow_mut() = Some(&x * 2.0 + 1.0));
        HELD.with(|held| held.borrow().as_ref().map(|y| y.shape().to_vec()))
    })
    .join();
    assert_eq!(joined.ok().flatten(), Some(vec![2]));
}
