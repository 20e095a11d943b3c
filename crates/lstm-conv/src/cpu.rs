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
use harness::linalg::{dot_unrolled, madd};

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
    loss_and_grads_impl::<false>(window, len, (height, width), weights)
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
    loss_and_grads_impl::<true>(window, len, size, weights)
}

#[inline(always)]
fn loss_and_grads_impl<const FMA: bool>(
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
        let x_t = &x_pad[t * padded..(t + 1) * padded];
        // h_0 = 0: at t = 0 the recurrent convolution contributes only its bias.
        let h_t = (t > 0).then(|| &h_pad[(t - 1) * padded..t * padded]);
        gate_preactivations::<FMA>(x_t, h_t, weights, &mut preact, &g);
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
            conv_transpose::<FMA>(&d_preact_pad, weights.w_hh, &mut dh_next, &g);
        }
    }

    // Kernels and biases: sums over all steps.
    let mut d_w_ih = vec![0f32; weights.w_ih.len()];
    let mut d_w_hh = vec![0f32; weights.w_hh.len()];
    // Step t's input convolution saw x_t; its recurrent one saw h_t (h_pad[t - 1]), t >= 1.
    kernel_grads::<FMA>(&x_pad, &d_preact, &mut d_w_ih, &g);
    kernel_grads::<FMA>(
        &h_pad[..(steps - 1) * padded],
        &d_preact[4 * frame..],
        &mut d_w_hh,
        &g,
    );
    let mut d_b = vec![0f64; 4 * c];
    for d_t in d_preact.chunks_exact(4 * frame) {
        for (o, db) in d_b.iter_mut().enumerate() {
            *db += d_t[o * plane..(o + 1) * plane]
                .iter()
                .map(|&v| f64::from(v))
                .sum::<f64>();
        }
    }
    let d_b: Vec<f32> = d_b.iter().map(|&v| v as f32).collect();
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

/// A step's gate pre-activations `[4C, H, W]`: `b_ih + conv(x_pad, w_ih) + conv(h_pad,
/// w_hh) + b_hh` (`h_pad` none for h = 0), inputs `[C, Hp, Wp]`.
///
/// Each bias is added on its own, as the reference adds them: adding `b_ih + b_hh` rounded
/// to f32 once would put the same rounding error into every pixel of every step, and the
/// kernel gradients, sums over all of them, drift from an f64 reference by ~1e-5 instead of
/// ~4e-6 (measured over 12 random 26-step windows).
#[inline(always)]
fn gate_preactivations<const FMA: bool>(
    x_pad: &[f32],
    h_pad: Option<&[f32]>,
    weights: &Weights,
    out: &mut [f32],
    g: &Geometry,
) {
    let plane = g.h * g.w;
    for (o, out_plane) in out.chunks_exact_mut(plane).enumerate() {
        out_plane.fill(weights.b_ih[o]);
    }
    conv_accumulate::<FMA>(x_pad, weights.w_ih, out, g);
    if let Some(h_pad) = h_pad {
        conv_accumulate::<FMA>(h_pad, weights.w_hh, out, g);
    }
    for (o, out_plane) in out.chunks_exact_mut(plane).enumerate() {
        for v in out_plane {
            *v += weights.b_hh[o];
        }
    }
}

/// `out += conv(in_pad, kernel)` without bias.
#[inline(always)]
fn conv_accumulate<const FMA: bool>(in_pad: &[f32], kernel: &[f32], out: &mut [f32], g: &Geometry) {
    let (kk, plane, pplane) = (g.k * g.k, g.h * g.w, g.hp * g.wp);
    for (o, out_plane) in out.chunks_exact_mut(plane).enumerate() {
        for ch in 0..g.c {
            let taps = &kernel[(o * g.c + ch) * kk..][..kk];
            let src = &in_pad[ch * pplane..][..pplane];
            for y in 0..g.h {
                // Input rows y .. y+K-1 feed output row y; tap (ky, kx) reads row y+ky from
                // column kx on.
                tile_row::<FMA>(
                    &mut out_plane[y * g.w..(y + 1) * g.w],
                    |ky| &src[(y + ky) * g.wp..][..g.wp],
                    |ky, kx| taps[ky * g.k + kx],
                    g.k,
                );
            }
        }
    }
}

