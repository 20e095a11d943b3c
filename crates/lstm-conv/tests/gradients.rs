//! The conv model's gradients against independent computations: central differences, the
//! seed's eight separate convolutions, a hand-worked pixel, and the linear model.

use candle_core::{DType, Device, Tensor, Var};
use harness::gradcheck::check_gradients;
use harness::params::{init_parameters, var_builder};
use harness::{window_loss, ParamInit, SequenceModel};
use lstm_conv::{Config, ConvLstm};
use lstm_linear::LinearLstm;
use rand::{Rng, SeedableRng};

fn random_window(len: usize, h: usize, w: usize, seed: u64) -> Tensor {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let values: Vec<f64> = (0..len * h * w).map(|_| rng.random::<f64>()).collect();
    Tensor::from_vec(values, (len, 1, h, w), &Device::Cpu).unwrap()
}

#[test]
fn gradients_match_central_differences() {
    let window = random_window(5, 7, 7, 3);
    let report = check_gradients::<ConvLstm>(&Config::default(), &window, 13, 1e-5).unwrap();
    assert_eq!(report.len(), 4);
    for check in &report {
        println!(
            "{:<24} max|diff| {:.3e}  max rel {:.3e}  max|grad| {:.3e}",
            check.name, check.max_abs_diff, check.max_rel_diff, check.max_numeric
        );
        assert!(
            check.max_numeric > 1e-4,
            "{check:?}: gradient should not vanish"
        );
        assert!(check.max_rel_diff < 1e-5, "{check:?}");
    }
}

/// The seed's form: eight separate 5x5 convolutions with their own biases,
/// `a = conv(x, W_a) + b_a + conv(h, R_a) + b'_a`, gates written out by hand.
fn seed_eight_convs(
    window: &Tensor,
    w: &[Tensor; 4],  // [1, 1, 5, 5] each, order i, f, g, o
    b: &[Tensor; 4],  // [1]
    r: &[Tensor; 4],  // [1, 1, 5, 5]
    rb: &[Tensor; 4], // [1]
) -> Tensor {
    let (l, _, hh, ww) = window.dims4().unwrap();
    let mut h = Tensor::zeros((1, 1, hh, ww), DType::F64, &Device::Cpu).unwrap();
    let mut cell = h.clone();
    let mut preds = Vec::new();
    for t in 0..l - 1 {
        let x = window.narrow(0, t, 1).unwrap(); // [1, 1, H, W]
        let gate = |k: usize| {
            let conv = |input: &Tensor, kernel: &Tensor, bias: &Tensor| {
                input
                    .conv2d(kernel, 2, 1, 1, 1)
                    .unwrap()
                    .broadcast_add(&bias.reshape((1, 1, 1, 1)).unwrap())
                    .unwrap()
            };
            (conv(&x, &w[k], &b[k]) + conv(&h, &r[k], &rb[k])).unwrap()
        };
        let i = candle_nn::ops::sigmoid(&gate(0)).unwrap();
        let f = candle_nn::ops::sigmoid(&gate(1)).unwrap();
        let z = gate(2).tanh().unwrap();
        let o = candle_nn::ops::sigmoid(&gate(3)).unwrap();
        cell = ((z * i).unwrap() + (f * &cell).unwrap()).unwrap();
        h = (o * cell.tanh().unwrap()).unwrap();
        preds.push(h.clone());
    }
    Tensor::cat(&preds, 0).unwrap()
}

