//! A fully connected LSTM next-frame predictor: the seed's, and stacks of it.
//!
//! A frame is flattened to a vector `x` of `D = C*H*W` values. Each layer makes its four
//! gate pre-activations with two matrix products, `W_ih x + b_ih + W_hh h + b_hh`, runs the
//! shared LSTM cell, and layer `k + 1` reads layer `k`'s `h`; a linear layer predicts the
//! next frame from the last one, `out(h)`.
//!
//! Dimension legend: `T` steps, `B` batch, `D` values per frame, `N_k` hidden units of
//! layer `k` (the seed: one layer, `D = N = 65*65 = 4225`).
//!
//! Parameters follow PyTorch's `nn.LSTM` + `nn.Linear` names and layouts, gates stacked
//! i, f, g, o, so a `state_dict` of `lstm = nn.LSTM(D, N, num_layers)` and
//! `out = nn.Linear(N, D)` saved with safetensors loads unchanged:
//!
//! ```
//! use lstm_linear::Config;
//! let specs = Config::default().parameter_specs();
//! let names: Vec<_> = specs.iter().map(|s| (s.name.as_str(), s.shape.clone())).collect();
//! assert_eq!(names[0], ("lstm.weight_ih_l0", vec![4 * 4225, 4225]));
//! assert_eq!(names[4], ("out.weight", vec![4225, 4225]));
//! ```

use std::borrow::Cow;

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;
use lstm_core::linalg::{gemv, gemv_t, matmul};
use lstm_core::stack::one_or_many;
use lstm_core::{
    GateIo, GateKernels, GateOps, GateOpsBackward, Grad, Head, HeadSlices, LayerSlices, Outer,
    ParamSpec, Recurrent, Stack,
};
use serde::{Deserialize, Serialize};

mod flags;
pub use flags::{Flags, Output};

/// The linear model's shape. Defaults are the seed's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    /// Channels per frame (1: grey).
    pub channels: usize,
    /// Frame height in pixels.
    pub height: usize,
    /// Frame width in pixels.
    pub width: usize,
    /// Hidden units of each layer. The seed: one layer of 4225, one per pixel.
    #[serde(with = "one_or_many")]
    pub hidden: Vec<usize>,
    /// A sigmoid after the output layer: predictions in (0, 1), and the cross-entropy loss
    /// (`--loss bce`) taken from the output layer's logits. The seed's output is linear.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sigmoid: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            channels: 1,
            height: 65,
            width: 65,
            hidden: vec![4225],
            sigmoid: false,
        }
    }
}

impl Config {
    /// Values per flattened frame, `D`.
    pub fn frame_len(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// The stack's shape, checked.
    pub fn stack(&self) -> Result<Stack> {
        let stack = Stack {
            frame: [self.channels, self.height, self.width],
            patch: 1,
            flat: true,
            hidden: self.hidden.clone(),
            peephole: false,
            head: match self.sigmoid {
                true => Head::AffineSigmoid,
                false => Head::Affine,
            },
            wiring: Default::default(),
        };
        stack.check().map_err(candle_core::Error::Msg)?;
        Ok(stack)
    }

    /// The parameters, in the drivers' layout order, with the seed's initialisation
    /// (weights `Normal(0, sqrt(1/fan_in))`, biases zero).
    pub fn parameter_specs(&self) -> Vec<ParamSpec> {
        let d = self.frame_len();
        let mut specs = Vec::new();
        for (k, &n) in self.hidden.iter().enumerate() {
            let input = if k == 0 { d } else { self.hidden[k - 1] };
            let name = |what: &str| format!("lstm.{what}_l{k}");
            specs.push(ParamSpec::weight(name("weight_ih"), &[4 * n, input], input));
            specs.push(ParamSpec::weight(name("weight_hh"), &[4 * n, n], n));
            specs.push(ParamSpec::bias(name("bias_ih"), &[4 * n]));
            specs.push(ParamSpec::bias(name("bias_hh"), &[4 * n]));
        }
        let top = *self.hidden.last().unwrap_or(&0);
        specs.push(ParamSpec::weight("out.weight", &[d, top], top));
        specs.push(ParamSpec::bias("out.bias", &[d]));
        specs
    }
}

/// One layer's tensors.
#[derive(Debug, Clone)]
pub struct LinearLayer {
    /// `[4N, in]`
    pub weight_ih: Tensor,
    /// `[4N, N]`
    pub weight_hh: Tensor,
    /// `[4N]`
    pub bias_ih: Tensor,
    /// `[4N]`
    pub bias_hh: Tensor,
}

/// The fully connected LSTM and its output layer.
#[derive(Debug, Clone)]
pub struct LinearLstm {
    config: Config,
    stack: Stack,
    layers: Vec<LinearLayer>,
    /// `[D, N_last]`
    out_weight: Tensor,
    /// `[D]`
    out_bias: Tensor,
}

impl LinearLstm {
    /// Builds the model from a `VarBuilder`: a `VarMap` for training from scratch (weights
    /// drawn as the seed draws them, biases zero), or tensors loaded from a file.
    pub fn new(config: Config, vb: VarBuilder) -> Result<LinearLstm> {
        let tensors = lstm_core::spec::tensors_from(&config.parameter_specs(), &vb)?;
        Self::from_tensors(config, tensors)
    }

