//! The one training harness every model shares.
//!
//! A model is seen only through [`SequenceModel`]: its named parameters, its predictions
//! over a window, and (by default through candle's autograd) its loss and gradients. The
//! harness owns what is common: the window loss, seeded initialisation, Adam in Chainer's
//! and PyTorch's forms, the epoch loop, the CSV rows, and safetensors checkpoints. The LSTM
//! cell update both models use lives in [`cell`].
//!
//! ```
//! use harness::adam::{AdamConfig, AdamForm};
//! let seed = AdamConfig::default();
//! assert_eq!((seed.lr, seed.beta1, seed.beta2, seed.eps), (1e-3, 0.9, 0.999, 1e-8));
//! assert_eq!(seed.form, AdamForm::Chainer);
//! ```

pub mod adam;
pub mod cell;
pub mod cpu;
mod error;
pub mod fault;
pub mod gradcheck;
pub mod linalg;
pub mod metrics;
pub mod model;
pub mod params;
pub mod predict;
pub mod resume;
pub mod train;

pub use error::{Error, Result};
pub use model::{
    autograd_loss_and_grads, window_loss, window_loss_and_grad, ParamInit, ParamSpec,
    SequenceModel, Step,
};
pub use train::{train, EpochRow, OutputPaths, RunSummary, TrainConfig};
