//! The linear model's gradients against independent computations: central differences,
//! and the seed's eight separate layers built from the same weights.

use candle_core::{DType, Device, Tensor, Var};
use harness::gradcheck::check_gradients;
use harness::params::{init_parameters, var_builder};
use harness::{window_loss, ParamInit, SequenceModel};
use lstm_linear::{Config, LinearLstm};
use rand::{Rng, SeedableRng};

/// A window of `len` random frames `[len, 1, h, w]` in [0, 1), f64.
fn random_window(len: usize, h: usize, w: usize, seed: u64) -> Tensor {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let values: Vec<f64> = (0..len * h * w).map(|_| rng.random::<f64>()).collect();
    Tensor::from_vec(values, (len, 1, h, w), &Device::Cpu).unwrap()
}

fn small() -> Config {
    Config {
        channels: 1,
        height: 7,
        width: 7,
        hidden: 7,
    }
}

#[test]
fn gradients_match_central_differences() {
    let window = random_window(5, 7, 7, 1);
    let report = check_gradients::<LinearLstm>(&small(), &window, 11, 1e-5).unwrap();
    assert_eq!(report.len(), 6);
    for check in &report {
        println!(
            "{:<20} max|diff| {:.3e}  max rel {:.3e}  max|grad| {:.3e}",
            check.name, check.max_abs_diff, check.max_rel_diff, check.max_numeric
        );
        assert!(
            check.max_numeric > 1e-4,
            "{check:?}: gradient should not vanish"
        );
        assert!(check.max_rel_diff < 1e-5, "{check:?}");
    }
}

/// The seed's form: eight separate linear layers, `a = W_a x + b_a + R_a h + b'_a` for
/// each gate a in (z, i, f, o), then the output layer. Written out here, not through
/// `lstm_step`, so a wrong gate order or a wrong shared cell would show.
struct SeedLayers {
    w: [Tensor; 4],  // [N, D] each, order i, f, g, o
    b: [Tensor; 4],  // [N]
    r: [Tensor; 4],  // [N, N]
    rb: [Tensor; 4], // [N]
    out_w: Tensor,   // [D, N]
    out_b: Tensor,   // [D]
}

fn seed_eight_layers(window: &Tensor, layers: &SeedLayers, hidden: usize) -> Tensor {
    let SeedLayers {
        w,
        b,
        r,
        rb,
        out_w,
        out_b,
    } = layers;
    let (l, c, hh, ww) = window.dims4().unwrap();
    let d = c * hh * ww;
    let mut h = Tensor::zeros((1, hidden), DType::F64, &Device::Cpu).unwrap();
    let mut cell = h.clone();
    let mut preds = Vec::new();
    for t in 0..l - 1 {
        let x = window.get(t).unwrap().reshape((1, d)).unwrap();
        let gate = |k: usize| {
            let a = x
                .matmul(&w[k].t().unwrap())
                .unwrap()
                .broadcast_add(&b[k])
                .unwrap();
            let ra = h
                .matmul(&r[k].t().unwrap())
                .unwrap()
                .broadcast_add(&rb[k])
                .unwrap();
            (a + ra).unwrap()
        };
        let i = candle_nn::ops::sigmoid(&gate(0)).unwrap();
        let f = candle_nn::ops::sigmoid(&gate(1)).unwrap();
        let z = gate(2).tanh().unwrap();
        let o = candle_nn::ops::sigmoid(&gate(3)).unwrap();
        cell = ((z * i).unwrap() + (f * &cell).unwrap()).unwrap();
        h = (o * cell.tanh().unwrap()).unwrap();
        let y = h
            .matmul(&out_w.t().unwrap())
            .unwrap()
            .broadcast_add(out_b)
            .unwrap();
        preds.push(y.reshape((1, c, hh, ww)).unwrap());
    }
    Tensor::cat(&preds, 0).unwrap()
}

