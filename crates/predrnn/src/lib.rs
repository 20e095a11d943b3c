//! PredRNN (Wang et al., NeurIPS 2017, "PredRNN: Recurrent Neural Networks for Predictive
//! Learning using Spatiotemporal LSTMs") as a candle layer: a stack of spatiotemporal LSTM
//! (ST-LSTM) cells.
//!
//! Each layer keeps the ConvLSTM's temporal memory `C` and hidden state `H`, and shares one
//! spatiotemporal memory `M` with the other layers: layer `k` at step `t` reads `M` from
//! layer `k-1` at step `t`, and the bottom layer at step `t` reads it from the top layer at
//! step `t-1` (the zigzag). One layer's step, `*` a `K x K` convolution (stride 1, padding
//! `K/2`), `∘` the Hadamard product, `σ` the sigmoid:
//!
//! ```text
//! [i, f, g, i', f', g', o]_x = W_x * X + b      (7 blocks of C channels)
//! [i, f, g, o]_h             = W_h * H_{t-1}    (4 blocks)
//! [i', f', g']_m             = W_m * M          (3 blocks)
//! i = σ(i_x + i_h)      f = σ(f_x + f_h + 1)      g = tanh(g_x + g_h)
//! C_t = f ∘ C_{t-1} + i ∘ g
//! i' = σ(i'_x + i'_m)   f' = σ(f'_x + f'_m + 1)   g' = tanh(g'_x + g'_m)
//! M_out = f' ∘ M + i' ∘ g'
//! o = σ(o_x + o_h + W_o * [C_t, M_out])
//! H_t = o ∘ tanh(W_1x1 * [C_t, M_out])
//! ```
//!
//! These are the paper's equations (3), with its peephole-like terms `W_co ∘ C`, `W_mo ∘ M`
//! of the output gate as one convolution over `[C_t, M_out]`; where the paper is silent this
//! follows OpenSTL's reference cell (`SpatioTemporalLSTMCell`, layer normalisation off): the
//! constant forget bias 1 of both forget gates, no biases in `W_h`, `W_m`, `W_o` and the
//! 1x1 convolution (one bias per gate, in `W_x`, which the paper's `b` terms are), and the
//! gates stacked in that order. `H`, `C` and `M` start at zero; every layer has the same
//! channels, since `M` passes from layer to layer. The head (the driver's, as for the
//! ConvLSTM: none, a 1x1 convolution with a bias, with a sigmoid, or residual) reads the
//! top layer's `H`, as OpenSTL's `conv_last` does (without a bias there); frames can be cut
//! into `P x P` patches first.
//!
//! Parameters, named as OpenSTL's modules are: `cell_list.{k}.conv_x.weight`
//! `[7C, C_in, K, K]`, `cell_list.{k}.conv_x.bias` `[7C]`, `cell_list.{k}.conv_h.weight`
//! `[4C, C, K, K]`, `cell_list.{k}.conv_m.weight` `[3C, C, K, K]`,
//! `cell_list.{k}.conv_o.weight` `[C, 2C, K, K]`, `cell_list.{k}.conv_last.weight`
//! `[C, 2C, 1, 1]`; head `head.weight` `[C*P*P, C, 1, 1]`, `head.bias`.
//!
//! The model is a [`lstm_core::StackStep`]: the core's candle-ops driver runs it through time
//! (which frame a step reads, the head, the losses), and candle's autograd differentiates
//! it. Two layers of 8 channels with a 1x1 head, one Adam step on a random sequence:
//!
//! ```
//! use candle_core::{DType, Device, Module, Tensor};
//! use candle_nn::{Optimizer, VarBuilder, VarMap};
//! use lstm_core::Head;
//! use predrnn::{Config, PredRnn};
//!
//! # fn main() -> candle_core::Result<()> {
//! let device = Device::Cpu;
//! let config = Config {
//!     hidden_channels: vec![8, 8],
//!     kernel: 3,
//!     head: Head::Affine,
//!     ..Config::default()
//! };
//! let varmap = VarMap::new();
//! let vb = VarBuilder::from_varmap(&varmap, DType::F32, &device);
//! let model = PredRnn::new(config, [16, 16], vb)?;
//!
//! let frames = Tensor::rand(0f32, 1f32, (6, 2, 1, 16, 16), &device)?; // [T+1, B, C, H, W]
//! let predictions = model.forward(&frames.narrow(0, 0, 5)?)?; // frames 1 .. 5
//! assert_eq!(predictions.dims(), &[5, 2, 1, 16, 16]);
//! let loss = (predictions - frames.narrow(0, 1, 5)?)?.sqr()?.mean_all()?;
//! let mut adam = candle_nn::AdamW::new_lr(varmap.all_vars(), 1e-3)?;
//! adam.backward_step(&loss)?;
//! # Ok(())
//! # }
//! ```

