//! The LSTM cell every model shares, as a forward/backward pair. Each model makes the gate
//! pre-activations its own way (matrix product or convolution); from there on the
//! equations, and their derivatives, are the same.
//!
//! Shapes: `B` batch, `N` hidden units or channels, `...` nothing for the linear model and
//! `H, W` for the convolutional one. Gates are stacked along dim 1 in PyTorch's order
//! i, f, g, o (the seed calls g "z").
//!
//! With peepholes (Shi et al. 2015, eq. 3), `i` and `f` also see `w_ci * c_prev` and
//! `w_cf * c_prev`, and `o` sees `w_co * c` (the new cell state), each a Hadamard product
//! with a weight of the state's own shape `[N, ...]`, shared over the batch.

use candle_core::{Result, Tensor};

/// The three peephole weights of a layer, each `[N, ...]`.
#[derive(Debug, Clone, Copy)]
pub struct Peepholes<'a> {
    pub ci: &'a Tensor,
    pub cf: &'a Tensor,
    pub co: &'a Tensor,
}

/// What one step's forward keeps for its backward.
#[derive(Debug, Clone)]
pub struct StepCache {
    /// `[B, 4N, ...]`: the gates after their nonlinearities, `i, f, g, o`.
    pub gates: Tensor,
    /// `[B, N, ...]`: the new cell state `c`.
    pub c: Tensor,
    /// `[B, N, ...]`: `tanh(c)`.
    pub tanh_c: Tensor,
}

/// One LSTM step from stacked gate pre-activations.
///
/// ## Parameters
/// - `preact`: `[B, 4N, ...]`, pre-activations of i, f, g, o.
/// - `c_prev`: `[B, N, ...]`, the previous cell state.
/// - `peepholes`: the layer's peephole weights, if it has them.
///
/// ## Returns
/// `(h, cache)`: `h = o * tanh(c)` `[B, N, ...]` with `c = g*i + f*c_prev`,
/// `g = tanh(.)`, `i, f, o = sigmoid(.)`; the cache holds what [`lstm_step_backward`] reads.
pub fn lstm_step_forward(
    preact: &Tensor,
    c_prev: &Tensor,
    peepholes: Option<Peepholes>,
) -> Result<(Tensor, StepCache)> {
    let gates = preact.chunk(4, 1)?; // 4 x [B, N, ...]
    let (pre_i, pre_f) = match peepholes {
        Some(p) => (
            gates[0].add(&c_prev.broadcast_mul(p.ci)?)?,
            gates[1].add(&c_prev.broadcast_mul(p.cf)?)?,
        ),
        None => (gates[0].clone(), gates[1].clone()),
    };
    let i = candle_nn::ops::sigmoid(&pre_i)?;
    let f = candle_nn::ops::sigmoid(&pre_f)?;
    let g = gates[2].tanh()?;
    let c = ((&g * &i)? + (&f * c_prev)?)?; // [B, N, ...]
    let pre_o = match peepholes {
        Some(p) => gates[3].add(&c.broadcast_mul(p.co)?)?,
        None => gates[3].clone(),
    };
    let o = candle_nn::ops::sigmoid(&pre_o)?;
    let tanh_c = c.tanh()?; // [B, N, ...]
    let h = (&o * &tanh_c)?; // [B, N, ...]
    let gates = Tensor::cat(&[i, f, g, o], 1)?; // [B, 4N, ...]
    Ok((h, StepCache { gates, c, tanh_c }))
}

/// [`lstm_step_forward`] without the cache: the form autograd differentiates.
pub fn lstm_step(
    preact: &Tensor,
    c_prev: &Tensor,
    peepholes: Option<Peepholes>,
) -> Result<(Tensor, Tensor)> {
    let (h, cache) = lstm_step_forward(preact, c_prev, peepholes)?;
    Ok((h, cache.c))
}

/// What one step's backward gives.
#[derive(Debug, Clone)]
pub struct StepGrads {
    /// `[B, 4N, ...]`: dLoss/d(pre-activations of i, f, g, o).
    pub d_preact: Tensor,
    /// `[B, N, ...]`: dLoss/dc_prev.
    pub dc_prev: Tensor,
    /// With peepholes: this step's gradients of `w_ci, w_cf, w_co`, `[N, ...]` each,
    /// summed over the batch.
    pub d_peepholes: Option<[Tensor; 3]>,
}

