//! Adam in the two forms that matter here: Chainer's, which the seed ran, and PyTorch's.
//!
//! Both keep the same moments, `m <- b1 m + (1-b1) g` and `v <- b2 v + (1-b2) g^2`, and
//! differ only in where bias correction meets `eps`:
//! - Chainer: `p -= lr_t * m / (sqrt(v) + eps)`, with `lr_t = lr * sqrt(1-b2^t) / (1-b1^t)`;
//! - PyTorch: `p -= lr * m_hat / (sqrt(v_hat) + eps)`, `m_hat = m/(1-b1^t)`,
//!   `v_hat = v/(1-b2^t)`.
//!
//! Written out, Chainer's step is PyTorch's with `eps` scaled by `sqrt(1-b2^t)`: early on
//! (t = 1: by 0.03) it is much smaller, which matters where `sqrt(v)` is itself near 1e-8,
//! as it is for many of the linear model's 160M weights.

use candle_core::{Result, Tensor, Var};

use lstm_core::linalg::madd;
use lstm_core::{Grad, Outer};

/// Which Adam update to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AdamForm {
    /// Chainer's `optimizers.Adam`, the seed's (default).
    #[default]
    Chainer,
    /// PyTorch's `torch.optim.Adam` (no weight decay).
    Torch,
    /// RMSProp, as Shi et al. trained and as PyTorch's `torch.optim.RMSprop` runs it (no
    /// momentum, not centred): `v = a v + (1 - a) g^2`, `p -= lr g / (sqrt(v) + eps)`. Run
    /// as this update with `beta1 = 0` (so `m` is the gradient), `beta2 = a` and no bias
    /// correction.
    Rmsprop,
}

/// Adam's hyper-parameters.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AdamConfig {
    /// Step size (Chainer's `alpha`, PyTorch's `lr`). Seed: 1e-3.
    pub lr: f64,
    /// Decay of the first moment. Seed: 0.9.
    pub beta1: f64,
    /// Decay of the second moment. Seed: 0.999.
    pub beta2: f64,
    /// Added to the denominator; where depends on `form`. Seed: 1e-8.
    pub eps: f64,
    pub form: AdamForm,
}

impl Default for AdamConfig {
    fn default() -> Self {
        AdamConfig {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            form: AdamForm::Chainer,
        }
    }
}

/// Adam's state for a fixed list of parameters.
pub struct Adam {
    pub config: AdamConfig,
    /// Updates taken so far, `t`.
    pub step: u64,
    /// The moments of each parameter, in the parameter's own storage.
    moments: Vec<Moments>,
}

/// First and second moments of one parameter. f32 CPU parameters keep them as plain vectors
/// and are updated in place by one fused loop; any other parameter keeps them as tensors and
/// is updated by the textbook formula written with tensor ops.
enum Moments {
    Fused { m: Vec<f32>, v: Vec<f32> },
    Tensors { m: Tensor, v: Tensor },
}

/// The scalars of one update, shared by both code paths.
#[derive(Debug, Clone, Copy)]
struct StepScalars {
    /// `1 - b1`, `1 - b2`.
    one_minus_b1: f64,
    one_minus_b2: f64,
    /// Multiplies `m` in the update: Chainer's `lr_t`, or PyTorch's `lr / (1 - b1^t)`.
    step_size: f64,
    /// Divides `v` before the square root: 1 for Chainer, `1 - b2^t` for PyTorch.
    v_scale: f64,
    eps: f64,
}

impl StepScalars {
    /// The f32 scalars the fused loops take: `(1-b1, 1-b2, step size, eps, 1/v_scale)`.
    fn f32s(&self) -> (f32, f32, f32, f32, f32) {
        (
            self.one_minus_b1 as f32,
            self.one_minus_b2 as f32,
            self.step_size as f32,
            self.eps as f32,
            (1.0 / self.v_scale) as f32,
        )
    }

