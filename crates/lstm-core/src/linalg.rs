//! Matrix products on plain f32 slices for the CPU fast paths: the two matrix-vector
//! products that dominate a recurrent step, and a thin wrapper over the `gemm` crate (the
//! kernel library candle's own CPU matmul uses) for everything batched over time.
//!
//! Layout: row-major throughout. `w` is `[rows, cols]`, `w[r * cols + c]`.

use std::cell::Cell;

use rayon::prelude::*;

thread_local! {
    /// Set on threads that already run one share of a parallel job ([`serial`]): their
    /// matrix products stay on the thread instead of splitting again.
    static SERIAL: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` with this thread's matrix products ([`matmul`]) single-threaded: for work that
/// is already split across threads at a coarser grain (a batch's shards). The results are
/// the same bits either way: `gemm` splits a product's outputs, never its sums.
pub fn serial<R>(f: impl FnOnce() -> R) -> R {
    let before = SERIAL.with(|s| s.replace(true));
    let out = f();
    SERIAL.with(|s| s.set(before));
    out
}

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
            if crate::simd::available("avx2") {
                // SAFETY: the CPU has AVX2, checked just above.
                return unsafe { gemv_rows_avx2(w_block, cols, x, y_block) };
            }
            gemv_rows(w_block, cols, x, y_block, dot4)
        });
}

/// [`gemv_rows`] with [`dot4_avx2`].
///
/// # Safety
/// The CPU must have AVX2.
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
///
/// # Safety
/// The CPU must have AVX2.
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

/// Rows summed into one partial sum, at most: [`gemv_t`] splits its reduction into chunks by
/// this rule alone, so its result never depends on the number of threads. (The seed's
/// `W_hh`, 16900 rows, makes two chunks of 8450.)
const MAX_ROWS_PER_CHUNK: usize = 10_000;

/// Columns per task at least, when [`gemv_t`] splits columns to use more threads.
const MIN_COLS_PER_TASK: usize = 256;

/// `y += W^T x`: `w` `[rows, cols]`, `x` `[rows]`, `y` `[cols]`.
///
/// The rows are cut into chunks of at most [`MAX_ROWS_PER_CHUNK`], as even as possible;
/// each chunk's `x[r] * W[r, :]` are summed into a partial `[cols]` (one streaming pass over
/// `W` in storage order, four rows at a time, as in [`gemv`]), and the partials are added
/// to `y` in chunk order. Tasks take a chunk, or a block of its columns when there are more
/// threads than chunks; neither choice changes a bit of the result.
pub fn gemv_t(w: &[f32], rows: usize, cols: usize, x: &[f32], y: &mut [f32]) {
    assert_eq!(w.len(), rows * cols, "gemv_t: W is not [rows, cols]");
    assert_eq!(
        (x.len(), y.len()),
        (rows, cols),
        "gemv_t: x or y has the wrong length"
    );
    if rows == 0 || cols == 0 {
        return;
    }
    let chunks = rows.div_ceil(MAX_ROWS_PER_CHUNK);
    let rows_per_chunk = rows.div_ceil(chunks);
    let threads = rayon::current_num_threads().max(1);
    let col_blocks = (threads / chunks)
        .max(1)
        .min(cols.div_ceil(MIN_COLS_PER_TASK));
    let cols_per_block = cols.div_ceil(col_blocks);
    let mut partials = vec![0f32; chunks * cols];
    // Task (chunk, block) writes columns `block` of partial `chunk`.
    let mut pieces: Vec<(usize, usize, &mut [f32])> = Vec::new();
    for (chunk, partial) in partials.chunks_mut(cols).enumerate() {
        for (block, piece) in partial.chunks_mut(cols_per_block).enumerate() {
            pieces.push((chunk, block * cols_per_block, piece));
        }
    }
    pieces.into_par_iter().for_each(|(chunk, col0, acc)| {
        let (start, end) = (
            chunk * rows_per_chunk,
            ((chunk + 1) * rows_per_chunk).min(rows),
        );
        let (w, x) = (&w[start * cols..end * cols], &x[start..end]);
        #[cfg(target_arch = "x86_64")]
        if crate::simd::available("avx2") {
            // SAFETY: the CPU has AVX2, checked just above.
            return unsafe { axpy_rows_avx2(w, cols, col0, x, acc) };
        }
        axpy_rows(w, cols, col0, x, acc)
    });
    for part in partials.chunks_exact(cols) {
        for (yi, pi) in y.iter_mut().zip(part) {
            *yi += pi;
        }
    }
}

/// [`axpy_rows`] compiled with AVX2.
///
/// # Safety
/// The CPU must have AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn axpy_rows_avx2(w: &[f32], cols: usize, col0: usize, x: &[f32], acc: &mut [f32]) {
    axpy_rows(w, cols, col0, x, acc)
}

/// `acc += sum_r x[r] W[r, col0 .. col0 + acc.len()]` over the rows `w` holds, four rows a
/// pass. The four terms are added one after another, as four single-row passes would add
/// them.
#[inline(always)]
fn axpy_rows(w: &[f32], cols: usize, col0: usize, x: &[f32], acc: &mut [f32]) {
    let width = acc.len();
    let row = |r: usize| &w[r * cols + col0..r * cols + col0 + width];
    let groups = x.len() / 4;
    for g in 0..groups {
        let (r0, r1, r2, r3) = (row(4 * g), row(4 * g + 1), row(4 * g + 2), row(4 * g + 3));
        let a: [f32; 4] = std::array::from_fn(|i| x[4 * g + i]);
        for ((((out, w0), w1), w2), w3) in acc.iter_mut().zip(r0).zip(r1).zip(r2).zip(r3) {
            *out = (((*out + a[0] * w0) + a[1] * w1) + a[2] * w2) + a[3] * w3;
        }
    }
    for (r, &xr) in x.iter().enumerate().skip(4 * groups) {
        for (out, wv) in acc.iter_mut().zip(row(r)) {
            *out += xr * wv;
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
    let parallelism = if threads > 1 && !SERIAL.with(Cell::get) {
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
/// Always inlined, so that a caller compiled with wider vectors (a `#[target_feature]`
/// function) gets them here too.
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Values with no pattern a wrong index could hide behind.
    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n as u32)
            .map(|i| ((i.wrapping_mul(2654435761) ^ seed) % 2001) as f32 / 1000.0 - 1.0)
            .collect()
    }

    /// `y_t += W^T x` as the chunk rule defines it, one row at a time: chunks of at most
    /// `MAX_ROWS_PER_CHUNK` rows, each summed in row order, added to `y_t` in chunk order.
    fn gemv_t_by_chunks(w: &[f32], rows: usize, cols: usize, x: &[f32], y: &mut [f32]) {
        let chunks = rows.div_ceil(MAX_ROWS_PER_CHUNK);
        let per = rows.div_ceil(chunks);
        for chunk in 0..chunks {
            let mut partial = vec![0f32; cols];
            let end = ((chunk + 1) * per).min(rows);
            axpy_rows(
                &w[chunk * per * cols..end * cols],
                cols,
                0,
                &x[chunk * per..end],
                &mut partial,
            );
            for (yi, p) in y.iter_mut().zip(&partial) {
                *yi += p;
            }
        }
    }

    /// Rows: inside one block, across blocks of 512 with a tail not a multiple of 4, and
    /// past one chunk of the transposed product; columns: below, at and past the 16-wide
    /// chunks, and wide enough to split across threads.
    const SHAPES: [(usize, usize); 6] = [
        (3, 5),
        (8, 16),
        (1030, 37),
        (517, 100),
        (20_003, 9),
        (9, 1500),
    ];

    #[test]
    fn matrix_vector_products_equal_the_definition() {
        for (rows, cols) in SHAPES {
            let w = values(rows * cols, 1);
            let x = values(cols, 2);
            let mut y = vec![f32::NAN; rows];
            gemv(&w, rows, cols, &x, &mut y);
            // The portable path (CPUs without AVX2) gives the same bits.
            let mut y_portable = vec![f32::NAN; rows];
            gemv_rows(&w, cols, &x, &mut y_portable, dot4);
            assert_eq!(y, y_portable, "{rows}x{cols}: portable gemv");
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
        }
    }

    #[test]
    fn transposed_products_equal_the_definition_whatever_the_threads() {
        for (rows, cols) in SHAPES {
            let w = values(rows * cols, 1);
            let x_t = values(rows, 3);
            // The transposed product adds to what y holds; its bits are the chunk rule's,
            // whatever the number of threads.
            let start = values(cols, 4);
            let mut by_chunks = start.clone();
            gemv_t_by_chunks(&w, rows, cols, &x_t, &mut by_chunks);
            let mut y_t = start.clone();
            for threads in [1, 2, 3, 8] {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                y_t = start.clone();
                pool.install(|| gemv_t(&w, rows, cols, &x_t, &mut y_t));
                assert_eq!(
                    y_t, by_chunks,
                    "{rows}x{cols}: gemv_t with {threads} threads"
                );
            }
            let per = rows.div_ceil(rows.div_ceil(MAX_ROWS_PER_CHUNK));
            let checks = (0..cols).map(|c| {
                // The sum in the chunk rule's order, in f64, and the squares of the results of
                // every f32 product and addition on the way.
                let (mut want, mut squares) = (f64::from(start[c]), 0f64);
                for chunk in (0..rows).step_by(per) {
                    let mut partial = 0f64;
                    for r in chunk..(chunk + per).min(rows) {
                        let term = f64::from(w[r * cols + c]) * f64::from(x_t[r]);
                        partial += term;
                        squares += term * term + partial * partial;
                    }
                    want += partial;
                    squares += want * want;
                }
                // Independent roundings, each <= eps/2 of its result, exceed 6 (eps/2) sqrt(sum
                // results^2) with probability 3e-8 (Hoeffding; Higham & Mary 2019).
                let bound = 3.0 * f64::from(f32::EPSILON) * squares.sqrt();
                (c, (f64::from(y_t[c]) - want).abs(), bound)
            });
            let (c, diff, bound) = checks
                .max_by(|a, b| (a.1 / a.2).total_cmp(&(b.1 / b.2)))
                .unwrap();
            assert!(
                diff <= bound,
                "{rows}x{cols}: y_t[{c}] {} off by {diff:.3e} > {bound:.3e}",
                y_t[c]
            );
        }
    }
}