#[test]
fn stacked_gates_equal_the_seeds_eight_separate_layers() {
    let config = small();
    let n = config.hidden;
    let window = random_window(6, 7, 7, 2);
    let mut specs = LinearLstm::parameter_specs(&config);
    for s in &mut specs {
        s.init = ParamInit::Normal { fan_in: 3 };
    }
    let vars = init_parameters(&specs, 5, DType::F64, &Device::Cpu).unwrap();
    let model = LinearLstm::load(
        &config,
        var_builder(&specs, &vars, DType::F64, &Device::Cpu),
    )
    .unwrap();
    let (loss, grads) = model.loss_and_grads(&window, &vars).unwrap();

    // Cut the stacked tensors into the seed's eight layers, each its own variable.
    let split = |v: &Var| -> [Var; 4] {
        std::array::from_fn(|k| {
            Var::from_tensor(
                &v.as_tensor()
                    .narrow(0, k * n, n)
                    .unwrap()
                    .contiguous()
                    .unwrap(),
            )
            .unwrap()
        })
    };
    let (w, r, b, rb) = (
        split(&vars[0]),
        split(&vars[1]),
        split(&vars[2]),
        split(&vars[3]),
    );
    let out_w = Var::from_tensor(vars[4].as_tensor()).unwrap();
    let out_b = Var::from_tensor(vars[5].as_tensor()).unwrap();
    let t = |vs: &[Var; 4]| -> [Tensor; 4] { std::array::from_fn(|k| vs[k].as_tensor().clone()) };
    let layers = SeedLayers {
        w: t(&w),
        b: t(&b),
        r: t(&r),
        rb: t(&rb),
        out_w: out_w.as_tensor().clone(),
        out_b: out_b.as_tensor().clone(),
    };
    let pred = seed_eight_layers(&window, &layers, n);
    let seed_loss = window_loss(&pred, &window).unwrap();
    let seed_grads = seed_loss.backward().unwrap();
    let seed_loss = seed_loss.to_scalar::<f64>().unwrap();
    assert!(
        (loss - seed_loss).abs() < 1e-12 * seed_loss.abs(),
        "{loss} vs {seed_loss}"
    );

    let stack = |vs: &[Var; 4]| {
        let parts: Vec<Tensor> = vs
            .iter()
            .map(|v| seed_grads.get(v.as_tensor()).unwrap().clone())
            .collect();
        Tensor::cat(&parts, 0).unwrap()
    };
    let seed_stacked = [
        stack(&w),
        stack(&r),
        stack(&b),
        stack(&rb),
        seed_grads.get(out_w.as_tensor()).unwrap().clone(),
        seed_grads.get(out_b.as_tensor()).unwrap().clone(),
    ];
    for ((spec, ours), theirs) in specs.iter().zip(&grads).zip(&seed_stacked) {
        let diff = (ours - theirs).unwrap().abs().unwrap().max_all().unwrap();
        let diff = diff.to_scalar::<f64>().unwrap();
        let scale = theirs
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        println!(
            "{:<20} max|diff| {diff:.3e} (max|grad| {scale:.3e})",
            spec.name
        );
        assert!(
            scale > 0.0 && diff <= 1e-12 * scale,
            "{}: {diff}",
            spec.name
        );
    }
}

/// One pixel, one hidden unit, one step, every weight and bias set by hand:
/// x = 0.5; pre-activations (i, f, g, o) = w_ih*x + b_ih + b_hh (h_0 = 0, so W_hh plays no
/// part) = (0.5*0.2+0.1, 0.5*-0.4+0, 0.5*1.0+0, 0.5*0.6-0.1) = (0.2, -0.2, 0.5, 0.2);
/// c = tanh(0.5)*sigmoid(0.2) = 0.46211716*0.54983399 = 0.25408772;
/// h = sigmoid(0.2)*tanh(c) = 0.54983399*0.24875732 = 0.13677523;
/// prediction = 2*h + 0.05 = 0.32355046.
#[test]
fn one_pixel_one_step_by_hand() {
    let dev = Device::Cpu;
    let config = Config {
        channels: 1,
        height: 1,
        width: 1,
        hidden: 1,
    };
    let t = |v: &[f64], shape: &[usize]| Tensor::from_slice(v, shape, &dev).unwrap();
    let model = LinearLstm::new(
        config,
        [
            t(&[0.2, -0.4, 1.0, 0.6], &[4, 1]),
            t(&[9.0, 9.0, 9.0, 9.0], &[4, 1]),
            t(&[0.1, 0.0, 0.0, 0.0], &[4]),
            t(&[0.0, 0.0, 0.0, -0.1], &[4]),
            t(&[2.0], &[1, 1]),
            t(&[0.05], &[1]),
        ],
    )
    .unwrap();
    let window = t(&[0.5, 0.0], &[2, 1, 1, 1]);
    let pred = model
        .predict(&window)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f64>()
        .unwrap();
    assert_eq!(pred.len(), 1);
    assert!((pred[0] - 0.32355046).abs() < 1e-8, "{}", pred[0]);
}

#[test]
fn hand_written_bptt_equals_autograd() {
    // Odd sizes, a non-square frame, hidden != frame size, and a one-step window (where
    // W_hh gets no gradient at all).
    for (len, h, w, hidden) in [(6, 5, 3, 11), (2, 4, 4, 3), (26, 3, 3, 9)] {
        let config = Config {
            channels: 1,
            height: h,
            width: w,
            hidden,
        };
        let window = random_window(len, h, w, len as u64);
        let (loss, ref_loss, checks) = harness::gradcheck::compare_with_autograd::<LinearLstm>(
            &config,
            &window,
            3,
            DType::F64,
        )
        .unwrap();
        assert!(
            (loss - ref_loss).abs() <= 1e-12 * ref_loss,
            "{loss} vs {ref_loss}"
        );
        for check in &checks {
            println!("L={len} {check:?}");
            assert!(
                check.max_abs_diff <= 1e-12 * check.max_reference.max(1e-3),
                "{check:?}"
            );
        }
    }
}

