//! Convolutions as matrix products that read the padded planes themselves (x86-64 with
//! AVX2 and FMA): the fast path of the layers of many channels.
//!
//! [`crate::lowered`] copies every input value `K*K` times into columns (`im2col`), and
//! `gemm` copies the columns again into its packed panels; at the general ConvLSTM's
//! benchmark size those copies, the packing and the scatters back were a large share of a
//! batch (the git history of BENCHMARKS.md). Here nothing is unrolled:
//!
//! - A convolution (and the data gradient, which is the convolution of the padded output
//!   gradient by the kernel turned half a turn, input and output channels swapped) is the
//!   product `out[m, pixel] = sum_t A[m, t] * in[off(t) + pixel]`, where tap `t = (c, ky, kx)`
//!   reads the padded plane `c` shifted by `(ky, kx)`. A tile of output is [`MR`] (or 4)
//!   channels by [`NR`] neighbouring pixels of one row: for each tap, the 16 inputs are 16
//!   neighbouring values of one padded row (two unaligned vector loads), the `MR` weights are
//!   broadcast from a panel packed once a call, and 12 fused multiply-adds update the tile,
//!   which stays in registers over all taps.
//! - The kernel gradient `dK[o, t] = sum_pixel d[o, pixel] * in[off(t) + pixel]` is the same
//!   product with the roles turned: a tile is 16 output channels (the gradient transposed so
//!   that they are neighbours) by 6 taps, summed over every pixel of every sample.
//! - Nothing is computed from padding alone: a forward or data-gradient tile sums only the
//!   kernel rows that land inside the frame for its output row (taps are ordered kernel row
//!   first, so those are one run), and a kernel-gradient tile, whose 6 taps share their
//!   shift, only the rows and columns where its input lies inside.
//!
//! Layout (row-major) as in [`crate::cpu`]: samples `[n, C, H, W]`, kernels
//! `[C_out, C_in, K, K]`, padded planes `[C, Hp, Wp]`. Sums run over taps, or over samples
//! and pixels, in an order fixed by the shapes alone, whatever the number of threads.

use std::arch::x86_64::*;

use crate::cpu::{pad_into, Geometry};

/// Output channels of a forward tile (rows of a packed panel); a 4-row panel takes the rest.
const MR: usize = 6;
/// Pixels of a forward tile, and output channels of a kernel-gradient tile: two vectors.
const NR: usize = 16;
/// Taps of a kernel-gradient tile.
const TAPS: usize = 6;
/// Samples padded at a time: two 64-channel 20x20 padded samples (200 KB) stay in L2.
const CHUNK: usize = 2;

/// Whether this CPU runs the kernels below.
pub(crate) fn available() -> bool {
    lstm_core::simd::available("avx2,fma")
}

/// Runs `f` with three zeroed scratch buffers of `lens` values: padded inputs, and the
/// kernel gradient's tiles and transposed output gradient.
fn with_scratch<R>(lens: [usize; 3], f: impl FnOnce([&mut [f32]; 3]) -> R) -> R {
    lstm_core::scratch::with(lens, true, f)
}

/// The panels rows `0..m` are cut into: `(first row, rows)`, panels of 6 and up to two of 4
/// (4-row tiles keep fewer sums in flight, so they are the filler): the fewest rows past
/// `m`, then the fewest 4-row panels. 32 rows are 6, 6, 6, 6, 4, 4; 128 are 20 x 6 and 2 x 4.
fn panels(m: usize) -> Vec<(usize, usize)> {
    let fours = (0..=2usize)
        .filter(|b| 4 * b < m + 4)
        .min_by_key(|&b| {
            let sixes = (m.saturating_sub(4 * b)).div_ceil(MR);
            (MR * sixes + 4 * b - m, b)
        })
        .unwrap_or(0);
    let sixes = m.saturating_sub(4 * fours).div_ceil(MR);
    let mut out = Vec::with_capacity(sixes + fours);
    let mut row = 0;
    for rows in std::iter::repeat_n(MR, sixes).chain(std::iter::repeat_n(4, fours)) {
        if row < m {
            out.push((row, rows));
        }
        row += rows;
    }
    out
}

