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
    /// Zoom in: a random crop of 80% to 100% of each side, resized back to the frame's size
    /// (`--size`) by bilinear interpolation, the same crop for every frame of the window.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub crop: bool,
}

/// What [`Augment::draw`] gives one window: each transform on or off, and the crop where
/// there is one.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Drawn {
    pub flip: bool,
    pub reverse: bool,
    pub crop: Option<Crop>,
}

/// A crop of a frame, as fractions: its side is `scale` times the frame's (in both
/// dimensions), its top-left corner `top` and `left` of the room left (0: the first row or
/// column, 1: as far down or right as the crop fits).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Crop {
    pub scale: f64,
    pub top: f64,
    pub left: f64,
}

impl Augment {
    pub fn is_none(&self) -> bool {
        !self.flip && !self.reverse && !self.crop
    }

    /// The transforms window `window` of epoch `epoch` gets, drawn by SplitMix64 from the
    /// run's seed, the epoch and the window, so a resumed run draws the same. The low bits
    /// decide which transforms apply (flip and reverse keep the draws they had before
    /// crops existed); the crop's scale and corner come from a second word.
    pub fn draw(&self, seed: u64, epoch: usize, window: usize) -> Drawn {
        use lstm_core::plan::splitmix64;
        const STREAM: u64 = 0x4155_474d_454e_5421; // "AUGMENT!"
        let bits = splitmix64(splitmix64(seed ^ STREAM) ^ ((epoch as u64) << 32) ^ window as u64);
        let crop = (self.crop && bits & 4 == 4).then(|| {
            let more = splitmix64(bits);
            // Three 21-bit fractions in [0, 1).
            let unit = |k: u32| ((more >> (21 * k)) & 0x1f_ffff) as f64 / (1u64 << 21) as f64;
            Crop {
                scale: 1.0 - 0.2 * unit(0),
                top: unit(1),
                left: unit(2),
            }
        });
        Drawn {
            flip: self.flip && bits & 1 == 1,
            reverse: self.reverse && bits & 2 == 2,
            crop,
        }
    }

    /// `window` `[L, C, H, W]` cropped and resized back, mirrored (W reversed) and/or
    /// played backwards (L reversed), as drawn.
    pub fn apply(
        window: &candle_core::Tensor,
        drawn: Drawn,
    ) -> candle_core::Result<candle_core::Tensor> {
        let reversed = |t: &candle_core::Tensor, dim: usize| {
            let n = t.dim(dim)? as u32;
            let index: Vec<u32> = (0..n).rev().collect();
            t.index_select(&candle_core::Tensor::new(index, t.device())?, dim)
        };
        let mut out = match drawn.crop {
            Some(crop) => cropped(window, crop)?,
            None => window.clone(),
        };
        if drawn.flip {
            out = reversed(&out, 3)?;
        }
        if drawn.reverse {
            out = reversed(&out, 0)?;
        }
        Ok(out)
    }
}

/// `window` `[L, C, H, W]` cut to `crop` and resized back to `H x W`: rows and columns
/// each interpolated by one matrix, `out = R_h · X · R_wᵀ`.
fn cropped(window: &candle_core::Tensor, crop: Crop) -> candle_core::Result<candle_core::Tensor> {
    let (_, _, height, width) = window.dims4()?;
    let side = |n: usize| ((crop.scale * n as f64).round() as usize).clamp(1, n);
    let (h, w) = (side(height), side(width));
    let top = (crop.top * (height - h + 1) as f64) as usize;
    let left = (crop.left * (width - w + 1) as f64) as usize;
    let (top, left) = (top.min(height - h), left.min(width - w));
    let part = window.narrow(2, top, h)?.narrow(3, left, w)?; // [L, C, h, w]
    let device = window.device();
    let dtype = window.dtype();
    let rows = bilinear_matrix(h, height)
        .to_device(device)?
        .to_dtype(dtype)?; // [H, h]
    let cols = bilinear_matrix(w, width)
        .to_device(device)?
        .to_dtype(dtype)?; // [W, w]
    part.broadcast_matmul(&cols.t()?)? // [L, C, h, W]
        .transpose(2, 3)? // [L, C, W, h]
        .broadcast_matmul(&rows.t()?)? // [L, C, W, H]
        .transpose(2, 3)? // [L, C, H, W]
        .contiguous()
}

