//! Throughput of `linalg::matmul` (the `gemm` crate) on the products a lowered ConvLSTM
//! layer of 32 channels over 16x16 planes runs (a chunk of 16 samples), each way round, and
//! on a 1024 square for scale. Benchmark, not a test:
//!
//! ```text
//! cargo run --release -p lstm-core --example gemm_speed -- [threads]
//! ```

use std::time::Instant;
fn main() {
    let threads: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse().unwrap())
        .unwrap_or(2);
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()
        .unwrap();
    for (name, m, k, n, a_t, b_t) in [
        (
            "fwd l1  W.col    128x800x4096",
            128,
            800,
            4096,
            false,
            false,
        ),
        (
            "fwd l1  colT.WT  4096x800x128 (a_t,b_t)",
            4096,
            800,
            128,
            true,
            true,
        ),
        (
            "bwd dat WT.D     800x128x4096 (a_t)",
            800,
            128,
            4096,
            true,
            false,
        ),
        (
            "bwd dat DT.W     4096x128x800 (a_t)",
            4096,
            128,
            800,
            true,
            false,
        ),
        (
            "wgrad   D.colT   128x4096x800 (b_t)",
            128,
            4096,
            800,
            false,
            true,
        ),
        (
            "wgrad   col.DT   800x4096x128 (b_t)",
            800,
            4096,
            128,
            false,
            true,
        ),
        ("square  1024", 1024, 1024, 1024, false, false),
    ] {
        let a = vec![0.5f32; m * k];
        let b = vec![0.25f32; k * n];
        let mut c = vec![0f32; m * n];
        let reps = 10;
        lstm_core::linalg::matmul(&mut c, &a, a_t, &b, b_t, (m, k, n), false);
        let t = Instant::now();
        for _ in 0..reps {
            lstm_core::linalg::matmul(&mut c, &a, a_t, &b, b_t, (m, k, n), false);
        }
        let s = t.elapsed().as_secs_f64() / reps as f64;
        println!(
            "{name:<42} {:.2} ms  {:.1} GFLOP/s",
            s * 1e3,
            2.0 * (m * k * n) as f64 / s / 1e9
        );
    }
}