pub mod conv;

use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::VarBuilder;
use lstm_conv::join;
use lstm_core::{GateOps, Head, ParamSpec, Recurrent, Stack, StackStep, Wiring};
use serde::{Deserialize, Serialize};

/// The constant added to both forget gates' pre-activations (OpenSTL's `_forget_bias`).
pub const FORGET_BIAS: f64 = 1.0;

/// PredRNN's shape. Defaults: one layer with the frame's channels, 5x5 kernels, no head (the
/// top layer's `H` is the prediction), no patches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    /// Channels of a frame (1: grey, 3: RGB).
    pub channels: usize,
    /// Kernel side of every convolution but the 1x1 ones, odd.
    pub kernel: usize,
    /// Hidden channels of each layer, all the same. Empty: one layer with the frame's
    /// channels (times `P*P` with patches).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hidden_channels: Vec<usize>,
    /// What turns the top layer's `H` into the prediction.
    #[serde(default, skip_serializing_if = "Head::is_none")]
    pub head: Head,
    /// Side of the space-to-depth patches; 1: none.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub patch: usize,
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
            kernel: 5,
            hidden_channels: Vec::new(),
            head: Head::None,
            patch: 1,
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

    /// The stack's shape over frames of `height x width`, checked.
    pub fn stack(&self, [height, width]: [usize; 2]) -> Result<Stack> {
        let hidden = self.hidden();
        if hidden.windows(2).any(|w| w[0] != w[1]) {
            candle_core::bail!(
                "hidden channels {hidden:?}: PredRNN's spatiotemporal memory passes from layer \
                 to layer, so every layer needs the same channels"
            );
        }
        if self.kernel.is_multiple_of(2) {
            candle_core::bail!(
                "kernel {}: even; padding K/2 keeps the plane's size only for odd K",
                self.kernel
            );
        }
        let stack = Stack {
            frame: [self.channels, height, width],
            patch: self.patch,
            flat: false,
            hidden,
            peephole: false,
            head: self.head,
            wiring: Wiring::default(),
        };
        stack.check().map_err(candle_core::Error::Msg)?;
        Ok(stack)
    }

    /// The parameters over frames of `height x width`, in layout order: per layer
    /// `conv_x` (weight, bias), `conv_h`, `conv_m`, `conv_o`, `conv_last`; then the head.
    /// Weights `Normal(0, sqrt(1/fan_in))`, biases zero, as for the other models.
    pub fn parameter_specs(&self, size: [usize; 2]) -> Result<Vec<ParamSpec>> {
        let stack = self.stack(size)?;
        let k2 = self.kernel * self.kernel;
        let mut specs = Vec::new();
        for (k, &c) in stack.hidden.iter().enumerate() {
            let c_in = stack.input_channels(k);
            let name = |what: &str| format!("cell_list.{k}.{what}");
            let side = self.kernel;
            specs.push(ParamSpec::weight(
                name("conv_x.weight"),
                &[7 * c, c_in, side, side],
                c_in * k2,
            ));
            specs.push(ParamSpec::bias(name("conv_x.bias"), &[7 * c]));
            specs.push(ParamSpec::weight(
                name("conv_h.weight"),
                &[4 * c, c, side, side],
                c * k2,
            ));
            specs.push(ParamSpec::weight(
                name("conv_m.weight"),
                &[3 * c, c, side, side],
                c * k2,
            ));
            specs.push(ParamSpec::weight(
                name("conv_o.weight"),
                &[c, 2 * c, side, side],
                2 * c * k2,
            ));
            specs.push(ParamSpec::weight(
                name("conv_last.weight"),
                &[c, 2 * c, 1, 1],
                2 * c,
            ));
        }
        specs.extend(stack.conv_head_specs());
        Ok(specs)
    }
}

