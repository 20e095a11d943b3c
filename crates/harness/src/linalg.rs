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
/// Memory-bound: one pass over `W`, split by rows across rayon's threads. Each thread reads
/// four rows at a time: four streams from memory keep more loads in flight than one, and
/// on the development machine a pass over the seed's 285 MB `W_hh` went from 13.9 to 10.8 ms
/// (two threads, a C loop written both ways; `bench-cli bench` shows the same gain).
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
            let w_block = &w[first * cols..(first + y_block.len()) * cols];
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: the CPU has AVX2, checked just above.
                return unsafe { gemv_rows_avx2(w_block, cols, x, y_block) };
            }
            gemv_rows(w_block, cols, x, y_block, dot4)
        });
}

/// [`gemv_rows`] with [`dot4_avx2`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn gemv_rows_avx2(w: &[f32], cols: usize, x: &[f32], y: &mut [f32]) {
    // SAFETY: this function runs only where the CPU has AVX2.
    gemv_rows(w, cols, x, y, |rows, x| unsafe { dot4_avx2(rows, x) })
}

/// `y = W x` for the rows `w` holds, four at a time through `dot4` (four [`dot_unrolled`]s in
/// one pass), the rows left over one at a time.
#[inline(always)]
fn gemv_rows(
    w: &[f32],
    cols: usize,
    x: &[f32],
    y: &mut [f32],
    dot4: impl Fn([&[f32]; 4], &[f32]) -> [f32; 4],
) {
    let mut y_groups = y.chunks_exact_mut(4);
    for (group, y4) in (&mut y_groups).enumerate() {
        let rows: [&[f32]; 4] =
            std::array::from_fn(|i| &w[(4 * group + i) * cols..(4 * group + i + 1) * cols]);
        y4.copy_from_slice(&dot4(rows, x));
    }
    let done = y.len() / 4 * 4;
    for (i, yi) in y[done..].iter_mut().enumerate() {
        *yi = dot_unrolled(&w[(done + i) * cols..(done + i + 1) * cols], x);
    }
}

/// Four [`dot_unrolled`]s against the same `x`, in one pass: each row's sum is formed exactly
/// as `dot_unrolled` forms it (16 partial sums, then the tail), so grouping changes no bit.
#[inline(always)]
fn dot4(rows: [&[f32]; 4], x: &[f32]) -> [f32; 4] {
    let main = x.len() / 16 * 16;
    let mut acc = [[0f32; 16]; 4];
    for c in (0..main).step_by(16) {
        let xs: &[f32; 16] = x[c..c + 16].try_into().unwrap();
        for (acc, row) in acc.iter_mut().zip(&rows) {
            let r: &[f32; 16] = row[c..c + 16].try_into().unwrap();
            for j in 0..16 {
                acc[j] += r[j] * xs[j];
            }
        }
    }
    std::array::from_fn(|i| finish_dot(&acc[i], rows[i], x, main))
}

/// The end of a [`dot_unrolled`]-ordered sum: the 16 partial sums in order, then the tail
/// from `main` on.
#[inline(always)]
fn finish_dot(partial: &[f32; 16], row: &[f32], x: &[f32], main: usize) -> f32 {
    let mut sum = partial.iter().sum::<f32>();
    for (a, b) in row[main..].iter().zip(&x[main..]) {
        sum += a * b;
    }
    sum
}

/// [`dot4`] in AVX2 intrinsics, the same operations in the same order: left to the compiler,
/// the four rows' accumulators did not stay in registers and the pass ran slower than one row
/// at a time.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn dot4_avx2(rows: [&[f32]; 4], x: &[f32]) -> [f32; 4] {
    use std::arch::x86_64::*;
    let main = x.len() / 16 * 16;
    let mut acc = [_mm256_setzero_ps(); 8];
    for c in (0..main).step_by(16) {
        let xs: &[f32; 16] = x[c..c + 16].try_into().unwrap();
        let (x0, x1) = (
            _mm256_loadu_ps(xs.as_ptr()),
            _mm256_loadu_ps(xs[8..].as_ptr()),
        );
        for (i, row) in rows.iter().enumerate() {
            let r: &[f32; 16] = row[c..c + 16].try_into().unwrap();
            let (r0, r1) = (
                _mm256_loadu_ps(r.as_ptr()),
                _mm256_loadu_ps(r[8..].as_ptr()),
            );
            acc[2 * i] = _mm256_add_ps(acc[2 * i], _mm256_mul_ps(r0, x0));
            acc[2 * i + 1] = _mm256_add_ps(acc[2 * i + 1], _mm256_mul_ps(r1, x1));
        }
    }
    std::array::from_fn(|i| {
        let mut partial = [0f32; 16];
        _mm256_storeu_ps(partial.as_mut_ptr(), acc[2 * i]);
        _mm256_storeu_ps(partial[8..].as_mut_ptr(), acc[2 * i + 1]);
        finish_dot(&partial, rows[i], x, main)
    })
}