/// `A[r, t] = values[r * row_stride + at[t]]` for `r < m`, packed panel after panel, each
/// `[taps, rows]` (rows past `m` zero): one pass, the kernel read where each tap finds it.
fn pack(values: &[f32], m: usize, row_stride: usize, at: &[usize]) -> Vec<f32> {
    let panels = panels(m);
    let mut packed = vec![0f32; panels.iter().map(|p| p.1).sum::<usize>() * at.len()];
    let mut dst = packed.iter_mut();
    for (row0, rows) in panels {
        for &t in at {
            for (r, v) in (row0..row0 + rows).zip(dst.by_ref()) {
                if r < m {
                    *v = values[r * row_stride + t];
                }
            }
        }
    }
    packed
}

/// One tap of a product: input channel `c` shifted by `(ky, kx)`.
#[derive(Clone, Copy)]
struct Tap {
    c: usize,
    ky: usize,
    kx: usize,
}

impl Tap {
    /// Where it starts in a padded sample `[C, Hp, Wp]`.
    fn offset(self, g: &Geometry) -> usize {
        (self.c * g.hp + self.ky) * g.wp + self.kx
    }

    /// Its index in a kernel `[_, C, K, K]` row, or the kernel turned half a turn.
    fn index(self, g: &Geometry, turned: bool) -> usize {
        let (ky, kx) = match turned {
            false => (self.ky, self.kx),
            true => (g.k - 1 - self.ky, g.k - 1 - self.kx),
        };
        (self.c * g.k + ky) * g.k + kx
    }
}

/// The kernel rows `ky0..ky1` that output row `y` reads inside the frame.
fn inside_rows(y: usize, g: &Geometry) -> (usize, usize) {
    let (ky0, ky1) = (
        g.p.saturating_sub(y),
        (g.h + g.p).saturating_sub(y).min(g.k),
    );
    (ky0, ky1.max(ky0))
}

/// The taps over `channels` kernel row by kernel row, `(ky, c, kx)`: the taps an output row
/// needs, those whose kernel row lands inside the frame, are one run.
fn taps_by_row(channels: usize, g: &Geometry) -> Vec<Tap> {
    let mut taps = Vec::with_capacity(channels * g.k * g.k);
    for ky in 0..g.k {
        for c in 0..channels {
            taps.extend((0..g.k).map(|kx| Tap { c, ky, kx }));
        }
    }
    taps
}

/// The taps over `channels` shift by shift, `(ky, kx, c)`: a group of neighbouring taps
/// shares its shift, so it skips the same padding rows and columns.
fn taps_by_shift(channels: usize, g: &Geometry) -> Vec<Tap> {
    let mut taps = Vec::with_capacity(channels * g.k * g.k);
    for ky in 0..g.k {
        for kx in 0..g.k {
            taps.extend((0..channels).map(|c| Tap { c, ky, kx }));
        }
    }
    taps
}

/// `out` `[n, C_out, S]` = `bias + conv(x)` (`bias` given) or `out + conv(x)` (`None`), for
/// `x` `[n, C_in, S]`.
pub(crate) fn forward(
    x: &[f32],
    kernel: &[f32],
    bias: Option<&[f32]>,
    out: &mut [f32],
    g: &Geometry,
) {
    let taps = taps_by_row(g.c_in, g);
    let at: Vec<usize> = taps.iter().map(|t| t.index(g, false)).collect();
    let packed = pack(kernel, g.c_out, taps.len(), &at);
    let offs: Vec<usize> = taps.iter().map(|t| t.offset(g)).collect();
    correlate_all(x, g.c_in, &packed, g.c_out, &offs, bias, out, g);
}

/// `dx` `[n, C_in, S]` += the gradient reaching the input from `d` `[n, C_out, S]`: the
/// convolution of `d` (padded by `K - 1 - P = P`) by `A[c, (o, ky, kx)] =
/// kernel[o, c, K-1-ky, K-1-kx]`.
pub(crate) fn backward_data(d: &[f32], kernel: &[f32], dx: &mut [f32], g: &Geometry) {
    // Tap `(ky, o, kx)` of `d` meets kernel `[o, c]` turned half a turn.
    let taps = taps_by_row(g.c_out, g);
    let kk = g.k * g.k;
    let at: Vec<usize> = taps
        .iter()
        .map(|t| t.c * g.c_in * kk + Tap { c: 0, ..*t }.index(g, true))
        .collect();
    let packed = pack(kernel, g.c_in, kk, &at);
    let offs: Vec<usize> = taps.iter().map(|t| t.offset(g)).collect();
    correlate_all(d, g.c_out, &packed, g.c_in, &offs, None, dx, g);
}

