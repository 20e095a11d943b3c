//! The conv model's forward and backward over a window on plain f32 slices: the CPU fast
//! path. candle's conv2d and its backward are general (im2col, any channel count) and pay
//! for it on 1-channel 5x5 kernels over 65x65 frames; here every convolution is a direct
//! one, row by row over a zero-padded frame, and the cell's elementwise work is one loop
//! per step instead of dozens of tensor ops.
//!
//! Layout (row-major): a frame is `[C, H, W]`; padded frames are `[C, Hp, Wp]` with
//! `Hp = H + 2P`, `Wp = W + 2P`, `P = K / 2`, zero outside the frame; gates and their
//! pre-activations are `[4C, H, W]`, gate blocks in the order i, f, g, o.
//!
//! The cell's equations come from `harness::cell::slices`; the tests compare this path with
//! candle's autograd through `ConvLstm::predict`.

/// The four parameter tensors, in the model's layouts.
pub struct Weights<'a> {
    /// `[4C, C, K, K]`
    pub w_ih: &'a [f32],
    /// `[4C, C, K, K]`
    pub w_hh: &'a [f32],
    /// `[4C]`
    pub b_ih: &'a [f32],
    /// `[4C]`
    pub b_hh: &'a [f32],
    pub channels: usize,
    pub kernel: usize,
}

use harness::cell::slices::{cell_backward, cell_forward};
use harness::linalg::dot_unrolled;

/// Frame geometry.
#[derive(Clone, Copy)]
struct Geometry {
    c: usize,
    h: usize,
    w: usize,
    k: usize,
    p: usize,
    hp: usize,
    wp: usize,
}

impl Geometry {
    fn frame(&self) -> usize {
        self.c * self.h * self.w
    }
    fn padded(&self) -> usize {
        self.c * self.hp * self.wp
    }
}

/// Loss and gradients `[dW_ih, dW_hh, db_ih, db_hh]` of one window `[L, C, H, W]`.
pub fn loss_and_grads(
    window: &[f32],
    len: usize,
    (height, width): (usize, usize),
    weights: &Weights,
) -> (f64, [Vec<f32>; 4]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has AVX2 and FMA, checked just above.
        return unsafe { loss_and_grads_avx2(window, len, (height, width), weights) };
    }
    loss_and_grads_impl(window, len, (height, width), weights)
}

/// The same code compiled with AVX2 and FMA enabled: every helper below is
/// `#[inline(always)]`, so the whole window runs with 8-wide vectors.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn loss_and_grads_avx2(
    window: &[f32],
    len: usize,
    size: (usize, usize),
    weights: &Weights,
) -> (f64, [Vec<f32>; 4]) {
    loss_and_grads_impl(window, len, size, weights)
}