/// The backward of one step.
///
/// ## Parameters
/// - `cache`, `c_prev`, `peepholes`: what the forward of this step kept and read.
/// - `dh`: `[B, N, ...]`, dLoss/dh of this step (from above and from the next step's gates).
/// - `dc`: `[B, N, ...]`, dLoss/dc from the next step (zero after the last step).
pub fn lstm_step_backward(
    cache: &StepCache,
    c_prev: &Tensor,
    peepholes: Option<Peepholes>,
    dh: &Tensor,
    dc: &Tensor,
) -> Result<StepGrads> {
    let gates = cache.gates.chunk(4, 1)?; // 4 x [B, N, ...]
    let (i, f, g, o) = (&gates[0], &gates[1], &gates[2], &gates[3]);
    let tanh_c = &cache.tanh_c;
    // Through the nonlinearities: sigmoid' = s(1-s), tanh' = 1 - t^2.
    let sigmoid_back = |d: &Tensor, s: &Tensor| d.mul(&s.mul(&s.affine(-1.0, 1.0)?)?);
    // h = o * tanh(c): through o, and through c with tanh' = 1 - tanh^2.
    let d_o = (dh * tanh_c)?;
    let mut dc = (dc + (dh * o)?.mul(&tanh_c.sqr()?.affine(-1.0, 1.0)?)?)?; // [B, N, ...]
    let d_pre_o = sigmoid_back(&d_o, o)?;
    if let Some(p) = peepholes {
        // o also read w_co * c.
        dc = (dc + d_pre_o.broadcast_mul(p.co)?)?;
    }
    // c = g*i + f*c_prev.
    let d_i = (&dc * g)?;
    let d_g = (&dc * i)?;
    let d_f = (&dc * c_prev)?;
    let mut dc_prev = (&dc * f)?;
    let d_pre_i = sigmoid_back(&d_i, i)?;
    let d_pre_f = sigmoid_back(&d_f, f)?;
    let d_peepholes = match peepholes {
        Some(p) => {
            // i and f also read w_ci * c_prev and w_cf * c_prev.
            dc_prev = ((dc_prev + d_pre_i.broadcast_mul(p.ci)?)? + d_pre_f.broadcast_mul(p.cf)?)?;
            Some([
                (&d_pre_i * c_prev)?.sum(0)?,
                (&d_pre_f * c_prev)?.sum(0)?,
                (&d_pre_o * &cache.c)?.sum(0)?,
            ])
        }
        None => None,
    };
    let d_preact = Tensor::cat(
        &[
            d_pre_i,
            d_pre_f,
            d_g.mul(&g.sqr()?.affine(-1.0, 1.0)?)?,
            d_pre_o,
        ],
        1,
    )?; // [B, 4N, ...]
    Ok(StepGrads {
        d_preact,
        dc_prev,
        d_peepholes,
    })
}

/// The same cell on plain f32 slices, for the CPU fast path. Every function is
/// `#[inline(always)]`, so a caller compiled with wider vectors (a `#[target_feature]`
/// function) gets them here too, and the nonlinearities avoid libm calls so loops over
/// units vectorise. Rust never fuses a multiply and an add on its own, so the results are
/// the same bits whatever the vector width.
pub mod slices {
    /// [`super::lstm_step_forward`] in place on one sample of `n` units (or `C x S` values):
    /// `gates` `[4n]` holds the pre-activations of i, f, g, o on entry and the gates after
    /// their nonlinearities on exit; the rest are `[n]`.
    #[inline(always)]
    pub fn cell_forward(
        gates: &mut [f32],
        c_prev: &[f32],
        c: &mut [f32],
        tanh_c: &mut [f32],
        h: &mut [f32],
    ) {
        let n = c.len();
        let (gi, rest) = gates.split_at_mut(n);
        let (gf, rest) = rest.split_at_mut(n);
        let (gg, go) = rest.split_at_mut(n);
        for j in 0..n {
            let i = sigmoid(gi[j]);
            let f = sigmoid(gf[j]);
            let gv = tanh(gg[j]);
            let o = sigmoid(go[j]);
            let cv = gv * i + f * c_prev[j];
            let tc = tanh(cv);
            gi[j] = i;
            gf[j] = f;
            gg[j] = gv;
            go[j] = o;
            c[j] = cv;
            tanh_c[j] = tc;
            h[j] = o * tc;
        }
    }

