//! Convolutions lowered to matrix products, for layers of many channels: the input of a
//! chunk of samples is unrolled into columns (`im2col`), so that the convolution, its
//! transpose and its kernel gradient are each one large product by `gemm` (the kernel
//! library candle's CPU matmul uses), near the machine's peak, instead of direct loops that
//! cannot keep the vector units busy over 16-pixel rows.
//!
//! Layout (row-major): samples `[n, C, H, W]` as everywhere in the model; a chunk of `g`
//! samples is unrolled into `col` `[C_in*K*K, g*S]` (`S = H*W`; row `(c, ky, kx)`, column
//! `(i, y, x)` holds input `c` of sample `i` at `(y + ky - P, x + kx - P)`, zero outside);
//! a product's output `[C_out, g*S]` is then scattered to `[g, C_out, S]`.
//!
//! Samples are taken [`CHUNK`] at a time, a number fixed by this rule alone: every sum
//! (over a kernel's taps, over samples for a weight gradient) runs in the same order
//! whatever the number of threads, and the unrolled columns stay a few MB.
//!
//! Where the CPU has AVX2 and FMA, [`forward`], [`backward_data`] and [`kernel_grad`] hand
//! over to [`crate::implicit`], the same products without the unrolled copies; the unrolled
//! path serves every other CPU.

use lstm_core::linalg::matmul;

use crate::cpu::Geometry;

/// Runs `f` with two scratch buffers of `lens` values (contents unspecified: every user
/// overwrites what it reads): the unrolled columns and a product's output.
fn with_scratch<R>(lens: [usize; 2], f: impl FnOnce(&mut [f32], &mut [f32]) -> R) -> R {
    lstm_core::scratch::with(lens, false, |[a, b]| f(a, b))
}

/// Samples per lowered product. Two keep the unrolled columns of a 32-channel 16x16 layer
/// (1.6 MB) in cache, which sixteen did not (the measurements are in the git history of
/// BENCHMARKS.md).
pub(crate) const CHUNK: usize = 2;

/// Whether a convolution is better lowered to a matrix product than run directly: the
/// direct kernels win on the seed's one-channel convolutions, the products as soon as the
/// channels multiply up.
pub(crate) fn lowers(g: &Geometry) -> bool {
    g.c_in * g.c_out >= 64
}

/// `out` `[n, C_out, S]`: `bias + conv(x)` (`bias` given) or `out + conv(x)` (`None`), for
/// `x` `[n, C_in, S]`.
pub fn forward(x: &[f32], kernel: &[f32], bias: Option<&[f32]>, out: &mut [f32], g: &Geometry) {
    #[cfg(target_arch = "x86_64")]
    if crate::implicit::available() {
        return crate::implicit::forward(x, kernel, bias, out, g);
    }
    forward_unrolled(x, kernel, bias, out, g)
}

/// [`forward`] through unrolled columns and `gemm`: CPUs without AVX2 and FMA.
fn forward_unrolled(
    x: &[f32],
    kernel: &[f32],
    bias: Option<&[f32]>,
    out: &mut [f32],
    g: &Geometry,
) {
    let (s, taps) = (g.h * g.w, g.c_in * g.k * g.k);
    let (x_len, out_len) = (g.c_in * s, g.c_out * s);
    for (x, out) in x.chunks(CHUNK * x_len).zip(out.chunks_mut(CHUNK * out_len)) {
        let n = x.len() / x_len;
        with_scratch([taps * n * s, g.c_out * n * s], |col, product| {
            forward_chunk(x, n, kernel, bias, out, g, col, product)
        });
    }
}

#[allow(clippy::too_many_arguments)]
fn forward_chunk(
    x: &[f32],
    n: usize,
    kernel: &[f32],
    bias: Option<&[f32]>,
    out: &mut [f32],
    g: &Geometry,
    col: &mut [f32],
    product: &mut [f32],
) {
    let (s, taps) = (g.h * g.w, g.c_in * g.k * g.k);
    let out_len = g.c_out * s;
    {
        im2col(x, n, g, col);
        matmul(
            product,
            kernel,
            false,
            col,
            false,
            (g.c_out, taps, n * s),
            false,
        );
        for (i, out) in out.chunks_exact_mut(out_len).enumerate() {
            for (o, plane) in out.chunks_exact_mut(s).enumerate() {
                let row = &product[(o * n + i) * s..][..s];
                match bias {
                    Some(b) => {
                        for (v, p) in plane.iter_mut().zip(row) {
                            *v = b[o] + p;
                        }
                    }
                    None => {
                        for (v, p) in plane.iter_mut().zip(row) {
                            *v += p;
                        }
                    }
                }
            }
        }
    }
}

/// `dx` `[n, C_in, S]` += the gradient reaching the input from `d` `[n, C_out, S]`:
/// `dcol = W^T D`, then each column added back where `im2col` took it from.
pub fn backward_data(d: &[f32], kernel: &[f32], dx: &mut [f32], g: &Geometry) {
    #[cfg(target_arch = "x86_64")]
    if crate::implicit::available() {
        return crate::implicit::backward_data(d, kernel, dx, g);
    }
    backward_data_unrolled(d, kernel, dx, g)
}

