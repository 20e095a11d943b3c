//! The one training harness every model shares.
//!
//! A model is seen only through [`SequenceModel`]: its name, configuration, named
//! parameters, and the gate seam of `lstm-core` that the drivers run. The harness owns
//! what is common to every model: batches of windows, the training step (a driver's
//! forward and backward, then the optimizer), seeded initialisation, Adam in Chainer's and
//! PyTorch's forms, the epoch loop, metrics, the CSV rows, and safetensors checkpoints.
//!
//! ```
//! use harness::adam::{AdamConfig, AdamForm};
//! let seed = AdamConfig::default();
//! assert_eq!((seed.lr, seed.beta1, seed.beta2, seed.eps), (1e-3, 0.9, 0.999, 1e-8));
//! assert_eq!(seed.form, AdamForm::Chainer);
//! ```

pub mod adam;
pub mod checkpoint;
pub mod collective;
mod error;
pub mod evaluate;
pub mod fault;
pub mod files;
#[cfg(feature = "testing")]
pub mod gradcheck;
pub mod keys;
pub mod lock;
pub mod memory;
pub mod metrics;
pub mod model;
pub mod params;
pub mod predict;
pub mod resume;
pub mod rows;
mod settings;
pub mod tensorboard;
pub mod train;

pub use error::{Error, Result};
pub use lstm_core::{cell, cpu, linalg, Loss, Plan};
pub use model::{
    loss_and_grads, predict, train_step, Backward, ParamInit, ParamSpec, SequenceModel, Step,
    StepOptions,
};
pub use settings::{Augment, LrSchedule, TrainSettings};
pub use train::{train, FreshWindows, OutputPaths, RunSummary, TrainConfig};
