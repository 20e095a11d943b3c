//! Models whose stack is not plain, written in candle ops alone (their forward, nothing
//! else), trained through the generic path. Their wiring is data ([`Wiring`]): top-down
//! (the bottom layer at step t also reads the top layer's `h` of step t-1, the output
//! layer reads both layers' `h`) and Shi et al.'s encoder-forecaster (a second stack that
//! starts from the first one's states, the output layer reading both of its layers). Their
//! losses and gradients match PyTorch's (`bench/torch_wiring.py`, which wrote
//! `fixtures/wiring/`), and they train.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Result, Tensor, Var};
use harness::adam::Adam;
use harness::{loss_and_grads, train_step, Backward, Plan, Step};
use lstm_core::{GateOps, Head, Recurrent, Stack, Wiring};

/// Fully connected LSTM layers over frames of 1x3x4 with an output layer, wired as a
/// case of `bench/torch_wiring.py` says.
struct Wired {
    stack: Stack,
    /// Per layer `[weight_ih, weight_hh, bias_ih, bias_hh]`, then the head's weight and
    /// bias: the drivers' layout order.
    params: Vec<Tensor>,
}

/// The stacks of `bench/torch_wiring.py`'s cases.
fn stack(case: &str) -> Stack {
    let (hidden, wiring) = match case {
        "top_down" => (
            vec![5, 4],
            Wiring {
                head_reads: vec![0, 1],
                top_down: true,
                encoder_layers: 0,
                ..Wiring::default()
            },
        ),
        "encoder_forecaster" => (
            vec![5, 4, 5, 4],
            Wiring {
                head_reads: vec![2, 3],
                top_down: false,
                encoder_layers: 2,
                ..Wiring::default()
            },
        ),
        other => panic!("no case {other}"),
    };
    let stack = Stack {
        frame: [1, 3, 4],
        patch: 1,
        flat: true,
        hidden,
        peephole: false,
        head: Head::Affine,
        wiring,
    };
    stack.check().unwrap();
    assert_eq!(stack.head_channels(), 9);
    stack
}

/// The parameter names of `layers` layers, in the drivers' layout order.
fn names(layers: usize) -> Vec<String> {
    let mut names = Vec::new();
    for k in 0..layers {
        for p in ["weight_ih", "weight_hh", "bias_ih", "bias_hh"] {
            names.push(format!("layers.{k}.{p}"));
        }
    }
    names.extend(["head.weight".into(), "head.bias".into()]);
    names
}

impl Wired {
    /// `x W^T + b`: `[n, in] -> [n, out]`.
    fn affine(x: &Tensor, w: &Tensor, b: &Tensor) -> Result<Tensor> {
        x.matmul(&w.t()?)?.broadcast_add(b)
    }
}

impl GateOps for Wired {
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
        let at = 4 * self.stack.layers();
        Self::affine(h, &self.params[at], &self.params[at + 1])
    }
}

impl Recurrent for Wired {
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

fn fixture(case: &str) -> HashMap<String, Tensor> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("tests/fixtures/wiring/{case}.safetensors"));
    candle_core::safetensors::load(path, &Device::Cpu).unwrap()
}

/// The model of `case` from its fixture's weights in `dtype`, as variables (autograd
/// follows those alone), and the fixture.
fn model(case: &str, dtype: DType) -> (Wired, Vec<Var>, HashMap<String, Tensor>) {
    let saved = fixture(case);
    let stack = stack(case);
    let vars: Vec<Var> = names(stack.layers())
        .iter()
        .map(|n| Var::from_tensor(&saved[n].to_dtype(dtype).unwrap()).unwrap())
        .collect();
    let params = vars.iter().map(|v| v.as_tensor().clone()).collect();
    (Wired { stack, params }, vars, saved)
}

/// The loss and gradients of `case` in f64 against PyTorch's: 1e-12 and 1e-10.
fn matches_pytorch(case: &str) {
    let (model, _, saved) = model(case, DType::F64);
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
    println!("{case}: loss {loss} (PyTorch {reference})");
    assert!(
        (loss - reference).abs() <= 1e-12 * reference,
        "{loss} vs {reference}"
    );
    for (name, grad) in names(model.stack.layers()).iter().zip(&grads) {
        let theirs = &saved[&format!("grad.{name}")];
        let diff = max_abs(&(grad - theirs).unwrap());
        let scale = max_abs(theirs);
        println!("{name:<20} max|diff| {diff:.2e} max|reference| {scale:.2e}");
        assert!(scale > 0.0, "{name}: PyTorch's gradient is all zeros");
        assert!(diff <= 1e-10 * scale, "{name}: {diff:e} against {scale:e}");
    }
}

/// Thirty Adam steps in f32 on the fixture's batch, each lowering the loss.
fn trains(case: &str) {
    let (model, vars, saved) = model(case, DType::F32);
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
    println!("{case}: losses {losses:?}");
    assert!(
        losses.windows(2).all(|w| w[1] < w[0]),
        "every step lowers the loss"
    );
    assert!(
        losses[29] < 0.8 * losses[0],
        "{} -> {}",
        losses[0],
        losses[29]
    );
}

#[test]
fn a_top_down_stack_matches_pytorch_and_trains() {
    matches_pytorch("top_down");
    trains("top_down");
}

#[test]
fn an_encoder_forecaster_matches_pytorch_and_trains() {
    matches_pytorch("encoder_forecaster");
    trains("encoder_forecaster");
}

#[test]
fn an_encoder_forecaster_refuses_a_plan_without_forecast_steps() {
    let (model, _, saved) = model("encoder_forecaster", DType::F64);
    let window = &saved["window"];
    let err = loss_and_grads(&model, window, &Plan::one_step(5, 2), Backward::Fastest).unwrap_err();
    assert!(
        err.to_string().contains("encoder-forecaster forecasts"),
        "{err}"
    );
}