    fn new(config: &AdamConfig, t: u64) -> StepScalars {
        let AdamConfig {
            lr,
            beta1: b1,
            beta2: b2,
            eps,
            form,
        } = *config;
        let fix1 = 1.0 - b1.powi(t as i32);
        let fix2 = 1.0 - b2.powi(t as i32);
        let (step_size, v_scale) = match form {
            // p -= lr_t * m / (sqrt(v) + eps), lr_t = lr * sqrt(fix2) / fix1.
            AdamForm::Chainer => (lr * fix2.sqrt() / fix1, 1.0),
            // p -= lr * (m / fix1) / (sqrt(v / fix2) + eps).
            AdamForm::Torch => (lr / fix1, fix2),
            // p -= lr * g / (sqrt(v) + eps): m is g when beta1 is 0.
            AdamForm::Rmsprop => (lr, 1.0),
        };
        StepScalars {
            one_minus_b1: 1.0 - b1,
            one_minus_b2: 1.0 - b2,
            step_size,
            v_scale,
            eps,
        }
    }
}

impl Adam {
    pub fn new(config: AdamConfig, params: &[Var]) -> Result<Adam> {
        let moments = params
            .iter()
            .map(|p| {
                let p = p.as_tensor();
                Ok(if lstm_core::cpu::is_f32_cpu(p) {
                    Moments::Fused {
                        m: vec![0.0; p.elem_count()],
                        v: vec![0.0; p.elem_count()],
                    }
                } else {
                    Moments::Tensors {
                        m: p.zeros_like()?,
                        v: p.zeros_like()?,
                    }
                })
            })
            .collect::<Result<_>>()?;
        Ok(Adam {
            config,
            step: 0,
            moments,
        })
    }

    /// One update of every parameter from its gradient (same order as at `new`).
    ///
    /// Returns the index of the first parameter whose update left a value that is not
    /// finite (from a NaN or infinite gradient, or an overflow), or `None`. All parameters
    /// are updated either way; a caller that stops on `Some` must not save them.
    pub fn update(&mut self, params: &[Var], grads: &[Tensor]) -> Result<Option<usize>> {
        self.update_with(params, |k| Grad::Tensor(&grads[k]))
    }

    /// [`Adam::update`] with each parameter's gradient given by `gradient(k)`, which may be
    /// a sum of outer products that is never stored ([`Grad::Outer`]).
    pub fn update_with<'a>(
        &mut self,
        params: &[Var],
        mut gradient: impl FnMut(usize) -> Grad<'a>,
    ) -> Result<Option<usize>> {
        self.step += 1;
        let scalars = StepScalars::new(&self.config, self.step);
        let mut first_bad = None;
        // Parameters kept as tensors (f64, or on a GPU) are checked together: one sum of
        // squares each, stacked and read once per update, not one device read per tensor.
        let mut tensor_sums = TensorSums::default();
        for (k, (param, moments)) in params.iter().zip(&mut self.moments).enumerate() {
            let finite = update_one(param, moments, gradient(k), &scalars, k, &mut tensor_sums)?;
            if !finite && first_bad.is_none() {
                first_bad = Some(k);
            }
        }
        Ok(first_bad
            .into_iter()
            .chain(tensor_sums.first_not_finite()?)
            .min())
    }

    /// The moments of parameter `k` as tensors (for checkpoints and tests).
    pub fn moments(&self, k: usize) -> Result<(Tensor, Tensor)> {
        Ok(match &self.moments[k] {
            Moments::Fused { m, v } => (
                lstm_core::cpu::tensor_from(m.clone(), &[m.len()])?,
                lstm_core::cpu::tensor_from(v.clone(), &[v.len()])?,
            ),
            Moments::Tensors { m, v } => (m.flatten_all()?, v.flatten_all()?),
        })
    }

    /// The moments of parameter `k` as borrowed f32 slices, where they are kept that way
    /// (f32 CPU parameters): what a checkpoint writes without copying 1.3 GB.
    pub fn moment_slices(&self, k: usize) -> Option<(&[f32], &[f32])> {
        match &self.moments[k] {
            Moments::Fused { m, v } => Some((m, v)),
            Moments::Tensors { .. } => None,
        }
    }

    /// Restores the state a checkpoint saved: the step count, and the two moments of each
    /// parameter as flat f32 values (moved in, not copied, where the parameter keeps them
    /// that way).
    pub fn restore(&mut self, step: u64, moments: Vec<(Vec<f32>, Vec<f32>)>) -> Result<()> {
        if moments.len() != self.moments.len() {
            candle_core::bail!(
                "Adam: {} pairs of moments for {} parameters",
                moments.len(),
                self.moments.len()
            );
        }
        for (slot, (m, v)) in self.moments.iter_mut().zip(moments) {
            match slot {
                Moments::Fused { m: sm, v: sv } => {
                    for (target, source) in [(sm, m), (sv, v)] {
                        if source.len() != target.len() {
                            candle_core::bail!(
                                "Adam: a moment of {} values for a parameter of {}",
                                source.len(),
                                target.len()
                            );
                        }
                        *target = source;
                    }
                }
                Moments::Tensors { m: tm, v: tv } => {
                    for (target, source) in [(tm, m), (tv, v)] {
                        if source.len() != target.elem_count() {
                            candle_core::bail!(
                                "Adam: a moment of {} values for a parameter of {}",
                                source.len(),
                                target.elem_count()
                            );
                        }
                        *target = lstm_core::cpu::tensor_from(source, target.dims())?
                            .to_dtype(target.dtype())?
                            .to_device(target.device())?;
                    }
                }
            }
        }
        self.step = step;
        Ok(())
    }
}