/// `out` `[n, m, S]` (+)= the product of the packed `A` `[m, taps]` with the taps of `input`
/// `[n, c_in, S]`, padded [`CHUNK`] samples at a time.
#[allow(clippy::too_many_arguments)]
fn correlate_all(
    input: &[f32],
    c_in: usize,
    packed: &[f32],
    m: usize,
    offs: &[usize],
    bias: Option<&[f32]>,
    out: &mut [f32],
    g: &Geometry,
) {
    let s = g.h * g.w;
    let (in_len, out_len, padded_len) = (c_in * s, m * s, c_in * g.hp * g.wp);
    for (input, out) in input
        .chunks(CHUNK * in_len)
        .zip(out.chunks_mut(CHUNK * out_len))
    {
        let n = input.len() / in_len;
        // NR values of slack: a row's last tile reads past the plane's end.
        with_scratch([n * padded_len + NR, 0, 0], |[padded, ..]| {
            pad_into(input, padded, c_in, g);
            // SAFETY: `available()` was checked by the caller; the reads stay inside
            // `padded`, whose length `correlate` checks.
            unsafe { correlate(padded, padded_len, packed, m, offs, bias, out, g) }
        });
    }
}

/// One chunk: `out` `[n, m, H, W]`, `padded` `n` samples of `padded_len` and the slack.
///
/// # Safety
/// The CPU must have AVX2 and FMA.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma")]
unsafe fn correlate(
    padded: &[f32],
    padded_len: usize,
    packed: &[f32],
    m: usize,
    offs: &[usize],
    bias: Option<&[f32]>,
    out: &mut [f32],
    g: &Geometry,
) {
    let (s, taps) = (g.h * g.w, offs.len());
    let per_row = taps / g.k;
    let n = out.len() / (m * s);
    // The furthest read: the last sample's furthest tap, from its last tile, NR wide.
    let furthest =
        (n - 1) * padded_len + (g.h - 1) * g.wp + (g.w - 1) + offs.iter().max().unwrap_or(&0) + NR;
    assert!(furthest <= padded.len(), "padded input too short");
    assert_eq!(
        packed.len(),
        panels(m).iter().map(|p| p.1).sum::<usize>() * taps
    );
    let mut panel = packed.as_ptr();
    for (row0, rows) in panels(m) {
        for i in 0..n {
            for y in 0..g.h {
                // Only the kernel rows that land inside the frame: the taps are in kernel-row
                // order, `per_row` a row.
                let (ky0, ky1) = inside_rows(y, g);
                let offs = &offs[ky0 * per_row..ky1 * per_row];
                let panel = panel.add(ky0 * per_row * rows);
                for x0 in (0..g.w).step_by(NR) {
                    let lanes = (g.w - x0).min(NR);
                    let base = padded.as_ptr().add(i * padded_len + y * g.wp + x0);
                    let at = |r: usize| ((i * m + row0 + r) * g.h + y) * g.w + x0;
                    let bias = bias.map(|b| &b[row0..]);
                    let valid = (m - row0).min(rows);
                    let at_lanes = (at, lanes);
                    match rows {
                        MR => tile_in_place::<MR>(panel, base, offs, bias, valid, out, at_lanes),
                        _ => tile_in_place::<4>(panel, base, offs, bias, valid, out, at_lanes),
                    }
                }
            }
        }
        panel = panel.add(taps * rows);
    }
}

