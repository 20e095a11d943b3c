//! The linear model's forward and backward over a window on plain f32 slices: the CPU fast
//! path. The matrix products go to `harness::linalg` (matrix-vector products for the
//! recurrent steps, `gemm` for everything batched over time); the cell is
//! `harness::cell::slices`, one loop per step instead of dozens of small tensor ops.
//!
//! Layout (row-major): `T` steps, `D` values per frame, `N` hidden units; gate blocks in
//! the order i, f, g, o.

use harness::cell::slices::{cell_backward, cell_forward};
use harness::linalg::{gemv, gemv_t, matmul};

/// The six parameter tensors, in PyTorch's layouts.
pub struct Weights<'a> {
    /// `[4N, D]`
    pub w_ih: &'a [f32],
    /// `[4N, N]`
    pub w_hh: &'a [f32],
    /// `[4N]`
    pub b_ih: &'a [f32],
    /// `[4N]`
    pub b_hh: &'a [f32],
    /// `[D, N]`
    pub out_w: &'a [f32],
    /// `[D]`
    pub out_b: &'a [f32],
}

/// What the weight gradients are made of, once backpropagation through time is done: each
/// weight's gradient is `A^T B` over the steps for one of the pairs below, and the biases'
/// gradients are sums already taken.
pub struct Backward {
    pub loss: f64,
    /// `[T, 4N]`: dL/d(gate pre-activations). `dW_ih = dA^T X`, `dW_hh = dA[1..]^T H[..T-1]`.
    pub d_preact: Vec<f32>,
    /// `[T, N]`: h_1 .. h_T.
    pub hs: Vec<f32>,
    /// `[T, D]`: dL/dy. `dW_out = dY^T H`.
    pub d_y: Vec<f32>,
    /// `[4N]`: the gradient of `b_ih`, and of `b_hh`.
    pub d_b: Vec<f32>,
    /// `[D]`
    pub d_out_b: Vec<f32>,
}

/// Loss and gradients `[dW_ih, dW_hh, db_ih, db_hh, dW_out, db_out]` of one window
/// `[L, D]` (frames flattened), with `N` hidden units.
pub fn loss_and_grads(
    window: &[f32],
    len: usize,
    d: usize,
    n: usize,
    w: &Weights,
) -> (f64, [Vec<f32>; 6]) {
    let steps = len - 1;
    let g4 = 4 * n;
    let x = &window[..steps * d]; // [T, D]
    let bw = backward(window, len, d, n, w);

    // Output layer and gate weights: one product over all steps each. Step 0 saw h_0 = 0,
    // so W_hh's gradient pairs steps 1 .. T-1 with h_1 .. h_{T-1}.
    let mut d_out_w = vec![0f32; d * n]; // [D, N]
    matmul(
        &mut d_out_w,
        &bw.d_y,
        true,
        &bw.hs,
        false,
        (d, steps, n),
        false,
    );
    let mut d_w_ih = vec![0f32; g4 * d];
    let d_preact = &bw.d_preact;
    matmul(&mut d_w_ih, d_preact, true, x, false, (g4, steps, d), false);
    let mut d_w_hh = vec![0f32; g4 * n];
    if steps > 1 {
        let later = &d_preact[g4..]; // [T-1, 4N]
        let earlier = &bw.hs[..(steps - 1) * n]; // [T-1, N]
        matmul(
            &mut d_w_hh,
            later,
            true,
            earlier,
            false,
            (g4, steps - 1, n),
            false,
        );
    }
    (
        bw.loss,
        [d_w_ih, d_w_hh, bw.d_b.clone(), bw.d_b, d_out_w, bw.d_out_b],
    )
}