/// Updates parameter `k` and its moments from its gradient; returns whether every value it
/// left is finite (for tensors: always true here, checked later through `tensor_sums`).
fn update_one(
    param: &Var,
    moments: &mut Moments,
    gradient: Grad<'_>,
    scalars: &StepScalars,
    k: usize,
    tensor_sums: &mut TensorSums,
) -> Result<bool> {
    Ok(match (gradient, moments) {
        (Grad::Tensor(grad), Moments::Fused { m, v }) if lstm_core::cpu::is_f32_cpu(grad) => {
            let grad = grad.contiguous()?;
            let mut finite = true;
            lstm_core::cpu::with_f32(&grad, |g| {
                lstm_core::cpu::update_f32(param.as_tensor(), |p| {
                    finite = fused_update(p, g, m, v, scalars)
                })
            })??;
            finite
        }
        (Grad::Values(g), Moments::Fused { m, v }) => {
            if g.len() != m.len() {
                candle_core::bail!(
                    "Adam: a gradient of {} values for a parameter of {}",
                    g.len(),
                    m.len()
                );
            }
            let mut finite = true;
            lstm_core::cpu::update_f32(param.as_tensor(), |p| {
                finite = fused_update(p, &g, m, v, scalars)
            })?;
            finite
        }
        (Grad::Outer(outer), Moments::Fused { m, v }) => {
            let dims = param.as_tensor().dims();
            let (rows, cols) = match dims {
                [rows, cols] => (*rows, *cols),
                _ => candle_core::bail!(
                    "Adam: an outer-product gradient for a parameter of shape {dims:?}"
                ),
            };
            if !outer.fits(rows, cols) {
                candle_core::bail!(
                    "Adam: an outer-product gradient of {} steps ({} values of stride {} \
                     and {}) for a [{rows}, {cols}] parameter",
                    outer.steps,
                    outer.a.len(),
                    outer.a_stride,
                    outer.b.len()
                );
            }
            let mut finite = true;
            lstm_core::cpu::update_f32(param.as_tensor(), |p| {
                finite = fused_outer_update(p, m, v, cols, &outer, scalars)
            })?;
            finite
        }
        (Grad::Tensor(grad), Moments::Fused { .. }) => candle_core::bail!(
            "Adam: an f32 CPU parameter got a {:?} gradient on {:?}",
            grad.dtype(),
            grad.device()
        ),
        (Grad::Outer(_) | Grad::Values(_), Moments::Tensors { .. }) => {
            candle_core::bail!("Adam: a slice gradient for a parameter that is not f32 on the CPU")
        }
        (Grad::Tensor(grad), Moments::Tensors { m, v }) => {
            let (m_new, v_new) = tensor_update(param, grad, m, v, scalars)?;
            *m = m_new;
            *v = v_new;
            // A sum of squares is NaN or infinite if any term is.
            let sum = param.as_tensor().sqr()?.sum_all()?;
            tensor_sums.push(k, sum.to_dtype(candle_core::DType::F64)?);
            true
        }
    })
}

