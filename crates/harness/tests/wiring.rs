//! A model whose stack is not plain, written in candle ops alone (its forward, nothing
//! else), trained through the generic path. Its wiring is data ([`Wiring`]): the bottom
//! layer at step t also reads the top layer's `h` of step t-1, and the output layer reads
//! both layers' `h`. Its loss and gradients match PyTorch's (`bench/torch_wiring.py`, which
//! wrote `fixtures/wiring/top_down.safetensors`), and it trains.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Result, Tensor, Var};
use harness::adam::Adam;
use harness::{loss_and_grads, train_step, Backward, Plan, Step};
use lstm_core::{GateOps, Head, Recurrent, Stack, Wiring};

/// Two fully connected LSTM layers over frames of 1x3x4, wired top-down, the output layer
/// reading both: the model of `bench/torch_wiring.py`.
struct TopDown {
    stack: Stack,
    /// Per layer `[weight_ih, weight_hh, bias_ih, bias_hh]`, then the head's weight and
    /// bias: the drivers' layout order.
    params: Vec<Tensor>,
}

/// The parameter names, in the drivers' layout order.
fn names() -> Vec<String> {
    let mut names = Vec::new();
    for k in 0..2 {
        for p in ["weight_ih", "weight_hh", "bias_ih", "bias_hh"] {
            names.push(format!("layers.{k}.{p}"));
        }
    }
    names.extend(["head.weight".into(), "head.bias".into()]);
    names
}

impl TopDown {
    fn new(params: Vec<Tensor>) -> TopDown {
        let stack = Stack {
            frame: [1, 3, 4],
            patch: 1,
            flat: true,
            hidden: vec![5, 4],
            peephole: false,
            head: Head::Affine,
            wiring: Wiring {
                head_reads: vec![0, 1],
                top_down: true,
            },
        };
        stack.check().unwrap();
        assert_eq!(stack.input_channels(0), 12 + 4);
        assert_eq!(stack.head_channels(), 9);
        TopDown { stack, params }
    }

    /// `x W^T + b`: `[n, in] -> [n, out]`.
    fn affine(x: &Tensor, w: &Tensor, b: &Tensor) -> Result<Tensor> {
        x.matmul(&w.t()?)?.broadcast_add(b)
    }
}

impl GateOps for TopDown {
    fn input_preact(&self, k: usize, x: &Tensor) -> Result<Tensor> {
        let p = &self.params[4 * k..4 * k + 4];
        Self::affine(x, &p[0], &p[2])
    }

    fn add_recurrent(&self, k: usize, preact: &Tensor, h: Option<&Tensor>) -> Result<Tensor> {
        let p = &self.params[4 * k..4 * k + 4];
        match h {
            Some(h) => preact + Self::affine(h, &p[1], &p[3])?,
            None => preact.broadcast_add(&p[3]),
        }
    }

    fn head_forward(&self, h: &Tensor) -> Result<Tensor> {
        Self::affine(h, &self.params[8], &self.params[9])
    }
}

impl Recurrent for TopDown {
    fn stack(&self) -> &Stack {
        &self.stack
    }

    fn parameters(&self) -> Vec<&Tensor> {
        self.params.iter().collect()
    }
}

/// The largest absolute value of a tensor.
fn max_abs(t: &Tensor) -> f64 {
    let values = t.abs().and_then(|a| a.flatten_all()).unwrap();
    values.max(0).and_then(|m| m.to_scalar::<f64>()).unwrap()
}

fn fixture() -> HashMap<String, Tensor> {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/wiring/top_down.safetensors");
    candle_core::safetensors::load(path, &Device::Cpu).unwrap()
}

#[test]
fn a_top_down_stack_matches_pytorch() {
    let saved = fixture();
    // Variables: autograd follows those alone.
    let vars: Vec<Var> = names()
        .iter()
        .map(|n| Var::from_tensor(&saved[n]).unwrap())
        .collect();
    let model = TopDown::new(vars.iter().map(|v| v.as_tensor().clone()).collect());
    let window = &saved["window"]; // [L, B, C, H, W], f64
    let plan = Plan::forecast(3, 2, 2);
    let (loss, grads) = loss_and_grads(&model, window, &plan, Backward::Fastest).unwrap();
    let reference: f64 = saved["loss"].get(0).unwrap().to_scalar().unwrap();
    // The written-out backward takes plain stacks only; the harness went to autograd.
    let refused = lstm_core::tensors::bptt(&model, window, &plan).unwrap_err();
    assert!(
        refused.to_string().contains("plain stacks only"),
        "{refused}"
    );
    println!("loss {loss} (PyTorch {reference})");
    assert!(
        (loss - reference).abs() <= 1e-12 * reference,
        "{loss} vs {reference}"
    );
    for (name, grad) in names().iter().zip(&grads) {
        let theirs = &saved[&format!("grad.{name}")];
        let diff = max_abs(&(grad - theirs).unwrap());
        let scale = max_abs(theirs);
        println!("{name:<20} max|diff| {diff:.2e} max|reference| {scale:.2e}");
        assert!(scale > 0.0, "{name}: PyTorch's gradient is all zeros");
        assert!(diff <= 1e-10 * scale, "{name}: {diff:e} against {scale:e}");
    }
}

#[test]
fn a_top_down_stack_trains_through_the_generic_path() {
    let saved = fixture();
    let vars: Vec<Var> = names()
        .iter()
        .map(|n| Var::from_tensor(&saved[n].to_dtype(DType::F32).unwrap()).unwrap())
        .collect();
    let model = TopDown::new(vars.iter().map(|v| v.as_tensor().clone()).collect());
    let window = saved["window"].to_dtype(DType::F32).unwrap();
    let plan = Plan::forecast(3, 2, 2);
    let mut adam = Adam::new(Default::default(), &vars).unwrap();
    let losses: Vec<f64> = (0..30)
        .map(|_| {
            match train_step(&model, &window, &plan, &vars, &mut adam, Backward::Fastest).unwrap() {
                Step::Updated {
                    loss,
                    not_finite: None,
                } => loss,
                other => panic!("{other:?}"),
            }
        })
        .collect();
    println!("losses {losses:?}");
    assert!(
        losses.windows(2).all(|w| w[1] < w[0]),
        "every step lowers the loss"
    );
    assert!(
        losses[29] < 0.75 * losses[0],
        "{} -> {}",
        losses[0],
        losses[29]
    );
}