/// `out_row[x] += sum_{ky,kx} tap(ky, kx) * row(ky)[x + kx]`, computed a tile of outputs
/// at a time in registers: each tap is broadcast once and multiplied into the whole tile, and
/// the output is loaded and stored once instead of once per tap. Tiles of 64 (eight AVX2
/// registers: one 65-wide frame row is one tile and a column), then of 8, then single columns.
/// Measured on the seed's 65x65 frames (`bench-cli bench --models conv`), 64-wide tiles beat
/// 16- and 32-wide ones, and beat four gates sharing each input load in 8-wide tiles.
#[inline(always)]
fn tile_row<'a, const FMA: bool>(
    out_row: &mut [f32],
    row: impl Fn(usize) -> &'a [f32],
    tap: impl Fn(usize, usize) -> f32,
    k: usize,
) {
    let w = out_row.len();
    let wide = w / 64 * 64;
    let narrow = w / 8 * 8;
    for x0 in (0..wide).step_by(64) {
        tile::<64, FMA>(out_row, x0, &row, &tap, k);
    }
    for x0 in (wide..narrow).step_by(8) {
        tile::<8, FMA>(out_row, x0, &row, &tap, k);
    }
    for x in narrow..w {
        tile::<1, FMA>(out_row, x, &row, &tap, k);
    }
}

/// One tile of [`tile_row`]: outputs `x0 .. x0 + T`.
#[inline(always)]
fn tile<'a, const T: usize, const FMA: bool>(
    out_row: &mut [f32],
    x0: usize,
    row: &impl Fn(usize) -> &'a [f32],
    tap: &impl Fn(usize, usize) -> f32,
    k: usize,
) {
    let out: &mut [f32; T] = (&mut out_row[x0..x0 + T]).try_into().unwrap();
    let mut acc = *out;
    for ky in 0..k {
        let src = row(ky);
        for kx in 0..k {
            let t = tap(ky, kx);
            let s: &[f32; T] = src[x0 + kx..x0 + kx + T].try_into().unwrap();
            for j in 0..T {
                acc[j] = madd::<FMA>(acc[j], t, s[j]);
            }
        }
    }
    *out = acc;
}

/// `out[c] += sum_{o,ky,kx} w[o,c,ky,kx] * d_pad[o, y + K-1-ky, x + K-1-kx]`: the gradient
/// of [`conv_accumulate`] with respect to its input. `d_pad` is `[4C, Hp, Wp]`, `out` `[C, H, W]`.
/// Written as a convolution with the kernel flipped in both directions.
#[inline(always)]
fn conv_transpose<const FMA: bool>(d_pad: &[f32], kernel: &[f32], out: &mut [f32], g: &Geometry) {
    let (kk, plane, pplane, k) = (g.k * g.k, g.h * g.w, g.hp * g.wp, g.k);
    for (ch, out_plane) in out.chunks_exact_mut(plane).enumerate() {
        for o in 0..4 * g.c {
            let taps = &kernel[(o * g.c + ch) * kk..][..kk];
            let src = &d_pad[o * pplane..][..pplane];
            for y in 0..g.h {
                tile_row::<FMA>(
                    &mut out_plane[y * g.w..(y + 1) * g.w],
                    |ky| &src[(y + ky) * g.wp..][..g.wp],
                    |ky, kx| taps[(k - 1 - ky) * k + (k - 1 - kx)],
                    k,
                );
            }
        }
    }
}

/// `dk[o,c,ky,kx] += sum_{t,y,x} d[t,o,y,x] * in_pad[t,c,y+ky,x+kx]`: the gradient of
/// [`conv_accumulate`] with respect to its kernel, summed over the steps of a window. `in_pad`
/// is `[T, C, Hp, Wp]`, `d` `[T, 4C, H, W]`.
#[inline(always)]
fn kernel_grads<const FMA: bool>(in_pad: &[f32], d: &[f32], dk: &mut [f32], g: &Geometry) {
    match g.k {
        5 => kernel_grads_tiled::<5, FMA>(in_pad, d, dk, g),
        3 => kernel_grads_tiled::<3, FMA>(in_pad, d, dk, g),
        _ => kernel_grads_naive(in_pad, d, dk, g),
    }
}