/// The forward pass and backpropagation through time over one window, up to but not
/// including the weight gradients (see [`Backward`]).
pub fn backward(window: &[f32], len: usize, d: usize, n: usize, w: &Weights) -> Backward {
    let steps = len - 1;
    let g4 = 4 * n;
    assert_eq!(window.len(), len * d, "window is not [L, D]");
    assert_eq!((w.w_ih.len(), w.w_hh.len()), (g4 * d, g4 * n));
    let x = &window[..steps * d]; // [T, D]
    let targets = &window[d..]; // [T, D]

    // Forward. All T input products at once: they do not depend on h.
    let mut preact_x = vec![0f32; steps * g4]; // [T, 4N]
    matmul(&mut preact_x, x, false, w.w_ih, true, (steps, d, g4), false);
    let mut gates = vec![0f32; steps * g4]; // [T, 4N], after nonlinearities
    let mut cells = vec![0f32; steps * n]; // [T, N]: c_{t+1}
    let mut tanh_cells = vec![0f32; steps * n]; // [T, N]
    let mut hs = vec![0f32; steps * n]; // [T, N]: h_{t+1}
    let zeros = vec![0f32; n]; // h_0 = c_0 = 0
    let mut preact = vec![0f32; g4]; // [4N]
    for t in 0..steps {
        let row = &preact_x[t * g4..(t + 1) * g4];
        if t == 0 {
            preact.fill(0.0); // W_hh h_0 = 0
        } else {
            gemv(w.w_hh, g4, n, &hs[(t - 1) * n..t * n], &mut preact);
        }
        for j in 0..g4 {
            preact[j] += row[j] + w.b_ih[j] + w.b_hh[j];
        }
        let (done, rest) = cells.split_at_mut(t * n);
        let c_prev = if t == 0 {
            &zeros[..]
        } else {
            &done[(t - 1) * n..]
        };
        cell_forward(
            &preact,
            c_prev,
            &mut gates[t * g4..(t + 1) * g4],
            &mut rest[..n],
            &mut tanh_cells[t * n..(t + 1) * n],
            &mut hs[t * n..(t + 1) * n],
        );
    }
    let mut y = vec![0f32; steps * d]; // [T, D]
    matmul(&mut y, &hs, false, w.out_w, true, (steps, n, d), false);

    // Loss: sum over steps of the per-step mean squared error; dL/dy_t = 2 (y_t - x_{t+1}) / D.
    let scale = 2.0 / d as f32;
    let mut loss = 0f64;
    let mut d_y = vec![0f32; steps * d]; // [T, D]
    for t in 0..steps {
        let mut step_sum = 0f64;
        for i in t * d..(t + 1) * d {
            let diff = y[i] + w.out_b[i - t * d] - targets[i];
            step_sum += (diff * diff) as f64;
            d_y[i] = scale * diff;
        }
        loss += step_sum / d as f64;
    }

    // Output layer, all steps at once.
    let mut d_out_b = vec![0f32; d];
    for row in d_y.chunks_exact(d) {
        for (acc, v) in d_out_b.iter_mut().zip(row) {
            *acc += v;
        }
    }
    let mut d_hs = vec![0f32; steps * n]; // [T, N]
    matmul(&mut d_hs, &d_y, false, w.out_w, false, (steps, d, n), false);

    // The cell, last step first; h and c after the last step carry no gradient.
    let mut d_preact = vec![0f32; steps * g4]; // [T, 4N]
    let mut dh_next = vec![0f32; n];
    let mut dc_next = vec![0f32; n];
    for t in (0..steps).rev() {
        let c_prev = if t == 0 {
            &zeros[..]
        } else {
            &cells[(t - 1) * n..t * n]
        };
        cell_backward(
            &gates[t * g4..(t + 1) * g4],
            &tanh_cells[t * n..(t + 1) * n],
            c_prev,
            &d_hs[t * n..(t + 1) * n],
            &mut dh_next,
            &mut dc_next,
            &mut d_preact[t * g4..(t + 1) * g4],
        );
        if t > 0 {
            // dL/dh_t through step t's recurrent product.
            gemv_t(w.w_hh, g4, n, &d_preact[t * g4..(t + 1) * g4], &mut dh_next);
        }
    }

    let mut d_b = vec![0f32; g4];
    for row in d_preact.chunks_exact(g4) {
        for (acc, v) in d_b.iter_mut().zip(row) {
            *acc += v;
        }
    }
    Backward {
        loss,
        d_preact,
        hs,
        d_y,
        d_b,
        d_out_b,
    }
}
