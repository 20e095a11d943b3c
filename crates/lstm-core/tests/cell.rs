//! The shared cell and the window loss, worked by hand.

use candle_core::{Device, Tensor};
use lstm_core::cell::lstm_step;
use lstm_core::plan::Plan;
use lstm_core::tensors::loss;

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// One unit, one step, pre-activations i = 0.5, f = -1, g = 0.25, o = 2, c_prev = 0.4:
/// i = sigmoid(0.5) = 0.62245933, f = sigmoid(-1) = 0.26894142, g = tanh(0.25) =
/// 0.24491866, o = sigmoid(2) = 0.88079708;
/// c = g*i + f*c_prev = 0.15245191 + 0.10757657 = 0.26002848;
/// h = o * tanh(c) = 0.88079708 * 0.25432217 = 0.22400622.
#[test]
fn one_unit_one_step_by_hand() {
    let preact = Tensor::new(&[[0.5f64, -1.0, 0.25, 2.0]], &Device::Cpu).unwrap(); // [1, 4]
    let c_prev = Tensor::new(&[[0.4f64]], &Device::Cpu).unwrap(); // [1, 1]
    let (h, c) = lstm_step(&preact, &c_prev, None).unwrap();
    let c = c.flatten_all().unwrap().to_vec1::<f64>().unwrap()[0];
    let h = h.flatten_all().unwrap().to_vec1::<f64>().unwrap()[0];
    let c_want = 0.25f64.tanh() * sigmoid(0.5) + sigmoid(-1.0) * 0.4;
    assert!((c - c_want).abs() < 1e-15);
    assert!((c - 0.26002848).abs() < 1e-8, "{c}");
    assert!((h - 0.22400622).abs() < 1e-8, "{h}");
}

#[test]
fn gates_are_read_in_i_f_g_o_order_per_unit() {
    // Two units: the first half of each gate block belongs to unit 0.
    // Unit 1 has a closed input gate (-inf-ish) and open forget gate: c stays c_prev.
    let big = 40.0f64;
    let preact = Tensor::new(
        &[[0.0f64, -big, 0.0, big, 0.0, 1.0, 0.0, big]],
        &Device::Cpu,
    )
    .unwrap();
    let c_prev = Tensor::new(&[[0.0f64, 0.7]], &Device::Cpu).unwrap();
    let (_, c) = lstm_step(&preact, &c_prev, None).unwrap();
    let c = c.flatten_all().unwrap().to_vec1::<f64>().unwrap();
    assert!(c[0].abs() < 1e-12, "{c:?}"); // g = tanh(0) = 0, f*0 = 0
    assert!((c[1] - 0.7).abs() < 1e-12, "{c:?}"); // i closed, f open
}

#[test]
fn window_loss_sums_per_step_means() {
    // Window of 3 one-pixel-pair frames; predictions for frames 1 and 2.
    let window = Tensor::new(&[0.0f64, 0.0, 1.0, 1.0, 0.5, 0.0], &Device::Cpu)
        .unwrap()
        .reshape((3, 1, 1, 2))
        .unwrap();
    let pred = Tensor::new(&[0.0f64, 1.0, 0.5, 0.5], &Device::Cpu)
        .unwrap()
        .reshape((2, 1, 1, 2))
        .unwrap();
    // Step 0: ((0-1)^2 + (1-1)^2)/2 = 0.5; step 1: ((0.5-0.5)^2 + (0.5-0)^2)/2 = 0.125.
    // As a batch of one window: [L, 1, C, H, W] and [L-1, 1, C, H, W].
    let loss = loss(
        &pred.unsqueeze(1).unwrap(),
        &window.unsqueeze(1).unwrap(),
        &Plan::one_step(3, 1),
    )
    .unwrap()
    .to_scalar::<f64>()
    .unwrap();
    assert!((loss - 0.625).abs() < 1e-15, "{loss}");
}
