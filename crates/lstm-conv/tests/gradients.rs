//! The conv model's gradients, every option alone and combined, against independent
//! computations: central differences, candle's autograd (f64, and f32 for the slice
//! driver), the seed's eight separate convolutions, a hand-worked pixel, and the linear
//! model. Cases here mirror `tests/fixtures/general`, which PyTorch computed
//! (`tests/pytorch_reference.rs`).

use candle_core::{DType, Device, Module, Tensor, Var};
use harness::gradcheck::{
    assert_agree, assert_matches_autograd, check_gradients, generic_point, random_batch,
    weights_after_steps,
};
use harness::params::{init_parameters, var_builder};
use harness::{loss_and_grads, Backward, Loss, ParamInit, Plan, SequenceModel};
use lstm_conv::{Config, ConvLstm};
use lstm_core::{Head, Sampling};
use lstm_linear::LinearLstm;

/// A configuration, a frame `[C, H, W]` and a plan.
struct Case {
    name: &'static str,
    config: Config,
    frame: [usize; 3],
    plan: Plan,
}

impl Case {
    fn batch(&self, seed: u64, dtype: DType) -> Tensor {
        random_batch(
            self.plan.window_len(),
            self.plan.batch,
            self.frame,
            seed,
            dtype,
        )
        .unwrap()
    }
}

fn conv(hidden: &[usize], kernel: &[usize], peephole: bool, head: Head, patch: usize) -> Config {
    Config {
        channels: 1,
        kernel: kernel.to_vec(),
        hidden_channels: hidden.to_vec(),
        peephole,
        head,
        patch,
        encoder_forecaster: false,
    }
}

/// Every option alone (layers with their own kernels, peepholes, each head, patches,
/// batches, three channels, forecasting, the cross-entropy loss, scheduled sampling) and
/// combined.
fn cases() -> Vec<Case> {
    let rgb = Config {
        channels: 3,
        ..conv(&[4, 3], &[3], false, Head::Affine, 1)
    };
    vec![
        Case {
            name: "seed",
            config: Config::default(),
            frame: [1, 9, 7],
            plan: Plan::one_step(5, 1),
        },
        Case {
            name: "layers",
            config: conv(&[3, 2], &[3, 5], false, Head::Affine, 1),
            frame: [1, 8, 8],
            plan: Plan::one_step(5, 2),
        },
        Case {
            name: "peephole",
            config: conv(&[2, 1], &[3], true, Head::None, 1),
            frame: [1, 7, 6],
            plan: Plan::one_step(5, 2),
        },
        Case {
            name: "patch-sigmoid",
            config: conv(&[3], &[3], true, Head::AffineSigmoid, 2),
            frame: [1, 8, 8],
            plan: Plan::one_step(4, 3),
        },
        Case {
            name: "rgb",
            config: rgb,
            frame: [3, 6, 5],
            plan: Plan::one_step(4, 2),
        },
        Case {
            name: "residual",
            config: conv(&[3], &[3], false, Head::Residual, 2),
            frame: [1, 8, 8],
            plan: Plan::one_step(5, 2),
        },
        Case {
            name: "forecast",
            config: conv(&[3, 2], &[3], true, Head::AffineSigmoid, 2),
            frame: [1, 8, 8],
            plan: Plan::forecast(3, 3, 2),
        },
        Case {
            name: "residual-forecast",
            config: conv(&[3], &[3], false, Head::Residual, 2),
            frame: [1, 8, 8],
            plan: Plan::forecast(2, 3, 2),
        },
        Case {
            name: "cross-entropy forecast",
            config: conv(&[3, 2], &[3], true, Head::AffineSigmoid, 2),
            frame: [1, 8, 8],
            plan: Plan::forecast(3, 3, 2).with_loss(Loss::Bce),
        },
        Case {
            name: "scheduled sampling",
            config: conv(&[3, 2], &[3], false, Head::AffineSigmoid, 2),
            frame: [1, 8, 8],
            plan: sampled(Plan::forecast(2, 3, 4)),
        },
        Case {
            name: "encoder-forecaster",
            config: Config {
                encoder_forecaster: true,
                ..conv(&[3, 2], &[3, 5], true, Head::AffineSigmoid, 2)
            },
            frame: [1, 8, 8],
            plan: Plan::forecast(3, 2, 2).with_loss(Loss::Bce),
        },
        Case {
            name: "cross-entropy one step",
            config: conv(&[3], &[3], false, Head::AffineSigmoid, 2),
            frame: [1, 8, 8],
            plan: Plan::one_step(4, 2).with_loss(Loss::Bce),
        },
    ]
}

