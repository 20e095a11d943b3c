//! The seed's fully connected LSTM next-frame predictor.
//!
//! A frame is flattened to a vector `x` of `D = C*H*W` values. Each step makes the four
//! gate pre-activations with two matrix products, `W_ih x + b_ih + W_hh h + b_hh`, runs the
//! shared LSTM cell ([`harness::cell::lstm_step`]) and predicts the next frame with a
//! linear layer, `out(h)`.
//!
//! Dimension legend: `T` steps in a window (its length minus one), `D` values per frame,
//! `N` hidden units (the seed: `D = N = 65*65 = 4225`).
//!
//! Parameters follow PyTorch's `nn.LSTM` + `nn.Linear` names and layouts, gates stacked
//! i, f, g, o, so a `state_dict` of `lstm = nn.LSTM(D, N)` and `out = nn.Linear(N, D)` saved
//! with safetensors loads unchanged:
//!
//! ```
//! use harness::SequenceModel;
//! use lstm_linear::{Config, LinearLstm};
//! let specs = LinearLstm::parameter_specs(&Config::default());
//! let names: Vec<_> = specs.iter().map(|s| (s.name.as_str(), s.shape.clone())).collect();
//! assert_eq!(names[0], ("lstm.weight_ih_l0", vec![4 * 4225, 4225]));
//! assert_eq!(names[4], ("out.weight", vec![4225, 4225]));
//! ```

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;
use harness::{cell::lstm_step, ParamSpec, SequenceModel};
use serde::{Deserialize, Serialize};

/// The linear model's shape. Defaults are the seed's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    /// Channels per frame (1: grey).
    pub channels: usize,
    /// Frame height in pixels.
    pub height: usize,
    /// Frame width in pixels.
    pub width: usize,
    /// Hidden units `N`. The seed: 4225, one per pixel.
    pub hidden: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            channels: 1,
            height: 65,
            width: 65,
            hidden: 4225,
        }
    }
}

impl Config {
    /// Values per flattened frame, `D`.
    pub fn frame_len(&self) -> usize {
        self.channels * self.height * self.width
    }
}

/// The fully connected LSTM and its output layer.
#[derive(Debug, Clone)]
pub struct LinearLstm {
    config: Config,
    /// `[4N, D]`
    weight_ih: Tensor,
    /// `[4N, N]`
    weight_hh: Tensor,
    /// `[4N]`
    bias_ih: Tensor,
    /// `[4N]`
    bias_hh: Tensor,
    /// `[D, N]`
    out_weight: Tensor,
    /// `[D]`
    out_bias: Tensor,
}

impl LinearLstm {
    /// Builds the model from its tensors, in PyTorch's layouts (see the fields).
    pub fn new(config: Config, tensors: [Tensor; 6]) -> Result<LinearLstm> {
        let [weight_ih, weight_hh, bias_ih, bias_hh, out_weight, out_bias] = tensors;
        let specs = Self::parameter_specs(&config);
        for (spec, t) in specs.iter().zip([
            &weight_ih,
            &weight_hh,
            &bias_ih,
            &bias_hh,
            &out_weight,
            &out_bias,
        ]) {
            if t.dims() != spec.shape.as_slice() {
                candle_core::bail!(
                    "{}: shape {:?}, expected {:?}",
                    spec.name,
                    t.dims(),
                    spec.shape
                );
            }
        }
        Ok(LinearLstm {
            config,
            weight_ih,
            weight_hh,
            bias_ih,
            bias_hh,
            out_weight,
            out_bias,
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Gate pre-activations of the recurrent half, `W_hh h + b_hh`: `[1, N] -> [1, 4N]`.
    fn recurrent_preact(&self, h: &Tensor) -> Result<Tensor> {
        h.matmul(&self.weight_hh.t()?)?.broadcast_add(&self.bias_hh) // [1, 4N]
    }
}

impl SequenceModel for LinearLstm {
    const KIND: &'static str = "linear";
    type Config = Config;

    fn parameter_specs(config: &Config) -> Vec<ParamSpec> {
        let (d, n) = (config.frame_len(), config.hidden);
        vec![
            ParamSpec::weight("lstm.weight_ih_l0", &[4 * n, d], d),
            ParamSpec::weight("lstm.weight_hh_l0", &[4 * n, n], n),
            ParamSpec::bias("lstm.bias_ih_l0", &[4 * n]),
            ParamSpec::bias("lstm.bias_hh_l0", &[4 * n]),
            ParamSpec::weight("out.weight", &[d, n], n),
            ParamSpec::bias("out.bias", &[d]),
        ]
    }

    fn load(config: &Config, vb: VarBuilder) -> Result<Self> {
        let (d, n) = (config.frame_len(), config.hidden);
        let lstm = vb.pp("lstm");
        let out = vb.pp("out");
        Self::new(
            config.clone(),
            [
                lstm.get((4 * n, d), "weight_ih_l0")?,
                lstm.get((4 * n, n), "weight_hh_l0")?,
                lstm.get(4 * n, "bias_ih_l0")?,
                lstm.get(4 * n, "bias_hh_l0")?,
                out.get((d, n), "weight")?,
                out.get(d, "bias")?,
            ],
        )
    }

    fn predict(&self, window: &Tensor) -> Result<Tensor> {
        let (l, c, height, width) = window.dims4()?;
        let (t_steps, d, n) = (l - 1, self.config.frame_len(), self.config.hidden);
        if c * height * width != d {
            candle_core::bail!(
                "linear model built for {}x{}x{} frames got {c}x{height}x{width}",
                self.config.channels,
                self.config.height,
                self.config.width
            );
        }
        let x = window.narrow(0, 0, t_steps)?.reshape((t_steps, d))?; // [T, D]
                                                                      // Fold time into the batch: the input half of every gate does not depend on h, so
                                                                      // all T steps take one matrix product before the loop.
        let preact_x = x
            .matmul(&self.weight_ih.t()?)? // [T, 4N]
            .broadcast_add(&self.bias_ih)?; // [T, 4N]
        let mut c_state = Tensor::zeros((1, n), window.dtype(), window.device())?; // [1, N]
        let mut h: Option<Tensor> = None; // h_0 = 0, so step 0 skips W_hh
        let mut hs = Vec::with_capacity(t_steps);
        for t in 0..t_steps {
            let px = preact_x.narrow(0, t, 1)?; // [1, 4N]
            let preact = match &h {
                Some(h) => (px + self.recurrent_preact(h)?)?,
                None => px.broadcast_add(&self.bias_hh)?,
            }; // [1, 4N]
            let (h_t, c_t) = lstm_step(&preact, &c_state)?; // [1, N] each
            hs.push(h_t.clone());
            h = Some(h_t);
            c_state = c_t;
        }
        let hs = Tensor::cat(&hs, 0)?; // [T, N]
        let y = hs
            .matmul(&self.out_weight.t()?)? // [T, D]
            .broadcast_add(&self.out_bias)?; // [T, D]
        y.reshape((t_steps, c, height, width)) // [T, C, H, W]
    }
}
