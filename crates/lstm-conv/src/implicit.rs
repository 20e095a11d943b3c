//! Convolutions as matrix products that read the padded planes themselves (x86-64 with
//! AVX2 and FMA): the fast path of the layers of many channels.
//!
//! [`crate::lowered`] copies every input value `K*K` times into columns (`im2col`), and
//! `gemm` copies the columns again into its packed panels; at issue 11's size those copies,
//! the packing and the scatters back took a fifth of a batch. Here nothing is unrolled:
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
//!
//! Layout (row-major) as in [`crate::cpu`]: samples `[n, C, H, W]`, kernels
//! `[C_out, C_in, K, K]`, padded planes `[C, Hp, Wp]`. Sums run over taps, or over samples
//! and pixels, in an order fixed by the shapes alone, whatever the number of threads.

use std::arch::x86_64::*;
use std::cell::RefCell;

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
    std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
}

thread_local! {
    /// Packed panels, padded inputs, the transposed gradient and the kernel gradient's
    /// tiles, kept between calls (allocated afresh, their pages would be zeroed each call).
    static SCRATCH: RefCell<[Vec<f32>; 4]> = const {
        RefCell::new([Vec::new(), Vec::new(), Vec::new(), Vec::new()])
    };
}

/// Runs `f` with this thread's scratch buffers, each resized to `lens` and zeroed.
fn with_scratch<R>(lens: [usize; 4], f: impl FnOnce([&mut [f32]; 4]) -> R) -> R {
    SCRATCH.with(|scratch| {
        let mut scratch = scratch.borrow_mut();
        let [a, b, c, d] = &mut *scratch;
        for (v, len) in [&mut *a, &mut *b, &mut *c, &mut *d].into_iter().zip(lens) {
            v.clear();
            v.resize(len, 0.0);
        }
        f([&mut a[..], &mut b[..], &mut c[..], &mut d[..]])
    })
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

/// `A` `[m, taps]` (given by `a(row, tap)`) packed panel after panel, each `[taps, rows]`.
fn pack(m: usize, taps: usize, a: impl Fn(usize, usize) -> f32, packed: &mut Vec<f32>) {
    packed.clear();
    for (row0, rows) in panels(m) {
        for t in 0..taps {
            for r in row0..row0 + rows {
                packed.push(if r < m { a(r, t) } else { 0.0 });
            }
        }
    }
}

/// Where tap `(c, ky, kx)` of a padded sample `[c_count, Hp, Wp]` starts, for every tap in
/// order.
fn tap_offsets(c_count: usize, g: &Geometry) -> Vec<usize> {
    let mut offs = Vec::with_capacity(c_count * g.k * g.k);
    for c in 0..c_count {
        for ky in 0..g.k {
            for kx in 0..g.k {
                offs.push((c * g.hp + ky) * g.wp + kx);
            }
        }
    }
    offs
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
    let taps = g.c_in * g.k * g.k;
    let mut packed = Vec::new();
    pack(g.c_out, taps, |o, t| kernel[o * taps + t], &mut packed);
    let offs = tap_offsets(g.c_in, g);
    correlate_all(x, g.c_in, &packed, g.c_out, &offs, bias, out, g);
}

/// `dx` `[n, C_in, S]` += the gradient reaching the input from `d` `[n, C_out, S]`: the
/// convolution of `d` (padded by `K - 1 - P = P`) by `A[c, (o, ky, kx)] =
/// kernel[o, c, K-1-ky, K-1-kx]`.
pub(crate) fn backward_data(d: &[f32], kernel: &[f32], dx: &mut [f32], g: &Geometry) {
    let kk = g.k * g.k;
    let taps = g.c_out * kk;
    let mut packed = Vec::new();
    pack(
        g.c_in,
        taps,
        |c, t| {
            let (o, flipped) = (t / kk, kk - 1 - t % kk);
            kernel[(o * g.c_in + c) * kk + flipped]
        },
        &mut packed,
    );
    let offs = tap_offsets(g.c_out, g);
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
        with_scratch([n * padded_len + NR, 0, 0, 0], |[padded, ..]| {
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
    let n = out.len() / (m * s);
    // The furthest read: the last sample's last tap, from its last tile, NR wide.
    let furthest = (n - 1) * padded_len + (g.h - 1) * g.wp + (g.w - 1) + offs[taps - 1] + NR;
    assert!(furthest <= padded.len(), "padded input too short");
    assert_eq!(
        packed.len(),
        panels(m).iter().map(|p| p.1).sum::<usize>() * taps
    );
    let mut panel = packed.as_ptr();
    for (row0, rows) in panels(m) {
        for i in 0..n {
            for y in 0..g.h {
                for x0 in (0..g.w).step_by(NR) {
                    let lanes = (g.w - x0).min(NR);
                    let base = padded.as_ptr().add(i * padded_len + y * g.wp + x0);
                    let at = |r: usize| ((i * m + row0 + r) * g.h + y) * g.w + x0;
                    let init = |r: usize, out: &[f32]| match bias {
                        Some(b) => [_mm256_set1_ps(b[row0 + r]); 2],
                        None => load(&out[at(r)..][..lanes]),
                    };
                    if rows == MR {
                        let mut acc: [[__m256; 2]; MR] =
                            std::array::from_fn(|r| match row0 + r < m {
                                true => init(r, out),
                                false => [_mm256_setzero_ps(); 2],
                            });
                        tile::<MR>(panel, base, offs, &mut acc);
                        for (r, acc) in acc.iter().enumerate().take(m - row0) {
                            store(*acc, &mut out[at(r)..][..lanes]);
                        }
                    } else {
                        let mut acc: [[__m256; 2]; 4] =
                            std::array::from_fn(|r| match row0 + r < m {
                                true => init(r, out),
                                false => [_mm256_setzero_ps(); 2],
                            });
                        tile::<4>(panel, base, offs, &mut acc);
                        for (r, acc) in acc.iter().enumerate().take(m - row0) {
                            store(*acc, &mut out[at(r)..][..lanes]);
                        }
                    }
                }
            }
        }
        panel = panel.add(taps * rows);
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
    let (s, taps) = (g.h * g.w, g.c_in * g.k * g.k);
    let (blocks, groups) = (g.c_out.div_ceil(NR), taps.div_ceil(TAPS));
    let padded_len = g.padded_in();
    let offs = tap_offsets(g.c_in, g);
    // Each group of 6 taps; the last group's missing taps read tap 0 and are dropped.
    let groups_offs: Vec<[usize; TAPS]> = (0..groups)
        .map(|k| std::array::from_fn(|j| offs.get(k * TAPS + j).copied().unwrap_or(0)))
        .collect();
    let lens = [blocks * groups * TAPS * NR, padded_len, blocks * s * NR, 0];
    with_scratch(lens, |[tiles, padded, d_t, _]| {
        for (x, d) in x.chunks_exact(g.c_in * s).zip(d.chunks_exact(g.c_out * s)) {
            padded.fill(0.0);
            pad_into(x, padded, g.c_in, g);
            // d_t [block, S, 16]: the 16 output channels of a block neighbours, zero past C_out.
            for (o, plane) in d.chunks_exact(s).enumerate() {
                let (block, lane) = (o / NR, o % NR);
                for (p, v) in plane.iter().enumerate() {
                    d_t[(block * s + p) * NR + lane] = *v;
                }
            }
            // SAFETY: `available()` was checked by the caller; `sums` checks its reads.
            unsafe { sums(tiles, padded, d_t, &groups_offs, g) }
        }
        for o in 0..g.c_out {
            let (block, lane) = (o / NR, o % NR);
            for (t, dk) in dk[o * taps..(o + 1) * taps].iter_mut().enumerate() {
                let (group, j) = (t / TAPS, t % TAPS);
                *dk += tiles[((block * groups + group) * TAPS + j) * NR + lane];
            }
        }
    });
}

/// One sample's contribution to every tile `[block, group, 6, 16]` of the kernel gradient.
///
/// # Safety
/// The CPU must have AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
unsafe fn sums(
    tiles: &mut [f32],
    padded: &[f32],
    d_t: &[f32],
    groups_offs: &[[usize; TAPS]],
    g: &Geometry,
) {
    let s = g.h * g.w;
    let furthest = (g.h - 1) * g.wp + g.w + groups_offs.iter().flatten().max().unwrap_or(&0);
    assert!(furthest <= padded.len(), "padded input too short");
    let blocks = d_t.len() / (s * NR);
    assert_eq!(tiles.len(), blocks * groups_offs.len() * TAPS * NR);
    for (block, tiles) in tiles
        .chunks_exact_mut(groups_offs.len() * TAPS * NR)
        .enumerate()
    {
        let d_block = d_t[block * s * NR..(block + 1) * s * NR].as_ptr();
        for (offs, tile) in groups_offs.iter().zip(tiles.chunks_exact_mut(TAPS * NR)) {
            let mut acc: [[__m256; 2]; TAPS] = std::array::from_fn(|j| {
                [
                    _mm256_loadu_ps(tile.as_ptr().add(j * NR)),
                    _mm256_loadu_ps(tile.as_ptr().add(j * NR + 8)),
                ]
            });
            let mut dp = d_block;
            for y in 0..g.h {
                let row = padded.as_ptr().add(y * g.wp);
                for x in 0..g.w {
                    let (d0, d1) = (_mm256_loadu_ps(dp), _mm256_loadu_ps(dp.add(8)));
                    for (acc, off) in acc.iter_mut().zip(offs) {
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
        // The layers of issue 11: no row computed in vain.
        for m in [16, 32, 64, 128] {
            assert_eq!(panels(m).iter().map(|p| p.1).sum::<usize>(), m, "m {m}");
        }
    }
}
