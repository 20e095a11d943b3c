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

use candle_core::{Result, Tensor, Var};
use candle_nn::VarBuilder;
use harness::adam::{Adam, Gradient, Outer};
use harness::cell::{lstm_step, lstm_step_backward, lstm_step_forward, StepCache};
use harness::cpu::{is_f32_cpu, tensor_from, tensors_like, with_f32, with_f32_all};
use harness::model::unfused_train_step;
use harness::{window_loss_and_grad, ParamSpec, SequenceModel, Step};
use serde::{Deserialize, Serialize};

pub mod cpu;

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

    /// The window's dims, checked against the configured frame size.
    fn check_window(&self, window: &Tensor) -> Result<(usize, usize, usize, usize)> {
        let (l, c, height, width) = window.dims4()?;
        if c * height * width != self.config.frame_len() || l < 2 {
            candle_core::bail!(
                "linear model built for windows of {}x{}x{} frames got [{l}, {c}, {height}, {width}]",
                self.config.channels,
                self.config.height,
                self.config.width
            );
        }
        Ok((l, c, height, width))
    }

    /// Gate pre-activations of the input half for all steps, `W_ih x + b_ih`:
    /// `[T, D] -> [T, 4N]`.
    fn input_preact(&self, x: &Tensor) -> Result<Tensor> {
        self.weight_ih
            .matmul(&x.t()?)? // [4N, T]
            .t()? // [T, 4N]
            .broadcast_add(&self.bias_ih) // [T, 4N]
    }

    /// The output layer, `out_w h + out_b`: `[T, N] -> [T, D]`.
    fn output(&self, hs: &Tensor) -> Result<Tensor> {
        self.out_weight
            .matmul(&hs.t()?)? // [D, T]
            .t()? // [T, D]
            .broadcast_add(&self.out_bias) // [T, D]
    }

    /// Gate pre-activations of the recurrent half, `W_hh h + b_hh`: `[1, N] -> [1, 4N]`.
    ///
    /// Written as `W_hh @ h^T` rather than `h @ W_hh^T`: autograd then produces the weight
    /// gradient as one contiguous `[4N, N]` tensor in the parameter's own layout, instead
    /// of a transposed view that every later accumulation has to walk element by element.
    fn recurrent_preact(&self, h: &Tensor) -> Result<Tensor> {
        self.weight_hh
            .matmul(&h.t()?)? // [4N, 1]
            .t()? // [1, 4N]
            .broadcast_add(&self.bias_hh) // [1, 4N]
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
        let (l, c, height, width) = self.check_window(window)?;
        let (t_steps, d, n) = (l - 1, self.config.frame_len(), self.config.hidden);
        // Fold time into the batch: the input half of every gate does not depend on h, so
        // all T steps take one matrix product before the loop.
        let x = window.narrow(0, 0, t_steps)?.reshape((t_steps, d))?; // [T, D]
        let preact_x = self.input_preact(&x)?; // [T, 4N]
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
        let y = self.output(&hs)?; // [T, D]
        y.reshape((t_steps, c, height, width)) // [T, C, H, W]
    }

    /// Backpropagation through time written out. Forward keeps each
    /// step's gates and cell state; backward walks time in reverse, and every weight
    /// gradient is one matrix product over all steps (`dW_ih = dA^T X`,
    /// `dW_hh = dA^T H_prev`) instead of 25 outer products, so nothing the size of a weight
    /// exists but the gradients themselves.
    ///
    /// f32 windows on the CPU take the slice kernels of [`cpu`]; anything else (f64, CUDA)
    /// takes the same algorithm written with candle ops.
    fn loss_and_grads(&self, window: &Tensor, _params: &[Var]) -> Result<(f64, Vec<Tensor>)> {
        if self.runs_cpu_kernels(window) {
            return self.loss_and_grads_cpu(window);
        }
        // No autograd here: detached weights keep candle from recording a graph.
        self.detached()?.bptt(window)
    }

    /// On f32 CPU tensors: backpropagation through time on slices ([`cpu::backward`]),
    /// then Adam with each weight gradient summed over the steps inside the update
    /// ([`Outer`]), so the three weight gradients (643 MB at the seed's size) are never
    /// written, zeroed or read back. Anything else: gradients, then the update.
    fn train_step(&self, window: &Tensor, params: &[Var], adam: &mut Adam) -> Result<Step> {
        if !self.runs_cpu_kernels(window) {
            return unfused_train_step(self, window, params, adam);
        }
        let (l, _, _, _) = self.check_window(window)?;
        let window = window.contiguous()?;
        let (steps, d, n) = (l - 1, self.config.frame_len(), self.config.hidden);
        // The weights are read under their storage locks, released before Adam writes them.
        let mut bw = self.with_slices(&window, |x, weights| cpu::backward(x, l, d, n, weights))?;
        if harness::fault::reached("window") {
            bw.d_preact[0] = f32::NAN;
        }
        if !bw.loss.is_finite() {
            return Ok(Step::LossNotFinite(bw.loss));
        }
        let g4 = 4 * n;
        let d_b = tensor_from(std::mem::take(&mut bw.d_b), &[g4])?;
        let d_out_b = tensor_from(std::mem::take(&mut bw.d_out_b), &[d])?;
        let not_finite = with_f32(&window, |window| {
            let x = &window[..steps * d]; // [T, D]
            adam.update_with(params, |k| match k {
                0 => Gradient::Outer(Outer {
                    a: &bw.d_preact,
                    a_stride: g4,
                    b: x,
                    steps,
                }),
                // Step 0 saw h_0 = 0: steps 1 .. T-1 pair with h_1 .. h_{T-1}.
                1 => Gradient::Outer(Outer {
                    a: &bw.d_preact[g4..],
                    a_stride: g4,
                    b: &bw.hs,
                    steps: steps - 1,
                }),
                2 | 3 => Gradient::Tensor(&d_b),
                4 => Gradient::Outer(Outer {
                    a: &bw.d_y,
                    a_stride: d,
                    b: &bw.hs,
                    steps,
                }),
                _ => Gradient::Tensor(&d_out_b),
            })
        })??;
        Ok(Step::Updated {
            loss: bw.loss,
            not_finite,
        })
    }
}

