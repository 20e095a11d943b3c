//! A ConvLSTM next-frame predictor (Shi et al. 2015, arXiv 1506.04214), usable as a
//! candle layer.
//!
//! Each layer makes its four gate pre-activations as
//! `conv(x, W_ih) + b_ih + conv(h, W_hh) + b_hh` (kernel `K x K`, stride 1, padding
//! `K/2`, so planes keep their size), then runs
//! the shared LSTM cell, optionally with Shi et al.'s peepholes (`i`, `f` see
//! `w_ci * c_prev`, `w_cf * c_prev`; `o` sees `w_co * c`, Hadamard products with weights of
//! the state's shape). Layer `k + 1` reads layer `k`'s `h`. A head turns the last layer's
//! `h` into the prediction: none (the seed: `h` itself, so the last layer has the frame's
//! channels), a 1x1 convolution, that followed by a sigmoid, or the step's input plus the
//! 1x1 convolution (residual). Frames can be cut into `P x P` patches first (space-to-depth,
//! as OpenSTL does for ConvLSTM), predictions turned back into frames.
//!
//! Dimension legend: `T` steps, `B` batch, `C` frame channels, `H x W` frame size,
//! `C_k` hidden channels of layer `k`, `K` kernel side.
//!
//! Parameters are named like PyTorch's `nn.LSTM` with a `convlstm` prefix, gates stacked
//! i, f, g, o along the output channels: `convlstm.weight_ih_l{k}` `[4C_k, C_in, K, K]`,
//! `convlstm.weight_hh_l{k}` `[4C_k, C_k, K, K]`, `convlstm.bias_ih_l{k}`,
//! `convlstm.bias_hh_l{k}` `[4C_k]`, peepholes `convlstm.weight_ci_l{k}` (`cf`, `co`)
//! `[C_k, H/P, W/P]`, head `head.weight` `[C*P*P, C_last, 1, 1]`, `head.bias`.
//!
//! Rust had no ConvLSTM (candle-nn has an LSTM, burn has neither): this one is a layer like
//! candle-nn's, built from a [`VarBuilder`], whose forward over `[T, B, C, H, W]` candle's
//! autograd differentiates. Two layers of 8 and 4 channels with a 1x1 head, trained one
//! Adam step on a random sequence:
//!
//! ```
//! use candle_core::{DType, Device, Module, Tensor};
//! use candle_nn::{Optimizer, VarBuilder, VarMap};
//! use lstm_conv::{Config, ConvLstm};
//! use lstm_core::Head;
//!
//! # fn main() -> candle_core::Result<()> {
//! let device = Device::Cpu;
//! let config = Config {
//!     channels: 1,
//!     hidden_channels: vec![8, 4],
//!     kernel: vec![3],
//!     head: Head::Affine,
//!     ..Config::default()
//! };
//! let varmap = VarMap::new();
//! let vb = VarBuilder::from_varmap(&varmap, DType::F32, &device);
//! let model = ConvLstm::new(config, [16, 16], vb)?;
//!
//! let frames = Tensor::rand(0f32, 1f32, (6, 2, 1, 16, 16), &device)?; // [T+1, B, C, H, W]
//! let inputs = frames.narrow(0, 0, 5)?; // frames 0 .. 4
//! let predictions = model.forward(&inputs)?; // [5, 2, 1, 16, 16]: frames 1 .. 5
//! assert_eq!(predictions.dims(), &[5, 2, 1, 16, 16]);
//! let loss = (predictions - frames.narrow(0, 1, 5)?)?.sqr()?.mean_all()?;
//!
//! let mut adam = candle_nn::AdamW::new_lr(varmap.all_vars(), 1e-3)?;
//! adam.backward_step(&loss)?; // gradients through time, by candle's autograd
//! # Ok(())
//! # }
//! ```

pub mod cpu;
mod flags;
#[cfg(target_arch = "x86_64")]
mod implicit;
mod lowered;

/// The convolution products of layers with many channels as the layer runs them (the
/// implicit products where the CPU has AVX2 and FMA, the unrolled ones elsewhere): for
/// `examples/conv_speed.rs`, and the convolutions of other models on f32 CPU slices
/// (PredRNN's). Size-keeping (stride 1, padding `K/2`), samples `[n, C, H, W]`.
pub mod products {
    pub use crate::cpu::Geometry;
    pub use crate::lowered::{backward_data, forward, kernel_grad};
}

