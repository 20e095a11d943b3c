//! Adam against hand computations, in f64.

use candle_core::{Device, Tensor, Var};
use harness::adam::{Adam, AdamConfig, AdamForm};

fn run(form: AdamForm, grads: &[f64]) -> f64 {
    let p = Var::from_tensor(&Tensor::new(&[1.0f64], &Device::Cpu).unwrap()).unwrap();
    let config = AdamConfig {
        form,
        ..AdamConfig::default()
    };
    let mut adam = Adam::new(config, std::slice::from_ref(&p)).unwrap();
    for &g in grads {
        let g = Tensor::new(&[g], &Device::Cpu).unwrap();
        adam.update(std::slice::from_ref(&p), &[g]).unwrap();
    }
    assert_eq!(adam.step, grads.len() as u64);
    p.as_tensor().to_vec1::<f64>().unwrap()[0]
}

/// The same two steps by hand: m, v, then each form's update.
fn by_hand(form: AdamForm, grads: &[f64]) -> f64 {
    let (lr, b1, b2, eps) = (1e-3f64, 0.9f64, 0.999f64, 1e-8f64);
    let (mut p, mut m, mut v) = (1.0f64, 0.0f64, 0.0f64);
    for (k, &g) in grads.iter().enumerate() {
        let t = (k + 1) as i32;
        m = b1 * m + (1.0 - b1) * g;
        v = b2 * v + (1.0 - b2) * g * g;
        p -= match form {
            AdamForm::Chainer => {
                lr * (1.0 - b2.powi(t)).sqrt() / (1.0 - b1.powi(t)) * m / (v.sqrt() + eps)
            }
            AdamForm::Torch => {
                lr * (m / (1.0 - b1.powi(t))) / ((v / (1.0 - b2.powi(t))).sqrt() + eps)
            }
            AdamForm::Rmsprop => unreachable!("RMSProp has its own test"),
        };
    }
    p
}

#[test]
fn first_step_of_a_large_gradient_moves_by_lr_in_both_forms() {
    // g = 0.5: m = 0.05, v = 2.5e-4. Chainer: lr_t = 1e-3 * sqrt(1e-3) / 0.1 = 3.1623e-4,
    // step = lr_t * 0.05 / (0.0158114 + 1e-8) = 9.99999368e-4. PyTorch: m_hat = 0.5,
    // v_hat = 0.25, step = 1e-3 * 0.5 / (0.5 + 1e-8) = 9.9999998e-4.
    let chainer = 1.0 - run(AdamForm::Chainer, &[0.5]);
    let torch = 1.0 - run(AdamForm::Torch, &[0.5]);
    assert!((chainer - 9.99999368e-4).abs() < 1e-12, "{chainer}");
    assert!((torch - 9.9999998e-4).abs() < 1e-12, "{torch}");
}

#[test]
fn tiny_gradients_show_where_eps_sits() {
    // g = 1e-6: Chainer's eps meets sqrt(v) = 3.16e-8 uncorrected, so the step shrinks to
    // 3.16227766e-11 / (3.16227766e-8 + 1e-8) = 7.5975e-4; PyTorch's meets sqrt(v_hat) =
    // 1e-6: 1e-9 / (1e-6 + 1e-8) = 9.90099e-4.
    let chainer = 1.0 - run(AdamForm::Chainer, &[1e-6]);
    let torch = 1.0 - run(AdamForm::Torch, &[1e-6]);
    let sqrt_fix2 = 1e-3f64.sqrt(); // sqrt(1 - 0.999)
    let chainer_hand = 1e-3 * sqrt_fix2 / 0.1 * 1e-7 / (1e-15f64.sqrt() + 1e-8);
    assert!(
        (chainer - chainer_hand).abs() < 1e-12,
        "{chainer} vs {chainer_hand}"
    );
    assert!((torch - 1e-9 / (1e-6 + 1e-8)).abs() < 1e-12, "{torch}");
    assert!((chainer - torch).abs() > 1e-4);
}

#[test]
fn several_steps_match_the_formulas() {
    let grads = [0.3, -0.2, 1e-5, 0.7, -2.0];
    for form in [AdamForm::Chainer, AdamForm::Torch] {
        let got = run(form, &grads);
        let want = by_hand(form, &grads);
        assert!((got - want).abs() < 1e-14, "{form:?}: {got} vs {want}");
    }
}

