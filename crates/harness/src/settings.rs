//! What a run trains with: the settings a training checkpoint records and a resume must
//! match.

use serde::{Deserialize, Serialize};

use crate::adam::AdamConfig;
use crate::evaluate::Forecast;

/// What a run trains with; every default is the seed's. All of it but `epochs` identifies
/// the run: a resume must match it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainSettings {
    /// Passes over the training windows. Seed: 10.
    pub epochs: usize,
    /// The optimizer. Seed: Chainer's Adam, lr 1e-3.
    pub adam: AdamConfig,
    /// Seed of the weight initialisation and of the window order. Seed: 0.
    pub seed: u64,
    /// Train on the windows in a new random order each epoch (the seed: in order).
    #[serde(default)]
    pub shuffle: bool,
    /// Windows per Adam update, the loss averaged over them. The seed: 1.
    #[serde(default = "one")]
    pub batch_size: usize,
    /// Forecasting: read `context` frames, predict `horizon`, each step after the context
    /// reading the previous prediction; the loss is the mean over the predicted frames of
    /// the per-frame mean squared error. `None`: the seed's one-step prediction, whose loss
    /// is the sum over the steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forecast: Option<Forecast>,
}

impl Default for TrainSettings {
    fn default() -> Self {
        TrainSettings {
            epochs: 10,
            adam: AdamConfig::default(),
            seed: 0,
            shuffle: false,
            batch_size: 1,
            forecast: None,
        }
    }
}

fn one() -> usize {
    1
}
