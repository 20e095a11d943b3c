//! The conv model's kernels on plain f32 slices: the CPU fast path. candle's conv2d and its
//! backward are general (im2col, any channel count) and pay for it on the seed's 1-channel
//! 5x5 kernels over 65x65 frames; here every convolution is a direct one, row by row over a
//! zero-padded plane, with a tile of outputs in registers.
//!
//! Layout (row-major): a sample is `[C, H, W]`; padded planes are `[C, Hp, Wp]` with
//! `Hp = H + 2P`, `Wp = W + 2P`, `P = K / 2`, zero outside the frame; a kernel is
//! `[C_out, C_in, K, K]`; gate pre-activations are `[4C, H, W]`, blocks i, f, g, o.
//!
//! Each kernel has a portable form (`FMA = false`) and one compiled with AVX2 and fused
//! multiply-adds; `lstm_core::dispatch!` picks one. The tests compare both with the
//! definition.

use lstm_core::linalg::{dot_unrolled, madd};

lstm_core::dispatch!(
    /// `out` `[n, C_out, H, W]` = `b + conv(x, kernel)` for `n` samples `x` `[n, C_in, H, W]`.
    pub(crate) fn input_conv(x: &[f32], kernel: &[f32], bias: &[f32], out: &mut [f32], g: &Geometry)
        with "avx2,fma"
        => input_conv_impl::<true>(x, kernel, bias, out, g),
        else input_conv_impl::<false>(x, kernel, bias, out, g)
);

lstm_core::dispatch!(
    /// `out` `[B, C_out, H, W]` += `conv(h, kernel)` (where `h` is not `None`), then `+ b`.
    pub(crate) fn recurrent_conv(
        h: Option<&[f32]>, kernel: &[f32], bias: &[f32], out: &mut [f32], g: &Geometry
    ) with "avx2,fma"
        => recurrent_conv_impl::<true>(h, kernel, bias, out, g),
        else recurrent_conv_impl::<false>(h, kernel, bias, out, g)
);

lstm_core::dispatch!(
    /// `out` `[n, C_in, H, W]` += the transposed convolution of `d` `[n, C_out, H, W]`: the
    /// gradient reaching the convolution's input.
    pub(crate) fn transpose_conv(d: &[f32], kernel: &[f32], out: &mut [f32], g: &Geometry)
        with "avx2,fma"
        => transpose_conv_impl::<true>(d, kernel, out, g),
        else transpose_conv_impl::<false>(d, kernel, out, g)
);

lstm_core::dispatch!(
    /// `dk` `[C_out, C_in, K, K]` += the kernel gradient over `n` samples: `in_pad`
    /// `[n, C_in, Hp, Wp]`, `d` `[n, C_out, H, W]`.
    pub(crate) fn kernel_grads_all(in_pad: &[f32], d: &[f32], dk: &mut [f32], g: &Geometry)
        with "avx2,fma"
        => kernel_grads::<true>(in_pad, d, dk, g),
        else kernel_grads::<false>(in_pad, d, dk, g)
);

#[inline(always)]
fn input_conv_impl<const FMA: bool>(
    x: &[f32],
    kernel: &[f32],
    bias: &[f32],
    out: &mut [f32],
    g: &Geometry,
) {
    let plane = g.h * g.w;
    let mut pad = vec![0f32; g.padded_in()];
    for (x, out) in x
        .chunks_exact(g.c_in * plane)
        .zip(out.chunks_exact_mut(g.c_out * plane))
    {
        pad_into(x, &mut pad, g.c_in, g);
        for (o, out_plane) in out.chunks_exact_mut(plane).enumerate() {
            out_plane.fill(bias[o]);
        }
        conv_accumulate::<FMA>(&pad, kernel, out, g);
    }
}

#[inline(always)]
fn recurrent_conv_impl<const FMA: bool>(
    h: Option<&[f32]>,
    kernel: &[f32],
    bias: &[f32],
    out: &mut [f32],
    g: &Geometry,
) {
    let plane = g.h * g.w;
    let mut pad = vec![0f32; g.padded_in()];
    for (b, out) in out.chunks_exact_mut(g.c_out * plane).enumerate() {
        if let Some(h) = h {
            pad_into(
                &h[b * g.c_in * plane..][..g.c_in * plane],
                &mut pad,
                g.c_in,
                g,
            );
            conv_accumulate::<FMA>(&pad, kernel, out, g);
        }
        for (o, out_plane) in out.chunks_exact_mut(plane).enumerate() {
            for v in out_plane {
                *v += bias[o];
            }
        }
    }
}

