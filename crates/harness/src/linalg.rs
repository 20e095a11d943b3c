//! Matrix products on plain f32 slices for the CPU fast paths: the two matrix-vector
//! products that dominate a recurrent step, and a thin wrapper over the `gemm` crate (the
//! kernel library candle's own CPU matmul uses) for everything batched over time.
//!
//! Layout: row-major throughout. `w` is `[rows, cols]`, `w[r * cols + c]`.

use rayon::prelude::*;

/// Rows per parallel task: large enough to amortise scheduling, small enough to balance two
/// or more threads over the 16900 rows of the seed's `W_hh`.
const ROW_BLOCK: usize = 512;

/// `y = W x`: `w` `[rows, cols]`, `x` `[cols]`, `y` `[rows]` (overwritten).
///
/// Memory-bound: one pass over `W`, split by rows across rayon's threads.
pub fn gemv(w: &[f32], rows: usize, cols: usize, x: &[f32], y: &mut [f32]) {
    assert_eq!(w.len(), rows * cols, "gemv: W is not [rows, cols]");
    assert_eq!(
        (x.len(), y.len()),
        (cols, rows),
        "gemv: x or y has the wrong length"
    );
    y.par_chunks_mut(ROW_BLOCK)
        .enumerate()
        .for_each(|(block, y_block)| {
            let first = block * ROW_BLOCK;
            for (i, yi) in y_block.iter_mut().enumerate() {
                let row = &w[(first + i) * cols..(first + i + 1) * cols];
                *yi = dot(row, x);
            }
        });
}

/// `y = W^T x`: `w` `[rows, cols]`, `x` `[rows]`, `y` `[cols]` (overwritten).
///
/// Each thread accumulates `x[r] * W[r, :]` over its own rows into a private `[cols]`
/// buffer (one streaming pass over `W` in storage order); the buffers are summed at the end.
pub fn gemv_t(w: &[f32], rows: usize, cols: usize, x: &[f32], y: &mut [f32]) {
    assert_eq!(w.len(), rows * cols, "gemv_t: W is not [rows, cols]");
    assert_eq!(
        (x.len(), y.len()),
        (rows, cols),
        "gemv_t: x or y has the wrong length"
    );
    let threads = rayon::current_num_threads().max(1);
    let rows_per_task = rows.div_ceil(threads).max(1);
    let partials: Vec<Vec<f32>> = (0..rows.div_ceil(rows_per_task))
        .into_par_iter()
        .map(|task| {
            let mut acc = vec![0f32; cols];
            let end = ((task + 1) * rows_per_task).min(rows);
            for r in task * rows_per_task..end {
                axpy(x[r], &w[r * cols..(r + 1) * cols], &mut acc);
            }
            acc
        })
        .collect();
    y.fill(0.0);
    for part in &partials {
        for (yi, pi) in y.iter_mut().zip(part) {
            *yi += pi;
        }
    }
}

/// `dst = a * b` for row-major `a` `[m, k]` and `b` `[k, n]`, either given transposed:
/// with `a_t`, `a` holds `A^T` as `[k, m]`; with `b_t`, `b` holds `B^T` as `[n, k]`.
/// `accumulate` adds to `dst` instead of overwriting it.
#[allow(clippy::too_many_arguments)]
pub fn matmul(
    dst: &mut [f32],
    a: &[f32],
    a_t: bool,
    b: &[f32],
    b_t: bool,
    (m, k, n): (usize, usize, usize),
    accumulate: bool,
) {
    assert_eq!(dst.len(), m * n, "matmul: dst is not [m, n]");
    assert_eq!(a.len(), m * k, "matmul: a is not [m, k]");
    assert_eq!(b.len(), k * n, "matmul: b is not [k, n]");
    if m == 0 || n == 0 {
        return;
    }
    // Strides (column, row) of each operand as the gemm crate takes them.
    let (a_cs, a_rs) = if a_t {
        (m as isize, 1)
    } else {
        (1, k as isize)
    };
    let (b_cs, b_rs) = if b_t {
        (k as isize, 1)
    } else {
        (1, n as isize)
    };
    let threads = rayon::current_num_threads();
    let parallelism = if threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the asserts above make every index gemm forms with these strides and sizes
    // fall inside `dst`, `a` and `b`; `dst` is borrowed mutably, so it aliases neither.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.as_ptr(),
            a_cs,
            a_rs,
            b.as_ptr(),
            b_cs,
            b_rs,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// Dot product with 16 independent partial sums, so the compiler can keep them in SIMD
/// registers without reassociating a single running sum (which it may not do for floats).
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has AVX2 and FMA, checked just above.
        return unsafe { dot_avx2(a, b) };
    }
    dot_unrolled(a, b)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    dot_unrolled(a, b)
}

/// The body of [`dot`], always inlined so that a caller compiled with wider vectors (a
/// `#[target_feature]` function) gets them here too.
#[inline(always)]
pub fn dot_unrolled(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let mut acc = [0f32; 16];
    let (a_main, a_tail) = a.split_at(a.len() / 16 * 16);
    let (b_main, b_tail) = b.split_at(a_main.len());
    for (ca, cb) in a_main.chunks_exact(16).zip(b_main.chunks_exact(16)) {
        for j in 0..16 {
            acc[j] += ca[j] * cb[j];
        }
    }
    let mut sum = acc.iter().sum::<f32>();
    for (x, y) in a_tail.iter().zip(b_tail) {
        sum += x * y;
    }
    sum
}

/// `y += alpha * x`.
#[inline]
pub fn axpy(alpha: f32, x: &[f32], y: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, checked just above.
        return unsafe { axpy_avx2(alpha, x, y) };
    }
    axpy_portable(alpha, x, y)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn axpy_avx2(alpha: f32, x: &[f32], y: &mut [f32]) {
    axpy_portable(alpha, x, y)
}

#[inline(always)]
fn axpy_portable(alpha: f32, x: &[f32], y: &mut [f32]) {
    debug_assert_eq!(x.len(), y.len());
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += alpha * xi;
    }
}