/// `plan` with scheduled sampling at 1/2 whose draws (seed 11) read the truth at some
/// forecast steps of some windows and the prediction at others.
fn sampled(plan: Plan) -> Plan {
    let plan = plan.with_sampling(Some(Sampling {
        truth: 0.5,
        seed: 11,
    }));
    let draws: Vec<bool> = (plan.known..plan.steps)
        .flat_map(|t| (0..plan.batch).map(move |b| plan.reads_truth(t, b)))
        .collect();
    assert!(draws.contains(&true) && draws.contains(&false), "{draws:?}");
    plan
}

/// Layers of many channels, which the slice driver runs as matrix products
/// (`lowered`/`implicit`, `C_in * C_out >= 64`) rather than direct convolutions: 4x4
/// patches make 16 input channels, so every convolution is one (layer 0: 16 -> 64 in and
/// recurrent, layer 1: 16 -> 32 in, 8 -> 32 recurrent) and so is the head (8 -> 16). The
/// cases above reach them only in `rgb`'s 4 -> 16 recurrent convolution. Too many weights for
/// central differences; `tests/fixtures/general/many-channels` has PyTorch's gradients.
fn many_channels() -> Case {
    Case {
        name: "many channels",
        config: conv(&[16, 8], &[3], false, Head::Affine, 4),
        frame: [1, 16, 16],
        plan: Plan::one_step(5, 2),
    }
}

#[test]
fn gradients_match_central_differences() {
    for case in cases() {
        let batch = case.batch(3, DType::F64);
        let report =
            check_gradients::<ConvLstm>(&case.config, &batch, &case.plan, 13, 1e-5).unwrap();
        println!("{}:", case.name);
        // Central differences carry ~1e-10 of round-off at this step.
        assert_agree(&report, 1e-6, 1e-4);
        for check in &report {
            // The blind forecaster's bottom layer reads zeros: its input weights, alone,
            // get no gradient (its bias does).
            let unread = case.config.encoder_forecaster && check.name == "forecaster.weight_ih_l0";
            assert!(
                (check.max_reference > 1e-6) != unread,
                "{}: {check:?}",
                case.name
            );
        }
    }
}

#[test]
fn hand_written_bptt_equals_autograd() {
    // The candle-ops driver in f64 against candle's autograd through the same forward;
    // also a one-step window, where W_hh gets no gradient.
    let mut all = cases();
    all.push(Case {
        name: "one step",
        config: conv(&[2, 1], &[3], true, Head::None, 1),
        frame: [1, 6, 6],
        plan: Plan::one_step(2, 2),
    });
    for c in all {
        assert_matches_autograd::<ConvLstm>(
            c.name,
            &c.config,
            c.frame,
            &c.plan,
            DType::F64,
            1e-12,
            1e-11,
            1e-3,
        );
    }
}

#[test]
fn f32_slice_driver_equals_autograd() {
    // In f32 on the CPU the slice driver runs (direct convolutions, polynomial exp); the
    // reference is candle's autograd in f64 on the same (f32-drawn) weights. The seed's
    // full size first.
    let mut all = vec![Case {
        name: "seed 65x65",
        config: Config::default(),
        frame: [1, 65, 65],
        plan: Plan::one_step(26, 1),
    }];
    all.extend(cases());
    all.push(many_channels());
    all.push(Case {
        name: "scheduled sampling in shards",
        config: conv(&[3], &[3], false, Head::Residual, 2),
        frame: [1, 8, 8],
        plan: sampled(Plan::forecast(2, 4, 11)),
    });
    all.push(Case {
        name: "kernel 7, wide",
        config: conv(&[2], &[7], false, Head::Affine, 1),
        frame: [1, 5, 83],
        plan: Plan::one_step(3, 2),
    });
    for c in all {
        assert_matches_autograd::<ConvLstm>(
            c.name,
            &c.config,
            c.frame,
            &c.plan,
            DType::F32,
            1e-5,
            1e-4,
            1e-3,
        );
    }
}