/// One tile in place: its first `valid` rows (row `r` at `out[at(r)..]`, `lanes` wide)
/// start from `bias[r]` or from `out`, take the sum over the taps, and are stored back.
///
/// # Safety
/// As [`tile`].
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn tile_in_place<const ROWS: usize>(
    panel: *const f32,
    base: *const f32,
    offs: &[usize],
    bias: Option<&[f32]>,
    valid: usize,
    out: &mut [f32],
    (at, lanes): (impl Fn(usize) -> usize, usize),
) {
    let mut acc: [[__m256; 2]; ROWS] = std::array::from_fn(|r| match (r < valid, bias) {
        (false, _) => [_mm256_setzero_ps(); 2],
        (true, Some(b)) => [_mm256_set1_ps(b[r]); 2],
        (true, None) => load(&out[at(r)..][..lanes]),
    });
    tile::<ROWS>(panel, base, offs, &mut acc);
    for (r, acc) in acc.iter().enumerate().take(valid) {
        store(*acc, &mut out[at(r)..][..lanes]);
    }
}

/// `acc[r]` (the tile's row `r`, 16 pixels) += `panel[t, r] * base[offs[t] .. + 16]` over
/// every tap `t`.
///
/// # Safety
/// AVX2 and FMA; `panel` holds `offs.len() * ROWS` values and `base + offs[t] + 16` stays
/// inside the input for every `t`.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn tile<const ROWS: usize>(
    panel: *const f32,
    base: *const f32,
    offs: &[usize],
    acc: &mut [[__m256; 2]; ROWS],
) {
    let mut c = *acc;
    let mut a = panel;
    for &off in offs {
        let p = base.add(off);
        let (b0, b1) = (_mm256_loadu_ps(p), _mm256_loadu_ps(p.add(8)));
        for (r, c) in c.iter_mut().enumerate() {
            let w = _mm256_broadcast_ss(&*a.add(r));
            c[0] = _mm256_fmadd_ps(w, b0, c[0]);
            c[1] = _mm256_fmadd_ps(w, b1, c[1]);
        }
        a = a.add(ROWS);
    }
    *acc = c;
}

/// Up to 16 values as two vectors, zeros past the end.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn load(values: &[f32]) -> [__m256; 2] {
    let mut full = [0f32; NR];
    full[..values.len()].copy_from_slice(values);
    [
        _mm256_loadu_ps(full.as_ptr()),
        _mm256_loadu_ps(full.as_ptr().add(8)),
    ]
}

/// The first `out.len()` (at most 16) lanes of two vectors.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn store(v: [__m256; 2], out: &mut [f32]) {
    let mut full = [0f32; NR];
    _mm256_storeu_ps(full.as_mut_ptr(), v[0]);
    _mm256_storeu_ps(full.as_mut_ptr().add(8), v[1]);
    out.copy_from_slice(&full[..out.len()]);
}

/// `dk` `[C_out, C_in, K, K]` += `sum_{i, y, x} d[i, o, y, x] * x_pad[i, c, y+ky, x+kx]` over
/// the samples of `x` `[n, C_in, S]` and `d` `[n, C_out, S]`, one sample at a time.
pub(crate) fn kernel_grad(x: &[f32], d: &[f32], dk: &mut [f32], g: &Geometry) {
    let s = g.h * g.w;
    let taps = taps_by_shift(g.c_in, g);
    let groups: Vec<Group> = taps.chunks(TAPS).map(|t| Group::new(t, g)).collect();
    let blocks = g.c_out.div_ceil(NR);
    let lens = [
        blocks * groups.len() * TAPS * NR,
        g.padded_in(),
        blocks * s * NR,
    ];
    with_scratch(lens, |[tiles, padded, d_t]| {
        for (x, d) in x.chunks_exact(g.c_in * s).zip(d.chunks_exact(g.c_out * s)) {
            pad_into(x, padded, g.c_in, g);
            // d_t [block, S, 16]: the 16 output channels of a block neighbours, zero past C_out.
            for (o, plane) in d.chunks_exact(s).enumerate() {
                let (block, lane) = (o / NR, o % NR);
                for (p, v) in plane.iter().enumerate() {
                    d_t[(block * s + p) * NR + lane] = *v;
                }
            }
            // SAFETY: `available()` was checked by the caller; `sums` checks its reads.
            unsafe { sums(tiles, padded, d_t, &groups, g) }
        }
        let kk = g.k * g.k;
        for (o, dk) in dk.chunks_exact_mut(g.c_in * kk).enumerate() {
            let (block, lane) = (o / NR, o % NR);
            for (t, tap) in taps.iter().enumerate() {
                dk[tap.index(g, false)] += tiles[((block * groups.len()) * TAPS + t) * NR + lane];
            }
        }
    });
}