/// [`backward_data`] through `gemm` and `col2im`: CPUs without AVX2 and FMA.
fn backward_data_unrolled(d: &[f32], kernel: &[f32], dx: &mut [f32], g: &Geometry) {
    let (s, taps) = (g.h * g.w, g.c_in * g.k * g.k);
    let (x_len, d_len) = (g.c_in * s, g.c_out * s);
    for (d, dx) in d.chunks(CHUNK * d_len).zip(dx.chunks_mut(CHUNK * x_len)) {
        let n = d.len() / d_len;
        with_scratch([taps * n * s, g.c_out * n * s], |dcol, d_cols| {
            gather(d, n, g.c_out, s, d_cols);
            // W is [C_out, taps]: the product's A^T.
            matmul(
                dcol,
                kernel,
                true,
                d_cols,
                false,
                (taps, g.c_out, n * s),
                false,
            );
            col2im_add(dcol, n, g, dx);
        });
    }
}

/// `dk` `[C_out, C_in, K, K]` += `sum_i D_i col_i^T` over the samples of `x` `[n, C_in, S]`
/// and `d` `[n, C_out, S]`, chunk after chunk.
pub fn kernel_grad(x: &[f32], d: &[f32], dk: &mut [f32], g: &Geometry) {
    #[cfg(target_arch = "x86_64")]
    if crate::implicit::available() {
        return crate::implicit::kernel_grad(x, d, dk, g);
    }
    kernel_grad_unrolled(x, d, dk, g)
}

/// [`kernel_grad`] through `im2col` and `gemm`: CPUs without AVX2 and FMA.
fn kernel_grad_unrolled(x: &[f32], d: &[f32], dk: &mut [f32], g: &Geometry) {
    let (s, taps) = (g.h * g.w, g.c_in * g.k * g.k);
    let (x_len, d_len) = (g.c_in * s, g.c_out * s);
    for (x, d) in x.chunks(CHUNK * x_len).zip(d.chunks(CHUNK * d_len)) {
        let n = x.len() / x_len;
        with_scratch([taps * n * s, g.c_out * n * s], |col, d_cols| {
            im2col(x, n, g, col);
            gather(d, n, g.c_out, s, d_cols);
            // col is [taps, n*S]: the product's B^T.
            matmul(dk, d_cols, false, col, true, (g.c_out, n * s, taps), true);
        });
    }
}

/// `col` `[C_in*K*K, n*S]` from `n` samples `[n, C_in, H, W]`. Every entry is written,
/// zeros where the kernel reaches past the frame.
fn im2col(x: &[f32], n: usize, g: &Geometry, col: &mut [f32]) {
    let s = g.h * g.w;
    let (k, p) = (g.k as isize, g.p as isize);
    debug_assert_eq!(col.len(), g.c_in * g.k * g.k * n * s);
    for c in 0..g.c_in {
        for ky in 0..k {
            for kx in 0..k {
                let row = ((c * g.k + ky as usize) * g.k + kx as usize) * n * s;
                let (x0, x1) = g.inside(kx as usize, g.w);
                let shift = kx - p;
                for i in 0..n {
                    let plane = &x[(i * g.c_in + c) * s..][..s];
                    for y in 0..g.h {
                        let dst = &mut col[row + i * s + y * g.w..][..g.w];
                        let yy = y as isize + ky - p;
                        if yy < 0 || yy >= g.h as isize {
                            dst.fill(0.0);
                            continue;
                        }
                        let src = &plane[yy as usize * g.w..][..g.w];
                        dst[..x0].fill(0.0);
                        dst[x0..x1].copy_from_slice(
                            &src[(x0 as isize + shift) as usize..(x1 as isize + shift) as usize],
                        );
                        dst[x1..].fill(0.0);
                    }
                }
            }
        }
    }
}

/// The adjoint of [`im2col`]: `dx` `[n, C_in, H, W]` += each column entry at the input it
/// was taken from.
fn col2im_add(dcol: &[f32], n: usize, g: &Geometry, dx: &mut [f32]) {
    let s = g.h * g.w;
    let (k, p) = (g.k as isize, g.p as isize);
    for c in 0..g.c_in {
        for ky in 0..k {
            for kx in 0..k {
                let row = ((c * g.k + ky as usize) * g.k + kx as usize) * n * s;
                let (x0, x1) = g.inside(kx as usize, g.w);
                for i in 0..n {
                    let plane = &mut dx[(i * g.c_in + c) * s..][..s];
                    for y in 0..g.h {
                        let yy = y as isize + ky - p;
                        if yy < 0 || yy >= g.h as isize || x0 >= x1 {
                            continue;
                        }
                        let src = &dcol[row + i * s + y * g.w..][..g.w];
                        let shift = kx - p;
                        let dst = &mut plane[yy as usize * g.w..][..g.w];
                        let dst = &mut dst
                            [(x0 as isize + shift) as usize..(x1 as isize + shift) as usize];
                        for (a, b) in dst.iter_mut().zip(&src[x0..x1]) {
                            *a += b;
                        }
                    }
                }
            }
        }
    }
}