/// One ST-LSTM layer's tensors.
#[derive(Debug, Clone)]
pub struct StLayer {
    /// `[7C, C_in, K, K]`, blocks i, f, g, i', f', g', o.
    pub conv_x: Tensor,
    /// `[7C]`
    pub bias_x: Tensor,
    /// `[4C, C, K, K]`, blocks i, f, g, o.
    pub conv_h: Tensor,
    /// `[3C, C, K, K]`, blocks i', f', g'.
    pub conv_m: Tensor,
    /// `[C, 2C, K, K]`
    pub conv_o: Tensor,
    /// `[C, 2C, 1, 1]`
    pub conv_last: Tensor,
}

/// PredRNN over frames of one size.
#[derive(Debug, Clone)]
pub struct PredRnn {
    config: Config,
    stack: Stack,
    layers: Vec<StLayer>,
    /// `head.weight` `[C*P*P, C, 1, 1]`, `head.bias` `[C*P*P]`.
    head: Option<(Tensor, Tensor)>,
}

impl PredRnn {
    /// Builds the model over frames of `size` (height, width) from a `VarBuilder`: a
    /// `VarMap` to train from scratch, or tensors loaded from a file.
    pub fn new(config: Config, size: [usize; 2], vb: VarBuilder) -> Result<PredRnn> {
        let tensors = lstm_core::spec::tensors_from(&config.parameter_specs(size)?, &vb)?;
        Self::from_tensors(config, size, tensors)
    }