#[test]
fn predictions_on_the_slice_driver_equal_candle_ops() {
    // What evaluation reads: every case's plan, one-step and forecasting, patches and three
    // channels among them, through the slice driver and through candle ops.
    for case in cases().into_iter().chain([many_channels()]) {
        let batch = case.batch(5, DType::F32);
        let (_, _, model) =
            generic_point::<ConvLstm>(&case.config, case.frame, 2, DType::F32, &Device::Cpu)
                .unwrap();
        let fast = harness::model::forward_plan(&model, &batch, &case.plan).unwrap();
        let reference = lstm_core::tensors::forward_plan(&model, &batch, &case.plan).unwrap();
        assert_eq!(fast.dims(), reference.dims(), "{}", case.name);
        let diff = max_abs(&(&fast - &reference).unwrap());
        let scale = max_abs(&reference);
        assert!(
            scale > 0.01 && diff < 1e-5,
            "{}: {diff} of {scale}",
            case.name
        );
    }
}

#[test]
fn a_batch_is_the_mean_of_its_windows() {
    // The batch loss and gradients are the mean of each window's alone (slice driver).
    let config = conv(&[3, 2], &[3], true, Head::AffineSigmoid, 2);
    let frame = [1, 8, 8];
    let batch = random_batch(5, 3, frame, 9, DType::F32).unwrap();
    let (_, _, model) =
        generic_point::<ConvLstm>(&config, frame, 2, DType::F32, &Device::Cpu).unwrap();
    let (loss, grads) =
        loss_and_grads(&model, &batch, &Plan::one_step(5, 3), Backward::Fastest).unwrap();
    let mut sum = 0.0;
    let mut sums: Vec<Tensor> = grads.iter().map(|g| g.zeros_like().unwrap()).collect();
    for b in 0..3 {
        let one = batch.narrow(1, b, 1).unwrap().contiguous().unwrap();
        let (l, g) =
            loss_and_grads(&model, &one, &Plan::one_step(5, 1), Backward::Fastest).unwrap();
        sum += l / 3.0;
        for (s, g) in sums.iter_mut().zip(g) {
            *s = (&*s + (g / 3.0).unwrap()).unwrap();
        }
    }
    assert!((loss - sum).abs() < 1e-6 * sum, "{loss} vs {sum}");
    for (g, s) in grads.iter().zip(&sums) {
        let diff = max_abs(&(g - s).unwrap());
        let scale = max_abs(s);
        assert!(diff <= 1e-5 * scale.max(1e-3), "{diff} vs {scale}");
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
    let frame = [1, 9, 8];
    let batch = random_batch(6, 1, frame, 4, DType::F64).unwrap();
    let window = batch.squeeze(1).unwrap(); // [L, 1, H, W]
    let (specs, vars, model) =
        generic_point::<ConvLstm>(&config, frame, 6, DType::F64, &Device::Cpu).unwrap();
    let (loss, grads) =
        loss_and_grads(&model, &batch, &Plan::one_step(6, 1), Backward::Fastest).unwrap();

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
    for ((spec, ours), theirs) in
        specs
            .iter()
            .zip(&grads)
            .zip([stack(&w), stack(&r), stack(&b), stack(&rb)])
    {
        let diff = max_abs(&(ours - &theirs).unwrap());
        let scale = max_abs(&theirs);
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
/// With a peephole `w_co = 0.5` on that pixel, o sees 0.4 + 0.5*c = 0.54382457:
/// h = sigmoid(0.54382457) * 0.27996965 = 0.63270161 * 0.27996965 = 0.17713726.
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
    let mut frames: Vec<f64> = (1..=9).map(|v| v as f64 / 10.0).collect();
    frames.extend([0.0; 9]);
    let inputs = Tensor::from_vec(frames, (2, 1, 1, 3, 3), &dev)
        .unwrap()
        .narrow(0, 0, 1)
        .unwrap();
    for (peephole, want) in [(false, 0.16761437), (true, 0.17713726)] {
        let mut tensors = vec![
            Tensor::from_slice(&kernel, (4, 1, 5, 5), &dev).unwrap(),
            Tensor::zeros((4, 1, 5, 5), DType::F64, &dev).unwrap(),
            Tensor::from_slice(&bias, 4, &dev).unwrap(),
            Tensor::zeros(4, DType::F64, &dev).unwrap(),
        ];
        if peephole {
            let mut co = vec![0f64; 9];
            co[4] = 0.5;
            // w_ci, w_cf read c_prev = 0: any value leaves this step alone.
            tensors.push(Tensor::full(3f64, (1, 3, 3), &dev).unwrap());
            tensors.push(Tensor::full(-3f64, (1, 3, 3), &dev).unwrap());
            tensors.push(Tensor::from_vec(co, (1, 3, 3), &dev).unwrap());
        }
        let config = Config {
            peephole,
            ..Config::default()
        };
        let model = ConvLstm::from_tensors(config, [3, 3], tensors).unwrap();
        let pred = model.forward(&inputs).unwrap(); // [1, 1, 1, 3, 3]
        let centre = pred.flatten_all().unwrap().to_vec1::<f64>().unwrap()[4];
        assert!(
            (centre - want).abs() < 1e-8,
            "peephole {peephole}: {centre}"
        );
    }
}

/// A ConvLSTM with 1x1 kernels on 1x1 frames is a fully connected LSTM: with the same
/// weights, two layers of 2 and 3 units and the same head, both predict the same sequence.
#[test]
fn one_by_one_conv_lstm_is_the_linear_lstm() {
    let dev = Device::Cpu;
    let conv_config = conv(&[2, 3], &[1], false, Head::Affine, 1);
    let linear_config = lstm_linear::Config {
        channels: 1,
        height: 1,
        width: 1,
        hidden: vec![2, 3],
        sigmoid: false,
    };
    let mut specs = ConvLstm::parameter_specs(&conv_config, [1, 1, 1]).unwrap();
    for s in &mut specs {
        s.init = ParamInit::Normal { fan_in: 1 };
    }
    let vars = init_parameters(&specs, 21, DType::F64, &dev).unwrap();
    let conv = ConvLstm::from_tensors(
        conv_config,
        [1, 1],
        vars.iter().map(|v| v.as_tensor().clone()).collect(),
    )
    .unwrap();
    // The linear layout drops the conv's trailing 1x1 dims.
    let linear_specs = linear_config.parameter_specs();
    let flat: Vec<Tensor> = vars
        .iter()
        .zip(&linear_specs)
        .map(|(v, s)| v.as_tensor().reshape(s.shape.as_slice()).unwrap())
        .collect();
    let linear = LinearLstm::from_tensors(linear_config, flat).unwrap();
    let inputs = random_batch(8, 2, [1, 1, 1], 9, DType::F64).unwrap();
    let a: Vec<f64> = conv
        .forward(&inputs)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let b: Vec<f64> = linear
        .forward(&inputs)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    assert_eq!(a.len(), 16);
    for (x, y) in a.iter().zip(&b) {
        assert!((x - y).abs() < 1e-14, "{a:?} vs {b:?}");
    }
}

#[test]
fn rollout_feeds_predictions_back() {
    let dev = Device::Cpu;
    let config = conv(&[3, 2], &[3], true, Head::AffineSigmoid, 1);
    let frame = [1, 9, 9];
    let specs = ConvLstm::parameter_specs(&config, frame).unwrap();
    let vars = init_parameters(&specs, 2, DType::F32, &dev).unwrap();
    let model =
        ConvLstm::load(&config, frame, var_builder(&specs, &vars, DType::F32, &dev)).unwrap();
    let window = random_batch(8, 1, frame, 4, DType::F32)
        .unwrap()
        .squeeze(1)
        .unwrap(); // [8, C, H, W]
    let context = window.narrow(0, 0, 5).unwrap();
    let rolled = harness::predict::rollout(&model, &context, 3).unwrap();
    assert_eq!(rolled.dims(), &[3, 1, 9, 9]);
    let max_diff = |a: &Tensor, b: &Tensor| max_abs(&(a - b).unwrap());
    // The first rolled frame is the one-step prediction after the context.
    let one_step = harness::predict(&model, &window).unwrap();
    assert!(max_diff(&rolled.get(0).unwrap(), &one_step.get(4).unwrap()) < 1e-6);
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
    let third = harness::predict(&model, &fed).unwrap().get(6).unwrap();
    assert!(max_diff(&rolled.get(2).unwrap(), &third) < 1e-6);
    assert!(max_diff(&rolled.get(2).unwrap(), &one_step.get(6).unwrap()) > 1e-4);
}

/// The same seed gives the same weights, bit for bit, with 1, 2 or 3 threads.
#[test]
fn results_do_not_depend_on_the_thread_count() {
    for (config, frame, batch) in [
        (Config::default(), [1, 65, 65], 1),
        (
            conv(&[4, 3], &[5, 3], true, Head::AffineSigmoid, 4),
            [1, 16, 16],
            3,
        ),
    ] {
        let plan = Plan::one_step(6, batch);
        let batches: Vec<Tensor> = (0..2)
            .map(|k| random_batch(6, batch, frame, 70 + k, DType::F32).unwrap())
            .collect();
        let one = weights_after_steps::<ConvLstm>(&config, &batches, &plan, 1);
        for threads in [2, 3] {
            let other = weights_after_steps::<ConvLstm>(&config, &batches, &plan, threads);
            assert!(one == other, "{config:?}: {threads} threads differ from 1");
        }
    }
}

/// The largest absolute value of a tensor, as f64.
fn max_abs(t: &Tensor) -> f64 {
    t.abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap()
}

#[test]
fn the_cross_entropy_stays_exact_where_the_sigmoid_saturates() {
    // Logits near +40: in f32 the sigmoid rounds to 1 and ln(1 - p) would be -inf. Taken
    // from the logits, the slice driver's loss and gradients (in shards: 10 windows) are
    // finite and those of candle's autograd in f64 on the same weights.
    let config = conv(&[3], &[3], false, Head::AffineSigmoid, 2);
    let frame = [1, 8, 8];
    let plan = Plan::forecast(2, 2, 10).with_loss(Loss::Bce);
    let (specs, vars, model) =
        generic_point::<ConvLstm>(&config, frame, 2, DType::F32, &Device::Cpu).unwrap();
    let bias = specs.iter().position(|s| s.name == "head.bias").unwrap();
    vars[bias]
        .set(&Tensor::full(40f32, 4, &Device::Cpu).unwrap())
        .unwrap();
    let vars64: Vec<Var> = vars
        .iter()
        .map(|v| Var::from_tensor(&v.as_tensor().to_dtype(DType::F64).unwrap()).unwrap())
        .collect();
    let model64 = ConvLstm::load(
        &config,
        frame,
        var_builder(&specs, &vars64, DType::F64, &Device::Cpu),
    )
    .unwrap();
    let batch = random_batch(plan.window_len(), plan.batch, frame, 8, DType::F32).unwrap();
    let batch64 = batch.to_dtype(DType::F64).unwrap();
    let (loss, grads) = loss_and_grads(&model, &batch, &plan, Backward::Fastest).unwrap();
    let (reference, ref_grads) =
        loss_and_grads(&model64, &batch64, &plan, Backward::Autograd).unwrap();
    println!("saturated: loss {loss} vs f64 autograd {reference}");
    // About 40 (1 - y) per value: 64 values, 2 frames, y uniform: about 2,560 per window.
    assert!(reference > 1000.0 && loss.is_finite());
    assert!((loss - reference).abs() <= 1e-5 * reference);
    for (g, r) in grads.iter().zip(&ref_grads) {
        let diff = max_abs(&(g.to_dtype(DType::F64).unwrap() - r).unwrap());
        assert!(diff <= 1e-4 * max_abs(r).max(1e-3), "{diff}");
    }
}