/// `[n, C, S] -> [C, n*S]`.
fn gather(d: &[f32], n: usize, c: usize, s: usize, out: &mut [f32]) {
    for i in 0..n {
        for o in 0..c {
            out[(o * n + i) * s..][..s].copy_from_slice(&d[(i * c + o) * s..][..s]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::{conv_transpose, kernel_grads_naive, padded};
    use rand::{Rng, SeedableRng};

    fn random(n: usize, rng: &mut impl Rng) -> Vec<f32> {
        (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
    }

    fn close(a: &[f32], b: &[f32], what: &str) {
        let scale = b.iter().fold(1f32, |m, v| m.max(v.abs()));
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!((x - y).abs() <= 1e-5 * scale, "{what}: {i}: {x} vs {y}");
        }
    }

    /// The three products of one path: forward (with a bias, or accumulating), data
    /// gradient (accumulating), kernel gradient (accumulating).
    type Forward = fn(&[f32], &[f32], Option<&[f32]>, &mut [f32], &Geometry);

    struct Path {
        forward: Forward,
        backward_data: fn(&[f32], &[f32], &mut [f32], &Geometry),
        kernel_grad: fn(&[f32], &[f32], &mut [f32], &Geometry),
    }

    /// `path` against the direct kernels of [`crate::cpu`] on shapes with a partial chunk,
    /// odd planes, widths below, at and above 16 (a tile), output channels 1 to 5 past a
    /// multiple of 6 (a panel), partial groups of taps, and kernels 1, 3, 5.
    fn equals_the_direct_convolutions(path: Path, seed: u64) {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        for (c_in, c_out, h, w, k, n) in [
            (3, 8, 5, 7, 3, 19),
            (16, 8, 4, 4, 5, 2),
            (2, 4, 6, 3, 1, 17),
            (4, 12, 3, 9, 5, 33),
            (5, 13, 2, 17, 3, 1),
            (7, 11, 16, 16, 5, 4),
            (1, 22, 6, 33, 5, 2),
        ] {
            let g = Geometry::new(c_in, c_out, h, w, k);
            let s = h * w;
            let x = random(n * c_in * s, &mut rng);
            let kernel = random(c_out * c_in * k * k, &mut rng);
            let bias = random(c_out, &mut rng);
            let mut out = vec![f32::NAN; n * c_out * s];
            (path.forward)(&x, &kernel, Some(&bias), &mut out, &g);
            let mut direct = vec![0f32; n * c_out * s];
            crate::cpu::input_conv(&x, &kernel, &bias, &mut direct, &g);
            close(&out, &direct, "forward");
            // Accumulating: b + conv + conv.
            (path.forward)(&x, &kernel, None, &mut out, &g);
            let twice: Vec<f32> = direct
                .iter()
                .enumerate()
                .map(|(j, v)| 2.0 * v - bias[j / s % c_out])
                .collect();
            close(&out, &twice, "accumulating forward");
            // Data gradient against the direct transpose.
            let d = random(n * c_out * s, &mut rng);
            let start = random(n * c_in * s, &mut rng);
            let mut dx = start.clone();
            (path.backward_data)(&d, &kernel, &mut dx, &g);
            let mut want = start.clone();
            for (d, out) in d
                .chunks_exact(c_out * s)
                .zip(want.chunks_exact_mut(c_in * s))
            {
                conv_transpose::<false>(&padded(d, c_out, &g), &kernel, out, &g);
            }
            close(&dx, &want, "data gradient");
            // Kernel gradient against the naive sum.
            let start = random(c_out * c_in * k * k, &mut rng);
            let mut dk = start.clone();
            (path.kernel_grad)(&x, &d, &mut dk, &g);
            let mut naive = start;
            kernel_grads_naive(&padded(&x, c_in, &g), &d, &mut naive, &g);
            close(&dk, &naive, "kernel gradient");
        }
    }

    #[test]
    fn unrolled_products_equal_the_direct_convolutions() {
        equals_the_direct_convolutions(
            Path {
                forward: forward_unrolled,
                backward_data: backward_data_unrolled,
                kernel_grad: kernel_grad_unrolled,
            },
            3,
        );
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn implicit_products_equal_the_direct_convolutions() {
        use crate::implicit;
        assert!(
            implicit::available() || std::env::var_os("CI_NO_AVX2").is_some(),
            "this CPU has no AVX2 and FMA: the implicit products are untested here"
        );
        if implicit::available() {
            equals_the_direct_convolutions(
                Path {
                    forward: implicit::forward,
                    backward_data: implicit::backward_data,
                    kernel_grad: implicit::kernel_grad,
                },
                5,
            );
        }
    }
}