/// `y = W^T x`: `w` `[rows, cols]`, `x` `[rows]`, `y` `[cols]` (overwritten).
///
/// Each thread accumulates `x[r] * W[r, :]` over its own rows into a private `[cols]`
/// buffer (one streaming pass over `W` in storage order, four rows at a time, as in
/// [`gemv`]); the buffers are summed at the end.
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
            let (start, end) = (task * rows_per_task, ((task + 1) * rows_per_task).min(rows));
            let (w, x) = (&w[start * cols..end * cols], &x[start..end]);
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: the CPU has AVX2, checked just above.
                unsafe { axpy_rows_avx2(w, cols, x, &mut acc) };
                return acc;
            }
            axpy_rows(w, cols, x, &mut acc);
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

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn axpy_rows_avx2(w: &[f32], cols: usize, x: &[f32], acc: &mut [f32]) {
    axpy_rows(w, cols, x, acc)
}

/// `acc += sum_r x[r] W[r, :]` over the rows `w` holds, four rows a pass. The four terms
/// are added one after another, as four [`axpy`] calls would add them.
#[inline(always)]
fn axpy_rows(w: &[f32], cols: usize, x: &[f32], acc: &mut [f32]) {
    let acc = &mut acc[..cols];
    let groups = x.len() / 4;
    for g in 0..groups {
        let block = &w[4 * g * cols..(4 * g + 4) * cols];
        let (r0, rest) = block.split_at(cols);
        let (r1, rest) = rest.split_at(cols);
        let (r2, r3) = rest.split_at(cols);
        let a: [f32; 4] = std::array::from_fn(|i| x[4 * g + i]);
        for ((((out, w0), w1), w2), w3) in acc.iter_mut().zip(r0).zip(r1).zip(r2).zip(r3) {
            *out = (((*out + a[0] * w0) + a[1] * w1) + a[2] * w2) + a[3] * w3;
        }
    }
    for row in 4 * groups..x.len() {
        axpy_portable(x[row], &w[row * cols..(row + 1) * cols], acc);
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

/// `acc + a * b`, as one fused multiply-add (one instruction, one rounding) for kernels
/// compiled with FMA (`FMA = true` only under `#[target_feature(enable = "fma")]`); without
/// it, `f32::mul_add` would call a slow software routine, so the product and sum stay apart.
#[inline(always)]
pub fn madd<const FMA: bool>(acc: f32, a: f32, b: f32) -> f32 {
    if FMA {
        a.mul_add(b, acc)
    } else {
        acc + a * b
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Values with no pattern a wrong index could hide behind.
    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n as u32)
            .map(|i| ((i.wrapping_mul(2654435761) ^ seed) % 2001) as f32 / 1000.0 - 1.0)
            .collect()
    }

    #[test]
    fn matrix_vector_products_equal_the_definition() {
        // Rows: inside one block, across blocks of 512 with a tail not a multiple of 4;
        // columns: below, at and past the 16-wide chunks.
        for (rows, cols) in [(3, 5), (8, 16), (1030, 37), (517, 100)] {
            let w = values(rows * cols, 1);
            let (x, x_t) = (values(cols, 2), values(rows, 3));
            let mut y = vec![f32::NAN; rows];
            gemv(&w, rows, cols, &x, &mut y);
            // The portable path (CPUs without AVX2) gives the same bits.
            let mut y_portable = vec![f32::NAN; rows];
            gemv_rows(&w, cols, &x, &mut y_portable, dot4);
            assert_eq!(y, y_portable, "{rows}x{cols}: portable gemv");
            let mut y_t = vec![f32::NAN; cols];
            gemv_t(&w, rows, cols, &x_t, &mut y_t);
            // One task's rows, as one thread sums them: the same order, the same bits.
            let mut y_t_portable = vec![0f32; cols];
            axpy_rows(&w, cols, &x_t, &mut y_t_portable);
            if rayon::current_num_threads() == 1 {
                assert_eq!(y_t, y_t_portable, "{rows}x{cols}: portable gemv_t");
            }
            for r in 0..rows {
                let want: f64 = (0..cols)
                    .map(|c| f64::from(w[r * cols + c]) * f64::from(x[c]))
                    .sum();
                assert!(
                    (f64::from(y[r]) - want).abs() <= 1e-5 * (1.0 + want.abs()),
                    "{rows}x{cols}: y[{r}] {} vs {want}",
                    y[r]
                );
                // Grouping rows by four changes nothing: each row's sum is dot's.
                assert_eq!(
                    y[r],
                    dot_unrolled(&w[r * cols..(r + 1) * cols], &x),
                    "{rows}x{cols}: row {r}"
                );
            }
            for c in 0..cols {
                let want: f64 = (0..rows)
                    .map(|r| f64::from(w[r * cols + c]) * f64::from(x_t[r]))
                    .sum();
                assert!(
                    (f64::from(y_t[c]) - want).abs() <= 1e-4 * (1.0 + want.abs()),
                    "{rows}x{cols}: y_t[{c}] {} vs {want}",
                    y_t[c]
                );
                let portable = f64::from(y_t_portable[c]);
                assert!(
                    (portable - want).abs() <= 1e-4 * (1.0 + want.abs()),
                    "{rows}x{cols}: portable y_t[{c}] {portable} vs {want}"
                );
            }
        }
    }
}