/// The sums of squares of the tensor-kept parameters an update changed, by index.
#[derive(Default)]
struct TensorSums {
    index: Vec<usize>,
    sums: Vec<Tensor>,
}

impl TensorSums {
    fn push(&mut self, k: usize, sum: Tensor) {
        self.index.push(k);
        self.sums.push(sum);
    }

    /// The first parameter whose sum of squares is NaN or infinite (so is one of its
    /// values): one read from the device for all of them.
    fn first_not_finite(&self) -> Result<Option<usize>> {
        if self.sums.is_empty() {
            return Ok(None);
        }
        let values = Tensor::stack(&self.sums, 0)?.to_vec1::<f64>()?;
        Ok(self
            .index
            .iter()
            .zip(values)
            .find(|(_, value)| !value.is_finite())
            .map(|(k, _)| *k))
    }
}

/// The textbook update with tensor ops, for any device and dtype.
fn tensor_update(
    param: &Var,
    grad: &Tensor,
    m: &Tensor,
    v: &Tensor,
    s: &StepScalars,
) -> Result<(Tensor, Tensor)> {
    // Detached, so the moments never hold on to the graph a gradient came from: a tracked
    // gradient would chain every update to the one before it.
    let grad = &grad.detach();
    // m += (1-b1)(g-m); v += (1-b2)(g^2-v): Chainer's spelling of the same moments.
    let m = (m + ((grad - m)? * s.one_minus_b1)?)?;
    let v = (v + ((grad.sqr()? - v)? * s.one_minus_b2)?)?;
    let denom = ((&v / s.v_scale)?.sqrt()? + s.eps)?;
    let delta = ((&m / denom)? * s.step_size)?;
    param.set(&(param.as_tensor().detach() - delta)?)?;
    Ok((m, v))
}

/// The same update as [`tensor_update`] in one pass over memory, in place: for the linear
/// model's 160M parameters the tensor form makes a dozen 643 MB temporaries per update.
/// Split across rayon's threads in blocks that fit in cache. Returns whether every updated
/// parameter is finite.
fn fused_update(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], s: &StepScalars) -> bool {
    use rayon::prelude::*;
    debug_assert!(p.len() == g.len() && p.len() == m.len() && p.len() == v.len());
    let scalars = s.f32s();
    const BLOCK: usize = 1 << 14;
    if p.len() <= BLOCK {
        // Small tensors (the conv model's 208 weights): handing them to the pool costs
        // more than the update, a thread wake-up each.
        return fused_block(p, g, m, v, scalars);
    }
    // `reduce`, not `all`: every block must be updated even after a bad one.
    p.par_chunks_mut(BLOCK)
        .zip(g.par_chunks(BLOCK))
        .zip(m.par_chunks_mut(BLOCK))
        .zip(v.par_chunks_mut(BLOCK))
        .map(|(((p, g), m), v)| fused_block(p, g, m, v, scalars))
        .reduce(|| true, |a, b| a && b)
}