#[test]
fn fused_cpu_update_matches_the_tensor_formula() {
    // The same f32 parameters and gradients through both code paths: the fused in-place
    // loop (f32 on the CPU) and the tensor formula (here forced by running in f64 and
    // casting back). Five steps with gradients from 1e-7 to 3.
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let n = 40_000;
    let init: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
    let grads: Vec<Vec<f32>> = (0..5)
        .map(|_| {
            (0..n)
                .map(|i| rng.random_range(-1.0f32..1.0) * 10f32.powi(-((i % 8) as i32)) * 3.0)
                .collect()
        })
        .collect();
    for form in [AdamForm::Chainer, AdamForm::Torch] {
        let config = AdamConfig {
            form,
            ..AdamConfig::default()
        };
        let dev = Device::Cpu;
        let fused = Var::from_tensor(&Tensor::new(init.as_slice(), &dev).unwrap()).unwrap();
        let reference = Var::from_tensor(
            &Tensor::new(init.as_slice(), &dev)
                .unwrap()
                .to_dtype(candle_core::DType::F64)
                .unwrap(),
        )
        .unwrap();
        let mut a = Adam::new(config, std::slice::from_ref(&fused)).unwrap();
        let mut b = Adam::new(config, std::slice::from_ref(&reference)).unwrap();
        for g in &grads {
            let g32 = Tensor::new(g.as_slice(), &dev).unwrap();
            let g64 = g32.to_dtype(candle_core::DType::F64).unwrap();
            a.update(std::slice::from_ref(&fused), &[g32]).unwrap();
            b.update(std::slice::from_ref(&reference), &[g64]).unwrap();
        }
        let x: Vec<f32> = fused.as_tensor().to_vec1().unwrap();
        let y: Vec<f64> = reference.as_tensor().to_vec1().unwrap();
        let moved: Vec<f64> = y.iter().zip(&init).map(|(y, i)| y - *i as f64).collect();
        for i in 0..n {
            // Agreement on the step taken (about 5e-3), to f32 rounding of the weight.
            let err = (x[i] as f64 - y[i]).abs();
            assert!(
                err < 2e-7,
                "{form:?} {i}: {} vs {} (moved {})",
                x[i],
                y[i],
                moved[i]
            );
        }
        let (m32, _) = a.moments(0).unwrap();
        let (m64, _) = b.moments(0).unwrap();
        let m32: Vec<f32> = m32.to_vec1().unwrap();
        let m64: Vec<f64> = m64.to_vec1().unwrap();
        for i in 0..n {
            // m sums gradients of either sign: read its error against their size.
            let scale = grads.iter().map(|g| g[i].abs() as f64).fold(0.0, f64::max);
            assert!(
                (m32[i] as f64 - m64[i]).abs() <= 1e-6 * scale,
                "{form:?} {i}"
            );
        }
    }
}

/// `A^T B` in f64, from `steps` rows of `a` (stride `a_stride`) and of `b` (`cols` each).
fn outer_sum(
    a: &[f32],
    a_stride: usize,
    b: &[f32],
    steps: usize,
    rows: usize,
    cols: usize,
) -> Vec<f32> {
    let mut g = vec![0f64; rows * cols];
    for t in 0..steps {
        for r in 0..rows {
            for c in 0..cols {
                g[r * cols + c] += f64::from(a[t * a_stride + r]) * f64::from(b[t * cols + c]);
            }
        }
    }
    g.into_iter().map(|v| v as f32).collect()
}