#[inline(always)]
fn loss_and_grads_impl(
    window: &[f32],
    len: usize,
    (h, w): (usize, usize),
    weights: &Weights,
) -> (f64, [Vec<f32>; 4]) {
    let (c, k) = (weights.channels, weights.kernel);
    let p = k / 2;
    let g = Geometry {
        c,
        h,
        w,
        k,
        p,
        hp: h + 2 * p,
        wp: w + 2 * p,
    };
    let steps = len - 1;
    let (frame, padded, plane) = (g.frame(), g.padded(), h * w);
    assert_eq!(window.len(), len * frame, "window is not [L, C, H, W]");
    assert_eq!(weights.w_ih.len(), 4 * c * c * k * k);

    // Inputs, zero-padded: x_pad[t] is frame t.
    let mut x_pad = vec![0f32; steps * padded]; // [T, C, Hp, Wp]
    for t in 0..steps {
        pad_into(
            &window[t * frame..(t + 1) * frame],
            &mut x_pad[t * padded..],
            &g,
        );
    }

    // Forward. h_pad[t] is h_{t+1} padded (the input of step t+1's recurrent conv).
    let mut gates = vec![0f32; steps * 4 * frame]; // [T, 4C, H, W], after nonlinearities
    let mut cells = vec![0f32; steps * frame]; // [T, C, H, W]: c_{t+1}
    let mut tanh_cells = vec![0f32; steps * frame]; // [T, C, H, W]
    let mut h_pad = vec![0f32; steps * padded]; // [T, C, Hp, Wp]
    let mut preds = vec![0f32; steps * frame]; // [T, C, H, W]: h_{t+1}
    let mut preact = vec![0f32; 4 * frame]; // [4C, H, W]
    let zeros_frame = vec![0f32; frame]; // c_0
    for t in 0..steps {
        conv(
            &x_pad[t * padded..(t + 1) * padded],
            weights.w_ih,
            weights.b_ih,
            &mut preact,
            &g,
        );
        if t > 0 {
            let prev = &h_pad[(t - 1) * padded..t * padded];
            conv_accumulate(prev, weights.w_hh, &mut preact, &g);
        }
        add_bias(weights.b_hh, &mut preact, plane);
        let (done, rest) = cells.split_at_mut(t * frame);
        let c_prev = if t == 0 {
            &zeros_frame[..]
        } else {
            &done[(t - 1) * frame..]
        };
        cell_forward(
            &preact,
            c_prev,
            &mut gates[t * 4 * frame..(t + 1) * 4 * frame],
            &mut rest[..frame],
            &mut tanh_cells[t * frame..(t + 1) * frame],
            &mut preds[t * frame..(t + 1) * frame],
        );
        pad_into(
            &preds[t * frame..(t + 1) * frame],
            &mut h_pad[t * padded..],
            &g,
        );
    }

    // Loss: sum over steps of the per-step mean squared error; dL/dh_t = 2 (h_t - y_t) / P.
    let targets = &window[frame..];
    let scale = 2.0 / frame as f32;
    let mut loss = 0f64;
    let mut d_preds = vec![0f32; steps * frame]; // [T, C, H, W]
    for t in 0..steps {
        let mut step_sum = 0f64;
        for i in t * frame..(t + 1) * frame {
            let diff = preds[i] - targets[i];
            step_sum += (diff * diff) as f64;
            d_preds[i] = scale * diff;
        }
        loss += step_sum / frame as f64;
    }

    // Backward through time.
    let mut d_preact = vec![0f32; steps * 4 * frame]; // [T, 4C, H, W]
    let mut d_preact_pad = vec![0f32; 4 * c * g.hp * g.wp]; // [4C, Hp, Wp]
    let mut dh_next = vec![0f32; frame];
    let mut dc_next = vec![0f32; frame];
    let zeros = vec![0f32; frame];
    for t in (0..steps).rev() {
        let c_prev = if t == 0 {
            &zeros[..]
        } else {
            &cells[(t - 1) * frame..t * frame]
        };
        cell_backward(
            &gates[t * 4 * frame..(t + 1) * 4 * frame],
            &tanh_cells[t * frame..(t + 1) * frame],
            c_prev,
            &d_preds[t * frame..(t + 1) * frame],
            &mut dh_next,
            &mut dc_next,
            &mut d_preact[t * 4 * frame..(t + 1) * 4 * frame],
        );
        if t > 0 {
            // dh_{t} from step t's recurrent convolution: the transposed convolution.
            let g4 = Geometry { c: 4 * c, ..g };
            pad_into(
                &d_preact[t * 4 * frame..(t + 1) * 4 * frame],
                &mut d_preact_pad,
                &g4,
            );
            conv_transpose(&d_preact_pad, weights.w_hh, &mut dh_next, &g);
        }
    }

    // Kernels and biases: sums over all steps.
    let mut d_w_ih = vec![0f32; weights.w_ih.len()];
    let mut d_w_hh = vec![0f32; weights.w_hh.len()];
    let mut d_b = vec![0f32; 4 * c];
    for t in 0..steps {
        let d_t = &d_preact[t * 4 * frame..(t + 1) * 4 * frame];
        kernel_grad(&x_pad[t * padded..(t + 1) * padded], d_t, &mut d_w_ih, &g);
        if t > 0 {
            kernel_grad(&h_pad[(t - 1) * padded..t * padded], d_t, &mut d_w_hh, &g);
        }
        for (o, db) in d_b.iter_mut().enumerate() {
            *db += d_t[o * plane..(o + 1) * plane].iter().sum::<f32>();
        }
    }
    (loss, [d_w_ih, d_w_hh, d_b.clone(), d_b])
}

/// Copies a `[C, H, W]` frame into the interior of a zeroed `[C, Hp, Wp]` buffer.
#[inline(always)]
fn pad_into(frame: &[f32], padded: &mut [f32], g: &Geometry) {
    for ch in 0..g.c {
        for y in 0..g.h {
            let src = &frame[(ch * g.h + y) * g.w..][..g.w];
            let dst = &mut padded[(ch * g.hp + y + g.p) * g.wp + g.p..][..g.w];
            dst.copy_from_slice(src);
        }
    }
}

/// `out[o] = bias[o] + sum_{c,ky,kx} w[o,c,ky,kx] * in_pad[c, y+ky, x+kx]`, `out` `[4C, H, W]`.
#[inline(always)]
fn conv(in_pad: &[f32], kernel: &[f32], bias: &[f32], out: &mut [f32], g: &Geometry) {
    let plane = g.h * g.w;
    for (o, out_plane) in out.chunks_exact_mut(plane).enumerate() {
        out_plane.fill(bias[o]);
    }
    conv_accumulate(in_pad, kernel, out, g);
}

