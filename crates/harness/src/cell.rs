//! The LSTM cell update both models share. Each model makes the gate pre-activations its own
//! way (matrix product or convolution); from there on the equations are the same.

use candle_core::{Result, Tensor};

/// One LSTM step from stacked gate pre-activations.
///
/// ## Parameters
/// - `preact`: `[B, 4N, ...]`, the four gates stacked along dim 1 in PyTorch's order
///   i, f, g, o (the seed calls g "z"); `...` is empty for the linear model and `H, W` for
///   the convolutional one.
/// - `c_prev`: `[B, N, ...]`, the previous cell state.
///
/// ## Returns
/// `(h, c)`, both `[B, N, ...]`: `c = g*i + f*c_prev`, `h = o*tanh(c)` with
/// `g = tanh(.)` and `i, f, o = sigmoid(.)`.
pub fn lstm_step(preact: &Tensor, c_prev: &Tensor) -> Result<(Tensor, Tensor)> {
    let gates = preact.chunk(4, 1)?; // 4 x [B, N, ...]
    let i = candle_nn::ops::sigmoid(&gates[0])?;
    let f = candle_nn::ops::sigmoid(&gates[1])?;
    let g = gates[2].tanh()?;
    let o = candle_nn::ops::sigmoid(&gates[3])?;
    let c = ((g * i)? + (f * c_prev)?)?; // [B, N, ...]
    let h = (o * c.tanh()?)?; // [B, N, ...]
    Ok((h, c))
}
