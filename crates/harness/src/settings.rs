//! What a run trains with: the settings a training checkpoint records and a resume must
//! match.

use serde::{Deserialize, Serialize};

use crate::adam::AdamConfig;
use crate::evaluate::Forecast;
use lstm_core::Loss;

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
    /// How the learning rate moves over the run's updates (the seed: it does not).
    #[serde(default, skip_serializing_if = "LrSchedule::is_constant")]
    pub lr_schedule: LrSchedule,
    /// Clip the gradients' L2 norm, all parameters' together, to this before each update.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clip_grad_norm: Option<f64>,
    /// Training windows drawn afresh every epoch ([`crate::TrainConfig::fresh_windows`]
    /// draws them); the seed trains on one set.
    #[serde(default, skip_serializing_if = "is_false")]
    pub fresh_windows: bool,
    /// Scheduled sampling over this many updates (see [`lstm_core::Sampling`]): a
    /// forecast step reads the true frame with a chance that falls linearly from 1 to 0
    /// over them. `None`: it always reads its own prediction, as in evaluation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_sampling: Option<u64>,
    /// Random transforms of each training window, drawn per epoch and window from the seed
    /// ([`Augment::draw`]); none for the seed.
    #[serde(default, skip_serializing_if = "Augment::is_none")]
    pub augment: Augment,
    /// What the training loss measures (the seed: the squared error). Always written, so
    /// that a resume refused for it names both losses; a record without it is the seed's.
    #[serde(default)]
    pub loss: Loss,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// The learning rate of each update, from the optimiser's `lr` (the peak) over a run of
/// `total` updates, as PyTorch's schedulers step it once per update.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LrSchedule {
    /// `lr` throughout.
    #[default]
    Constant,
    /// Cosine decay from `lr` towards 0 (`CosineAnnealingLR`, `T_max` = the run's updates).
    Cosine,
    /// OneCycle (`OneCycleLR`'s defaults, as OpenSTL trains): from `lr / 25` up to `lr` over
    /// the first 30% of the updates, then down to `lr / 25 / 1e4`, both halves cosine.
    #[serde(rename = "onecycle")]
    OneCycle,
}

impl LrSchedule {
    pub fn is_constant(&self) -> bool {
        *self == LrSchedule::Constant
    }

    /// The learning rate of update `step` (from 0) of `total`, `lr` being the peak.
    pub fn lr(&self, lr: f64, step: u64, total: u64) -> f64 {
        let cos = |from: f64, to: f64, pct: f64| {
            to + (from - to) / 2.0 * (1.0 + (std::f64::consts::PI * pct.clamp(0.0, 1.0)).cos())
        };
        let step = step as f64;
        match self {
            LrSchedule::Constant => lr,
            LrSchedule::Cosine => cos(lr, 0.0, step / total.max(1) as f64),
            LrSchedule::OneCycle => {
                let (initial, last) = (lr / 25.0, lr / 25.0 / 1e4);
                let peak_at = 0.3 * total as f64 - 1.0;
                let end = total.saturating_sub(1) as f64;
                if step <= peak_at {
                    cos(initial, lr, step / peak_at)
                } else {
                    cos(lr, last, (step - peak_at) / (end - peak_at))
                }
            }
        }
    }
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
            lr_schedule: LrSchedule::Constant,
            fresh_windows: false,
            clip_grad_norm: None,
            loss: Loss::Mse,
            scheduled_sampling: None,
            augment: Augment::default(),
        }
    }
}

fn one() -> usize {
    1
}

/// Augmentation of the training windows, as video-prediction training multiplies a short
/// video's windows: each transform on, each window of each epoch gets it with chance 1/2.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Augment {
    /// Mirror left to right.
    #[serde(default)]
    pub flip: bool,
    /// Play backwards: the last frame first.
    #[serde(default)]
    pub reverse: bool,
}

impl Augment {
    pub fn is_none(&self) -> bool {
        !self.flip && !self.reverse
    }