#[test]
fn stacked_gates_equal_the_seeds_eight_separate_convolutions() {
    let config = Config::default();
    let window = random_window(6, 9, 8, 4);
    let mut specs = ConvLstm::parameter_specs(&config);
    for s in &mut specs {
        s.init = ParamInit::Normal { fan_in: 3 };
    }
    let vars = init_parameters(&specs, 6, DType::F64, &Device::Cpu).unwrap();
    let model = ConvLstm::load(
        &config,
        var_builder(&specs, &vars, DType::F64, &Device::Cpu),
    )
    .unwrap();
    let (loss, grads) = model.loss_and_grads(&window, &vars).unwrap();

    let split = |v: &Var| -> [Var; 4] {
        std::array::from_fn(|k| {
            Var::from_tensor(&v.as_tensor().narrow(0, k, 1).unwrap().contiguous().unwrap()).unwrap()
        })
    };
    let (w, r, b, rb) = (
        split(&vars[0]),
        split(&vars[1]),
        split(&vars[2]),
        split(&vars[3]),
    );
    let t = |vs: &[Var; 4]| -> [Tensor; 4] { std::array::from_fn(|k| vs[k].as_tensor().clone()) };
    let pred = seed_eight_convs(&window, &t(&w), &t(&b), &t(&r), &t(&rb));
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
    for ((spec, ours), theirs) in
        specs
            .iter()
            .zip(&grads)
            .zip([stack(&w), stack(&r), stack(&b), stack(&rb)])
    {
        let diff = (ours - &theirs).unwrap().abs().unwrap().max_all().unwrap();
        let diff = diff.to_scalar::<f64>().unwrap();
        let scale = theirs
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        println!(
            "{:<24} max|diff| {diff:.3e} (max|grad| {scale:.3e})",
            spec.name
        );
        assert!(
            scale > 0.0 && diff <= 1e-12 * scale,
            "{}: {diff}",
            spec.name
        );
    }
}

/// A 3x3 frame, one step, where only the kernel centre and one neighbour are nonzero, so
/// the convolution can be done by hand. Frame (row-major) 0.1 .. 0.9. Every gate's input
/// kernel is `a` at the centre and `n` at the right neighbour (kernel index [2][3]); at the
/// centre pixel (value 0.5, right neighbour 0.6) the pre-activation is `a*0.5 + n*0.6 +
/// b_ih + b_hh` (h_0 = 0). With (a, n, b) per gate i: (1, 0, 0), f: (0, 0, 0),
/// g: (2, -1, 0.1), o: (0, 1, -0.2): pre = (0.5, 0, 0.5, 0.4);
/// c = tanh(0.5) * sigmoid(0.5) = 0.46211716 * 0.62245933 = 0.28764914;
/// h = sigmoid(0.4) * tanh(c) = 0.59868766 * 0.27996965 = 0.16761437.
#[test]
fn centre_pixel_by_hand() {
    let dev = Device::Cpu;
    let gates = [
        (1.0, 0.0, 0.0),
        (0.0, 0.0, 0.0),
        (2.0, -1.0, 0.1),
        (0.0, 1.0, -0.2),
    ];
    let mut kernel = vec![0f64; 4 * 25];
    let mut bias = vec![0f64; 4];
    for (k, &(a, n, b)) in gates.iter().enumerate() {
        kernel[k * 25 + 2 * 5 + 2] = a;
        kernel[k * 25 + 2 * 5 + 3] = n;
        bias[k] = b;
    }
    let model = ConvLstm::new(
        Config::default(),
        [
            Tensor::from_slice(&kernel, (4, 1, 5, 5), &dev).unwrap(),
            Tensor::zeros((4, 1, 5, 5), DType::F64, &dev).unwrap(),
            Tensor::from_slice(&bias, 4, &dev).unwrap(),
            Tensor::zeros(4, DType::F64, &dev).unwrap(),
        ],
    )
    .unwrap();
    let mut frames: Vec<f64> = (1..=9).map(|v| v as f64 / 10.0).collect();
    frames.extend([0.0; 9]);
    let window = Tensor::from_vec(frames, (2, 1, 3, 3), &dev).unwrap();
    let pred = model.predict(&window).unwrap(); // [1, 1, 3, 3]
    let centre = pred.flatten_all().unwrap().to_vec1::<f64>().unwrap()[4];
    assert!((centre - 0.16761437).abs() < 1e-8, "{centre}");
}

/// A ConvLSTM with a 1x1 kernel on 1x1 frames is a one-unit fully connected LSTM: with
/// the same weights and an identity output layer, both predict the same sequence.
#[test]
fn one_by_one_conv_lstm_is_the_linear_lstm() {
    let dev = Device::Cpu;
    let window = random_window(8, 1, 1, 9);
    let conv_config = Config {
        channels: 1,
        kernel: 1,
    };
    let linear_config = lstm_linear::Config {
        channels: 1,
        height: 1,
        width: 1,
        hidden: 1,
    };
    let mut specs = ConvLstm::parameter_specs(&conv_config);
    for s in &mut specs {
        s.init = ParamInit::Normal { fan_in: 1 };
    }
    let vars = init_parameters(&specs, 21, DType::F64, &dev).unwrap();
    let conv = ConvLstm::new(
        conv_config,
        std::array::from_fn(|k| vars[k].as_tensor().clone()),
    )
    .unwrap();
    let flat = |k: usize| vars[k].as_tensor().reshape((4, 1)).unwrap();
    let linear = LinearLstm::new(
        linear_config,
        [
            flat(0),
            flat(1),
            vars[2].as_tensor().clone(),
            vars[3].as_tensor().clone(),
            Tensor::ones((1, 1), DType::F64, &dev).unwrap(),
            Tensor::zeros(1, DType::F64, &dev).unwrap(),
        ],
    )
    .unwrap();
    let a: Vec<f64> = conv
        .predict(&window)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let b: Vec<f64> = linear
        .predict(&window)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    assert_eq!(a.len(), 7);
    for (x, y) in a.iter().zip(&b) {
        assert!((x - y).abs() < 1e-14, "{a:?} vs {b:?}");
    }
}

