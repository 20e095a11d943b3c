//! The one seam between a model and the drivers (burn's `gate_product`): how a layer's gate
//! pre-activations are made from its input and from its `h` (a matrix product, or a
//! convolution), the transpose of each, their weight gradients, and the head. Everything
//! else (the cell, peepholes, the loop over time and layers, backpropagation through time,
//! the loss) is the drivers', written once.
//!
//! The seam in candle ops, [`GateOps`], is all a model must write: any device and dtype,
//! differentiable by candle's autograd. Two fast paths are optional: its backward written
//! out in candle ops ([`GateOpsBackward`]) and the whole seam on f32 slices
//! ([`GateKernels`], the CPU's).
//!
//! Shapes, per sample: a layer's input `[C_in, S]`, its state `[C, S]`, its gate
//! pre-activations `[4C, S]` (blocks i, f, g, o); `n` samples lie one after another. In
//! tensor form the sample's `[C, S]` is `[C]` (linear) or `[C, H, W]` (conv).

use std::fmt::Debug;

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;
use serde::{de::DeserializeOwned, Serialize};

use crate::cell::Peepholes;
use crate::grad::Grad;
use crate::spec::ParamSpec;
use crate::stack::Stack;

/// A next-frame model as the harness sees it. The harness never asks which model it has.
///
/// Dimension legend: `L` frames in a window, `B` windows in a batch, `C` channels,
/// `H x W` frame size.
pub trait SequenceModel: Recurrent + Sized {
    /// Short name of the model family: `--model`'s value, the stem of its CSV and
    /// checkpoint files.
    const KIND: &'static str;

    /// One line on the model, for `--model`'s help.
    const ABOUT: &'static str;

    /// The flag that sets the model's size, named when a run will not fit in memory.
    const SIZE_FLAG: &'static str;

    /// Whether the model has the slice kernels ([`GateKernels`], the CPU's fast path) for
    /// a plain stack; without them it trains by candle's autograd, which the memory
    /// estimate counts instead.
    const SLICE_KERNELS: bool = false;

    /// What candle's autograd keeps per sample, step and layer, in units of the layer's
    /// state `C*S`, from the forward's graph to the end of the backward (measured; the
    /// memory estimate reads it): the LSTM's by default.
    const AUTOGRAD_STATES_PER_STEP: usize = crate::stack::LSTM_AUTOGRAD_STATES_PER_STEP;

    /// The flag that ends the model's output in a sigmoid, named when `--loss bce` needs
    /// one; `None` where the model has no such output.
    const SIGMOID_HEAD_FLAG: Option<&'static str> = None;

    /// The model's command-line flags: a `clap::Args` struct the command line flattens in
    /// (under its own help heading), recorded with a run so `--resume` restores them.
    /// Every flag is optional: the defaults are the model's seed configuration.
    type Flags: clap::Args
        + Clone
        + Debug
        + Default
        + PartialEq
        + Serialize
        + DeserializeOwned
        + Send
        + Sync;

    /// The configuration `flags` describe over frames `[C, H, W]`, checked: an error names
    /// the flag at fault and says what would do.
    fn config(flags: &Self::Flags, frame: [usize; 3]) -> Result<Self::Config>;

    /// Worker threads when `--threads` is not given, of `available` cores.
    fn default_threads(flags: &Self::Flags, available: usize) -> usize;

    /// Everything that shapes the model but the frame size (layers, hidden sizes, ...).
    /// Saved in checkpoints.
    type Config: Clone + Debug + PartialEq + Serialize + DeserializeOwned + Send + Sync;

    /// The parameters over frames `[C, H, W]`, in the drivers' layout order: the order
    /// they are initialised, optimised and saved in. A frame the configuration cannot
    /// take is an error that says why.
    fn parameter_specs(config: &Self::Config, frame: [usize; 3]) -> Result<Vec<ParamSpec>>;

    /// The stack's shape over frames `[C, H, W]`, checked as by
    /// [`SequenceModel::parameter_specs`]: what sizes a run's activations, known before
    /// any weight exists.
    fn layout(config: &Self::Config, frame: [usize; 3]) -> Result<Stack>;

    /// Builds the model over frames `[C, H, W]` from tensors named as in
    /// [`SequenceModel::parameter_specs`].
    fn load(config: &Self::Config, frame: [usize; 3], vb: VarBuilder) -> Result<Self>;
}

/// A model as the drivers see it: its stack, its parameters, and its forward in candle ops
/// ([`GateOps`]). That is a complete model: it trains on any device, candle's autograd
/// differentiating the forward. Two fast paths are optional, each found by the driver
/// when the model offers it and tested against autograd: the backward written out in candle
/// ops ([`GateOpsBackward`]: one product per weight over all steps instead of autograd's
/// graph), and the whole seam on f32 slices ([`GateKernels`]: the CPU's fast path).
pub trait Recurrent: GateOps + Sync {
    fn stack(&self) -> &Stack;