#[inline(always)]
fn transpose_conv_impl<const FMA: bool>(d: &[f32], kernel: &[f32], out: &mut [f32], g: &Geometry) {
    let plane = g.h * g.w;
    let mut pad = vec![0f32; g.c_out * g.hp * g.wp];
    for (d, out) in d
        .chunks_exact(g.c_out * plane)
        .zip(out.chunks_exact_mut(g.c_in * plane))
    {
        pad_into(d, &mut pad, g.c_out, g);
        conv_transpose::<FMA>(&pad, kernel, out, g);
    }
}

/// The geometry of one convolution.
#[derive(Clone, Copy, Debug)]
pub struct Geometry {
    pub c_in: usize,
    pub c_out: usize,
    pub h: usize,
    pub w: usize,
    pub k: usize,
    pub p: usize,
    pub hp: usize,
    pub wp: usize,
}

impl Geometry {
    pub fn new(c_in: usize, c_out: usize, h: usize, w: usize, k: usize) -> Geometry {
        let p = k / 2;
        Geometry {
            c_in,
            c_out,
            h,
            w,
            k,
            p,
            hp: h + 2 * p,
            wp: w + 2 * p,
        }
    }

    /// The outputs `lo..hi` along a side of `len` (the frame's height or width) whose input,
    /// shifted by `shift` (a kernel row or column) in the padded plane, lies inside the frame:
    /// the others read only padding zeros.
    pub fn inside(&self, shift: usize, len: usize) -> (usize, usize) {
        let lo = self.p.saturating_sub(shift).min(len);
        (lo, (len + self.p).saturating_sub(shift).clamp(lo, len))
    }

    /// One padded input sample's values, `C_in * Hp * Wp`.
    pub fn padded_in(&self) -> usize {
        self.c_in * self.hp * self.wp
    }
}

/// Copies `n` samples `[n, C, H, W]` into the interior of zeroed `[n, C, Hp, Wp]` planes.
#[inline(always)]
pub(crate) fn pad_into(frames: &[f32], padded: &mut [f32], c: usize, g: &Geometry) {
    let (frame, pframe) = (c * g.h * g.w, c * g.hp * g.wp);
    for (src, dst) in frames
        .chunks_exact(frame)
        .zip(padded.chunks_exact_mut(pframe))
    {
        for ch in 0..c {
            for y in 0..g.h {
                let s = &src[(ch * g.h + y) * g.w..][..g.w];
                dst[(ch * g.hp + y + g.p) * g.wp + g.p..][..g.w].copy_from_slice(s);
            }
        }
    }
}

/// `n` samples zero-padded: `[n, C, H, W] -> [n, C, Hp, Wp]`.
pub(crate) fn padded(frames: &[f32], c: usize, g: &Geometry) -> Vec<f32> {
    let n = frames.len() / (c * g.h * g.w).max(1);
    let mut out = vec![0f32; n * c * g.hp * g.wp];
    pad_into(frames, &mut out, c, g);
    out
}

