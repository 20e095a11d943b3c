//! The shape of a stacked LSTM as both drivers see it, whatever makes its gates.
//!
//! A frame `[C, H, W]` enters the model in *model space* `[C_m, S]`: `C_m` channels of `S`
//! positions each. The conv model works on planes, `S = H/P * W/P` with `C_m = C*P*P` after
//! `P x P` space-to-depth patches ([`to_model_space`]); the linear model on vectors,
//! `S = 1` and `C_m = C*H*W` (a flattened frame, the same memory). Every state of layer `k`
//! is `[B, C_k, S]` per step; its gates `[B, 4C_k, S]` (blocks i, f, g, o).

use serde::{Deserialize, Serialize};

/// What follows the last layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Head {
    /// The prediction is the last layer's `h` (which must have the frame's channels): the
    /// seed's ConvLSTM.
    #[default]
    #[serde(rename = "none")]
    None,
    /// An affine map of `h` to the frame's channels (a 1x1 convolution, or the linear
    /// model's output layer).
    #[serde(rename = "conv1x1")]
    Affine,
    /// The affine map, then a sigmoid: predictions in (0, 1), as frames are.
    #[serde(rename = "conv1x1-sigmoid")]
    AffineSigmoid,
    /// The step's input frame plus the affine map of `h`: an untrained model (small output)
    /// starts near copying the last frame.
    #[serde(rename = "residual")]
    Residual,
}

impl Head {
    pub fn is_none(&self) -> bool {
        *self == Head::None
    }

    /// Whether the head has parameters (`head.weight`, `head.bias`).
    pub fn has_affine(&self) -> bool {
        *self != Head::None
    }

    /// The name `--head` takes.
    pub fn name(&self) -> &'static str {
        match self {
            Head::None => "none",
            Head::Affine => "conv1x1",
            Head::AffineSigmoid => "conv1x1-sigmoid",
            Head::Residual => "residual",
        }
    }
}

/// How a stack's layers connect, as data. By default the plain stack: layer `k` reads layer
/// `k - 1`'s `h` of the same step, the head reads the top layer's. A model may ask for more
/// without a driver of its own: the head reading several layers, a state flowing from the
/// top layer back to the bottom one. candle's autograd runs any wiring; the fast paths
/// (the written-out backward, the slice kernels) take plain stacks, and the harness picks
/// autograd for the rest.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Wiring {
    /// Layers whose `h` the head reads, concatenated over channels in this order; empty:
    /// the top layer's alone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub head_reads: Vec<usize>,
    /// The bottom layer at step `t` also reads the top layer's `h` of step `t - 1` (zero at
    /// the first step), concatenated after its input: a state flowing from the top of one
    /// step to the bottom of the next, as PredRNN's spatiotemporal memory flows.
    #[serde(default)]
    pub top_down: bool,
    /// Shi et al.'s encoder-forecaster: the first this many layers are the encoder, the
    /// rest (as many, of the same sizes) the forecaster; 0: one stack. In a forecast, the
    /// encoder reads the context's frames but the last; the forecaster, starting from the
    /// encoder's `h` and `c` layer by layer, reads the last context frame and then each of
    /// its own predictions, and makes every prediction that counts (the earlier steps'
    /// predictions, which count for nothing, are the head's of zero states).
    #[serde(default)]
    pub encoder_layers: usize,
    /// Shi et al.'s forecaster, which reads no frames: the encoder reads every context
    /// frame, the forecaster's bottom layer reads zeros (its `weight_ih` gets no gradient),
    /// starting from the encoder's states after the last context frame. False: the
    /// forecaster reads the last context frame, then its own predictions.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub blind_forecaster: bool,
}

impl Wiring {
    /// The plain stack, which every driver runs.
    pub fn is_plain(&self) -> bool {
        self.head_reads.is_empty() && !self.top_down && self.encoder_layers == 0
    }
}

/// What candle's autograd keeps per sample and step of a ConvLSTM layer, in units of its
/// state `C*S`, from the forward's graph to the end of the backward: every op's output and,
/// during the backward, their gradients. Measured, not read from a driver: candle holds
/// these buffers (peak memory of Shi et al.'s 32x2 ConvLSTM, batches of 16 windows of 20
/// frames: 1151 MiB with autograd, 375 MiB with the slice kernels,
/// bench/logs/2026-12-07-backward.log has the benchmark's).
pub const LSTM_AUTOGRAD_STATES_PER_STEP: usize = 56;

/// A stacked LSTM's shape.
#[derive(Debug, Clone, PartialEq)]
pub struct Stack {
    /// Channels, height and width of a frame as it is stored.
    pub frame: [usize; 3],
    /// Side of the space-to-depth patches (1: none). Conv models only.
    pub patch: usize,
    /// True for the linear model: a frame is one vector (`S = 1`).
    pub flat: bool,
    /// Hidden channels (units) of each layer, first to last.
    pub hidden: Vec<usize>,
    /// Shi et al.'s peephole weights in every layer.
    pub peephole: bool,
    pub head: Head,
    /// How the layers connect.
    pub wiring: Wiring,
}