    /// The parameter tensors, in the layout order [`Stack::params_per_layer`] describes.
    fn parameters(&self) -> Vec<&Tensor>;

    /// The backward of [`GateOps`] written out, if the model has it.
    fn backward_ops(&self) -> Option<&dyn GateOpsBackward> {
        None
    }

    /// The seam on f32 slices, if the model has it.
    fn kernels(&self) -> Option<&dyn GateKernels> {
        None
    }

    /// The model's own step of its whole stack, if its cell is not the LSTM that
    /// [`GateOps`] feeds (see [`StackStep`]).
    fn own_step(&self) -> Option<&dyn StackStep> {
        None
    }

    /// Its gate products and head as ONNX nodes, if it exports ([`crate::onnx`]).
    fn onnx(&self) -> Option<&dyn crate::onnx::OnnxGates> {
        None
    }
}

/// A stack whose step is not the core's stacked LSTM: a cell with other states, or states
/// that flow between layers (PredRNN's spatiotemporal memory, which zigzags up the layers
/// of a step and from the top layer to the bottom one of the next). The model runs all its
/// layers for one step in candle ops; the candle-ops driver keeps the rest: frames to model
/// space and back, which frame each step reads (the truth, its own prediction, or a sampled
/// mix), the head and the losses. Such a model trains by candle's autograd ([`GateOps`]
/// then needs only its head; the fast paths are for the LSTM stack).
pub trait StackStep {
    /// The state before the first step of `batch` windows: whatever tensors the model
    /// keeps between steps (zeros).
    fn initial_state(
        &self,
        batch: usize,
        dtype: candle_core::DType,
        device: &candle_core::Device,
    ) -> Result<Vec<Tensor>>;

    /// One step of every layer: the step's input `x` `[B, C_m, ...]` and the state before
    /// it to what the head reads `[B, C_head, ...]` and the state after it.
    fn step(&self, x: &Tensor, state: &[Tensor]) -> Result<(Tensor, Vec<Tensor>)>;
}

/// The seam in candle ops: the forward.
pub trait GateOps {
    /// The input half of layer `k`'s pre-activations for `n` samples at once (time folded
    /// into the batch where the inputs are known), with whatever biases the model adds
    /// there: `[n, C_in, ...] -> [n, 4C, ...]`. A model with its own step
    /// ([`Recurrent::own_step`]) leaves it out.
    fn input_preact(&self, _k: usize, _x: &Tensor) -> Result<Tensor> {
        candle_core::bail!("this model runs its own step (Recurrent::own_step), not the LSTM's")
    }

    /// `preact` `[B, 4C, ...]` plus the recurrent half of one step (`h` `[B, C, ...]`;
    /// `None` where `h = 0`) and any bias not added yet. A model with its own step leaves
    /// it out.
    fn add_recurrent(&self, _k: usize, _preact: &Tensor, _h: Option<&Tensor>) -> Result<Tensor> {
        candle_core::bail!("this model runs its own step (Recurrent::own_step), not the LSTM's")
    }

    /// Layer `k`'s peephole weights, if the model has them.
    fn peepholes(&self, _k: usize) -> Option<Peepholes<'_>> {
        None
    }

    /// The head's affine map: `[n, C_head, ...] -> [n, C_m, ...]`, `C_head` the top
    /// layer's channels or, with [`crate::Wiring::head_reads`], those of the layers it
    /// reads (none: unused).
    fn head_forward(&self, h: &Tensor) -> Result<Tensor>;
}

/// The backward of [`GateOps`], written out in candle ops (optional: see [`Recurrent`]).
pub trait GateOpsBackward: GateOps {
    /// The gradient reaching the input from `d_preact`: `[n, 4C, ...] -> [n, C_in, ...]`.
    fn input_backward(&self, k: usize, d_preact: &Tensor) -> Result<Tensor>;

    /// The gradient reaching `h` through the recurrent half: `[B, 4C, ...] -> [B, C, ...]`.
    fn recurrent_backward(&self, k: usize, d_preact: &Tensor) -> Result<Tensor>;

    /// `[dW_ih, dW_hh, db_ih, db_hh]` of layer `k`, summed over samples: `inputs`
    /// `[n, C_in, ...]` with `d_preact` `[n, 4C, ...]`; `recurrent` pairs the `h` each later
    /// step read with that step's `d_preact` (`None` for a one-step window: `h_0 = 0`).
    fn gate_grads(
        &self,
        k: usize,
        inputs: &Tensor,
        d_preact: &Tensor,
        recurrent: Option<(&Tensor, &Tensor)>,
    ) -> Result<[Tensor; 4]>;

    /// The head's transpose: `[n, C_m, ...] -> [n, C_top, ...]`.
    fn head_backward(&self, dy: &Tensor) -> Result<Tensor>;