use std::borrow::Cow;

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;
use lstm_core::cell::Peepholes;
use lstm_core::linalg::matmul;
use lstm_core::stack::one_or_many;
use lstm_core::{
    GateIo, GateKernels, GateOps, GateOpsBackward, Grad, Head, HeadSlices, LayerSlices, ParamSpec,
    Recurrent, Stack, Wiring,
};
use serde::{Deserialize, Serialize};

use cpu::{padded, Geometry};
pub use flags::{flag_names, join, Flags, HeadKind};

/// The conv model's shape. Defaults are the seed's: one layer of one channel (the frame's),
/// 5x5 kernels, no peepholes, no head, no patches. Fields at their defaults are left out of
/// the saved configuration, so the seed's reads `{"channels": 1, "kernel": 5}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    /// Channels of a frame (1: grey, 3: RGB).
    pub channels: usize,
    /// Kernel side of each layer, odd so that padding `K/2` keeps the plane's size; one
    /// value applies to every layer. The seed: 5.
    #[serde(with = "one_or_many")]
    pub kernel: Vec<usize>,
    /// Hidden channels of each layer. Empty: one layer with the frame's channels (times
    /// `P*P` with patches), whose `h` is the prediction (the seed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hidden_channels: Vec<usize>,
    /// Shi et al.'s peephole connections in every layer.
    #[serde(default, skip_serializing_if = "is_false")]
    pub peephole: bool,
    /// What turns the last layer's `h` into the prediction.
    #[serde(default, skip_serializing_if = "Head::is_none")]
    pub head: Head,
    /// Side of the space-to-depth patches; 1: none.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub patch: usize,
    /// Shi et al.'s encoder-forecaster (their Fig. 3): the layers above read the context
    /// (`convlstm.*`); a forecasting stack of the same shapes with weights of its own
    /// (`forecaster.*`) starts from their final states layer by layer, reads no frames,
    /// and the head (a 1x1 convolution) reads all its layers' `h`, concatenated. False:
    /// one stack, each forecast step reading the previous prediction.
    #[serde(default, skip_serializing_if = "is_false")]
    pub encoder_forecaster: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}
fn one() -> usize {
    1
}
fn is_one(v: &usize) -> bool {
    *v == 1
}

impl Default for Config {
    fn default() -> Self {
        Config {
            channels: 1,
            kernel: vec![5],
            hidden_channels: Vec::new(),
            peephole: false,
            head: Head::None,
            patch: 1,
            encoder_forecaster: false,
        }
    }
}

impl Config {
    /// Hidden channels of each layer, resolved.
    pub fn hidden(&self) -> Vec<usize> {
        match self.hidden_channels.as_slice() {
            [] => vec![self.channels * self.patch * self.patch],
            h => h.to_vec(),
        }
    }

    /// Kernel side of layer `k` of the stack (the forecaster's layer `k` is the stack's
    /// `L + k`, with the kernel of the encoder's layer `k`).
    pub fn kernel_of(&self, k: usize) -> usize {
        match self.kernel.as_slice() {
            [one] => *one,
            many => many[k % many.len()],
        }
    }

    /// The stack's shape over frames of `height x width`, checked.
    pub fn stack(&self, [height, width]: [usize; 2]) -> Result<Stack> {
        let hidden = self.hidden();
        if self.kernel.len() != 1 && self.kernel.len() != hidden.len() {
            candle_core::bail!(
                "{} kernel sizes for {} layers: give one for all, or one per layer",
                self.kernel.len(),
                hidden.len()
            );
        }
        for k in 0..hidden.len() {
            let side = self.kernel_of(k);
            if side.is_multiple_of(2) {
                candle_core::bail!(
                    "kernel {side} is even: padding K/2 keeps the plane's size only for odd K"
                );
            }
        }
        let layers = hidden.len();
        let (hidden, wiring) = match self.encoder_forecaster {
            false => (hidden, Wiring::default()),
            true => (
                [hidden.as_slice(), hidden.as_slice()].concat(),
                Wiring {
                    head_reads: (layers..2 * layers).collect(),
                    encoder_layers: layers,
                    blind_forecaster: true,
                    ..Wiring::default()
                },
            ),
        };
        let stack = Stack {
            frame: [self.channels, height, width],
            patch: self.patch,
            flat: false,
            hidden,
            peephole: self.peephole,
            head: self.head,
            wiring,
        };
        stack.check().map_err(candle_core::Error::Msg)?;
        Ok(stack)
    }