/// Up to [`TAPS`] neighbouring taps of a kernel gradient's tile: where each starts (the
/// missing ones at the first's: their sums are dropped), and the outputs whose input lies
/// inside the frame for at least one of them, rows `ys` and columns `xs`.
struct Group {
    offs: [usize; TAPS],
    ys: (usize, usize),
    xs: (usize, usize),
}

impl Group {
    fn new(taps: &[Tap], g: &Geometry) -> Group {
        let union = |a: (usize, usize), b: (usize, usize)| (a.0.min(b.0), a.1.max(b.1));
        let ys = taps.iter().map(|t| g.inside(t.ky, g.h)).reduce(union);
        let xs = taps.iter().map(|t| g.inside(t.kx, g.w)).reduce(union);
        Group {
            offs: std::array::from_fn(|j| taps.get(j).unwrap_or(&taps[0]).offset(g)),
            ys: ys.unwrap_or((0, 0)),
            xs: xs.unwrap_or((0, 0)),
        }
    }
}

/// One sample's contribution to every tile `[block, group, 6, 16]` of the kernel gradient.
///
/// # Safety
/// The CPU must have AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
unsafe fn sums(tiles: &mut [f32], padded: &[f32], d_t: &[f32], groups: &[Group], g: &Geometry) {
    let s = g.h * g.w;
    let furthest_tap = groups.iter().flat_map(|gr| gr.offs).max().unwrap_or(0);
    let furthest = (g.h - 1) * g.wp + g.w + furthest_tap;
    assert!(furthest <= padded.len(), "padded input too short");
    let blocks = d_t.len() / (s * NR);
    assert_eq!(tiles.len(), blocks * groups.len() * TAPS * NR);
    for (block, tiles) in tiles.chunks_exact_mut(groups.len() * TAPS * NR).enumerate() {
        let d_block = d_t[block * s * NR..(block + 1) * s * NR].as_ptr();
        for (group, tile) in groups.iter().zip(tiles.chunks_exact_mut(TAPS * NR)) {
            let mut acc: [[__m256; 2]; TAPS] = std::array::from_fn(|j| {
                [
                    _mm256_loadu_ps(tile.as_ptr().add(j * NR)),
                    _mm256_loadu_ps(tile.as_ptr().add(j * NR + 8)),
                ]
            });
            let ((y0, y1), (x0, x1)) = (group.ys, group.xs);
            for y in y0..y1 {
                let row = padded.as_ptr().add(y * g.wp);
                let mut dp = d_block.add((y * g.w + x0) * NR);
                for x in x0..x1 {
                    let (d0, d1) = (_mm256_loadu_ps(dp), _mm256_loadu_ps(dp.add(8)));
                    for (acc, off) in acc.iter_mut().zip(group.offs) {
                        let v = _mm256_broadcast_ss(&*row.add(x + off));
                        acc[0] = _mm256_fmadd_ps(v, d0, acc[0]);
                        acc[1] = _mm256_fmadd_ps(v, d1, acc[1]);
                    }
                    dp = dp.add(NR);
                }
            }
            for (j, acc) in acc.iter().enumerate() {
                _mm256_storeu_ps(tile.as_mut_ptr().add(j * NR), acc[0]);
                _mm256_storeu_ps(tile.as_mut_ptr().add(j * NR + 8), acc[1]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panels_cover_the_rows_once() {
        for m in 1..40 {
            let p = panels(m);
            assert_eq!(p[0].0, 0);
            for w in p.windows(2) {
                assert_eq!(w[0].0 + w[0].1, w[1].0, "m {m}");
            }
            let (last, rows) = *p.last().unwrap();
            assert!(
                last < m && last + rows >= m && last + rows - m < 4,
                "m {m}: {p:?}"
            );
        }
        // The benchmark's layers (4C of 16 and 32 channels): no row computed in vain.
        for m in [16, 32, 64, 128] {
            assert_eq!(panels(m).iter().map(|p| p.1).sum::<usize>(), m, "m {m}");
        }
    }
}