/// One block of [`fused_update`] (and a tile of [`fused_outer_update`]); scalars are
/// `(1-b1, 1-b2, step size, eps, 1/v_scale)`.
#[inline(always)]
fn fused_block(
    p: &mut [f32],
    g: &[f32],
    m: &mut [f32],
    v: &mut [f32],
    (b1c, b2c, step, eps, inv_v_scale): (f32, f32, f32, f32, f32),
) -> bool {
    // Checked while the values are in registers: a separate pass over the linear model's
    // gradients would cost 0.3 s an epoch.
    let mut finite = true;
    for i in 0..p.len() {
        let gi = g[i];
        let mi = m[i] + (gi - m[i]) * b1c;
        let vi = v[i] + (gi * gi - v[i]) * b2c;
        m[i] = mi;
        v[i] = vi;
        p[i] -= mi / ((vi * inv_v_scale).sqrt() + eps) * step;
        finite &= p[i].is_finite();
    }
    finite
}

/// [`fused_update`] of a `[rows, cols]` parameter whose gradient is [`Outer`]: each task
/// takes a block of rows; within it, a tile of 4 rows x 16 columns of the gradient is summed
/// over the steps in registers and goes straight into the update of those 64 values. Memory
/// traffic is the parameter and its moments, once; the gradient never exists.
fn fused_outer_update(
    p: &mut [f32],
    m: &mut [f32],
    v: &mut [f32],
    cols: usize,
    g: &Outer,
    s: &StepScalars,
) -> bool {
    use rayon::prelude::*;
    let scalars = s.f32s();
    // 64 rows of the seed's W_hh and their moments: 3 x 1.1 MB per task.
    const ROWS_PER_TASK: usize = 64;
    let block = ROWS_PER_TASK * cols.max(1);
    p.par_chunks_mut(block)
        .zip(m.par_chunks_mut(block))
        .zip(v.par_chunks_mut(block))
        .enumerate()
        .map(|(task, ((p, m), v))| {
            let first_row = task * ROWS_PER_TASK;
            #[cfg(target_arch = "x86_64")]
            if lstm_core::simd::available("avx2,fma") {
                // SAFETY: the CPU has AVX2 and FMA, checked just above.
                return unsafe { outer_rows_avx2(p, m, v, first_row, cols, g, scalars) };
            }
            outer_rows::<false>(p, m, v, first_row, cols, g, scalars)
        })
        .reduce(|| true, |a, b| a && b)
}

/// [`outer_rows`] compiled with AVX2 and FMA.
///
/// # Safety
/// The CPU must have AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn outer_rows_avx2(
    p: &mut [f32],
    m: &mut [f32],
    v: &mut [f32],
    first_row: usize,
    cols: usize,
    g: &Outer,
    scalars: (f32, f32, f32, f32, f32),
) -> bool {
    outer_rows::<true>(p, m, v, first_row, cols, g, scalars)
}

/// The rows `first_row ..` of [`fused_outer_update`] that `p`, `m`, `v` hold.
#[inline(always)]
fn outer_rows<const FMA: bool>(
    p: &mut [f32],
    m: &mut [f32],
    v: &mut [f32],
    first_row: usize,
    cols: usize,
    g: &Outer,
    scalars: (f32, f32, f32, f32, f32),
) -> bool {
    const R: usize = 4;
    const C: usize = 16;
    let rows = p.len() / cols;
    let (row_main, col_main) = (rows / R * R, cols / C * C);
    let mut finite = true;
    for r in (0..row_main).step_by(R) {
        for c in (0..col_main).step_by(C) {
            finite &= outer_tile::<R, C, FMA>(p, m, v, first_row, r, c, cols, g, scalars);
        }
        for c in col_main..cols {
            finite &= outer_tile::<R, 1, FMA>(p, m, v, first_row, r, c, cols, g, scalars);
        }
    }
    for r in row_main..rows {
        for c in (0..col_main).step_by(C) {
            finite &= outer_tile::<1, C, FMA>(p, m, v, first_row, r, c, cols, g, scalars);
        }
        for c in col_main..cols {
            finite &= outer_tile::<1, 1, FMA>(p, m, v, first_row, r, c, cols, g, scalars);
        }
    }
    finite
}