    /// Refuses a kernel wider than the plane it slides over (the frame, or its patches).
    /// Such a kernel reads mostly padding, at a cost that grows with its area: from a
    /// command line it is a typo (99 for 9), not a model. The layer itself computes it
    /// correctly, so [`Config::stack`] leaves it to the caller.
    pub fn check_kernel_fits(&self, [height, width]: [usize; 2]) -> Result<()> {
        let layers = self.hidden().len();
        let (plane_h, plane_w) = (height / self.patch, width / self.patch);
        if let Some(side) = (0..layers)
            .map(|k| self.kernel_of(k))
            .find(|&side| side > plane_h || side > plane_w)
        {
            let patched = if self.patch > 1 {
                format!(
                    " ({height}x{width} frames in {p}x{p} patches)",
                    p = self.patch
                )
            } else {
                String::new()
            };
            candle_core::bail!(
                "kernel {side}: larger than the {plane_h}x{plane_w} plane it slides over{patched}"
            );
        }
        Ok(())
    }

    /// The parameters over frames of `height x width`, in the drivers' layout order, with
    /// the seed's initialisation (weights `Normal(0, sqrt(1/fan_in))`, biases and peepholes
    /// zero).
    pub fn parameter_specs(&self, size: [usize; 2]) -> Result<Vec<ParamSpec>> {
        let stack = self.stack(size)?;
        let encoder = stack.wiring.encoder_layers;
        let mut specs = Vec::new();
        for (k, &c) in stack.hidden.iter().enumerate() {
            let (c_in, side) = (stack.input_channels(k), self.kernel_of(k));
            let name = |what: &str| match encoder {
                e if e > 0 && k >= e => format!("forecaster.{what}_l{}", k - e),
                _ => format!("convlstm.{what}_l{k}"),
            };
            specs.push(ParamSpec::weight(
                name("weight_ih"),
                &[4 * c, c_in, side, side],
                c_in * side * side,
            ));
            specs.push(ParamSpec::weight(
                name("weight_hh"),
                &[4 * c, c, side, side],
                c * side * side,
            ));
            specs.push(ParamSpec::bias(name("bias_ih"), &[4 * c]));
            specs.push(ParamSpec::bias(name("bias_hh"), &[4 * c]));
            if stack.peephole {
                let mut shape = vec![c];
                shape.extend(stack.spatial_dims());
                for what in ["weight_ci", "weight_cf", "weight_co"] {
                    specs.push(ParamSpec::zeros(name(what), &shape));
                }
            }
        }
        specs.extend(stack.conv_head_specs());
        Ok(specs)
    }
}

/// One ConvLSTM layer's tensors.
#[derive(Debug, Clone)]
pub struct ConvLayer {
    /// `[4C, C_in, K, K]`
    pub weight_ih: Tensor,
    /// `[4C, C, K, K]`
    pub weight_hh: Tensor,
    /// `[4C]`
    pub bias_ih: Tensor,
    /// `[4C]`
    pub bias_hh: Tensor,
    /// `[w_ci, w_cf, w_co]`, each `[C, H/P, W/P]`.
    pub peepholes: Option<[Tensor; 3]>,
}

/// The ConvLSTM: its layers and head over frames of one size.
#[derive(Debug, Clone)]
pub struct ConvLstm {
    config: Config,
    stack: Stack,
    layers: Vec<ConvLayer>,
    /// `head.weight` `[C*P*P, C_last, 1, 1]`, `head.bias` `[C*P*P]`.
    head: Option<(Tensor, Tensor)>,
}

impl ConvLstm {
    /// Builds the model over frames of `size` (height, width) from a `VarBuilder`: a
    /// `VarMap` for training from scratch (weights drawn as the seed draws them, biases
    /// zero), or tensors loaded from a file.
    pub fn new(config: Config, size: [usize; 2], vb: VarBuilder) -> Result<ConvLstm> {
        let tensors = lstm_core::spec::tensors_from(&config.parameter_specs(size)?, &vb)?;
        Self::from_tensors(config, size, tensors)
    }