    /// `[d_weight, d_bias]` of the head, summed over the `n` samples of `h` and `dy`.
    fn head_grads(&self, h: &Tensor, dy: &Tensor) -> Result<[Tensor; 2]>;
}

/// One layer's weights, as the slice kernels read them.
#[derive(Debug, Clone, Copy)]
pub struct LayerSlices<'a> {
    pub w_ih: &'a [f32],
    pub w_hh: &'a [f32],
    pub b_ih: &'a [f32],
    pub b_hh: &'a [f32],
    /// `[w_ci, w_cf, w_co]`, each `[C, S]`.
    pub peepholes: Option<[&'a [f32]; 3]>,
}

/// The head's weights.
#[derive(Debug, Clone, Copy)]
pub struct HeadSlices<'a> {
    pub weight: &'a [f32],
    pub bias: &'a [f32],
}

/// Every weight of a stack, in its layout.
#[derive(Debug, Clone)]
pub struct StackSlices<'a> {
    pub layers: Vec<LayerSlices<'a>>,
    pub head: Option<HeadSlices<'a>>,
}

impl<'a> StackSlices<'a> {
    /// Reads `params` (one slice per parameter tensor, in the layout order of
    /// [`Stack::params_per_layer`]).
    pub fn new(stack: &Stack, params: &[&'a [f32]]) -> StackSlices<'a> {
        assert_eq!(params.len(), stack.param_count(), "parameter count");
        let per = stack.params_per_layer();
        let layers = (0..stack.layers())
            .map(|k| {
                let p = &params[k * per..(k + 1) * per];
                LayerSlices {
                    w_ih: p[0],
                    w_hh: p[1],
                    b_ih: p[2],
                    b_hh: p[3],
                    peepholes: stack.peephole.then(|| [p[4], p[5], p[6]]),
                }
            })
            .collect();
        let head = stack.head.has_affine().then(|| {
            let at = stack.layers() * per;
            HeadSlices {
                weight: params[at],
                bias: params[at + 1],
            }
        });
        StackSlices { layers, head }
    }
}

/// What a layer's weight gradients are made of, after backpropagation through time.
#[derive(Debug, Clone, Copy)]
pub struct GateIo<'a> {
    /// `[T*B, C_in, S]`: the layer's input at every step (time-major).
    pub inputs: &'a [f32],
    /// `[T*B, C, S]`: the layer's `h` after every step.
    pub hs: &'a [f32],
    /// `[T*B, 4C, S]`: dLoss/d(pre-activations) at every step.
    pub d_preact: &'a [f32],
    pub steps: usize,
    pub batch: usize,
}

/// The seam on f32 slices. Every buffer is row-major; `n` samples one after another.
pub trait GateKernels: Sync {
    /// `out` `[n, 4C, S]` = the input half of layer `k`'s pre-activations (and the biases
    /// the model adds there) for `n` samples `x` `[n, C_in, S]`.
    fn input_preact(&self, k: usize, w: &LayerSlices, x: &[f32], n: usize, out: &mut [f32]);

    /// `preact` `[B, 4C, S]` += the recurrent half of one step (`h` `[B, C, S]`, `None`
    /// where `h = 0`) and any bias not added yet.
    fn add_recurrent(
        &self,
        k: usize,
        w: &LayerSlices,
        h: Option<&[f32]>,
        batch: usize,
        preact: &mut [f32],
    );

    /// `dx` `[n, C_in, S]` = the gradient reaching the input from `d_preact` `[n, 4C, S]`
    /// (overwritten).
    fn input_backward(&self, k: usize, w: &LayerSlices, d_preact: &[f32], n: usize, dx: &mut [f32]);

    /// `dh` `[B, C, S]` += the gradient reaching `h` through one step's recurrent half.
    fn recurrent_backward(
        &self,
        k: usize,
        w: &LayerSlices,
        d_preact: &[f32],
        batch: usize,
        dh: &mut [f32],
    );

    /// `[dW_ih, dW_hh, db_ih, db_hh]` of layer `k`. Step `t >= 1`'s recurrent half read
    /// `h` of step `t - 1`; step 0's read `h_0 = 0`.
    fn gate_grads<'a>(&self, k: usize, io: &GateIo<'a>) -> [Grad<'a>; 4];

    /// `y` `[n, C_m, S]` = the head's affine map of `h` `[n, C_top, S]` (overwritten).
    fn head_forward(&self, w: &HeadSlices, h: &[f32], n: usize, y: &mut [f32]);

    /// `dh` `[n, C_top, S]` = its transpose applied to `dy` `[n, C_m, S]` (overwritten).
    fn head_backward(&self, w: &HeadSlices, dy: &[f32], n: usize, dh: &mut [f32]);

    /// `[d_weight, d_bias]` of the head over the `n` samples.
    fn head_grads<'a>(&self, h: &'a [f32], dy: &'a [f32], n: usize) -> [Grad<'a>; 2];
}