/// Rows `r .. r + RR` (of this task's block, which starts at row `first_row`) and columns
/// `c .. c + CC`: the gradient summed over the steps, then Adam's update of those values,
/// as [`fused_block`] writes it.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn outer_tile<const RR: usize, const CC: usize, const FMA: bool>(
    p: &mut [f32],
    m: &mut [f32],
    v: &mut [f32],
    first_row: usize,
    r: usize,
    c: usize,
    cols: usize,
    g: &Outer,
    scalars: (f32, f32, f32, f32, f32),
) -> bool {
    let mut acc = [[0f32; CC]; RR];
    #[cfg(target_arch = "x86_64")]
    if FMA && RR == 4 && CC == 16 {
        // SAFETY: FMA is true only under `outer_rows_avx2`, which runs on CPUs with AVX2
        // and FMA; `outer_sum_4x16` reads only through bounds-checked slices.
        unsafe { outer_sum_4x16(g, first_row + r, c, cols, acc.as_flattened_mut()) };
    } else {
        outer_sum::<RR, CC, FMA>(g, first_row + r, c, cols, &mut acc);
    }
    #[cfg(not(target_arch = "x86_64"))]
    outer_sum::<RR, CC, FMA>(g, first_row + r, c, cols, &mut acc);
    let mut finite = true;
    for (i, grad) in acc.iter().enumerate() {
        let at = (r + i) * cols + c;
        finite &= fused_block(
            &mut p[at..at + CC],
            grad,
            &mut m[at..at + CC],
            &mut v[at..at + CC],
            scalars,
        );
    }
    finite
}

/// `acc[i][j] = sum_t a[t, row + i] * b[t, col + j]`, in step order (as `gemm` sums).
#[inline(always)]
fn outer_sum<const RR: usize, const CC: usize, const FMA: bool>(
    g: &Outer,
    row: usize,
    col: usize,
    cols: usize,
    acc: &mut [[f32; CC]; RR],
) {
    for t in 0..g.steps {
        let a: &[f32; RR] = g.a[t * g.a_stride + row..][..RR].try_into().unwrap();
        let b: &[f32; CC] = g.b[t * cols + col..][..CC].try_into().unwrap();
        for i in 0..RR {
            for j in 0..CC {
                acc[i][j] = madd::<FMA>(acc[i][j], a[i], b[j]);
            }
        }
    }
}

/// [`outer_sum`] of a 4 x 16 tile in eight AVX2 registers, written with intrinsics: the
/// compiler, left to itself, kept this tile in 4-wide halves spilled to the stack, and the
/// update ran slower than a stored gradient. `out` is the tile, row-major (64 values).
///
/// # Safety
/// The CPU must have AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn outer_sum_4x16(g: &Outer, row: usize, col: usize, cols: usize, out: &mut [f32]) {
    use std::arch::x86_64::*;
    let mut acc = [_mm256_setzero_ps(); 8];
    for t in 0..g.steps {
        let a: &[f32; 4] = g.a[t * g.a_stride + row..][..4].try_into().unwrap();
        let b: &[f32; 16] = g.b[t * cols + col..][..16].try_into().unwrap();
        let b0 = _mm256_loadu_ps(b.as_ptr());
        let b1 = _mm256_loadu_ps(b[8..].as_ptr());
        for i in 0..4 {
            let ai = _mm256_set1_ps(a[i]);
            acc[2 * i] = _mm256_fmadd_ps(ai, b0, acc[2 * i]);
            acc[2 * i + 1] = _mm256_fmadd_ps(ai, b1, acc[2 * i + 1]);
        }
    }
    let out: &mut [f32; 64] = out.try_into().unwrap();
    for (k, lanes) in acc.iter().enumerate() {
        _mm256_storeu_ps(out[8 * k..].as_mut_ptr(), *lanes);
    }
}