#[test]
fn outer_product_gradients_update_like_stored_ones() {
    use lstm_core::{Grad, Outer};
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(21);
    let mut random =
        |n: usize| -> Vec<f32> { (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect() };
    // Rows: two tasks of 64 and a tail of 6, not a multiple of the 4-row tile; columns: two
    // 16-wide tiles and 5 more. `a` has 3 values per step that are not ours (stride).
    let (rows, cols, steps, a_stride) = (134, 37, 5, 137);
    let start = random(rows * cols);
    let a = random(steps * a_stride);
    let b = random(steps * cols);
    let g = Tensor::from_vec(
        outer_sum(&a, a_stride, &b, steps, rows, cols),
        (rows, cols),
        &Device::Cpu,
    )
    .unwrap();
    let var = || {
        Var::from_tensor(&Tensor::from_vec(start.clone(), (rows, cols), &Device::Cpu).unwrap())
            .unwrap()
    };
    let (stored, outer) = (var(), var());
    // eps = 1 keeps the update a smooth function of the gradient, so rounding in the sum
    // cannot flip a step's sign where a gradient is near zero.
    let config = AdamConfig {
        eps: 1.0,
        ..AdamConfig::default()
    };
    let outer_of = |a| {
        Grad::Outer(Outer {
            a,
            a_stride,
            b: &b,
            steps,
        })
    };
    let mut adam_stored = Adam::new(config, std::slice::from_ref(&stored)).unwrap();
    let mut adam_outer = Adam::new(config, std::slice::from_ref(&outer)).unwrap();
    for _ in 0..3 {
        assert_eq!(
            adam_stored
                .update_with(std::slice::from_ref(&stored), |_| Grad::Tensor(&g))
                .unwrap(),
            None
        );
        assert_eq!(
            adam_outer
                .update_with(std::slice::from_ref(&outer), |_| outer_of(&a))
                .unwrap(),
            None
        );
    }
    let values = |t: &Tensor| -> Vec<f32> { t.flatten_all().unwrap().to_vec1().unwrap() };
    let (m_s, v_s) = adam_stored.moments(0).unwrap();
    let (m_o, v_o) = adam_outer.moments(0).unwrap();
    for (what, x, y) in [
        (
            "parameter",
            values(stored.as_tensor()),
            values(outer.as_tensor()),
        ),
        ("first moment", values(&m_s), values(&m_o)),
        ("second moment", values(&v_s), values(&v_o)),
    ] {
        let scale = x.iter().fold(0f32, |acc, v| acc.max(v.abs()));
        for (i, (p, q)) in x.iter().zip(&y).enumerate() {
            assert!(
                (p - q).abs() <= 1e-5 * scale,
                "{what} {i}: stored {p}, outer {q}"
            );
        }
    }
    // Moved at all: a test that passes with no update would prove nothing.
    assert_ne!(values(outer.as_tensor()), start);

    // Bit for bit the update of the same sum formed by the matrix-product kernel and
    // stored: both add the steps in order with fused multiply-adds.
    let formed = Outer {
        a: &a,
        a_stride,
        b: &b,
        steps,
    }
    .to_values(rows, cols);
    let (from_formed, from_outer) = (var(), var());
    let mut adam_formed = Adam::new(config, std::slice::from_ref(&from_formed)).unwrap();
    let mut adam_outer2 = Adam::new(config, std::slice::from_ref(&from_outer)).unwrap();
    for _ in 0..3 {
        adam_formed
            .update_with(std::slice::from_ref(&from_formed), |_| {
                Grad::Values(std::borrow::Cow::Borrowed(&formed))
            })
            .unwrap();
        adam_outer2
            .update_with(std::slice::from_ref(&from_outer), |_| outer_of(&a))
            .unwrap();
    }
    assert_eq!(
        values(from_formed.as_tensor()),
        values(from_outer.as_tensor())
    );

    // A NaN in a step's gradient is reported as for a stored gradient.
    let mut bad = a.clone();
    bad[2 * a_stride + 7] = f32::NAN;
    assert_eq!(
        adam_outer
            .update_with(std::slice::from_ref(&outer), |_| outer_of(&bad))
            .unwrap(),
        Some(0)
    );
    // Too few values for the parameter's shape: an error, not a panic.
    assert!(adam_outer
        .update_with(std::slice::from_ref(&outer), |_| outer_of(&a[..a_stride]))
        .is_err());
}

/// RMSProp (Shi et al.'s optimiser) against PyTorch: `torch.optim.RMSprop(lr=1e-3,
/// alpha=0.9, eps=1e-8)` in float64 takes a parameter of 1.0 to 0.9987408765508873 over the
/// gradients 0.3, -0.2, 1e-5, 0.7, -2.0 (PyTorch 2.15); the same in f32 on the fused path.
#[test]
fn rmsprop_matches_pytorch() {
    let grads = [0.3, -0.2, 1e-5, 0.7, -2.0];
    let config = AdamConfig {
        form: AdamForm::Rmsprop,
        beta1: 0.0,
        beta2: 0.9,
        ..AdamConfig::default()
    };
    for dtype in [candle_core::DType::F64, candle_core::DType::F32] {
        let one = Tensor::new(&[1.0f64], &Device::Cpu)
            .unwrap()
            .to_dtype(dtype)
            .unwrap();
        let p = Var::from_tensor(&one).unwrap();
        let mut rmsprop = Adam::new(config, std::slice::from_ref(&p)).unwrap();
        for &g in &grads {
            let g = Tensor::new(&[g], &Device::Cpu)
                .unwrap()
                .to_dtype(dtype)
                .unwrap();
            rmsprop.update(std::slice::from_ref(&p), &[g]).unwrap();
        }
        let got = p
            .as_tensor()
            .to_dtype(candle_core::DType::F64)
            .unwrap()
            .to_vec1::<f64>()
            .unwrap()[0];
        let tolerance = match dtype {
            candle_core::DType::F64 => 1e-15,
            _ => 1e-7,
        };
        assert!(
            (got - 0.9987408765508873).abs() < tolerance,
            "{dtype:?}: {got}"
        );
    }
}
