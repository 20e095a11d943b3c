//! The linear model's gradients, every option alone and combined, against independent
//! computations: central differences, candle's autograd (f64, and f32 for the slice
//! driver), the seed's eight separate layers, and a hand-worked step. Cases mirror
//! `tests/fixtures/general`, which PyTorch computed (`tests/pytorch_reference.rs`).

use candle_core::{DType, Device, Module, Tensor, Var};
use harness::adam::{Adam, AdamConfig};
use harness::gradcheck::{
    assert_agree, assert_matches_autograd, check_gradients, generic_point, random_batch,
    weights_after_steps,
};
use harness::{loss_and_grads, train_step, Backward, Loss, Plan, Step};
use lstm_linear::{Config, LinearLstm};

fn config(c: usize, h: usize, w: usize, hidden: &[usize]) -> Config {
    Config {
        channels: c,
        height: h,
        width: w,
        hidden: hidden.to_vec(),
        sigmoid: false,
    }
}

/// Layers, batches, three channels, forecasting, the cross-entropy from a sigmoid output,
/// a one-step window.
fn cases() -> Vec<(&'static str, Config, Plan)> {
    vec![
        ("seed", config(1, 3, 4, &[6]), Plan::one_step(5, 1)),
        ("layers", config(1, 3, 4, &[5, 4]), Plan::one_step(5, 2)),
        ("rgb", config(3, 2, 3, &[5]), Plan::one_step(4, 2)),
        (
            "forecast",
            config(1, 3, 4, &[5, 4]),
            Plan::forecast(3, 2, 2),
        ),
        (
            "cross-entropy forecast",
            Config {
                sigmoid: true,
                ..config(1, 3, 4, &[5, 4])
            },
            Plan::forecast(3, 2, 2).with_loss(Loss::Bce),
        ),
        ("one step", config(1, 4, 4, &[3, 3]), Plan::one_step(2, 3)),
    ]
}

fn frame(c: &Config) -> [usize; 3] {
    [c.channels, c.height, c.width]
}

#[test]
fn gradients_match_central_differences() {
    for (name, config, plan) in cases().into_iter().take(5) {
        let batch =
            random_batch(plan.window_len(), plan.batch, frame(&config), 1, DType::F64).unwrap();
        let report = check_gradients::<LinearLstm>(&config, &batch, &plan, 11, 1e-5).unwrap();
        println!("{name}:");
        assert_agree(&report, 1e-6, 1e-4);
        for check in &report {
            assert!(check.max_reference > 1e-6, "{name}: {check:?} vanishes");
        }
    }
}

#[test]
fn hand_written_bptt_equals_autograd() {
    let mut all = cases();
    all.push(("odd sizes", config(1, 5, 3, &[11]), Plan::one_step(6, 1)));
    all.push(("long", config(1, 3, 3, &[9]), Plan::one_step(26, 1)));
    for (name, config, plan) in all {
        assert_matches_autograd::<LinearLstm>(
            name,
            &config,
            frame(&config),
            &plan,
            DType::F64,
            1e-12,
            1e-11,
            1e-3,
        );
    }
}