    /// [`cell_forward`] with peepholes `[w_ci, w_cf, w_co]`, each `[n]`.
    #[inline(always)]
    pub fn cell_forward_peephole(
        gates: &mut [f32],
        c_prev: &[f32],
        [w_ci, w_cf, w_co]: [&[f32]; 3],
        c: &mut [f32],
        tanh_c: &mut [f32],
        h: &mut [f32],
    ) {
        let n = c.len();
        let (gi, rest) = gates.split_at_mut(n);
        let (gf, rest) = rest.split_at_mut(n);
        let (gg, go) = rest.split_at_mut(n);
        for j in 0..n {
            let cp = c_prev[j];
            let i = sigmoid(gi[j] + w_ci[j] * cp);
            let f = sigmoid(gf[j] + w_cf[j] * cp);
            let gv = tanh(gg[j]);
            let cv = gv * i + f * cp;
            let o = sigmoid(go[j] + w_co[j] * cv);
            let tc = tanh(cv);
            gi[j] = i;
            gf[j] = f;
            gg[j] = gv;
            go[j] = o;
            c[j] = cv;
            tanh_c[j] = tc;
            h[j] = o * tc;
        }
    }

    /// [`super::lstm_step_backward`] on one sample of `n` units; `d_preact` is `[4n]`. On
    /// entry `dh_next`, `dc_next` hold the gradient reaching h and c from the next step and
    /// `d_above` the one reaching h from above (the head or the next layer); on exit
    /// `dh_next` is zeroed (the caller adds the recurrent part) and `dc_next` holds
    /// dL/dc_prev.
    #[inline(always)]
    pub fn cell_backward(
        gates: &[f32],
        tanh_c: &[f32],
        c_prev: &[f32],
        d_above: &[f32],
        dh_next: &mut [f32],
        dc_next: &mut [f32],
        d_preact: &mut [f32],
    ) {
        let n = tanh_c.len();
        let (gi, rest) = gates.split_at(n);
        let (gf, rest) = rest.split_at(n);
        let (gg, go) = rest.split_at(n);
        let (di, rest) = d_preact.split_at_mut(n);
        let (df, rest) = rest.split_at_mut(n);
        let (dg, d_o) = rest.split_at_mut(n);
        for j in 0..n {
            let (i, f, gv, o, tc) = (gi[j], gf[j], gg[j], go[j], tanh_c[j]);
            let dh = d_above[j] + dh_next[j];
            let dc = dc_next[j] + dh * o * (1.0 - tc * tc);
            d_o[j] = dh * tc * o * (1.0 - o);
            di[j] = dc * gv * i * (1.0 - i);
            dg[j] = dc * i * (1.0 - gv * gv);
            df[j] = dc * c_prev[j] * f * (1.0 - f);
            dc_next[j] = dc * f;
            dh_next[j] = 0.0;
        }
    }