/// `[to, from]`: bilinear resampling of `from` samples to `to`, with PyTorch's
/// `align_corners=False` geometry (pixel centres at `k + 0.5`, the source clamped at its
/// edges), so that a row of `from` values times it is `F.interpolate`'s row of `to`.
pub fn bilinear_matrix(from: usize, to: usize) -> candle_core::Tensor {
    let mut weights = vec![0f64; to * from];
    let ratio = from as f64 / to as f64;
    for (k, row) in weights.chunks_mut(from).enumerate() {
        let source = ((k as f64 + 0.5) * ratio - 0.5).clamp(0.0, (from - 1) as f64);
        let below = source.floor() as usize;
        let above = (below + 1).min(from - 1);
        let t = source - below as f64;
        row[below] += 1.0 - t;
        row[above] += t;
    }
    candle_core::Tensor::from_vec(weights, (to, from), &candle_core::Device::Cpu)
        .expect("a vector of to*from values")
}

#[cfg(test)]
mod tests {
    use super::{Augment, LrSchedule};

    const TORCH_UP_3X4_TO_5X7: [f64; 35] = [
        0.0,
        0.3571428571428571,
        0.9285714285714285,
        2.5,
        3.8571428571428577,
        2.7142857142857144,
        2.0,
        0.7999999999999999,
        1.2999999999999998,
        2.0999999999999996,
        2.5000000000000004,
        2.6857142857142864,
        1.7714285714285718,
        1.2000000000000002,
        2.0,
        2.7142857142857144,
        3.8571428571428568,
        2.5,
        0.9285714285714288,
        0.3571428571428572,
        0.0,
        1.4000000000000001,
        2.3285714285714283,
        3.814285714285714,
        2.8,
        1.5714285714285714,
        1.3428571428571425,
        1.1999999999999997,
        1.0,
        2.071428571428571,
        3.7857142857142856,
        3.0,
        2.0,
        2.0,
        2.0,
    ];
    const TORCH_CROP_4X5: [f64; 20] = [
        8.0,
        5.6000000000000005,
        2.0,
        5.0,
        7.0,
        6.0,
        4.7,
        2.75,
        5.75,
        7.75,
        2.0,
        2.9,
        4.25,
        7.249999999999999,
        9.25,
        0.0,
        2.0,
        5.0,
        8.0,
        10.0,
    ];