    /// Builds the model from its tensors, in the order of [`Config::parameter_specs`],
    /// checking each shape.
    pub fn from_tensors(
        config: Config,
        size: [usize; 2],
        tensors: Vec<Tensor>,
    ) -> Result<ConvLstm> {
        let specs = config.parameter_specs(size)?;
        lstm_core::spec::check_shapes(&specs, &tensors)?;
        let stack = config.stack(size)?;
        let mut tensors = tensors.into_iter();
        let mut next = || tensors.next().expect("counted above");
        let layers = (0..stack.layers())
            .map(|_| ConvLayer {
                weight_ih: next(),
                weight_hh: next(),
                bias_ih: next(),
                bias_hh: next(),
                peepholes: stack.peephole.then(|| [next(), next(), next()]),
            })
            .collect();
        let head = stack.head.has_affine().then(|| (next(), next()));
        Ok(ConvLstm {
            config,
            stack,
            layers,
            head,
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    fn padding(&self, k: usize) -> usize {
        self.config.kernel_of(k) / 2
    }

    /// `[4C] -> [1, 4C, 1, 1]`, to broadcast over a batch of planes.
    fn bias_4d(bias: &Tensor) -> Result<Tensor> {
        bias.reshape((1, bias.dim(0)?, 1, 1))
    }

    /// `conv(x, kernel) + bias` with stride 1 and size-keeping padding.
    fn conv(&self, k: usize, x: &Tensor, kernel: &Tensor, bias: &Tensor) -> Result<Tensor> {
        x.conv2d(kernel, self.padding(k), 1, 1, 1)?
            .broadcast_add(&Self::bias_4d(bias)?)
    }

    /// Gradient of `conv(input, kernel)` with respect to the kernel, summed over the batch:
    /// `dK[o, c, ky, kx] = sum_{b,y,x} d_out[b, o, y, x] * input_padded[b, c, y+ky, x+kx]`,
    /// itself a convolution of the input (batch and channels swapped) by `d_out`.
    ///
    /// `input`: `[n, C_in, H, W]`, `d_out`: `[n, C_out, H, W]`; returns `[C_out, C_in, K, K]`.
    fn kernel_grad(padding: usize, input: &Tensor, d_out: &Tensor) -> Result<Tensor> {
        input
            .transpose(0, 1)? // [C_in, n, H, W]
            .conv2d(&d_out.transpose(0, 1)?, padding, 1, 1, 1)? // [C_in, C_out, K, K]
            .transpose(0, 1)? // [C_out, C_in, K, K]
            .contiguous()
    }

    /// The geometry of layer `k`'s input (`recurrent` false) or recurrent convolution.
    fn geometry(&self, k: usize, recurrent: bool) -> Geometry {
        let c = self.stack.hidden[k];
        let c_in = if recurrent {
            c
        } else {
            self.stack.input_channels(k)
        };
        let dims = self.stack.spatial_dims();
        Geometry::new(c_in, 4 * c, dims[0], dims[1], self.config.kernel_of(k))
    }
}

/// One-step-ahead predictions: `[T, B, C, H, W]` inputs (step `t` reads frame `t`; `h` and
/// `c` start at zero) to `[T, B, C, H, W]` predictions of frames `1 .. T`.
impl Module for ConvLstm {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let (_, _, c, h, w) = xs.dims5()?;
        if [c, h, w] != self.stack.frame {
            candle_core::bail!(
                "a ConvLSTM built for {:?} frames got {:?}",
                self.stack.frame,
                [c, h, w]
            );
        }
        lstm_core::tensors::forward(self, xs)
    }
}

impl Recurrent for ConvLstm {
    fn stack(&self) -> &Stack {
        &self.stack
    }

    fn parameters(&self) -> Vec<&Tensor> {
        let mut all = Vec::new();
        for l in &self.layers {
            all.extend([&l.weight_ih, &l.weight_hh, &l.bias_ih, &l.bias_hh]);
            if let Some(p) = &l.peepholes {
                all.extend(p);
            }
        }
        if let Some((w, b)) = &self.head {
            all.extend([w, b]);
        }
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

/// `Conv(x, W_ih, b_ih) + Conv(h, W_hh, b_hh)`, size-keeping pads; the head a 1x1 `Conv`.
impl lstm_core::onnx::OnnxGates for ConvLstm {
    fn onnx_gates(
        &self,
        g: &mut lstm_core::onnx::Graph,
        k: usize,
        x: &str,
        h: &str,
    ) -> Result<String> {
        use lstm_core::onnx::Attr;
        let p = self.padding(k) as i64;
        let side = self.config.kernel_of(k) as i64;
        let attrs = [
            Attr::Ints("pads", &[p, p, p, p]),
            Attr::Ints("kernel_shape", &[side, side]),
        ];
        let name = |what: &str| format!("convlstm.{what}_l{k}");
        let (w_ih, b_ih, w_hh, b_hh) = (
            name("weight_ih"),
            name("bias_ih"),
            name("weight_hh"),
            name("bias_hh"),
        );
        let from_x = g.node("Conv", &[x, &w_ih, &b_ih], &attrs);
        let from_h = g.node("Conv", &[h, &w_hh, &b_hh], &attrs);
        Ok(g.node("Add", &[&from_x, &from_h], &[]))
    }

    fn onnx_head(&self, g: &mut lstm_core::onnx::Graph, h: &str) -> Result<String> {
        Ok(g.node("Conv", &[h, "head.weight", "head.bias"], &[]))
    }

    fn onnx_peepholes(&self, k: usize) -> Option<[String; 3]> {
        self.stack
            .peephole
            .then(|| ["ci", "cf", "co"].map(|p| format!("convlstm.weight_{p}_l{k}")))
    }
}

impl GateOps for ConvLstm {
    fn input_preact(&self, k: usize, x: &Tensor) -> Result<Tensor> {
        let l = &self.layers[k];
        self.conv(k, x, &l.weight_ih, &l.bias_ih) // [n, 4C, H, W]
    }

    fn add_recurrent(&self, k: usize, preact: &Tensor, h: Option<&Tensor>) -> Result<Tensor> {
        let l = &self.layers[k];
        match h {
            Some(h) => preact + self.conv(k, h, &l.weight_hh, &l.bias_hh)?,
            // h_0 = 0: the recurrent convolution contributes only its bias.
            None => preact.broadcast_add(&Self::bias_4d(&l.bias_hh)?),
        }
    }

    fn peepholes(&self, k: usize) -> Option<Peepholes<'_>> {
        self.layers[k]
            .peepholes
            .as_ref()
            .map(|[ci, cf, co]| Peepholes { ci, cf, co })
    }

    fn head_forward(&self, h: &Tensor) -> Result<Tensor> {
        let (w, b) = self.head.as_ref().expect("a head with weights");
        h.conv2d(w, 0, 1, 1, 1)?.broadcast_add(&Self::bias_4d(b)?)
    }
}

impl GateOpsBackward for ConvLstm {
    fn input_backward(&self, k: usize, d_preact: &Tensor) -> Result<Tensor> {
        // The gradient of a convolution with respect to its input is the transposed
        // convolution with the same kernel.
        d_preact.conv_transpose2d(&self.layers[k].weight_ih, self.padding(k), 0, 1, 1)
    }

    fn recurrent_backward(&self, k: usize, d_preact: &Tensor) -> Result<Tensor> {
        d_preact.conv_transpose2d(&self.layers[k].weight_hh, self.padding(k), 0, 1, 1)
    }

    fn gate_grads(
        &self,
        k: usize,
        inputs: &Tensor,
        d_preact: &Tensor,
        recurrent: Option<(&Tensor, &Tensor)>,
    ) -> Result<[Tensor; 4]> {
        let p = self.padding(k);
        let d_weight_ih = Self::kernel_grad(p, inputs, d_preact)?;
        let d_weight_hh = match recurrent {
            Some((h, d)) => Self::kernel_grad(p, h, d)?,
            None => self.layers[k].weight_hh.zeros_like()?,
        };
        // b_ih and b_hh enter every step and pixel alike.
        let d_bias = d_preact.sum((0, 2, 3))?; // [4C]
        Ok([d_weight_ih, d_weight_hh, d_bias.clone(), d_bias])
    }

    fn head_backward(&self, dy: &Tensor) -> Result<Tensor> {
        let (w, _) = self.head.as_ref().expect("a head with weights");
        dy.conv_transpose2d(w, 0, 0, 1, 1)
    }

    fn head_grads(&self, h: &Tensor, dy: &Tensor) -> Result<[Tensor; 2]> {
        Ok([Self::kernel_grad(0, h, dy)?, dy.sum((0, 2, 3))?])
    }
}

/// The slice kernels ([`cpu`]): direct convolutions over zero-padded planes.
///
/// Each bias is added on its own (`b_ih` before the input convolution, `b_hh` after the
/// recurrent one), as the reference adds them: adding `b_ih + b_hh` rounded to f32 once
/// would put the same rounding error into every pixel of every step, and the kernel
/// gradients, sums over all of them, drift from an f64 reference by ~1e-5 instead of ~4e-6
/// (measured over 12 random 26-step windows).
impl GateKernels for ConvLstm {
    fn input_preact(&self, k: usize, w: &LayerSlices, x: &[f32], _: usize, out: &mut [f32]) {
        let g = self.geometry(k, false);
        if lowered::lowers(&g) {
            lowered::forward(x, w.w_ih, Some(w.b_ih), out, &g);
        } else {
            cpu::input_conv(x, w.w_ih, w.b_ih, out, &g);
        }
    }

    fn add_recurrent(
        &self,
        k: usize,
        w: &LayerSlices,
        h: Option<&[f32]>,
        _: usize,
        preact: &mut [f32],
    ) {
        let g = self.geometry(k, true);
        if !lowered::lowers(&g) {
            return cpu::recurrent_conv(h, w.w_hh, w.b_hh, preact, &g);
        }
        if let Some(h) = h {
            lowered::forward(h, w.w_hh, None, preact, &g);
        }
        let plane = g.h * g.w;
        for out in preact.chunks_exact_mut(g.c_out * plane) {
            for (o, out_plane) in out.chunks_exact_mut(plane).enumerate() {
                for v in out_plane {
                    *v += w.b_hh[o];
                }
            }
        }
    }

    fn input_backward(&self, k: usize, w: &LayerSlices, d: &[f32], _: usize, dx: &mut [f32]) {
        dx.fill(0.0);
        let g = self.geometry(k, false);
        if lowered::lowers(&g) {
            lowered::backward_data(d, w.w_ih, dx, &g);
        } else {
            cpu::transpose_conv(d, w.w_ih, dx, &g);
        }
    }

    fn recurrent_backward(&self, k: usize, w: &LayerSlices, d: &[f32], _: usize, dh: &mut [f32]) {
        let g = self.geometry(k, true);
        if lowered::lowers(&g) {
            lowered::backward_data(d, w.w_hh, dh, &g);
        } else {
            cpu::transpose_conv(d, w.w_hh, dh, &g);
        }
    }

    fn gate_grads<'a>(&self, k: usize, io: &GateIo<'a>) -> [Grad<'a>; 4] {
        let (steps, batch) = (io.steps, io.batch);
        let (gi, gh) = (self.geometry(k, false), self.geometry(k, true));
        let plane = gi.h * gi.w;
        let mut d_w_ih = vec![0f32; gi.c_out * gi.c_in * gi.k * gi.k];
        let mut d_w_hh = vec![0f32; gh.c_out * gh.c_in * gh.k * gh.k];
        // Step t's recurrent convolution read h of step t - 1, for t >= 1.
        let rec = (steps - 1) * batch;
        let (h_prev, d_rec) = (
            &io.hs[..rec * gh.c_in * plane],
            &io.d_preact[batch * gh.c_out * plane..],
        );
        for (g, input, d, dk) in [
            (&gi, io.inputs, io.d_preact, &mut d_w_ih),
            (&gh, h_prev, d_rec, &mut d_w_hh),
        ] {
            if lowered::lowers(g) {
                lowered::kernel_grad(input, d, dk, g);
            } else {
                cpu::kernel_grads_all(&padded(input, g.c_in, g), d, dk, g);
            }
        }
        // Each channel's sum over samples and pixels in f64: 25 x 4225 terms at the seed's
        // size.
        let mut d_b = vec![0f64; gi.c_out];
        for d in io.d_preact.chunks_exact(gi.c_out * plane) {
            for (o, db) in d_b.iter_mut().enumerate() {
                *db += d[o * plane..(o + 1) * plane]
                    .iter()
                    .map(|&v| f64::from(v))
                    .sum::<f64>();
            }
        }
        let d_b: Vec<f32> = d_b.iter().map(|&v| v as f32).collect();
        [
            Grad::Values(Cow::Owned(d_w_ih)),
            Grad::Values(Cow::Owned(d_w_hh)),
            Grad::Values(Cow::Owned(d_b.clone())),
            Grad::Values(Cow::Owned(d_b)),
        ]
    }

    /// A 1x1 convolution is a matrix product per sample: `y = W h + b`, `W` `[C_m, C_top]`,
    /// `h` `[C_top, S]`.
    fn head_forward(&self, w: &HeadSlices, h: &[f32], _: usize, y: &mut [f32]) {
        let (out, top, s) = self.head_dims();
        let g = self.head_geometry();
        if lowered::lowers(&g) {
            return lowered::forward(h, w.weight, Some(w.bias), y, &g);
        }
        for (h, y) in h.chunks_exact(top * s).zip(y.chunks_exact_mut(out * s)) {
            matmul(y, w.weight, false, h, false, (out, top, s), false);
            for (o, row) in y.chunks_exact_mut(s).enumerate() {
                for v in row {
                    *v += w.bias[o];
                }
            }
        }
    }

    fn head_backward(&self, w: &HeadSlices, dy: &[f32], _: usize, dh: &mut [f32]) {
        let (out, top, s) = self.head_dims();
        let g = self.head_geometry();
        if lowered::lowers(&g) {
            dh.fill(0.0);
            return lowered::backward_data(dy, w.weight, dh, &g);
        }
        for (dy, dh) in dy.chunks_exact(out * s).zip(dh.chunks_exact_mut(top * s)) {
            matmul(dh, w.weight, true, dy, false, (top, out, s), false);
        }
    }

    fn head_grads<'a>(&self, h: &'a [f32], dy: &'a [f32], _: usize) -> [Grad<'a>; 2] {
        let (out, top, s) = self.head_dims();
        let mut d_w = vec![0f32; out * top];
        let mut d_b = vec![0f64; out];
        let g = self.head_geometry();
        if lowered::lowers(&g) {
            lowered::kernel_grad(h, dy, &mut d_w, &g);
        } else {
            for (h, dy) in h.chunks_exact(top * s).zip(dy.chunks_exact(out * s)) {
                matmul(&mut d_w, dy, false, h, true, (out, s, top), true);
            }
        }
        for dy in dy.chunks_exact(out * s) {
            for (o, row) in dy.chunks_exact(s).enumerate() {
                d_b[o] += row.iter().map(|&v| f64::from(v)).sum::<f64>();
            }
        }
        [
            Grad::Values(Cow::Owned(d_w)),
            Grad::Values(Cow::Owned(d_b.iter().map(|&v| v as f32).collect())),
        ]
    }
}

impl ConvLstm {
    /// The head as a 1x1 convolution of the top layer's `h`.
    fn head_geometry(&self) -> Geometry {
        let (out, top, _) = self.head_dims();
        let dims = self.stack.spatial_dims();
        Geometry::new(top, out, dims[0], dims[1], 1)
    }

