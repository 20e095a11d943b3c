//! Throughput of the convolution products a ConvLSTM layer of many channels runs, on the
//! shapes of `bench-cli bench --configs convlstm-32x2`: one step of a shard (8 samples) of the second layer's recurrent convolution
//! (32 channels in, 4 x 32 gate channels out, 5x5 over 16x16) and of the first layer's input
//! convolution (16 channels in). GFLOP/s count every product of the convolution (`2 C_in
//! C_out K^2 H W` a sample), including those the kernels skip because they read only
//! padding. One thread (the layer runs each shard single-threaded). Benchmark, not a test:
//!
//! ```text
//! cargo run --release -p lstm-conv --example conv_speed -- [repetitions]
//! ```

use std::time::Instant;

use lstm_conv::products::{backward_data, forward, kernel_grad, Geometry};

fn main() {
    let reps: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse().expect("repetitions: a whole number"))
        .unwrap_or(30);
    println!(
        "{:<30} {:<8} {:>15} {:>13}",
        "shape", "product", "median GFLOP/s", "best GFLOP/s"
    );
    for (name, c_in) in [
        ("layer 2, recurrent: 32 -> 128", 32),
        ("layer 1, input:     16 -> 128", 16),
    ] {
        let (c_out, side, k, n) = (128, 16, 5, 8);
        let g = Geometry::new(c_in, c_out, side, side, k);
        let s = side * side;
        let wave = |len: usize, step: usize| -> Vec<f32> {
            (0..len)
                .map(|i| ((i * step) % 17) as f32 / 17.0 - 0.5)
                .collect()
        };
        let x = wave(n * c_in * s, 7);
        let kernel = wave(c_out * c_in * k * k, 5);
        let d = wave(n * c_out * s, 3);
        let (mut out, mut dx, mut dk) = (
            vec![0f32; n * c_out * s],
            vec![0f32; n * c_in * s],
            vec![0f32; c_out * c_in * k * k],
        );
        let flops = 2.0 * (c_in * c_out * k * k * s * n) as f64;
        for product in ["forward", "data", "kernel"] {
            let mut seconds: Vec<f64> = (0..reps)
                .map(|_| {
                    let start = Instant::now();
                    match product {
                        "forward" => forward(&x, &kernel, None, &mut out, &g),
                        "data" => backward_data(&d, &kernel, &mut dx, &g),
                        _ => kernel_grad(&x, &d, &mut dk, &g),
                    }
                    start.elapsed().as_secs_f64()
                })
                .collect();
            seconds.sort_by(f64::total_cmp);
            println!(
                "{name:<30} {product:<8} {:>15.1} {:>13.1}",
                flops / seconds[reps / 2] / 1e9,
                flops / seconds[0] / 1e9
            );
        }
        // Keeps the results alive.
        assert!(out.iter().chain(&dx).chain(&dk).all(|v| v.is_finite()));
    }
}
