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

use candle_core::{Result, Tensor, Var};
use candle_nn::VarBuilder;
use harness::cell::{lstm_step, lstm_step_backward, lstm_step_forward, StepCache};
use harness::cpu::{is_f32_cpu, tensors_like, with_f32_all};
use harness::{window_loss_and_grad, ParamSpec, SequenceModel};

pub mod cpu;
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

    /// `conv(x, kernel) + bias` with the seed's stride 1 and size-keeping padding:
    /// `[B, C, H, W] -> [B, 4C, H, W]`.
    fn conv(&self, x: &Tensor, kernel: &Tensor, bias: &Tensor) -> Result<Tensor> {
        x.conv2d(kernel, self.config.padding(), 1, 1, 1)? // [B, 4C, H, W]
            .broadcast_add(&self.bias_4d(bias)?)
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
        let (l, c, height, width) = self.check_window(window)?;
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
                None => px.broadcast_add(&self.bias_4d(&self.bias_hh)?)?,
            }; // [1, 4C, H, W]
            let (h_t, c_t) = lstm_step(&preact, &c_state)?; // [1, C, H, W] each
            hs.push(h_t.clone());
            h = Some(h_t);
            c_state = c_t;
        }
        Tensor::cat(&hs, 0) // [T, C, H, W]
    }

    /// Backpropagation through time written out: forward keeps each step's gates and cell
    /// state; backward walks time in reverse; each kernel's gradient is one correlation
    /// over all steps at once.
    ///
    /// f32 windows on the CPU take the slice kernels of [`cpu`]; anything else (f64, CUDA)
    /// takes the same algorithm written with candle ops.
    fn loss_and_grads(&self, window: &Tensor, _params: &[Var]) -> Result<(f64, Vec<Tensor>)> {
        if is_f32_cpu(window) && self.parameters().iter().all(|t| is_f32_cpu(t)) {
            return self.loss_and_grads_cpu(window);
        }
        // No autograd here: detached weights keep candle from recording a graph.
        self.detached()?.bptt(window)
    }
}

impl ConvLstm {
    /// The window's dims, checked against the configured channels.
    fn check_window(&self, window: &Tensor) -> Result<(usize, usize, usize, usize)> {
        let (l, c, height, width) = window.dims4()?;
        if c != self.config.channels || l < 2 {
            candle_core::bail!(
                "conv model built for windows of {}-channel frames got [{l}, {c}, {height}, {width}]",
                self.config.channels
            );
        }
        Ok((l, c, height, width))
    }

    /// `[4C] -> [1, 4C, 1, 1]`, to broadcast over a batch of frames.
    fn bias_4d(&self, bias: &Tensor) -> Result<Tensor> {
        bias.reshape((1, 4 * self.config.channels, 1, 1))
    }

    /// The parameters in [`SequenceModel::parameter_specs`] order.
    fn parameters(&self) -> [&Tensor; 4] {
        [
            &self.weight_ih,
            &self.weight_hh,
            &self.bias_ih,
            &self.bias_hh,
        ]
    }

    /// [`cpu::loss_and_grads`] on the storages of the window and the weights.
    fn loss_and_grads_cpu(&self, window: &Tensor) -> Result<(f64, Vec<Tensor>)> {
        let (l, _, height, width) = self.check_window(window)?;
        let window = window.contiguous()?;
        let [w_ih, w_hh, b_ih, b_hh] = self.parameters();
        let (channels, kernel) = (self.config.channels, self.config.kernel);
        let (loss, grads) = with_f32_all(
            [&window, w_ih, w_hh, b_ih, b_hh],
            |[x, w_ih, w_hh, b_ih, b_hh]| {
                let weights = cpu::Weights {
                    w_ih,
                    w_hh,
                    b_ih,
                    b_hh,
                    channels,
                    kernel,
                };
                cpu::loss_and_grads(x, l, (height, width), &weights)
            },
        )?;
        Ok((
            loss,
            tensors_like(grads, &Self::parameter_specs(&self.config))?,
        ))
    }

    /// The same model on detached tensors: candle records no graph through it.
    fn detached(&self) -> Result<ConvLstm> {
        Self::new(self.config.clone(), self.parameters().map(Tensor::detach))
    }