impl Stack {
    /// Values in a frame, `C*H*W`.
    pub fn frame_len(&self) -> usize {
        self.frame.iter().product()
    }

    /// `C_m`: the channels of a frame in model space.
    pub fn model_channels(&self) -> usize {
        if self.flat {
            self.frame_len()
        } else {
            self.frame[0] * self.patch * self.patch
        }
    }

    /// `S`: positions per channel in model space.
    pub fn positions(&self) -> usize {
        self.spatial_dims().iter().product()
    }

    /// The spatial dims of a state tensor: `[]` for the linear model, `[H/P, W/P]` else.
    pub fn spatial_dims(&self) -> Vec<usize> {
        if self.flat {
            vec![]
        } else {
            vec![self.frame[1] / self.patch, self.frame[2] / self.patch]
        }
    }

    pub fn layers(&self) -> usize {
        self.hidden.len()
    }

    /// Channels of layer `k`'s input: the frame's (and with [`Wiring::top_down`] the top
    /// layer's) for the bottom layer, the layer below's for the others.
    pub fn input_channels(&self, k: usize) -> usize {
        match k {
            0 if self.wiring.top_down => self.model_channels() + self.top_channels(),
            0 => self.model_channels(),
            k if k == self.wiring.encoder_layers => self.model_channels(),
            _ => self.hidden[k - 1],
        }
    }

    /// Channels of the top layer.
    pub fn top_channels(&self) -> usize {
        *self.hidden.last().expect("a stack has at least one layer")
    }

    /// Channels the head reads: the top layer's, or those of [`Wiring::head_reads`].
    pub fn head_channels(&self) -> usize {
        match self.wiring.head_reads.as_slice() {
            [] => self.top_channels(),
            reads => reads.iter().map(|&k| self.hidden[k]).sum(),
        }
    }

    /// The specs of a convolutional model's head, if it has weights: `head.weight`
    /// `[C*P*P, C_head, 1, 1]` (a 1x1 convolution) and `head.bias` `[C*P*P]`.
    pub fn conv_head_specs(&self) -> Vec<crate::spec::ParamSpec> {
        use crate::spec::ParamSpec;
        if !self.head.has_affine() {
            return Vec::new();
        }
        let (out, top) = (self.model_channels(), self.head_channels());
        vec![
            ParamSpec::weight("head.weight", &[out, top, 1, 1], top),
            ParamSpec::bias("head.bias", &[out]),
        ]
    }

    /// Parameters per layer in the fixed layout both drivers read: `weight_ih`,
    /// `weight_hh`, `bias_ih`, `bias_hh`, then with peepholes `weight_ci`, `weight_cf`,
    /// `weight_co`; after all layers, the head's weight and bias if it has them.
    pub fn params_per_layer(&self) -> usize {
        if self.peephole {
            7
        } else {
            4
        }
    }

    /// Number of parameter tensors.
    pub fn param_count(&self) -> usize {
        self.layers() * self.params_per_layer() + if self.head.has_affine() { 2 } else { 0 }
    }

    /// Checks that the shape is one the drivers can run, naming what is wrong.
    pub fn check(&self) -> Result<(), String> {
        let [c, h, w] = self.frame;
        if c == 0 || h == 0 || w == 0 {
            return Err(format!("a frame of {c}x{h}x{w} values"));
        }
        if self.hidden.is_empty() || self.hidden.contains(&0) {
            return Err(format!(
                "hidden sizes {:?}: every layer needs at least one channel",
                self.hidden
            ));
        }
        if self.patch == 0 || h % self.patch != 0 || w % self.patch != 0 {
            return Err(format!(
                "patch {}: the frame's {h}x{w} must divide into patches of that side",
                self.patch
            ));
        }
        if self.flat && self.patch != 1 {
            return Err("patches apply to the conv model only".into());
        }
        if let Some(k) = self.wiring.head_reads.iter().find(|&&k| k >= self.layers()) {
            return Err(format!(
                "the head reads layer {k} of a stack of {} layers",
                self.layers()
            ));
        }
        let encoder = self.wiring.encoder_layers;
        if encoder > 0 {
            let (enc, fore) = self.hidden.split_at(encoder.min(self.layers()));
            if enc != fore {
                return Err(format!(
                    "an encoder of {encoder} layers needs a forecaster of the same sizes: \
                     hidden sizes {:?}",
                    self.hidden
                ));
            }
            if self.wiring.top_down {
                return Err("an encoder-forecaster cannot also be wired top-down".into());
            }
        }
        if self.head.is_none() && !self.wiring.head_reads.is_empty() {
            return Err("a head that reads several layers needs weights (conv1x1)".into());
        }
        if self.head.is_none() && self.top_channels() != self.model_channels() {
            return Err(format!(
                "head none: the prediction is the last layer's h, so that layer needs the \
                 frame's {} channels{}, not {}; add a head (conv1x1) or change the last size",
                self.model_channels(),
                if self.patch > 1 {
                    format!(" ({c} x {}x{} patches)", self.patch, self.patch)
                } else {
                    String::new()
                },
                self.top_channels()
            ));
        }
        Ok(())
    }
}