/// `out += conv(in_pad, kernel)` without bias, one sample: `in_pad` `[C_in, Hp, Wp]`,
/// `kernel` `[C_out, C_in, K, K]`, `out` `[C_out, H, W]`.
#[inline(always)]
pub(crate) fn conv_accumulate<const FMA: bool>(
    in_pad: &[f32],
    kernel: &[f32],
    out: &mut [f32],
    g: &Geometry,
) {
    let (kk, plane, pplane) = (g.k * g.k, g.h * g.w, g.hp * g.wp);
    for (o, out_plane) in out.chunks_exact_mut(plane).enumerate() {
        for ch in 0..g.c_in {
            let taps = &kernel[(o * g.c_in + ch) * kk..][..kk];
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
/// of [`conv_accumulate`] with respect to its input. `d_pad` is `[C_out, Hp, Wp]`, `out`
/// `[C_in, H, W]`.
/// Written as a convolution with the kernel flipped in both directions.
#[inline(always)]
pub(crate) fn conv_transpose<const FMA: bool>(
    d_pad: &[f32],
    kernel: &[f32],
    out: &mut [f32],
    g: &Geometry,
) {
    let (kk, plane, pplane, k) = (g.k * g.k, g.h * g.w, g.hp * g.wp, g.k);
    for (ch, out_plane) in out.chunks_exact_mut(plane).enumerate() {
        for o in 0..g.c_out {
            let taps = &kernel[(o * g.c_in + ch) * kk..][..kk];
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
/// [`conv_accumulate`] with respect to its kernel, summed over samples. `in_pad` is
/// `[n, C_in, Hp, Wp]`, `d` `[n, C_out, H, W]`.
#[inline(always)]
pub(crate) fn kernel_grads<const FMA: bool>(
    in_pad: &[f32],
    d: &[f32],
    dk: &mut [f32],
    g: &Geometry,
) {
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
    let (outputs, frame, padded) = (g.c_out, g.c_out * plane, g.c_in * pplane);
    let steps = in_pad.len() / padded;
    debug_assert_eq!(d.len(), steps * frame);
    let main = g.w / LANES * LANES;
    debug_assert!(outputs.is_multiple_of(2), "gate blocks come in fours");
    for ch in 0..g.c_in {
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
                    let taps = &mut dk[((o + pair) * g.c_in + ch) * kk + ky * K..][..K];
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
pub(crate) fn kernel_grads_naive(in_pad: &[f32], d: &[f32], dk: &mut [f32], g: &Geometry) {
    let (kk, plane, pplane) = (g.k * g.k, g.h * g.w, g.hp * g.wp);
    let (frame, padded) = (g.c_out * plane, g.c_in * pplane);
    for (t, d_t) in d.chunks_exact(frame).enumerate() {
        for (o, d_plane) in d_t.chunks_exact(plane).enumerate() {
            for ch in 0..g.c_in {
                let taps = &mut dk[(o * g.c_in + ch) * kk..][..kk];
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

    /// `out[o, y, x] = sum_{c,ky,kx} k[o, c, ky, kx] * in[c, y+ky-P, x+kx-P]` in f64.
    fn conv_by_definition(input: &[f32], kernel: &[f32], g: &Geometry) -> Vec<f64> {
        let (h, w, k, p) = (g.h as isize, g.w as isize, g.k, g.p as isize);
        let mut out = vec![0f64; g.c_out * g.h * g.w];
        for o in 0..g.c_out {
            for y in 0..h {
                for x in 0..w {
                    let mut sum = 0f64;
                    for c in 0..g.c_in {
                        for ky in 0..k {
                            for kx in 0..k {
                                let (yy, xx) = (y + ky as isize - p, x + kx as isize - p);
                                if (0..h).contains(&yy) && (0..w).contains(&xx) {
                                    sum += f64::from(kernel[((o * g.c_in + c) * k + ky) * k + kx])
                                        * f64::from(
                                            input[((c as isize * h + yy) * w + xx) as usize],
                                        );
                                }
                            }
                        }
                    }
                    out[((o as isize * h + y) * w + x) as usize] = sum;
                }
            }
        }
        out
    }

    /// `dx[c, y, x] = sum_{o,ky,kx} k[o, c, ky, kx] * d[o, y-ky+P, x-kx+P]` in f64: the
    /// gradient of [`conv_by_definition`] with respect to its input, from the same formula
    /// read the other way (input `(y, x)` feeds output `(y - ky + P, x - kx + P)`).
    fn transpose_by_definition(d: &[f32], kernel: &[f32], g: &Geometry) -> Vec<f64> {
        let (h, w, k, p) = (g.h as isize, g.w as isize, g.k, g.p as isize);
        let mut dx = vec![0f64; g.c_in * g.h * g.w];
        for c in 0..g.c_in {
            for y in 0..h {
                for x in 0..w {
                    let mut sum = 0f64;
                    for o in 0..g.c_out {
                        for ky in 0..k {
                            for kx in 0..k {
                                let (yy, xx) = (y - ky as isize + p, x - kx as isize + p);
                                if (0..h).contains(&yy) && (0..w).contains(&xx) {
                                    sum += f64::from(kernel[((o * g.c_in + c) * k + ky) * k + kx])
                                        * f64::from(d[((o as isize * h + yy) * w + xx) as usize]);
                                }
                            }
                        }
                    }
                    dx[((c as isize * h + y) * w + x) as usize] = sum;
                }
            }
        }
        dx
    }

    #[test]
    fn convolutions_and_their_transposes_equal_the_definition() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(12);
        // 65 = one 64-wide tile and a column; 83 = 64 + two 8-wide tiles + 3 columns;
        // channels in and out that differ.
        for (c_in, c_out, h, w, k) in [
            (1, 4, 65, 65, 5),
            (2, 8, 3, 83, 5),
            (3, 4, 6, 5, 3),
            (1, 4, 2, 8, 1),
        ] {
            let g = Geometry::new(c_in, c_out, h, w, k);
            let x = random(c_in * h * w, &mut rng);
            let kernel = random(c_out * c_in * k * k, &mut rng);
            let want = conv_by_definition(&x, &kernel, &g);
            let x_pad = padded(&x, c_in, &g);
            for fma in [false, true] {
                let mut out = vec![0f32; c_out * h * w];
                if fma {
                    // The dispatched form: AVX2 and FMA where the CPU has them.
                    input_conv(&x, &kernel, &vec![0f32; c_out], &mut out, &g);
                } else {
                    conv_accumulate::<false>(&x_pad, &kernel, &mut out, &g);
                }
                for (i, (&got, &want)) in out.iter().zip(&want).enumerate() {
                    assert!(
                        (f64::from(got) - want).abs() <= 1e-5 * (1.0 + want.abs()),
                        "{c_in}->{c_out} {h}x{w} k{k} fma {fma}: output {i}: {got} vs {want}"
                    );
                }
            }
            // The transpose entry by entry, added to what `out` held (it accumulates): an
            // inner product with the adjoint would let errors that cancel over a plane pass.
            let d = random(c_out * h * w, &mut rng);
            let start = random(c_in * h * w, &mut rng);
            let want = transpose_by_definition(&d, &kernel, &g);
            for fma in [false, true] {
                let mut back = start.clone();
                if fma {
                    transpose_conv(&d, &kernel, &mut back, &g);
                } else {
                    transpose_conv_impl::<false>(&d, &kernel, &mut back, &g);
                }
                // The entry furthest past the forward's bound, `1e-5 * (1 + |want|)`.
                let excess = |(got, want): (f64, f64)| (got - want).abs() / (1.0 + want.abs());
                let (i, (got, want)) = back
                    .iter()
                    .zip(&start)
                    .zip(&want)
                    .map(|((&got, &s), &def)| (f64::from(got), f64::from(s) + def))
                    .enumerate()
                    .max_by(|a, b| excess(a.1).total_cmp(&excess(b.1)))
                    .unwrap();
                assert!(
                    (got - want).abs() <= 1e-5 * (1.0 + want.abs()),
                    "{c_in}->{c_out} {h}x{w} k{k} fma {fma}: transpose, worst entry {i}: {got} vs \
                     {want}, |diff| {:.3e}",
                    (got - want).abs()
                );
            }
        }
    }

    #[test]
    fn tiled_kernel_gradients_equal_the_naive_ones() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        // Widths below, at and above the 8 lanes, with and without a remainder; channels
        // in and out that differ; both specialised kernel sizes and another.
        for (c_in, c_out, h, w, k, n) in [
            (1, 4, 65, 65, 5, 3),
            (1, 4, 6, 5, 5, 2),
            (2, 8, 7, 17, 3, 2),
            (3, 4, 4, 8, 3, 1),
            (2, 4, 5, 6, 7, 2),
        ] {
            let g = Geometry::new(c_in, c_out, h, w, k);
            let in_pad = padded(&random(n * c_in * h * w, &mut rng), c_in, &g);
            let d = random(n * c_out * h * w, &mut rng);
            let start = random(c_out * c_in * k * k, &mut rng);
            let (mut tiled, mut fused, mut naive) = (start.clone(), start.clone(), start);
            kernel_grads::<false>(&in_pad, &d, &mut tiled, &g);
            kernel_grads_all(&in_pad, &d, &mut fused, &g);
            kernel_grads_naive(&in_pad, &d, &mut naive, &g);
            for (i, (a, b)) in tiled
                .iter()
                .chain(&fused)
                .zip(naive.iter().cycle())
                .enumerate()
            {
                assert!(
                    (a - b).abs() <= 1e-4 * (1.0 + b.abs()),
                    "{c_in}->{c_out} {h}x{w}, kernel {k}: tap {i}: tiled {a}, naive {b}"
                );
            }
        }
    }
}