    /// Gradient of `conv(input, kernel)` with respect to the kernel, summed over the batch:
    /// `dK[o, c, ky, kx] = sum_{b,y,x} d_out[b, o, y, x] * input_padded[b, c, y+ky, x+kx]`,
    /// itself a convolution of the input (batch and channels swapped) by `d_out`.
    ///
    /// `input`: `[B, C, H, W]`, `d_out`: `[B, 4C, H, W]`; returns `[4C, C, K, K]`.
    fn kernel_grad(&self, input: &Tensor, d_out: &Tensor) -> Result<Tensor> {
        input
            .transpose(0, 1)? // [C, B, H, W]
            .conv2d(&d_out.transpose(0, 1)?, self.config.padding(), 1, 1, 1)? // [C, 4C, K, K]
            .transpose(0, 1)? // [4C, C, K, K]
            .contiguous()
    }

    /// Loss and gradients by hand-written backpropagation through time.
    fn bptt(&self, window: &Tensor) -> Result<(f64, Vec<Tensor>)> {
        let (l, c, height, width) = self.check_window(window)?;
        let t_steps = l - 1;

        // Forward, keeping what backward reads.
        let x = window.narrow(0, 0, t_steps)?; // [T, C, H, W]
        let preact_x = self.conv(&x, &self.weight_ih, &self.bias_ih)?; // [T, 4C, H, W]
        let zeros = Tensor::zeros((1, c, height, width), window.dtype(), window.device())?;
        let mut caches: Vec<StepCache> = Vec::with_capacity(t_steps);
        let mut hs: Vec<Tensor> = Vec::with_capacity(t_steps); // h_1 .. h_T, [1, C, H, W]
        for t in 0..t_steps {
            let px = preact_x.narrow(0, t, 1)?; // [1, 4C, H, W]
            let preact = match hs.last() {
                Some(h) => (px + self.conv(h, &self.weight_hh, &self.bias_hh)?)?,
                None => px.broadcast_add(&self.bias_4d(&self.bias_hh)?)?,
            }; // [1, 4C, H, W]
            let c_prev = caches.last().map_or(&zeros, |k| &k.c);
            let (h, cache) = lstm_step_forward(&preact, c_prev)?;
            hs.push(h);
            caches.push(cache);
        }
        let hs = Tensor::cat(&hs, 0)?; // [T, C, H, W]: the predictions
        let (loss, d_hs) = window_loss_and_grad(&hs, window)?; // d_hs: [T, C, H, W]

        // The cell, last step first; h and c after the last step carry no gradient.
        let mut dh_next = zeros.clone(); // [1, C, H, W]
        let mut dc_next = zeros.clone(); // [1, C, H, W]
        let mut d_preacts = vec![zeros.clone(); t_steps];
        for t in (0..t_steps).rev() {
            let dh = (d_hs.narrow(0, t, 1)? + &dh_next)?; // [1, C, H, W]
            let c_prev = if t == 0 { &zeros } else { &caches[t - 1].c };
            let (d_preact, dc_prev) = lstm_step_backward(&caches[t], c_prev, &dh, &dc_next)?;
            // The gradient of a convolution with respect to its input is the transposed
            // convolution with the same kernel.
            dh_next = d_preact.conv_transpose2d(&self.weight_hh, self.config.padding(), 0, 1, 1)?;
            dc_next = dc_prev;
            d_preacts[t] = d_preact;
        }
        let d_preact = Tensor::cat(&d_preacts, 0)?; // [T, 4C, H, W]

        // Kernels: one correlation over all steps each. Step 0 saw h_0 = 0, so W_hh's
        // gradient pairs steps 1 .. T-1 with h_1 .. h_{T-1}.
        let d_weight_ih = self.kernel_grad(&x, &d_preact)?; // [4C, C, K, K]
        let d_weight_hh = if t_steps > 1 {
            self.kernel_grad(
                &hs.narrow(0, 0, t_steps - 1)?,
                &d_preact.narrow(0, 1, t_steps - 1)?,
            )?
        } else {
            self.weight_hh.zeros_like()?
        };
        // b_ih and b_hh enter every step and pixel alike.
        let d_bias = d_preact.sum((0, 2, 3))?; // [4C]
        Ok((loss, vec![d_weight_ih, d_weight_hh, d_bias.clone(), d_bias]))
    }
}