#[test]
fn f32_slice_driver_equals_autograd() {
    // In f32 on the CPU the slice driver runs (gemv, gemm, gradients as outer products);
    // the reference is candle's autograd in f64 on the same (f32-drawn) weights.
    let mut all = cases();
    all.push(("wide", config(1, 9, 7, &[37]), Plan::one_step(26, 1)));
    all.push((
        "many units",
        config(1, 13, 13, &[170]),
        Plan::one_step(3, 1),
    ));
    all.push((
        "batch of 4",
        config(1, 13, 13, &[70, 30]),
        Plan::one_step(4, 4),
    ));
    for (name, config, plan) in all {
        assert_matches_autograd::<LinearLstm>(
            name,
            &config,
            frame(&config),
            &plan,
            DType::F32,
            1e-5,
            1e-4,
            1e-3,
        );
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
    let config = Config {
        channels: 1,
        height: 7,
        width: 7,
        hidden: vec![7],
        sigmoid: false,
    };
    let n = 7;
    let batch = random_batch(6, 1, [1, 7, 7], 2, DType::F64).unwrap();
    let window = batch.squeeze(1).unwrap(); // [L, C, H, W]
    let (specs, vars, model) =
        generic_point::<LinearLstm>(&config, [1, 7, 7], 5, DType::F64, &Device::Cpu).unwrap();
    let (loss, grads) =
        loss_and_grads(&model, &batch, &Plan::one_step(6, 1), Backward::Fastest).unwrap();

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
    let seed_loss = harness::gradcheck::seed_window_loss(&pred, &window);
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
    let t = |v: &[f64], shape: &[usize]| Tensor::from_slice(v, shape, &dev).unwrap();
    let model = LinearLstm::from_tensors(
        config(1, 1, 1, &[1]),
        vec![
            t(&[0.2, -0.4, 1.0, 0.6], &[4, 1]),
            t(&[9.0, 9.0, 9.0, 9.0], &[4, 1]),
            t(&[0.1, 0.0, 0.0, 0.0], &[4]),
            t(&[0.0, 0.0, 0.0, -0.1], &[4]),
            t(&[2.0], &[1, 1]),
            t(&[0.05], &[1]),
        ],
    )
    .unwrap();
    let inputs = t(&[0.5], &[1, 1, 1, 1, 1]);
    let pred = model
        .forward(&inputs)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f64>()
        .unwrap();
    assert_eq!(pred.len(), 1);
    assert!((pred[0] - 0.32355046).abs() < 1e-8, "{}", pred[0]);
}

/// A training step on f32 CPU tensors forms each weight gradient inside Adam's update
/// ([`lstm_core::Grad::Outer`]); the same step from stored gradients
/// ([`loss_and_grads`], then [`Adam::update`]) must give the same weights and moments.
#[test]
fn fused_training_step_equals_gradients_then_update() {
    // 9x7 frames: 63 values (not a multiple of the 16-wide tile), 37 hidden units; one
    // window at a time and batches of two, one layer and two.
    for (hidden, batch_size) in [(vec![37], 1), (vec![37, 21], 2)] {
        let config = config(1, 9, 7, &hidden);
        let batches: Vec<Tensor> = (0..3)
            .map(|k| random_batch(26, batch_size, [1, 9, 7], 40 + k, DType::F32).unwrap())
            .collect();
        let plan = Plan::one_step(26, batch_size);
        let adam_config = AdamConfig::default();
        let run = |fused: bool| {
            let (specs, vars, model) =
                generic_point::<LinearLstm>(&config, [1, 9, 7], 9, DType::F32, &Device::Cpu)
                    .unwrap();
            let mut adam = Adam::new(adam_config, &vars).unwrap();
            let mut losses = Vec::new();
            for batch in &batches {
                let loss = if fused {
                    match train_step(&model, batch, &plan, &vars, &mut adam, Backward::Fastest)
                        .unwrap()
                    {
                        Step::Updated {
                            loss,
                            not_finite: None,
                        } => loss,
                        step => panic!("{step:?}"),
                    }
                } else {
                    let (loss, grads) =
                        loss_and_grads(&model, batch, &plan, Backward::Fastest).unwrap();
                    assert_eq!(adam.update(&vars, &grads).unwrap(), None);
                    loss
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
            (specs, losses, state)
        };
        let (specs, fused_losses, fused) = run(true);
        let (_, losses, reference) = run(false);
        assert_eq!(fused_losses, losses, "the losses are the same computation");
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
                // Both add the steps in the same order with fused multiply-adds: the same
                // bits, not merely close ones.
                assert!(
                    x == y,
                    "{}: {what} differs by up to {diff:e} (scale {scale:e})",
                    spec.name
                );
            }
        }
    }
}

/// The same seed gives the same weights, bit for bit, with 1, 2 or 3 threads: every
/// reduction is split by the shapes alone. 2600 hidden units make `W_hh` 10400 rows, so the
/// transposed product sums two chunks; batches of two take the matrix-product path.
#[test]
fn results_do_not_depend_on_the_thread_count() {
    for (hidden, batch) in [(vec![2600], 1), (vec![40, 30], 2)] {
        let config = config(1, 3, 4, &hidden);
        let plan = Plan::one_step(4, batch);
        let batches: Vec<Tensor> = (0..2)
            .map(|k| random_batch(4, batch, [1, 3, 4], 60 + k, DType::F32).unwrap())
            .collect();
        let one = weights_after_steps::<LinearLstm>(&config, &batches, &plan, 1);
        for threads in [2, 3] {
            let other = weights_after_steps::<LinearLstm>(&config, &batches, &plan, threads);
            assert!(
                one == other,
                "hidden {hidden:?}, batch {batch}: {threads} threads differ from 1"
            );
        }
    }
}