#[test]
fn f32_cpu_fast_path_equals_autograd_reference() {
    // In f32 on the CPU, loss_and_grads runs the slice kernels (gemv, gemm); the
    // reference is candle's autograd in f64 on the same (f32-drawn) weights. They differ only in summation order.
    for (len, h, w, hidden) in [(26, 9, 7, 37), (3, 13, 13, 170)] {
        let config = Config {
            channels: 1,
            height: h,
            width: w,
            hidden,
        };
        let window = random_window(len, h, w, 7).to_dtype(DType::F32).unwrap();
        let (loss, ref_loss, checks) = harness::gradcheck::compare_with_autograd::<LinearLstm>(
            &config,
            &window,
            5,
            DType::F64,
        )
        .unwrap();
        assert!(
            (loss - ref_loss).abs() <= 1e-5 * ref_loss,
            "{loss} vs {ref_loss}"
        );
        println!("window of {len}, {h}x{w}, hidden {hidden}:");
        harness::gradcheck::assert_paths_agree(&checks, 1e-5, 0.0);
    }
}

#[test]
fn fused_training_step_equals_gradients_then_update() {
    use harness::adam::{Adam, AdamConfig};
    use harness::model::unfused_train_step;
    use harness::Step;
    // 9x7 frames: 63 values (not a multiple of the 16-wide tile), 37 hidden units.
    let config = Config {
        channels: 1,
        height: 9,
        width: 7,
        hidden: 37,
    };
    let specs = LinearLstm::parameter_specs(&config);
    let windows: Vec<Tensor> = (0..3)
        .map(|k| {
            random_window(26, 9, 7, 40 + k)
                .to_dtype(DType::F32)
                .unwrap()
        })
        .collect();
    // eps = 1 keeps each update a smooth function of the gradient: rounding differences
    // between the two paths' sums then stay rounding differences in the weights.
    let adam_config = AdamConfig {
        eps: 1.0,
        ..AdamConfig::default()
    };
    let run = |fused: bool| {
        let vars = init_parameters(&specs, 9, DType::F32, &Device::Cpu).unwrap();
        let model = LinearLstm::load(
            &config,
            var_builder(&specs, &vars, DType::F32, &Device::Cpu),
        )
        .unwrap();
        let mut adam = Adam::new(adam_config, &vars).unwrap();
        let mut losses = Vec::new();
        for window in &windows {
            let step = if fused {
                model.train_step(window, &vars, &mut adam).unwrap()
            } else {
                unfused_train_step(&model, window, &vars, &mut adam).unwrap()
            };
            let Step::Updated {
                loss,
                not_finite: None,
            } = step
            else {
                panic!("fused {fused}: {step:?}");
            };
            losses.push(loss);
        }
        let values = |t: &Tensor| -> Vec<f32> { t.flatten_all().unwrap().to_vec1().unwrap() };
        let state: Vec<[Vec<f32>; 3]> = (0..vars.len())
            .map(|k| {
                let (m, v) = adam.moments(k).unwrap();
                [values(vars[k].as_tensor()), values(&m), values(&v)]
            })
            .collect();
        (losses, state)
    };
    let (fused_losses, fused) = run(true);
    let (losses, reference) = run(false);
    for (a, b) in fused_losses.iter().zip(&losses) {
        assert!((a - b).abs() <= 1e-6 * b.abs(), "loss {a} vs {b}");
    }
    for (spec, (f, r)) in specs.iter().zip(fused.iter().zip(&reference)) {
        for (what, x, y) in [
            ("weights", &f[0], &r[0]),
            ("first moment", &f[1], &r[1]),
            ("second moment", &f[2], &r[2]),
        ] {
            let scale = y.iter().fold(0f32, |acc, v| acc.max(v.abs()));
            let diff = x
                .iter()
                .zip(y)
                .fold(0f32, |acc, (a, b)| acc.max((a - b).abs()));
            println!(
                "{:<20} {what:<14} max|diff| {diff:.3e}  max|reference| {scale:.3e}",
                spec.name
            );
            assert!(scale > 0.0, "{}: {what} is all zeros", spec.name);
            assert!(
                diff <= 1e-5 * scale,
                "{}: {what} differs by {diff:e} (scale {scale:e})",
                spec.name
            );
        }
    }
}