/// Frames `[n, C, H, W]` (flattened, row-major) to model space `[n, C*P*P, H/P, W/P]`:
/// space-to-depth, channel `c*P*P + py*P + px` holding pixel `(y*P + py, x*P + px)` of
/// channel `c` (PyTorch's `pixel_unshuffle`). For `P = 1` a copy.
pub fn to_model_space(frames: &[f32], [c, h, w]: [usize; 3], p: usize) -> Vec<f32> {
    let mut out = vec![0f32; frames.len()];
    permute_patches(frames, &mut out, [c, h, w], p, true);
    out
}

/// The inverse of [`to_model_space`].
pub fn from_model_space(values: &[f32], [c, h, w]: [usize; 3], p: usize) -> Vec<f32> {
    let mut out = vec![0f32; values.len()];
    permute_patches(values, &mut out, [c, h, w], p, false);
    out
}

fn permute_patches(src: &[f32], dst: &mut [f32], [c, h, w]: [usize; 3], p: usize, fwd: bool) {
    let frame = c * h * w;
    assert_eq!(src.len() % frame.max(1), 0, "not a whole number of frames");
    let (hp, wp) = (h / p, w / p);
    for (s, d) in src.chunks_exact(frame).zip(dst.chunks_exact_mut(frame)) {
        for ch in 0..c {
            for y in 0..h {
                for x in 0..w {
                    let plain = (ch * h + y) * w + x;
                    let patched = ((ch * p * p + (y % p) * p + x % p) * hp + y / p) * wp + x / p;
                    if fwd {
                        d[patched] = s[plain];
                    } else {
                        d[plain] = s[patched];
                    }
                }
            }
        }
    }
}

/// Serialises a list of sizes as a single number when it has one entry (the seed's
/// configurations keep their old form, `"hidden": 4225`), as a list otherwise; reads both.
pub mod one_or_many {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(usize),
        Many(Vec<usize>),
    }

    pub fn serialize<S: Serializer>(values: &[usize], s: S) -> Result<S::Ok, S::Error> {
        match values {
            [one] => OneOrMany::One(*one).serialize(s),
            many => OneOrMany::Many(many.to_vec()).serialize(s),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<usize>, D::Error> {
        Ok(match OneOrMany::deserialize(d)? {
            OneOrMany::One(one) => vec![one],
            OneOrMany::Many(many) => many,
        })
    }
}

/// [`one_or_many`] for an optional list.
pub mod one_or_many_opt {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(values: &Option<Vec<usize>>, s: S) -> Result<S::Ok, S::Error> {
        match values {
            Some(v) => super::one_or_many::serialize(v, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<usize>>, D::Error> {
        #[derive(Deserialize)]
        struct Wrap(#[serde(with = "super::one_or_many")] Vec<usize>);
        Ok(Option::<Wrap>::deserialize(d)?.map(|w| w.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patches_follow_pixel_unshuffle_and_invert() {
        // 2 channels of 4x6, patches of 2: channel 1's pixel (3, 5) is patch (1, 2) at
        // offset (1, 1), so model channel 1*4 + 1*2 + 1 = 7, position (1, 2).
        let (c, h, w, p) = (2, 4, 6, 2);
        let frames: Vec<f32> = (0..2 * c * h * w).map(|v| v as f32).collect();
        let patched = to_model_space(&frames, [c, h, w], p);
        let at = |ch: usize, y: usize, x: usize| (ch * h + y) * w + x;
        assert_eq!(patched[(7 * 2 + 1) * 3 + 2], frames[at(1, 3, 5)]);
        // The second frame is permuted on its own.
        let frame = c * h * w;
        assert_eq!(
            patched[frame + (7 * 2 + 1) * 3 + 2],
            frames[frame + at(1, 3, 5)]
        );
        assert_eq!(from_model_space(&patched, [c, h, w], p), frames);
        assert_eq!(to_model_space(&frames, [c, h, w], 1), frames);
    }

    #[test]
    fn head_none_needs_the_frames_channels() {
        let mut stack = Stack {
            frame: [1, 8, 8],
            patch: 2,
            flat: false,
            hidden: vec![3, 2],
            peephole: false,
            head: Head::None,
            wiring: Default::default(),
        };
        let err = stack.check().unwrap_err();
        assert!(err.contains("4 channels") && err.contains("not 2"), "{err}");
        stack.hidden = vec![3, 4];
        stack.patch = 3;
        assert!(stack.check().unwrap_err().contains("patch 3"));
        stack.patch = 2;
        stack.head = Head::Affine;
        assert!(stack.check().is_ok());
        assert_eq!((stack.model_channels(), stack.positions()), (4, 16));
    }
}