    /// Builds the model from its tensors, in the order of [`Config::parameter_specs`],
    /// checking each shape.
    pub fn from_tensors(config: Config, tensors: Vec<Tensor>) -> Result<LinearLstm> {
        let specs = config.parameter_specs();
        lstm_core::spec::check_shapes(&specs, &tensors)?;
        let stack = config.stack()?;
        let mut tensors = tensors.into_iter();
        let mut next = || tensors.next().expect("counted above");
        let layers = (0..stack.layers())
            .map(|_| LinearLayer {
                weight_ih: next(),
                weight_hh: next(),
                bias_ih: next(),
                bias_hh: next(),
            })
            .collect();
        Ok(LinearLstm {
            config,
            stack,
            layers,
            out_weight: next(),
            out_bias: next(),
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// `(D, N_top)`.
    fn head_dims(&self) -> (usize, usize) {
        (self.config.frame_len(), self.stack.top_channels())
    }

    /// `(4N, in, N)` of layer `k`.
    fn layer_dims(&self, k: usize) -> (usize, usize, usize) {
        let n = self.stack.hidden[k];
        (4 * n, self.stack.input_channels(k), n)
    }
}

/// One-step-ahead predictions: `[T, B, C, H, W]` inputs to `[T, B, C, H, W]` predictions.
impl Module for LinearLstm {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        lstm_core::tensors::forward(self, xs)
    }
}

impl Recurrent for LinearLstm {
    fn stack(&self) -> &Stack {
        &self.stack
    }

    fn parameters(&self) -> Vec<&Tensor> {
        let mut all = Vec::new();
        for l in &self.layers {
            all.extend([&l.weight_ih, &l.weight_hh, &l.bias_ih, &l.bias_hh]);
        }
        all.extend([&self.out_weight, &self.out_bias]);
        all
    }

    fn backward_ops(&self) -> Option<&dyn GateOpsBackward> {
        Some(self)
    }

    fn kernels(&self) -> Option<&dyn GateKernels> {
        Some(self)
    }

    fn onnx(&self) -> Option<&dyn lstm_core::onnx::OnnxGates> {
        Some(self)
    }
}

/// `Gemm(x, W_ih, b_ih) + Gemm(h, W_hh, b_hh)` (`transB`); the output layer a `Gemm`.
impl lstm_core::onnx::OnnxGates for LinearLstm {
    fn onnx_gates(
        &self,
        g: &mut lstm_core::onnx::Graph,
        k: usize,
        x: &str,
        h: &str,
    ) -> Result<String> {
        let transposed = [lstm_core::onnx::Attr::Int("transB", 1)];
        let name = |what: &str| format!("lstm.{what}_l{k}");
        let from_x = g.node(
            "Gemm",
            &[x, &name("weight_ih"), &name("bias_ih")],
            &transposed,
        );
        let from_h = g.node(
            "Gemm",
            &[h, &name("weight_hh"), &name("bias_hh")],
            &transposed,
        );
        Ok(g.node("Add", &[&from_x, &from_h], &[]))
    }

    fn onnx_head(&self, g: &mut lstm_core::onnx::Graph, h: &str) -> Result<String> {
        let transposed = [lstm_core::onnx::Attr::Int("transB", 1)];
        Ok(g.node("Gemm", &[h, "out.weight", "out.bias"], &transposed))
    }
}

impl GateOps for LinearLstm {
    /// `W_ih x + b_ih` for all samples at once: `[n, in] -> [n, 4N]`.
    fn input_preact(&self, k: usize, x: &Tensor) -> Result<Tensor> {
        let l = &self.layers[k];
        l.weight_ih
            .matmul(&x.t()?)? // [4N, n]
            .t()? // [n, 4N]
            .broadcast_add(&l.bias_ih)
    }

    /// Written as `W_hh @ h^T` rather than `h @ W_hh^T`: autograd then produces the weight
    /// gradient as one contiguous `[4N, N]` tensor in the parameter's own layout, instead
    /// of a transposed view that every later accumulation has to walk element by element.
    fn add_recurrent(&self, k: usize, preact: &Tensor, h: Option<&Tensor>) -> Result<Tensor> {
        let l = &self.layers[k];
        match h {
            Some(h) => {
                let recurrent = l
                    .weight_hh
                    .matmul(&h.t()?)? // [4N, B]
                    .t()? // [B, 4N]
                    .broadcast_add(&l.bias_hh)?;
                preact + recurrent
            }
            // h_0 = 0: the recurrent product contributes only its bias.
            None => preact.broadcast_add(&l.bias_hh),
        }
    }

    /// The output layer, `out_w h + out_b`: `[n, N] -> [n, D]`.
    fn head_forward(&self, h: &Tensor) -> Result<Tensor> {
        self.out_weight
            .matmul(&h.t()?)? // [D, n]
            .t()? // [n, D]
            .broadcast_add(&self.out_bias)
    }
}

impl GateOpsBackward for LinearLstm {
    fn input_backward(&self, k: usize, d_preact: &Tensor) -> Result<Tensor> {
        d_preact.matmul(&self.layers[k].weight_ih) // [n, in]
    }

    fn recurrent_backward(&self, k: usize, d_preact: &Tensor) -> Result<Tensor> {
        d_preact.matmul(&self.layers[k].weight_hh) // [B, N]
    }

    fn gate_grads(
        &self,
        k: usize,
        inputs: &Tensor,
        d_preact: &Tensor,
        recurrent: Option<(&Tensor, &Tensor)>,
    ) -> Result<[Tensor; 4]> {
        // One product over all samples each, instead of one outer product per step.
        let d_weight_ih = d_preact.t()?.matmul(inputs)?; // [4N, in]
        let d_weight_hh = match recurrent {
            Some((h, d)) => d.t()?.matmul(h)?, // [4N, N]
            None => self.layers[k].weight_hh.zeros_like()?,
        };
        let d_bias = d_preact.sum(0)?; // [4N]: b_ih and b_hh enter every step alike
        Ok([d_weight_ih, d_weight_hh, d_bias.clone(), d_bias])
    }

    fn head_backward(&self, dy: &Tensor) -> Result<Tensor> {
        dy.matmul(&self.out_weight) // [n, N]
    }

    fn head_grads(&self, h: &Tensor, dy: &Tensor) -> Result<[Tensor; 2]> {
        Ok([dy.t()?.matmul(h)?, dy.sum(0)?])
    }
}

/// The slice kernels: `gemm` for everything batched over samples, matrix-vector products
/// (four rows of `W_hh` at a time, the memory-bound part) for one window's recurrent steps.
/// Every weight gradient is a sum of outer products, handed to the optimizer as such
/// ([`Outer`]), so the 643 MB of the seed's weight gradients are never stored.
impl GateKernels for LinearLstm {
    /// `out = (x W_ih^T + b_ih) + b_hh`, in that order: with the recurrent part added last
    /// ([`GateKernels::add_recurrent`]), the same sums the seed's first version made.
    fn input_preact(&self, k: usize, w: &LayerSlices, x: &[f32], n: usize, out: &mut [f32]) {
        let (g4, input, _) = self.layer_dims(k);
        matmul(out, x, false, w.w_ih, true, (n, input, g4), false);
        for row in out.chunks_exact_mut(g4) {
            for ((v, b_ih), b_hh) in row.iter_mut().zip(w.b_ih).zip(w.b_hh) {
                *v = *v + b_ih + b_hh;
            }
        }
    }

    fn add_recurrent(
        &self,
        k: usize,
        w: &LayerSlices,
        h: Option<&[f32]>,
        batch: usize,
        preact: &mut [f32],
    ) {
        // h_0 = 0: both biases are in already.
        let Some(h) = h else { return };
        let (g4, _, n) = self.layer_dims(k);
        let mut recurrent = vec![0f32; batch * g4];
        if batch == 1 {
            gemv(w.w_hh, g4, n, h, &mut recurrent);
        } else {
            matmul(
                &mut recurrent,
                h,
                false,
                w.w_hh,
                true,
                (batch, n, g4),
                false,
            );
        }
        // Addition commutes exactly: the seed's sum `W_hh h + (input half)`.
        for (p, r) in preact.iter_mut().zip(&recurrent) {
            *p += r;
        }
    }

    fn input_backward(&self, k: usize, w: &LayerSlices, d: &[f32], n: usize, dx: &mut [f32]) {
        let (g4, input, _) = self.layer_dims(k);
        matmul(dx, d, false, w.w_ih, false, (n, g4, input), false);
    }

    fn recurrent_backward(
        &self,
        k: usize,
        w: &LayerSlices,
        d: &[f32],
        batch: usize,
        dh: &mut [f32],
    ) {
        let (g4, _, n) = self.layer_dims(k);
        if batch == 1 {
            gemv_t(w.w_hh, g4, n, d, dh);
        } else {
            matmul(dh, d, false, w.w_hh, false, (batch, g4, n), true);
        }
    }

    fn gate_grads<'a>(&self, k: usize, io: &GateIo<'a>) -> [Grad<'a>; 4] {
        let (g4, _, n) = self.layer_dims(k);
        let (steps, batch) = (io.steps, io.batch);
        let mut d_b = vec![0f32; g4];
        for row in io.d_preact.chunks_exact(g4) {
            for (acc, v) in d_b.iter_mut().zip(row) {
                *acc += v;
            }
        }
        [
            Grad::Outer(Outer {
                a: io.d_preact,
                a_stride: g4,
                b: io.inputs,
                steps: steps * batch,
            }),
            // Step 0 read h_0 = 0: steps 1 .. T-1 pair with the h of the step before.
            Grad::Outer(Outer {
                a: &io.d_preact[batch * g4..],
                a_stride: g4,
                b: &io.hs[..(steps - 1) * batch * n],
                steps: (steps - 1) * batch,
            }),
            Grad::Values(Cow::Owned(d_b.clone())),
            Grad::Values(Cow::Owned(d_b)),
        ]
    }

    fn head_forward(&self, w: &HeadSlices, h: &[f32], n: usize, y: &mut [f32]) {
        let (d, top) = self.head_dims();
        matmul(y, h, false, w.weight, true, (n, top, d), false);
        for row in y.chunks_exact_mut(d) {
            for (v, b) in row.iter_mut().zip(w.bias) {
                *v += b;
            }
        }
    }

    fn head_backward(&self, w: &HeadSlices, dy: &[f32], n: usize, dh: &mut [f32]) {
        let (d, top) = self.head_dims();
        matmul(dh, dy, false, w.weight, false, (n, d, top), false);
    }

    fn head_grads<'a>(&self, h: &'a [f32], dy: &'a [f32], n: usize) -> [Grad<'a>; 2] {
        let (d, _) = self.head_dims();
        let mut d_b = vec![0f32; d];
        for row in dy.chunks_exact(d) {
            for (acc, v) in d_b.iter_mut().zip(row) {
                *acc += v;
            }
        }
        [
            Grad::Outer(Outer {
                a: dy,
                a_stride: d,
                b: h,
                steps: n,
            }),
            Grad::Values(Cow::Owned(d_b)),
        ]
    }
}

impl lstm_core::SequenceModel for LinearLstm {
    const KIND: &'static str = "linear";
    const ABOUT: &'static str = "Fully connected LSTM with a linear output layer";
    const SIZE_FLAG: &'static str = "--hidden";
    const SLICE_KERNELS: bool = true;
    const SIGMOID_HEAD_FLAG: Option<&'static str> = Some("--output sigmoid");
    type Config = Config;
    type Flags = Flags;