/// Lanes of one vector accumulator: 8 f32 fill an AVX2 register.
const LANES: usize = 8;

/// [`kernel_grads`] with the kernel width known at compile time, two output channels at a
/// time. For one kernel row `ky`, the `2 x K` taps accumulate in `2K` vector registers over
/// every step, row and column: each 8-wide load of an input row feeds two multiply-adds (one
/// per output channel), each load of a gradient row feeds `K`, and the lanes are summed once
/// per tap at the end instead of once per row.
#[inline(always)]
fn kernel_grads_tiled<const K: usize, const FMA: bool>(
    in_pad: &[f32],
    d: &[f32],
    dk: &mut [f32],
    g: &Geometry,
) {
    let (kk, plane, pplane) = (K * K, g.h * g.w, g.hp * g.wp);
    let (outputs, frame, padded) = (4 * g.c, 4 * g.c * plane, g.padded());
    let steps = in_pad.len() / padded;
    debug_assert_eq!(d.len(), steps * frame);
    let main = g.w / LANES * LANES;
    for ch in 0..g.c {
        for o in (0..outputs).step_by(2) {
            for ky in 0..K {
                // Lanes accumulate one step's rows in f32; the steps add up in f64, which
                // keeps the sum of 25 x 4225 products within 1e-5 of an f64 reference.
                let mut total = [[0f64; K]; 2];
                for t in 0..steps {
                    let mut acc = [[[0f32; LANES]; K]; 2];
                    let mut tail = [[0f32; K]; 2];
                    let src = &in_pad[t * padded + ch * pplane..][..pplane];
                    let d0 = &d[t * frame + o * plane..][..plane];
                    let d1 = &d[t * frame + (o + 1) * plane..][..plane];
                    for y in 0..g.h {
                        let in_row = &src[(y + ky) * g.wp..][..g.wp];
                        let (r0, r1) = (&d0[y * g.w..][..g.w], &d1[y * g.w..][..g.w]);
                        for x0 in (0..main).step_by(LANES) {
                            let a0: &[f32; LANES] = r0[x0..x0 + LANES].try_into().unwrap();
                            let a1: &[f32; LANES] = r1[x0..x0 + LANES].try_into().unwrap();
                            for kx in 0..K {
                                let s: &[f32; LANES] =
                                    in_row[x0 + kx..x0 + kx + LANES].try_into().unwrap();
                                for j in 0..LANES {
                                    acc[0][kx][j] = madd::<FMA>(acc[0][kx][j], a0[j], s[j]);
                                    acc[1][kx][j] = madd::<FMA>(acc[1][kx][j], a1[j], s[j]);
                                }
                            }
                        }
                        for x in main..g.w {
                            for kx in 0..K {
                                tail[0][kx] = madd::<FMA>(tail[0][kx], r0[x], in_row[x + kx]);
                                tail[1][kx] = madd::<FMA>(tail[1][kx], r1[x], in_row[x + kx]);
                            }
                        }
                    }
                    for pair in 0..2 {
                        for kx in 0..K {
                            total[pair][kx] +=
                                f64::from(acc[pair][kx].iter().sum::<f32>() + tail[pair][kx]);
                        }
                    }
                }
                for (pair, total) in total.iter().enumerate() {
                    let taps = &mut dk[((o + pair) * g.c + ch) * kk + ky * K..][..K];
                    for kx in 0..K {
                        taps[kx] += total[kx] as f32;
                    }
                }
            }
        }
    }
}