    /// [`cell_backward`] with peepholes `[w_ci, w_cf, w_co]`; `c` `[n]` is this step's new
    /// cell state, and the peepholes' gradients are added into `d_peep` `[w_ci, w_cf, w_co]`.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    pub fn cell_backward_peephole(
        gates: &[f32],
        tanh_c: &[f32],
        c: &[f32],
        c_prev: &[f32],
        [w_ci, w_cf, w_co]: [&[f32]; 3],
        d_above: &[f32],
        dh_next: &mut [f32],
        dc_next: &mut [f32],
        d_preact: &mut [f32],
        d_peep: &mut [Vec<f32>; 3],
    ) {
        let n = tanh_c.len();
        let (gi, rest) = gates.split_at(n);
        let (gf, rest) = rest.split_at(n);
        let (gg, go) = rest.split_at(n);
        let (di, rest) = d_preact.split_at_mut(n);
        let (df, rest) = rest.split_at_mut(n);
        let (dg, d_o) = rest.split_at_mut(n);
        let [g_ci, g_cf, g_co] = d_peep;
        for j in 0..n {
            let (i, f, gv, o, tc, cp) = (gi[j], gf[j], gg[j], go[j], tanh_c[j], c_prev[j]);
            let dh = d_above[j] + dh_next[j];
            let d_pre_o = dh * tc * o * (1.0 - o);
            let dc = dc_next[j] + dh * o * (1.0 - tc * tc) + d_pre_o * w_co[j];
            let d_pre_i = dc * gv * i * (1.0 - i);
            let d_pre_f = dc * cp * f * (1.0 - f);
            d_o[j] = d_pre_o;
            di[j] = d_pre_i;
            dg[j] = dc * i * (1.0 - gv * gv);
            df[j] = d_pre_f;
            dc_next[j] = dc * f + d_pre_i * w_ci[j] + d_pre_f * w_cf[j];
            dh_next[j] = 0.0;
            g_ci[j] += d_pre_i * cp;
            g_cf[j] += d_pre_f * cp;
            g_co[j] += d_pre_o * c[j];
        }
    }

    /// `exp(x)` in f32 without a libm call, so loops over pixels vectorise: Cody-Waite range
    /// reduction `x = n ln2 + r`, Cephes' degree-6 polynomial for `e^r` on `|r| <= ln2/2`, and
    /// `2^n` built in the exponent bits. Relative error below 3e-7 over `[-87, 88]`; beyond,
    /// the input is clamped (the result there is 0 or huge to f32 anyway, and sigmoid/tanh
    /// saturate).
    #[inline(always)]
    pub fn exp(x: f32) -> f32 {
        const LOG2E: f32 = std::f32::consts::LOG2_E;
        const LN2_HI: f32 = 0.693_359_4;
        const LN2_LO: f32 = -2.121_944_4e-4;
        // 1.5 * 2^23: adding and subtracting it rounds to the nearest integer.
        const ROUND: f32 = 12_582_912.0;
        let x = x.clamp(-87.0, 88.0);
        let shifted = x * LOG2E + ROUND;
        let n = shifted - ROUND;
        let r = x - n * LN2_HI - n * LN2_LO;
        let mut poly = 1.987_569_1e-4;
        poly = poly * r + 1.398_199_9e-3;
        poly = poly * r + 8.333_452e-3;
        poly = poly * r + 4.166_579_6e-2;
        poly = poly * r + 1.666_666_5e-1;
        poly = poly * r + 0.5;
        let e_r = poly * r * r + r + 1.0;
        // 2^n from the integer n held in `shifted`'s low mantissa bits: integer arithmetic
        // that vectorises, where the float-to-int cast `n as i32` (saturating) did not.
        let n_bits = shifted.to_bits().wrapping_sub(ROUND.to_bits());
        let scale = f32::from_bits(n_bits.wrapping_add(127) << 23);
        e_r * scale
    }

    /// `1 / (1 + e^-x)`.
    #[inline(always)]
    pub fn sigmoid(x: f32) -> f32 {
        1.0 / (1.0 + exp(-x))
    }

    /// `tanh(x) = 1 - 2 / (e^{2x} + 1)`; absolute error below 3e-7.
    #[inline(always)]
    pub fn tanh(x: f32) -> f32 {
        1.0 - 2.0 / (exp(2.0 * x) + 1.0)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn exp_sigmoid_tanh_match_libm() {
            let mut worst = (0f64, 0f64, 0f64);
            let mut x = -87.0f32;
            while x < 88.0 {
                let e = (x as f64).exp();
                worst.0 = worst.0.max(((exp(x) as f64) - e).abs() / e);
                let s = 1.0 / (1.0 + (-(x as f64)).exp());
                worst.1 = worst.1.max(((sigmoid(x) as f64) - s).abs());
                worst.2 = worst.2.max(((tanh(x) as f64) - (x as f64).tanh()).abs());
                x += 0.001_7;
            }
            assert!(worst.0 < 3e-7, "exp relative error {}", worst.0);
            assert!(worst.1 < 2e-7, "sigmoid absolute error {}", worst.1);
            assert!(worst.2 < 3e-7, "tanh absolute error {}", worst.2);
            assert_eq!(exp(-200.0), exp(-87.0));
            // The exponent from the rounded float's bits is the cast `n as i32` of the
            // first version, bit for bit, over the whole clamped range.
            let mut x = -90.0f32;
            while x < 90.0 {
                let c = x.clamp(-87.0, 88.0);
                let n = (c * std::f32::consts::LOG2_E + 12_582_912.0) - 12_582_912.0;
                let by_cast = f32::from_bits(((n as i32 + 127) as u32) << 23);
                let shifted = c * std::f32::consts::LOG2_E + 12_582_912.0;
                let by_bits = f32::from_bits(
                    shifted
                        .to_bits()
                        .wrapping_sub(12_582_912f32.to_bits())
                        .wrapping_add(127)
                        << 23,
                );
                assert_eq!(by_cast.to_bits(), by_bits.to_bits(), "{x}");
                x += 0.000_37;
            }
            assert!(sigmoid(-200.0) < 1e-37 && sigmoid(200.0) == 1.0);
            assert!(tanh(-30.0) == -1.0 && tanh(30.0) == 1.0);
        }
    }
}