#[test]
fn hand_written_bptt_equals_autograd() {
    // Odd sizes, kernels 5 and 3, and a one-step window (W_hh gets no gradient).
    for (len, h, w, kernel) in [(6, 9, 7, 5), (2, 6, 6, 5), (26, 8, 5, 3)] {
        let config = Config {
            channels: 1,
            kernel,
        };
        let window = random_window(len, h, w, len as u64);
        let (loss, ref_loss, checks) =
            harness::gradcheck::compare_with_autograd::<ConvLstm>(&config, &window, 3, DType::F64)
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
    // In f32 on the CPU, loss_and_grads runs the slice kernels of lstm_conv::cpu (direct
    // convolutions, polynomial exp); the reference is candle's autograd in f64 on the same (f32-drawn) weights.
    for (len, h, w, kernel) in [(26, 65, 65, 5), (4, 9, 13, 3), (2, 6, 5, 5)] {
        let config = Config {
            channels: 1,
            kernel,
        };
        let window = random_window(len, h, w, 8).to_dtype(DType::F32).unwrap();
        let (loss, ref_loss, checks) =
            harness::gradcheck::compare_with_autograd::<ConvLstm>(&config, &window, 5, DType::F64)
                .unwrap();
        println!("window of {len}, {h}x{w}, kernel {kernel}: loss {loss} vs {ref_loss}");
        assert!(
            (loss - ref_loss).abs() <= 1e-5 * ref_loss,
            "{loss} vs {ref_loss}"
        );
        // A one-step window gives W_hh no gradient: the floor lets a zero reference pass.
        harness::gradcheck::assert_paths_agree(&checks, 1e-5, 1e-3);
    }
}

#[test]
fn rollout_feeds_predictions_back() {
    let dev = Device::Cpu;
    let config = Config::default();
    let specs = ConvLstm::parameter_specs(&config);
    let vars = init_parameters(&specs, 2, DType::F32, &dev).unwrap();
    let model = ConvLstm::load(&config, var_builder(&specs, &vars, DType::F32, &dev)).unwrap();
    let window = random_window(8, 9, 9, 4).to_dtype(DType::F32).unwrap();
    let context = window.narrow(0, 0, 5).unwrap();
    let rolled = harness::predict::rollout(&model, &context, 3).unwrap();
    assert_eq!(rolled.dims(), &[3, 1, 9, 9]);
    // The first rolled frame is the one-step prediction after the context.
    let one_step = model.predict(&window).unwrap().get(4).unwrap();
    let diff = (rolled.get(0).unwrap() - &one_step).unwrap().abs().unwrap();
    assert!(diff.max_all().unwrap().to_scalar::<f32>().unwrap() < 1e-6);
    // The third reads the context and the first two rolled frames, not the true ones.
    let fed = Tensor::cat(
        &[
            &context,
            &rolled.narrow(0, 0, 2).unwrap(),
            &context.narrow(0, 0, 1).unwrap(),
        ],
        0,
    )
    .unwrap();
    let third = model.predict(&fed).unwrap().get(6).unwrap();
    let diff = (rolled.get(2).unwrap() - &third).unwrap().abs().unwrap();
    assert!(diff.max_all().unwrap().to_scalar::<f32>().unwrap() < 1e-6);
    let true_input = model.predict(&window).unwrap().get(6).unwrap();
    let gap = (rolled.get(2).unwrap() - &true_input)
        .unwrap()
        .abs()
        .unwrap();
    assert!(gap.max_all().unwrap().to_scalar::<f32>().unwrap() > 1e-4);
}