    /// Builds the model from its tensors, in the order of [`Config::parameter_specs`],
    /// checking each shape.
    pub fn from_tensors(config: Config, size: [usize; 2], tensors: Vec<Tensor>) -> Result<Self> {
        let specs = config.parameter_specs(size)?;
        lstm_core::spec::check_shapes(&specs, &tensors)?;
        let stack = config.stack(size)?;
        let mut tensors = tensors.into_iter();
        let mut next = || tensors.next().expect("counted above");
        let layers = (0..stack.layers())
            .map(|_| StLayer {
                conv_x: next(),
                bias_x: next(),
                conv_h: next(),
                conv_m: next(),
                conv_o: next(),
                conv_last: next(),
            })
            .collect();
        let head = stack.head.has_affine().then(|| (next(), next()));
        Ok(PredRnn {
            config,
            stack,
            layers,
            head,
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// A size-keeping convolution of stride 1 (on f32 CPU tensors, the ConvLSTM's kernels:
    /// [`conv::same_conv`]).
    fn conv(&self, x: &Tensor, kernel: &Tensor) -> Result<Tensor> {
        conv::same_conv(x, kernel)
    }

    /// One layer's step: its input `x` `[B, C_in, H, W]`, its `h` and `c` and the memory
    /// `m` it reads (each `[B, C, H, W]`) to its new `h`, `c` and the memory it passes on.
    fn cell(
        &self,
        k: usize,
        x: &Tensor,
        h: &Tensor,
        c: &Tensor,
        m: &Tensor,
    ) -> Result<[Tensor; 3]> {
        let l = &self.layers[k];
        let ch = self.stack.hidden[k];
        let bias = l.bias_x.reshape((1, 7 * ch, 1, 1))?;
        let xs = self.conv(x, &l.conv_x)?.broadcast_add(&bias)?; // [B, 7C, H, W]
        let hs = self.conv(h, &l.conv_h)?; // [B, 4C, H, W]
        let ms = self.conv(m, &l.conv_m)?; // [B, 3C, H, W]
        let block = |t: &Tensor, j: usize| t.narrow(1, j * ch, ch);
        let sigmoid = candle_nn::ops::sigmoid;
        let i = sigmoid(&(block(&xs, 0)? + block(&hs, 0)?)?)?;
        let f = sigmoid(&(block(&xs, 1)? + block(&hs, 1)?)?.affine(1.0, FORGET_BIAS)?)?;
        let g = (block(&xs, 2)? + block(&hs, 2)?)?.tanh()?;
        let c_new = ((f * c)? + (i * g)?)?;
        let i_m = sigmoid(&(block(&xs, 3)? + block(&ms, 0)?)?)?;
        let f_m = sigmoid(&(block(&xs, 4)? + block(&ms, 1)?)?.affine(1.0, FORGET_BIAS)?)?;
        let g_m = (block(&xs, 5)? + block(&ms, 2)?)?.tanh()?;
        let m_new = ((f_m * m)? + (i_m * g_m)?)?;
        let mem = Tensor::cat(&[&c_new, &m_new], 1)?; // [B, 2C, H, W]
        let o = sigmoid(&((block(&xs, 6)? + block(&hs, 3)?)? + self.conv(&mem, &l.conv_o)?)?)?;
        let h_new = (o * self.conv(&mem, &l.conv_last)?.tanh()?)?;
        Ok([h_new, c_new, m_new])
    }
}

/// One-step-ahead predictions: `[T, B, C, H, W]` inputs (step `t` reads frame `t`; `H`,
/// `C`, `M` start at zero) to `[T, B, C, H, W]` predictions of frames `1 .. T`.
impl Module for PredRnn {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let (_, _, c, h, w) = xs.dims5()?;
        if [c, h, w] != self.stack.frame {
            candle_core::bail!(
                "a PredRNN built for {:?} frames got {:?}",
                self.stack.frame,
                [c, h, w]
            );
        }
        lstm_core::tensors::forward(self, xs)
    }
}

/// The state between steps: every layer's `h`, then every layer's `c`, then `M` (as the top
/// layer left it).
impl StackStep for PredRnn {
    fn initial_state(&self, batch: usize, dtype: DType, device: &Device) -> Result<Vec<Tensor>> {
        let mut shape = vec![batch, self.stack.hidden[0]];
        shape.extend(self.stack.spatial_dims());
        let zeros = Tensor::zeros(shape, dtype, device)?;
        Ok(vec![zeros; 2 * self.stack.layers() + 1])
    }

    fn step(&self, x: &Tensor, state: &[Tensor]) -> Result<(Tensor, Vec<Tensor>)> {
        let layers = self.stack.layers();
        let (hs, rest) = state.split_at(layers);
        let (cs, m) = rest.split_at(layers);
        let mut m = m[0].clone();
        let (mut h_next, mut c_next) = (Vec::with_capacity(layers), Vec::with_capacity(layers));
        for k in 0..layers {
            let input = match k {
                0 => x,
                _ => &h_next[k - 1],
            };
            let [h, c, m_out] = self.cell(k, input, &hs[k], &cs[k], &m)?;
            h_next.push(h);
            c_next.push(c);
            m = m_out;
        }
        let top = h_next[layers - 1].clone();
        let mut next = h_next;
        next.extend(c_next);
        next.push(m);
        Ok((top, next))
    }
}

impl Recurrent for PredRnn {
    fn stack(&self) -> &Stack {
        &self.stack
    }

    fn parameters(&self) -> Vec<&Tensor> {
        let mut all = Vec::new();
        for l in &self.layers {
            all.extend([
                &l.conv_x,
                &l.bias_x,
                &l.conv_h,
                &l.conv_m,
                &l.conv_o,
                &l.conv_last,
            ]);
        }
        if let Some((w, b)) = &self.head {
            all.extend([w, b]);
        }
        all
    }

    fn own_step(&self) -> Option<&dyn StackStep> {
        Some(self)
    }
}

impl GateOps for PredRnn {
    fn head_forward(&self, h: &Tensor) -> Result<Tensor> {
        let (w, b) = self.head.as_ref().expect("a head with weights");
        conv::same_conv(h, w)?.broadcast_add(&b.reshape((1, b.dim(0)?, 1, 1))?)
    }
}

impl lstm_core::SequenceModel for PredRnn {
    const KIND: &'static str = "predrnn";
    const ABOUT: &'static str = "PredRNN (Wang et al. 2017): spatiotemporal LSTM layers whose \
        memory zigzags through the stack; takes the ConvLSTM's --hidden-channels (all \
        equal), --kernel, --head and --patch";
    const SIZE_FLAG: &'static str = "--hidden-channels";
    const SIGMOID_HEAD_FLAG: Option<&'static str> = Some("--head conv1x1-sigmoid");
    /// Measured: 1809 MiB peak for 32,32 channels on 16x16 planes (4x4 patches of Moving
    /// MNIST), batches of 16 windows of 20 frames, about 82 states per sample, step and
    /// layer beyond the frames and weights (the ConvLSTM's autograd keeps 56).
    const AUTOGRAD_STATES_PER_STEP: usize = 84;
    type Config = Config;
    /// The ConvLSTM's flags: one command line for both, the ConvLSTM-only ones refused.
    type Flags = lstm_conv::Flags;

    fn config(flags: &lstm_conv::Flags, frame: [usize; 3]) -> Result<Config> {
        config(flags, frame)
    }

    fn default_threads(_flags: &lstm_conv::Flags, available: usize) -> usize {
        available
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
        PredRnn::new(config.clone(), [h, w], vb)
    }
}

/// The configuration the ConvLSTM's flags describe for PredRNN over frames `[C, H, W]`,
/// checked, each error naming its flag.
pub fn config(flags: &lstm_conv::Flags, [c, h, w]: [usize; 3]) -> Result<Config> {
    if flags.peephole {
        candle_core::bail!(
            "--peephole: PredRNN's output gate already reads C and M through a convolution; \
             the flag is the ConvLSTM's (--model conv)"
        );
    }
    if flags.encoder_forecaster {
        candle_core::bail!(
            "--encoder-forecaster: the ConvLSTM's (--model conv); PredRNN forecasts by reading \
             its own predictions"
        );
    }
    let kernel = match flags.kernel.as_deref() {
        None => 5,
        Some([side]) if *side > 0 => *side,
        Some(sides) => candle_core::bail!(
            "--kernel {}: PredRNN takes one odd kernel side for every layer",
            join(sides)
        ),
    };
    if kernel.is_multiple_of(2) {
        candle_core::bail!("--kernel {kernel}: even; a kernel side must be odd");
    }
    if let Some(hidden) = &flags.hidden_channels {
        if hidden.is_empty() || hidden.contains(&0) || hidden.windows(2).any(|p| p[0] != p[1]) {
            candle_core::bail!(
                "--hidden-channels {}: PredRNN's layers need the same channels, at least 1 \
                 (its spatiotemporal memory passes from layer to layer), e.g. 64,64",
                join(hidden)
            );
        }
    }
    if flags.patch == Some(0) {
        candle_core::bail!("--patch 0: use 1 (no patches) or more");
    }
    let config = Config {
        channels: c,
        kernel,
        hidden_channels: flags.hidden_channels.clone().unwrap_or_default(),
        head: flags.head.map_or(Head::None, Head::from),
        patch: flags.patch.unwrap_or(1),
    };
    config
        .stack([h, w])
        .map_err(|e| candle_core::Error::Msg(lstm_conv::flag_names(&e.to_string())))?;
    let (plane_h, plane_w) = (h / config.patch, w / config.patch);
    if kernel > plane_h || kernel > plane_w {
        candle_core::bail!(
            "--kernel {kernel}: larger than the {plane_h}x{plane_w} plane it slides over"
        );
    }
    Ok(config)
}

fn check_channels(config: &Config, channels: usize) -> Result<()> {
    if channels != config.channels {
        candle_core::bail!(
            "a PredRNN of {}-channel frames cannot take {channels}-channel frames",
            config.channels
        );
    }
    Ok(())
}