/// `out += conv(in_pad, kernel)` without bias.
#[inline(always)]
fn conv_accumulate(in_pad: &[f32], kernel: &[f32], out: &mut [f32], g: &Geometry) {
    let (kk, plane, pplane) = (g.k * g.k, g.h * g.w, g.hp * g.wp);
    for (o, out_plane) in out.chunks_exact_mut(plane).enumerate() {
        for ch in 0..g.c {
            let taps = &kernel[(o * g.c + ch) * kk..][..kk];
            let src = &in_pad[ch * pplane..][..pplane];
            for y in 0..g.h {
                // Input rows y .. y+K-1 feed output row y; tap (ky, kx) reads row y+ky from
                // column kx on.
                tile_row(
                    &mut out_plane[y * g.w..(y + 1) * g.w],
                    |ky| &src[(y + ky) * g.wp..][..g.wp],
                    |ky, kx| taps[ky * g.k + kx],
                    g.k,
                );
            }
        }
    }
}

/// `out_row[x] += sum_{ky,kx} tap(ky, kx) * row(ky)[x + kx]`, computed `TILE` outputs at a
/// time in registers: every tap is one vector multiply-add on a tile, and the output is
/// loaded and stored once instead of once per tap.
#[inline(always)]
fn tile_row<'a>(
    out_row: &mut [f32],
    row: impl Fn(usize) -> &'a [f32],
    tap: impl Fn(usize, usize) -> f32,
    k: usize,
) {
    const TILE: usize = 16;
    let w = out_row.len();
    let main = w / TILE * TILE;
    for x0 in (0..main).step_by(TILE) {
        let mut acc = [0f32; TILE];
        acc.copy_from_slice(&out_row[x0..x0 + TILE]);
        for ky in 0..k {
            let src = row(ky);
            for kx in 0..k {
                let t = tap(ky, kx);
                let s = &src[x0 + kx..x0 + kx + TILE];
                for j in 0..TILE {
                    acc[j] += t * s[j];
                }
            }
        }
        out_row[x0..x0 + TILE].copy_from_slice(&acc);
    }
    for (x, o) in out_row.iter_mut().enumerate().skip(main) {
        let mut acc = *o;
        for ky in 0..k {
            let src = row(ky);
            for kx in 0..k {
                acc += tap(ky, kx) * src[x + kx];
            }
        }
        *o = acc;
    }
}

/// `out[c] += sum_{o,ky,kx} w[o,c,ky,kx] * d_pad[o, y + K-1-ky, x + K-1-kx]`: the gradient
/// of [`conv_accumulate`] with respect to its input. `d_pad` is `[4C, Hp, Wp]`, `out` `[C, H, W]`.
/// Written as a convolution with the kernel flipped in both directions.
#[inline(always)]
fn conv_transpose(d_pad: &[f32], kernel: &[f32], out: &mut [f32], g: &Geometry) {
    let (kk, plane, pplane, k) = (g.k * g.k, g.h * g.w, g.hp * g.wp, g.k);
    for (ch, out_plane) in out.chunks_exact_mut(plane).enumerate() {
        for o in 0..4 * g.c {
            let taps = &kernel[(o * g.c + ch) * kk..][..kk];
            let src = &d_pad[o * pplane..][..pplane];
            for y in 0..g.h {
                tile_row(
                    &mut out_plane[y * g.w..(y + 1) * g.w],
                    |ky| &src[(y + ky) * g.wp..][..g.wp],
                    |ky, kx| taps[(k - 1 - ky) * k + (k - 1 - kx)],
                    k,
                );
            }
        }
    }
}

/// `dk[o,c,ky,kx] += sum_{y,x} d[o,y,x] * in_pad[c, y+ky, x+kx]`: the gradient of
/// [`conv_accumulate`] with respect to its kernel. `d` is `[4C, H, W]`.
#[inline(always)]
fn kernel_grad(in_pad: &[f32], d: &[f32], dk: &mut [f32], g: &Geometry) {
    let (kk, plane) = (g.k * g.k, g.h * g.w);
    for (o, d_plane) in d.chunks_exact(plane).enumerate() {
        for ch in 0..g.c {
            let taps = &mut dk[(o * g.c + ch) * kk..][..kk];
            let src = &in_pad[ch * g.hp * g.wp..][..g.hp * g.wp];
            for ky in 0..g.k {
                for kx in 0..g.k {
                    let mut acc = 0f32;
                    for y in 0..g.h {
                        let in_row = &src[(y + ky) * g.wp + kx..][..g.w];
                        acc += dot_unrolled(&d_plane[y * g.w..(y + 1) * g.w], in_row);
                    }
                    taps[ky * g.k + kx] += acc;
                }
            }
        }
    }
}

#[inline(always)]
fn add_bias(bias: &[f32], out: &mut [f32], plane: usize) {
    for (o, out_plane) in out.chunks_exact_mut(plane).enumerate() {
        for v in out_plane {
            *v += bias[o];
        }
    }
}