    #[test]
    fn augmentation_mirrors_and_reverses_as_drawn() {
        let window = candle_core::Tensor::arange(0f32, 2.0 * 2.0 * 3.0, &candle_core::Device::Cpu)
            .unwrap()
            .reshape((2, 1, 2, 3))
            .unwrap(); // [L, C, H, W]
        let drawn = |flip, reverse| super::Drawn {
            flip,
            reverse,
            crop: None,
        };
        let flipped = Augment::apply(&window, drawn(true, false)).unwrap();
        assert_eq!(
            flipped.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            [2., 1., 0., 5., 4., 3., 8., 7., 6., 11., 10., 9.]
        );
        let both = Augment::apply(&window, drawn(true, true)).unwrap();
        assert_eq!(
            both.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            [8., 7., 6., 11., 10., 9., 2., 1., 0., 5., 4., 3.]
        );
        // Each transform about half the windows, none where it is off.
        let on = Augment {
            flip: true,
            reverse: true,
            crop: true,
        };
        let draws: Vec<_> = (0..1000).map(|w| on.draw(3, 2, w)).collect();
        let flips = draws.iter().filter(|d| d.flip).count();
        let reversals = draws.iter().filter(|d| d.reverse).count();
        let crops: Vec<_> = draws.iter().filter_map(|d| d.crop).collect();
        assert!((450..550).contains(&flips) && (450..550).contains(&reversals));
        assert!((450..550).contains(&crops.len()));
        // Scales spread over [0.8, 1), corners over [0, 1).
        for pick in [
            |c: &super::Crop| (c.scale - 0.8) / 0.2,
            |c: &super::Crop| c.top,
        ] {
            let values: Vec<f64> = crops.iter().map(pick).collect();
            assert!(values.iter().all(|v| (0.0..1.0).contains(v)));
            let low = values.iter().filter(|&&v| v < 0.5).count() as f64;
            assert!((0.4..0.6).contains(&(low / values.len() as f64)));
        }
        let flip_only = Augment {
            flip: true,
            ..Augment::default()
        };
        assert!((0..100).all(|w| {
            let d = flip_only.draw(3, 2, w);
            !d.reverse && d.crop.is_none()
        }));
        // Flip and reverse draw as they did before crops existed: the same bits.
        let without_crop = Augment { crop: false, ..on };
        assert!((0..100).all(|w| {
            let (a, b) = (on.draw(5, 1, w), without_crop.draw(5, 1, w));
            (a.flip, a.reverse) == (b.flip, b.reverse)
        }));
    }

    /// PyTorch 2.15's `F.interpolate(x, size=..., mode="bilinear", align_corners=False)` of
    /// a 3x4 image to 5x7, and of the crop rows 1..3, columns 1..4 of a 4x5 image back to
    /// 4x5, as `bench/torch_bilinear.py` prints them.
    #[test]
    fn crops_resize_as_pytorchs_bilinear_interpolation() {
        use candle_core::{Device, Tensor};
        let image: Vec<f64> = (0..12).map(|k| (k * k % 7) as f64).collect();
        let x = Tensor::from_vec(image, (3, 4), &Device::Cpu).unwrap();
        let up = super::bilinear_matrix(3, 5)
            .matmul(&x)
            .unwrap()
            .matmul(&super::bilinear_matrix(4, 7).t().unwrap())
            .unwrap();
        let torch_up = TORCH_UP_3X4_TO_5X7;
        let ours = up.flatten_all().unwrap().to_vec1::<f64>().unwrap();
        for (a, b) in ours.iter().zip(torch_up) {
            assert!((a - b).abs() < 1e-12, "{a} against PyTorch's {b}");
        }
        // The identity where nothing is resized; rows that sum to 1.
        let same = super::bilinear_matrix(6, 6).to_vec2::<f64>().unwrap();
        for (k, row) in same.iter().enumerate() {
            assert!(row.iter().enumerate().all(|(j, &v)| v == f64::from(j == k)));
        }
        let down = super::bilinear_matrix(9, 4).to_vec2::<f64>().unwrap();
        assert!(down
            .iter()
            .all(|r| (r.iter().sum::<f64>() - 1.0).abs() < 1e-12));

        // A whole crop through `Augment::apply`: [L=1, C=1, 4, 5], scale 0.6 of 4 rows -> 2
        // (rounded 2.4), of 5 columns -> 3, corner (1, 1) of the room (3 rows, 3 columns).
        let frame: Vec<f32> = (0..20).map(|k| ((k * 5) % 11) as f32).collect();
        let window = Tensor::from_vec(frame, (1, 1, 4, 5), &Device::Cpu).unwrap();
        let crop = super::Crop {
            scale: 0.6,
            top: 0.4,
            left: 0.4,
        };
        let drawn = super::Drawn {
            crop: Some(crop),
            ..Default::default()
        };
        let out = Augment::apply(&window, drawn).unwrap();
        assert_eq!(out.dims(), [1, 1, 4, 5]);
        let ours = out.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        for (a, b) in ours.iter().zip(TORCH_CROP_4X5) {
            assert!((*a as f64 - b).abs() < 1e-5, "{a} against PyTorch's {b}");
        }
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