    /// The transforms window `window` of epoch `epoch` gets: `(flip, reverse)`, drawn by
    /// SplitMix64 from the run's seed, the epoch and the window, so a resumed run draws the
    /// same.
    pub fn draw(&self, seed: u64, epoch: usize, window: usize) -> (bool, bool) {
        use lstm_core::plan::splitmix64;
        const STREAM: u64 = 0x4155_474d_454e_5421; // "AUGMENT!"
        let bits = splitmix64(splitmix64(seed ^ STREAM) ^ ((epoch as u64) << 32) ^ window as u64);
        (self.flip && bits & 1 == 1, self.reverse && bits & 2 == 2)
    }

    /// `window` `[L, C, H, W]` mirrored (W reversed) and/or played backwards (L reversed).
    pub fn apply(
        window: &candle_core::Tensor,
        (flip, reverse): (bool, bool),
    ) -> candle_core::Result<candle_core::Tensor> {
        let reversed = |t: &candle_core::Tensor, dim: usize| {
            let n = t.dim(dim)? as u32;
            let index: Vec<u32> = (0..n).rev().collect();
            t.index_select(&candle_core::Tensor::new(index, t.device())?, dim)
        };
        let mut out = window.clone();
        if flip {
            out = reversed(&out, 3)?;
        }
        if reverse {
            out = reversed(&out, 0)?;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::{Augment, LrSchedule};

    #[test]
    fn augmentation_mirrors_and_reverses_as_drawn() {
        let window = candle_core::Tensor::arange(0f32, 2.0 * 2.0 * 3.0, &candle_core::Device::Cpu)
            .unwrap()
            .reshape((2, 1, 2, 3))
            .unwrap(); // [L, C, H, W]
        let flipped = Augment::apply(&window, (true, false)).unwrap();
        assert_eq!(
            flipped.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            [2., 1., 0., 5., 4., 3., 8., 7., 6., 11., 10., 9.]
        );
        let both = Augment::apply(&window, (true, true)).unwrap();
        assert_eq!(
            both.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            [8., 7., 6., 11., 10., 9., 2., 1., 0., 5., 4., 3.]
        );
        // Each transform about half the windows, none where it is off.
        let on = Augment {
            flip: true,
            reverse: true,
        };
        let draws: Vec<_> = (0..1000).map(|w| on.draw(3, 2, w)).collect();
        let flips = draws.iter().filter(|d| d.0).count();
        let reversals = draws.iter().filter(|d| d.1).count();
        assert!((450..550).contains(&flips) && (450..550).contains(&reversals));
        let flip_only = Augment {
            flip: true,
            reverse: false,
        };
        assert!((0..100).all(|w| !flip_only.draw(3, 2, w).1));
    }

    /// PyTorch 2.15's learning rates for 10 updates of lr 1e-3: `OneCycleLR(max_lr=1e-3,
    /// total_steps=10)` and `CosineAnnealingLR(T_max=10)`, read from
    /// `optimizer.param_groups[0]['lr']` before each update.
    #[test]
    fn schedules_give_pytorchs_rates() {
        let one_cycle = [
            3.9999999999999996e-05,
            0.0005200000000000001,
            0.001,
            0.0009504846320134736,
            0.000811745653949763,
            0.0006112620219362892,
            0.00038874197806371076,
            0.00018825834605023698,
            4.9519367986526286e-05,
            4e-09,
        ];
        let cosine = [
            0.001,
            0.0009755282581475768,
            0.0009045084971874736,
            0.0007938926261462366,
            0.0006545084971874737,
            0.0005,
            0.00034549150281252633,
            0.0002061073738537635,
            9.549150281252634e-05,
            2.4471741852423235e-05,
        ];
        for (schedule, theirs) in [
            (LrSchedule::OneCycle, one_cycle),
            (LrSchedule::Cosine, cosine),
        ] {
            for (step, expected) in theirs.iter().enumerate() {
                let ours = schedule.lr(1e-3, step as u64, 10);
                assert!(
                    (ours - expected).abs() <= 1e-12 * expected,
                    "{schedule:?} step {step}: {ours} vs {expected}"
                );
            }
        }
        assert_eq!(LrSchedule::Constant.lr(1e-3, 7, 10), 1e-3);
    }
}