impl LinearLstm {
    /// The parameters in [`SequenceModel::parameter_specs`] order.
    fn parameters(&self) -> [&Tensor; 6] {
        [
            &self.weight_ih,
            &self.weight_hh,
            &self.bias_ih,
            &self.bias_hh,
            &self.out_weight,
            &self.out_bias,
        ]
    }

    /// Whether the window and the weights are f32 on the CPU: the tensors [`cpu`]'s slice
    /// kernels take.
    fn runs_cpu_kernels(&self, window: &Tensor) -> bool {
        is_f32_cpu(window) && self.parameters().iter().all(|t| is_f32_cpu(t))
    }

    /// [`cpu::loss_and_grads`] on the storages of the window and the weights.
    fn loss_and_grads_cpu(&self, window: &Tensor) -> Result<(f64, Vec<Tensor>)> {
        let (l, _, _, _) = self.check_window(window)?;
        let window = window.contiguous()?;
        let (d, n) = (self.config.frame_len(), self.config.hidden);
        let (loss, grads) = self.with_slices(&window, |x, weights| {
            cpu::loss_and_grads(x, l, d, n, weights)
        })?;
        Ok((
            loss,
            tensors_like(grads, &Self::parameter_specs(&self.config))?,
        ))
    }

    /// Calls `f` with the values of a contiguous f32 CPU window and of the weights, borrowed
    /// from their storages for the duration of the call.
    fn with_slices<R>(
        &self,
        window: &Tensor,
        f: impl FnOnce(&[f32], &cpu::Weights) -> R,
    ) -> Result<R> {
        let [w_ih, w_hh, b_ih, b_hh, out_w, out_b] = self.parameters();
        with_f32_all(
            [window, w_ih, w_hh, b_ih, b_hh, out_w, out_b],
            |[x, w_ih, w_hh, b_ih, b_hh, out_w, out_b]| {
                let weights = cpu::Weights {
                    w_ih,
                    w_hh,
                    b_ih,
                    b_hh,
                    out_w,
                    out_b,
                };
                f(x, &weights)
            },
        )
    }

