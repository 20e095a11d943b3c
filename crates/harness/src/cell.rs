//! The LSTM cell both models share, as a forward/backward pair. Each model makes the gate
//! pre-activations its own way (matrix product or convolution); from there on the
//! equations, and their derivatives, are the same.
//!
//! Shapes: `B` batch (1 here), `N` hidden units or channels, `...` nothing for the linear
//! model and `H, W` for the convolutional one. Gates are stacked along dim 1 in PyTorch's
//! order i, f, g, o (the seed calls g "z").

use candle_core::{Result, Tensor};

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
///
/// ## Returns
/// `(h, cache)`: `h = o * tanh(c)` `[B, N, ...]` with `c = g*i + f*c_prev`,
/// `g = tanh(.)`, `i, f, o = sigmoid(.)`; the cache holds what [`lstm_step_backward`] reads.
pub fn lstm_step_forward(preact: &Tensor, c_prev: &Tensor) -> Result<(Tensor, StepCache)> {
    let gates = preact.chunk(4, 1)?; // 4 x [B, N, ...]
    let i = candle_nn::ops::sigmoid(&gates[0])?;
    let f = candle_nn::ops::sigmoid(&gates[1])?;
    let g = gates[2].tanh()?;
    let o = candle_nn::ops::sigmoid(&gates[3])?;
    let c = ((&g * &i)? + (&f * c_prev)?)?; // [B, N, ...]
    let tanh_c = c.tanh()?; // [B, N, ...]
    let h = (&o * &tanh_c)?; // [B, N, ...]
    let gates = Tensor::cat(&[i, f, g, o], 1)?; // [B, 4N, ...]
    Ok((h, StepCache { gates, c, tanh_c }))
}

/// [`lstm_step_forward`] without the cache: the form autograd differentiates.
pub fn lstm_step(preact: &Tensor, c_prev: &Tensor) -> Result<(Tensor, Tensor)> {
    let (h, cache) = lstm_step_forward(preact, c_prev)?;
    Ok((h, cache.c))
}

/// The backward of one step.
///
/// ## Parameters
/// - `cache`, `c_prev`: what the forward of this step kept and read.
/// - `dh`: `[B, N, ...]`, dLoss/dh of this step (from its prediction and from the next
///   step's gates).
/// - `dc`: `[B, N, ...]`, dLoss/dc from the next step (zero after the last step).
///
/// ## Returns
/// `(d_preact, dc_prev)`: `[B, 4N, ...]` dLoss/d(pre-activations of i, f, g, o), and
/// `[B, N, ...]` dLoss/dc_prev.
pub fn lstm_step_backward(
    cache: &StepCache,
    c_prev: &Tensor,
    dh: &Tensor,
    dc: &Tensor,
) -> Result<(Tensor, Tensor)> {
    let gates = cache.gates.chunk(4, 1)?; // 4 x [B, N, ...]
    let (i, f, g, o) = (&gates[0], &gates[1], &gates[2], &gates[3]);
    let tanh_c = &cache.tanh_c;
    // h = o * tanh(c): through o, and through c with tanh' = 1 - tanh^2.
    let d_o = (dh * tanh_c)?;
    let dc = (dc + (dh * o)?.mul(&tanh_c.sqr()?.affine(-1.0, 1.0)?)?)?; // [B, N, ...]
                                                                        // c = g*i + f*c_prev.
    let d_i = (&dc * g)?;
    let d_g = (&dc * i)?;
    let d_f = (&dc * c_prev)?;
    let dc_prev = (&dc * f)?;
    // Through the nonlinearities: sigmoid' = s(1-s), tanh' = 1 - t^2.
    let sigmoid_back = |d: &Tensor, s: &Tensor| d.mul(&s.mul(&s.affine(-1.0, 1.0)?)?);
    let d_preact = Tensor::cat(
        &[
            sigmoid_back(&d_i, i)?,
            sigmoid_back(&d_f, f)?,
            d_g.mul(&g.sqr()?.affine(-1.0, 1.0)?)?,
            sigmoid_back(&d_o, o)?,
        ],
        1,
    )?; // [B, 4N, ...]
    Ok((d_preact, dc_prev))
}