    /// `(C_m, C_head, S)`: the head's output and input channels, and positions per channel.
    fn head_dims(&self) -> (usize, usize, usize) {
        (
            self.stack.model_channels(),
            self.stack.head_channels(),
            self.stack.positions(),
        )
    }
}

impl lstm_core::SequenceModel for ConvLstm {
    const KIND: &'static str = "conv";
    const ABOUT: &'static str = "ConvLSTM: by default the seed's (one 1-channel layer, 5x5 \
        kernels, the prediction is h); --hidden-channels, --kernel, --peephole, --head and \
        --patch make it Shi et al.'s";
    const SIZE_FLAG: &'static str = "--hidden-channels";
    const SLICE_KERNELS: bool = true;
    const SIGMOID_HEAD_FLAG: Option<&'static str> = Some("--head conv1x1-sigmoid");
    type Config = Config;
    type Flags = Flags;

    fn config(flags: &Flags, frame: [usize; 3]) -> Result<Config> {
        flags.config(frame)
    }

    fn default_threads(flags: &Flags, available: usize) -> usize {
        flags.default_threads(available)
    }

    fn parameter_specs(config: &Config, [c, h, w]: [usize; 3]) -> Result<Vec<ParamSpec>> {
        check_channels(config, c)?;
        config.parameter_specs([h, w])
    }

    fn layout(config: &Config, [c, h, w]: [usize; 3]) -> Result<Stack> {
        check_channels(config, c)?;
        config.stack([h, w])
    }

    fn load(config: &Config, [c, h, w]: [usize; 3], vb: VarBuilder) -> Result<Self> {
        check_channels(config, c)?;
        ConvLstm::new(config.clone(), [h, w], vb)
    }
}

fn check_channels(config: &Config, channels: usize) -> Result<()> {
    if channels != config.channels {
        candle_core::bail!(
            "a conv model of {}-channel frames cannot take {channels}-channel frames",
            config.channels
        );
    }
    Ok(())
}