    /// The same model on detached tensors: candle records no graph through it.
    fn detached(&self) -> Result<LinearLstm> {
        Self::new(self.config.clone(), self.parameters().map(Tensor::detach))
    }

    /// Loss and gradients by hand-written backpropagation through time.
    fn bptt(&self, window: &Tensor) -> Result<(f64, Vec<Tensor>)> {
        let (l, c, height, width) = self.check_window(window)?;
        let (t_steps, d, n) = (l - 1, self.config.frame_len(), self.config.hidden);
        let (dtype, device) = (window.dtype(), window.device());

        // Forward, keeping what backward reads.
        // Fold time into the batch: all T input products at once.
        let x = window.narrow(0, 0, t_steps)?.reshape((t_steps, d))?; // [T, D]
        let preact_x = self.input_preact(&x)?; // [T, 4N]
        let zeros = Tensor::zeros((1, n), dtype, device)?; // [1, N]
        let mut caches: Vec<StepCache> = Vec::with_capacity(t_steps);
        let mut hs: Vec<Tensor> = Vec::with_capacity(t_steps); // h_1 .. h_T, each [1, N]
        for t in 0..t_steps {
            let px = preact_x.narrow(0, t, 1)?; // [1, 4N]
            let preact = match hs.last() {
                Some(h) => (px + self.recurrent_preact(h)?)?,
                None => px.broadcast_add(&self.bias_hh)?,
            }; // [1, 4N]
            let c_prev = caches.last().map_or(&zeros, |k| &k.c);
            let (h, cache) = lstm_step_forward(&preact, c_prev)?;
            hs.push(h);
            caches.push(cache);
        }
        let hs = Tensor::cat(&hs, 0)?; // [T, N]
        let y = self.output(&hs)?; // [T, D]
        let (loss, d_y) = window_loss_and_grad(&y.reshape((t_steps, c, height, width))?, window)?;
        let d_y = d_y.reshape((t_steps, d))?; // [T, D]

        // Output layer: y = out_w h + out_b, all steps at once.
        let d_out_weight = d_y.t()?.matmul(&hs)?; // [D, N]
        let d_out_bias = d_y.sum(0)?; // [D]
        let d_hs = d_y.matmul(&self.out_weight)?; // [T, N]

        // The cell, last step first; h and c of the step after T carry no gradient.
        let mut dh_next = zeros.clone(); // [1, N]
        let mut dc_next = zeros.clone(); // [1, N]
        let mut d_preacts = vec![zeros.clone(); t_steps];
        for t in (0..t_steps).rev() {
            let dh = (d_hs.narrow(0, t, 1)? + &dh_next)?; // [1, N]
            let c_prev = if t == 0 { &zeros } else { &caches[t - 1].c };
            let (d_preact, dc_prev) = lstm_step_backward(&caches[t], c_prev, &dh, &dc_next)?;
            dh_next = d_preact.matmul(&self.weight_hh)?; // [1, N]
            dc_next = dc_prev;
            d_preacts[t] = d_preact;
        }
        let d_preact = Tensor::cat(&d_preacts, 0)?; // [T, 4N]

        // Gate weights: one product over all steps each. Step 0 saw h_0 = 0, so W_hh's
        // gradient sums steps 1 .. T-1 against h_1 .. h_{T-1}.
        let d_weight_ih = d_preact.t()?.matmul(&x)?; // [4N, D]
        let d_weight_hh = if t_steps > 1 {
            let later = d_preact.narrow(0, 1, t_steps - 1)?; // [T-1, 4N]
            later.t()?.matmul(&hs.narrow(0, 0, t_steps - 1)?)? // [4N, N]
        } else {
            self.weight_hh.zeros_like()?
        };
        let d_bias = d_preact.sum(0)?; // [4N]: b_ih and b_hh enter every step alike
        Ok((
            loss,
            vec![
                d_weight_ih,
                d_weight_hh,
                d_bias.clone(),
                d_bias,
                d_out_weight,
                d_out_bias,
            ],
        ))
    }
}
