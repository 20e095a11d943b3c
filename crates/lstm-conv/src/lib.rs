//! The seed's ConvLSTM next-frame predictor (Shi et al. 2015, arXiv 1506.04214).
//!
//! The fully connected LSTM with every matrix product swapped for a 2-D convolution:
//! each step makes the four gate pre-activations as `conv(x, W_ih) + b_ih + conv(h, W_hh)
//! + b_hh` (kernel `K x K`, stride 1, padding `K/2`, so frames keep their size), runs the
//! shared LSTM cell ([`harness::cell::lstm_step`]), and the prediction is `h` itself: there
//! is no output layer, so `h` has the frame's channels.
//!
//! Dimension legend: `T` steps in a window (its length minus one), `C` channels (the seed:
//! 1), `H x W` frame size, `K` kernel side (the seed: 5).
//!
//! Parameters are named like PyTorch's `nn.LSTM` with a `convlstm` prefix, gates stacked
//! i, f, g, o along the output channels:
//!
//! ```
//! use harness::SequenceModel;
//! use lstm_conv::{Config, ConvLstm};
//! let specs = ConvLstm::parameter_specs(&Config::default());
//! assert_eq!(specs[0].name, "convlstm.weight_ih_l0");
//! assert_eq!(specs[0].shape, vec![4, 1, 5, 5]);
//! assert_eq!(specs[3].name, "convlstm.bias_hh_l0");
//! ```

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;
use harness::{cell::lstm_step, ParamSpec, SequenceModel};
use serde::{Deserialize, Serialize};

/// The conv model's shape. Defaults are the seed's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    /// Channels of a frame, and so of `h` and `c` (the prediction is `h`). The seed: 1.
    pub channels: usize,
    /// Side of the square kernel, odd so that padding `K/2` keeps the frame size. Seed: 5.
    pub kernel: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            channels: 1,
            kernel: 5,
        }
    }
}

impl Config {
    pub fn padding(&self) -> usize {
        self.kernel / 2
    }
}

/// The ConvLSTM cell; its `h` is the prediction.
#[derive(Debug, Clone)]
pub struct ConvLstm {
    config: Config,
    /// `[4C, C, K, K]`
    weight_ih: Tensor,
    /// `[4C, C, K, K]`
    weight_hh: Tensor,
    /// `[4C]`
    bias_ih: Tensor,
    /// `[4C]`
    bias_hh: Tensor,
}

impl ConvLstm {
    /// Builds the model from its tensors, in the layouts of the fields.
    pub fn new(config: Config, tensors: [Tensor; 4]) -> Result<ConvLstm> {
        if config.kernel.is_multiple_of(2) {
            candle_core::bail!(
                "kernel {} is even: padding K/2 keeps the frame size only for odd K",
                config.kernel
            );
        }
        let specs = Self::parameter_specs(&config);
        for (spec, t) in specs.iter().zip(&tensors) {
            if t.dims() != spec.shape.as_slice() {
                candle_core::bail!(
                    "{}: shape {:?}, expected {:?}",
                    spec.name,
                    t.dims(),
                    spec.shape
                );
            }
        }
        let [weight_ih, weight_hh, bias_ih, bias_hh] = tensors;
        Ok(ConvLstm {
            config,
            weight_ih,
            weight_hh,
            bias_ih,
            bias_hh,
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// `conv(x, kernel) + bias` with the seed's stride 1 and size-keeping padding.
    fn conv(&self, x: &Tensor, kernel: &Tensor, bias: &Tensor) -> Result<Tensor> {
        let bias = bias.reshape((1, 4 * self.config.channels, 1, 1))?; // [1, 4C, 1, 1]
        x.conv2d(kernel, self.config.padding(), 1, 1, 1)? // [B, 4C, H, W]
            .broadcast_add(&bias)
    }
}

impl SequenceModel for ConvLstm {
    const KIND: &'static str = "conv";
    type Config = Config;

    fn parameter_specs(config: &Config) -> Vec<ParamSpec> {
        let (c, k) = (config.channels, config.kernel);
        let fan_in = c * k * k;
        vec![
            ParamSpec::weight("convlstm.weight_ih_l0", &[4 * c, c, k, k], fan_in),
            ParamSpec::weight("convlstm.weight_hh_l0", &[4 * c, c, k, k], fan_in),
            ParamSpec::bias("convlstm.bias_ih_l0", &[4 * c]),
            ParamSpec::bias("convlstm.bias_hh_l0", &[4 * c]),
        ]
    }

    fn load(config: &Config, vb: VarBuilder) -> Result<Self> {
        let (c, k) = (config.channels, config.kernel);
        let vb = vb.pp("convlstm");
        Self::new(
            config.clone(),
            [
                vb.get((4 * c, c, k, k), "weight_ih_l0")?,
                vb.get((4 * c, c, k, k), "weight_hh_l0")?,
                vb.get(4 * c, "bias_ih_l0")?,
                vb.get(4 * c, "bias_hh_l0")?,
            ],
        )
    }

    fn predict(&self, window: &Tensor) -> Result<Tensor> {
        let (l, c, height, width) = window.dims4()?;
        if c != self.config.channels {
            candle_core::bail!(
                "conv model built for {} channels got frames with {c}",
                self.config.channels
            );
        }
        let t_steps = l - 1;
        let x = window.narrow(0, 0, t_steps)?; // [T, C, H, W]
                                               // Fold time into the batch: the input convolutions do not depend on h, so all T
                                               // steps take one conv2d call before the loop.
        let preact_x = self.conv(&x, &self.weight_ih, &self.bias_ih)?; // [T, 4C, H, W]
        let mut c_state = Tensor::zeros((1, c, height, width), window.dtype(), window.device())?;
        let mut h: Option<Tensor> = None; // h_0 = 0, so step 0 skips conv(h)
        let mut hs = Vec::with_capacity(t_steps);
        for t in 0..t_steps {
            let px = preact_x.narrow(0, t, 1)?; // [1, 4C, H, W]
            let preact = match &h {
                Some(h) => (px + self.conv(h, &self.weight_hh, &self.bias_hh)?)?,
                None => {
                    let bias = self.bias_hh.reshape((1, 4 * c, 1, 1))?;
                    px.broadcast_add(&bias)?
                }
            }; // [1, 4C, H, W]
            let (h_t, c_t) = lstm_step(&preact, &c_state)?; // [1, C, H, W] each
            hs.push(h_t.clone());
            h = Some(h_t);
            c_state = c_t;
        }
        Tensor::cat(&hs, 0) // [T, C, H, W]
    }
}
