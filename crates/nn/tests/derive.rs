//! `#[derive(Module)]`: names, kinds, train/eval and dtype changes reach every field.

use tapegrad_nn::*;
use tapegrad_ops::prelude::*;
use tapegrad_tape::{DType, Tensor};

#[derive(Module)]
struct Block {
    conv: Conv2d,
    bn: BatchNorm2d,
    drop: Dropout,
}

impl Forward for Block {
    fn forward(&self, x: &Tensor) -> Tensor {
        self.drop.forward(&self.bn.forward(&self.conv.forward(x)).relu())
    }
}

#[derive(Module)]
struct Net {
    stem: Block,
    blocks: Vec<Block>,
    head: Option<Linear>,
    #[module(name = "fc_out")]
    out: Linear,
    #[module(buffer)]
    step: Tensor,
    #[module(skip)]
    note: Vec<&'static str>,
    channels: usize,
}

fn block(c: usize) -> Block {
    Block {
        conv: Conv2d::new(c, c, 3).padding(1),
        bn: BatchNorm2d::new(c),
        drop: Dropout::new(0.5),
    }
}

fn net() -> Net {
    Net {
        stem: block(2),
        blocks: vec![block(2), block(2)],
        head: None,
        out: Linear::new(8, 3),
        step: Tensor::zeros(&[1]),
        note: vec!["unused"],
        channels: 2,
    }
}

impl Forward for Net {
    fn forward(&self, x: &Tensor) -> Tensor {
        let mut h = self.stem.forward(x);
        for b in &self.blocks {
            h = b.forward(&h);
        }
        let h = h.flatten(1, -1);
        self.out.forward(&self.head.as_ref().map_or(h.clone(), |l| l.forward(&h)))
    }
}

#[test]
fn state_dict_names_follow_pytorch() {
    let model = net();
    let names: Vec<String> = model.state_dict().into_iter().map(|(n, _)| n).collect();
    let expected_block = |p: &str| {
        [
            "conv.weight",
            "conv.bias",
            "bn.weight",
            "bn.bias",
            "bn.running_mean",
            "bn.running_var",
            "bn.num_batches_tracked",
        ]
        .map(|n| format!("{p}.{n}"))
    };
    let mut expected: Vec<String> = Vec::new();
    for p in ["stem", "blocks.0", "blocks.1"] {
        expected.extend(expected_block(p));
    }
    expected.extend(["fc_out.weight".into(), "fc_out.bias".into(), "step".into()]);
    assert_eq!(names, expected);
    assert_eq!(model.parameters().len(), 3 * 4 + 2);
    let buffers: Vec<String> = model.named_buffers().into_iter().map(|(n, _)| n).collect();
    assert_eq!(buffers.len(), 3 * 3 + 1);
    assert_eq!(buffers.last().unwrap(), "step");
    assert_eq!((model.note.len(), model.channels), (1, 2));
}

#[test]
fn an_optional_submodule_appears_when_present() {
    let mut model = net();
    model.head = Some(Linear::new(8, 8));
    let names: Vec<String> = model.named_parameters().into_iter().map(|(n, _)| n).collect();
    assert!(names.contains(&"head.weight".to_string()));
    assert_eq!(model.forward(&Tensor::randn(&[2, 2, 2, 2])).shape(), &[2, 3]);
}

#[test]
fn eval_reaches_every_batch_norm_and_dropout() {
    let model = net();
    let x = Tensor::randn(&[4, 2, 2, 2]);
    model.eval();
    // In evaluation nothing is random and the running statistics stay where they are.
    let (a, b) = (model.forward(&x), model.forward(&x));
    assert_eq!(a.to_vec::<f32>(), b.to_vec::<f32>());
    for (name, t) in model.named_buffers() {
        if name.ends_with("num_batches_tracked") {
            assert_eq!(t.to_vec::<i64>(), vec![0], "{name}");
        }
    }
    model.train();
    model.forward(&x);
    for (name, t) in model.named_buffers() {
        if name.ends_with("num_batches_tracked") {
            assert_eq!(t.to_vec::<i64>(), vec![1], "{name} missed train()");
        }
    }
}

#[test]
fn dtype_changes_and_freezing_reach_nested_fields() {
    let mut model = net();
    model.to_dtype(DType::F64);
    for (name, t) in model.state_dict() {
        let expected = if name.ends_with("num_batches_tracked") { DType::I64 } else { DType::F64 };
        assert_eq!(t.dtype(), expected, "{name}");
    }
    assert_eq!(
        model.forward(&Tensor::randn(&[1, 2, 2, 2]).to_dtype(DType::F64)).dtype(),
        DType::F64
    );
    model.freeze();
    assert!(model.trainable_parameters().is_empty());
}

#[test]
fn state_dicts_move_between_derived_models() {
    let a = net();
    let mut b = net();
    b.load_state_dict(&a.state_dict()).unwrap();
    a.eval();
    b.eval();
    let x = Tensor::randn(&[2, 2, 2, 2]);
    assert_eq!(a.forward(&x).to_vec::<f32>(), b.forward(&x).to_vec::<f32>());
}

/// Tuple structs name fields by position; generic fields work with a bound.
#[derive(Module)]
struct Pair<M: Module>(M, Linear);

#[test]
fn tuple_and_generic_structs() {
    let pair = Pair(Sequential::new().add(Linear::new(2, 2)).add(ReLU), Linear::no_bias(2, 1));
    let names: Vec<String> = pair.named_parameters().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["0.0.weight", "0.0.bias", "1.weight"]);
}

/// A derived module is a layer like any other inside `Sequential`.
#[test]
fn derived_modules_compose_in_sequential() {
    let model = Sequential::new().add(block(2)).add(Flatten::default()).add(Linear::new(8, 1));
    let names: Vec<String> = model.named_parameters().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names[0], "0.conv.weight");
    assert_eq!(model.forward(&Tensor::randn(&[3, 2, 2, 2])).shape(), &[3, 1]);
    let boxed: Vec<Box<dyn Layer>> = vec![Box::new(block(2)), Box::new(ReLU)];
    #[derive(Module)]
    struct Boxes {
        layers: Vec<Box<dyn Layer>>,
    }
    let boxes = Boxes { layers: boxed };
    assert_eq!(boxes.named_parameters()[0].0, "layers.0.conv.weight");
    boxes.eval();
    let x = Tensor::randn(&[2, 2, 2, 2]);
    let run = || boxes.layers.iter().fold(x.clone(), |h, l| l.forward(&h)).to_vec::<f32>();
    assert_eq!(run(), run());
}
