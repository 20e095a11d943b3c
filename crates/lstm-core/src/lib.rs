//! The recurrent core every model shares: the LSTM cell (with optional peepholes), the one
//! seam a model implements (how its gate pre-activations are made from the input and from
//! `h`, and its head), and the two drivers that run any model through time and layers,
//! forward and backward: one in candle ops ([`tensors`], any device and dtype, and the
//! forward candle's autograd differentiates) and one on f32 slices ([`slices`], the CPU
//! fast path).
//!
//! Dimension legend: `T` steps (a window's length minus one), `B` windows in a batch, `C`
//! channels (hidden units of the linear model), `S` positions per channel (`H*W` for a
//! convolutional model, 1 for the linear one), `C_m` the channels of a frame in model space.
//!
//! This crate knows no model: `lstm-linear` and `lstm-conv` implement
//! [`seam::GateOps`] and [`seam::GateKernels`]; a model whose cell is not the LSTM
//! (`predrnn`) implements [`seam::StackStep`] and the head; the training harness calls the
//! drivers.
//!
//! ```
//! use lstm_core::plan::Plan;
//! // The seed's schedule: windows of 26 frames, 25 steps, every step reads a true frame
//! // and every prediction counts.
//! let plan = Plan::one_step(26, 1);
//! assert_eq!((plan.steps, plan.known), (25, 25));
//! assert_eq!(plan.weight(0), 1.0);
//! // Forecasting 10 frames after 10: only the last 10 steps' predictions count.
//! let plan = Plan::forecast(10, 10, 4);
//! assert_eq!((plan.steps, plan.known), (19, 10));
//! assert_eq!((plan.weight(8), plan.weight(9)), (0.0, 0.1 / 4.0));
//! ```

pub mod cell;
pub mod cpu;
pub mod grad;
pub mod linalg;
pub mod onnx;
pub mod plan;
pub mod proto;
pub mod scratch;
pub mod seam;
pub mod simd;
pub mod slices;
pub mod spec;
pub mod stack;
pub mod tensors;

pub use grad::{Grad, Outer};
pub use plan::{Loss, Objective, Plan, Sampling};
pub use seam::{
    GateIo, GateKernels, GateOps, GateOpsBackward, HeadSlices, LayerSlices, Recurrent,
    SequenceModel, StackSlices, StackStep,
};
pub use spec::{ParamInit, ParamSpec};
pub use stack::{Head, Stack, Wiring};