/// [`kernel_grads`] one tap, step and row at a time: any kernel size, and the reference the
/// tiled version is tested against.
#[inline(always)]
fn kernel_grads_naive(in_pad: &[f32], d: &[f32], dk: &mut [f32], g: &Geometry) {
    let (kk, plane, pplane) = (g.k * g.k, g.h * g.w, g.hp * g.wp);
    let (frame, padded) = (4 * g.c * plane, g.padded());
    for (t, d_t) in d.chunks_exact(frame).enumerate() {
        for (o, d_plane) in d_t.chunks_exact(plane).enumerate() {
            for ch in 0..g.c {
                let taps = &mut dk[(o * g.c + ch) * kk..][..kk];
                let src = &in_pad[t * padded + ch * pplane..][..pplane];
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn random(n: usize, rng: &mut impl Rng) -> Vec<f32> {
        (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
    }

    #[test]
    fn convolution_tiles_of_every_width_equal_the_definition() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(12);
        // 65 = one 64-wide tile and a column; 83 = 64 + two 8-wide tiles + 3 columns.
        for (h, w, k) in [(65, 65, 5), (3, 83, 5), (6, 5, 3), (2, 8, 1)] {
            let p = k / 2;
            let g = Geometry {
                c: 1,
                h,
                w,
                k,
                p,
                hp: h + 2 * p,
                wp: w + 2 * p,
            };
            let mut x_pad = vec![0f32; g.padded()];
            let x = random(g.frame(), &mut rng);
            pad_into(&x, &mut x_pad, &g);
            let (w_ih, w_hh) = (random(4 * k * k, &mut rng), vec![0f32; 4 * k * k]);
            let (b_ih, b_hh) = (random(4, &mut rng), random(4, &mut rng));
            let weights = Weights {
                w_ih: &w_ih,
                w_hh: &w_hh,
                b_ih: &b_ih,
                b_hh: &b_hh,
                channels: 1,
                kernel: k,
            };
            let mut out = vec![f32::NAN; 4 * g.frame()];
            gate_preactivations::<false>(&x_pad, None, &weights, &mut out, &g);
            let mut fused = vec![f32::NAN; 4 * g.frame()];
            gate_preactivations::<true>(&x_pad, Some(&x_pad), &weights, &mut fused, &g);
            for (i, &got) in out.iter().enumerate() {
                let (o, y, x0) = (i / (h * w), i / w % h, i % w);
                let mut want = f64::from(b_ih[o]) + f64::from(b_hh[o]);
                for ky in 0..k {
                    for kx in 0..k {
                        let (yy, xx) = (
                            (y + ky) as isize - p as isize,
                            (x0 + kx) as isize - p as isize,
                        );
                        if (0..h as isize).contains(&yy) && (0..w as isize).contains(&xx) {
                            want += f64::from(w_ih[o * k * k + ky * k + kx])
                                * f64::from(x[yy as usize * w + xx as usize]);
                        }
                    }
                }
                for (got, how) in [(got, "separate"), (fused[i], "fused")] {
                    assert!(
                        (f64::from(got) - want).abs() <= 1e-5 * (1.0 + want.abs()),
                        "{h}x{w}, kernel {k}, {how} multiply-add: output {i}: got {got}, want {want}"
                    );
                }
            }
        }
    }

    #[test]
    fn tiled_kernel_gradients_equal_the_naive_ones() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        // Widths below, at and above the 8 lanes, with and without a remainder; 1 and 2
        // channels; both specialised kernel sizes.
        for (c, h, w, k, steps) in [
            (1, 65, 65, 5, 3),
            (1, 6, 5, 5, 2),
            (2, 7, 17, 3, 2),
            (1, 4, 8, 3, 1),
        ] {
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
            let mut in_pad = vec![0f32; steps * g.padded()];
            for t in 0..steps {
                pad_into(
                    &random(g.frame(), &mut rng),
                    &mut in_pad[t * g.padded()..],
                    &g,
                );
            }
            let d = random(steps * 4 * g.frame(), &mut rng);
            let start = random(4 * c * c * k * k, &mut rng);
            let (mut tiled, mut fused, mut naive) = (start.clone(), start.clone(), start);
            kernel_grads::<false>(&in_pad, &d, &mut tiled, &g);
            kernel_grads::<true>(&in_pad, &d, &mut fused, &g);
            kernel_grads_naive(&in_pad, &d, &mut naive, &g);
            for (i, (a, b)) in tiled
                .iter()
                .chain(&fused)
                .zip(naive.iter().cycle())
                .enumerate()
            {
                assert!(
                    (a - b).abs() <= 1e-4 * (1.0 + b.abs()),
                    "{c}x{h}x{w}, kernel {k}: tap {i}: tiled {a}, naive {b}"
                );
            }
        }
    }
}
