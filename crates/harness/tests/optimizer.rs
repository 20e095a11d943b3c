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