    fn config(flags: &Flags, frame: [usize; 3]) -> Result<Config> {
        flags.config(frame)
    }

    /// Up to two: the matrix-vector products are bound by memory bandwidth, which a second
    /// core adds to and a third does not (on the 2-core machines this was tuned on).
    fn default_threads(_: &Flags, available: usize) -> usize {
        available.min(2)
    }

    fn parameter_specs(config: &Config, frame: [usize; 3]) -> Result<Vec<ParamSpec>> {
        check_frame(config, frame)?;
        Ok(config.parameter_specs())
    }

    fn layout(config: &Config, frame: [usize; 3]) -> Result<Stack> {
        check_frame(config, frame)?;
        config.stack()
    }

    fn load(config: &Config, frame: [usize; 3], vb: VarBuilder) -> Result<Self> {
        check_frame(config, frame)?;
        LinearLstm::new(config.clone(), vb)
    }
}

/// The linear model's weights fix its frame size.
fn check_frame(config: &Config, [c, h, w]: [usize; 3]) -> Result<()> {
    if [c, h, w] != [config.channels, config.height, config.width] {
        candle_core::bail!(
            "a linear model of {}x{}x{} frames cannot take {c}x{h}x{w} frames",
            config.channels,
            config.height,
            config.width
        );
    }
    Ok(())
}
