//! PredRNN's gradients (candle's autograd through the core's candle-ops driver) against
//! central differences of its forward, every option alone and combined; results that do not
//! depend on the thread count; and the zigzag of the spatiotemporal memory, which a stack
//! of ConvLSTMs does not have.

use candle_core::{DType, Device, Tensor};
use harness::gradcheck::{
    assert_agree, check_gradients, generic_point, random_batch, weights_after_steps,
};
use harness::{Loss, Plan};
use lstm_core::{Head, Sampling, StackStep};
use predrnn::{Config, PredRnn};

struct Case {
    name: &'static str,
    config: Config,
    frame: [usize; 3],
    plan: Plan,
}

fn predrnn(hidden: &[usize], kernel: usize, head: Head, patch: usize) -> Config {
    Config {
        channels: 1,
        kernel,
        hidden_channels: hidden.to_vec(),
        head,
        patch,
    }
}

fn cases() -> Vec<Case> {
    let sampled = Plan::forecast(2, 3, 3).with_sampling(Some(Sampling {
        truth: 0.5,
        seed: 11,
    }));
    vec![
        Case {
            name: "one layer, h is the prediction",
            config: Config::default(),
            frame: [1, 6, 5],
            plan: Plan::one_step(4, 1),
        },
        Case {
            name: "two layers, 1x1 head",
            config: predrnn(&[2, 2], 3, Head::Affine, 1),
            frame: [1, 6, 6],
            plan: Plan::one_step(4, 2),
        },
        Case {
            name: "three channels, patches, residual forecast",
            config: Config {
                channels: 3,
                ..predrnn(&[3], 3, Head::Residual, 2)
            },
            frame: [3, 4, 4],
            plan: Plan::forecast(2, 2, 2),
        },
        Case {
            name: "cross-entropy forecast, scheduled sampling",
            config: predrnn(&[2, 2], 3, Head::AffineSigmoid, 2),
            frame: [1, 4, 6],
            plan: sampled.with_loss(Loss::Bce),
        },
    ]
}

#[test]
fn gradients_match_central_differences() {
    for case in cases() {
        let batch = random_batch(
            case.plan.window_len(),
            case.plan.batch,
            case.frame,
            3,
            DType::F64,
        )
        .unwrap();
        let report =
            check_gradients::<PredRnn>(&case.config, &batch, &case.plan, 13, 1e-5).unwrap();
        println!("{}:", case.name);
        assert_agree(&report, 1e-6, 1e-4);
        for check in &report {
            assert!(check.max_reference > 1e-6, "{}: {check:?}", case.name);
        }
    }
}

#[test]
fn training_does_not_depend_on_the_thread_count() {
    let case = &cases()[3];
    let batches: Vec<Tensor> = (0..2)
        .map(|s| {
            random_batch(
                case.plan.window_len(),
                case.plan.batch,
                case.frame,
                s,
                DType::F32,
            )
            .unwrap()
        })
        .collect();
    let one = weights_after_steps::<PredRnn>(&case.config, &batches, &case.plan, 1);
    let two = weights_after_steps::<PredRnn>(&case.config, &batches, &case.plan, 2);
    assert_eq!(one, two);
}

/// The memory `M` zigzags: the bottom layer's step reads the top layer's `M` of the step
/// before. The state after a step holds `M` as the top layer left it; the bottom layer's
/// next `H` changes when that `M` changes, and with one layer `M` comes back to it.
#[test]
fn the_spatiotemporal_memory_passes_from_the_top_layer_to_the_bottom_one() {
    let config = predrnn(&[2, 2, 2], 3, Head::Affine, 1);
    let frame = [1, 5, 5];
    let (_, _, model) =
        generic_point::<PredRnn>(&config, frame, 7, DType::F64, &Device::Cpu).unwrap();
    let x = random_batch(1, 1, frame, 1, DType::F64)
        .unwrap()
        .get(0)
        .unwrap(); // [1, 1, 5, 5]
    let start = model.initial_state(1, DType::F64, &Device::Cpu).unwrap();
    assert_eq!(start.len(), 2 * 3 + 1);
    let (_, after) = model.step(&x, &start).unwrap();
    // Only M differs between these two states: the bottom layer's new H differs too.
    let mut other = after.clone();
    let m = other.last().unwrap().clone();
    *other.last_mut().unwrap() = (m * 0.5).unwrap();
    let bottom_h = |state: &[Tensor]| -> Vec<f64> {
        let (_, next) = model.step(&x, state).unwrap();
        next[0].flatten_all().unwrap().to_vec1().unwrap()
    };
    let (a, b) = (bottom_h(&after), bottom_h(&other));
    let diff = a
        .iter()
        .zip(&b)
        .map(|(p, q)| (p - q).abs())
        .fold(0.0, f64::max);
    assert!(diff > 1e-6, "the bottom layer ignores M: {diff}");
}

#[test]
fn layers_of_different_channels_are_refused() {
    let err = PredRnn::new(
        predrnn(&[4, 2], 3, Head::Affine, 1),
        [8, 8],
        candle_nn::VarBuilder::zeros(DType::F32, &Device::Cpu),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("same channels"), "{err}");
    let flags = lstm_conv::Flags {
        hidden_channels: Some(vec![4, 2]),
        ..Default::default()
    };
    let err = predrnn::config(&flags, [1, 8, 8]).unwrap_err().to_string();
    assert!(err.starts_with("--hidden-channels 4,2"), "{err}");
    for (flags, named) in [
        (
            lstm_conv::Flags {
                peephole: true,
                ..Default::default()
            },
            "--peephole",
        ),
        (
            lstm_conv::Flags {
                kernel: Some(vec![3, 5]),
                ..Default::default()
            },
            "--kernel 3,5",
        ),
        (
            lstm_conv::Flags {
                kernel: Some(vec![4]),
                ..Default::default()
            },
            "--kernel 4",
        ),
    ] {
        let err = predrnn::config(&flags, [1, 8, 8]).unwrap_err().to_string();
        assert!(err.starts_with(named), "{err}");
    }
}

/// The ConvLSTM's kernels as PredRNN's convolutions (f32 on the CPU) against candle's
/// `conv2d` and its autograd: values and both gradients, kernels 1, 3 and 5, channels that
/// run as direct loops and as products, a batch that is not a multiple of the chunk.
#[test]
fn the_fast_convolution_matches_candles() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    for (n, c_in, c_out, h, w, k) in [
        (3, 1, 7, 6, 5, 3),
        (5, 16, 32, 8, 8, 5),
        (2, 8, 4, 4, 6, 1),
        (1, 64, 96, 16, 16, 5),
    ] {
        let draw = |len: usize, rng: &mut rand::rngs::StdRng| -> Vec<f32> {
            (0..len).map(|_| rng.random::<f32>() - 0.5).collect()
        };
        let x = Tensor::from_vec(
            draw(n * c_in * h * w, &mut rng),
            (n, c_in, h, w),
            &Device::Cpu,
        )
        .unwrap();
        let kernel = Tensor::from_vec(
            draw(c_out * c_in * k * k, &mut rng),
            (c_out, c_in, k, k),
            &Device::Cpu,
        )
        .unwrap();
        let d_out = Tensor::from_vec(
            draw(n * c_out * h * w, &mut rng),
            (n, c_out, h, w),
            &Device::Cpu,
        )
        .unwrap();
        let run = |fast: bool| -> Vec<Vec<f32>> {
            let (xv, kv) = (
                candle_core::Var::from_tensor(&x).unwrap(),
                candle_core::Var::from_tensor(&kernel).unwrap(),
            );
            let out = match fast {
                true => predrnn::conv::same_conv(xv.as_tensor(), kv.as_tensor()).unwrap(),
                false => xv.conv2d(kv.as_tensor(), k / 2, 1, 1, 1).unwrap(),
            };
            let loss = (&out * &d_out).unwrap().sum_all().unwrap();
            let grads = loss.backward().unwrap();
            [
                out,
                grads.get(&xv).unwrap().clone(),
                grads.get(&kv).unwrap().clone(),
            ]
            .iter()
            .map(|t| t.flatten_all().unwrap().to_vec1().unwrap())
            .collect()
        };
        let (ours, candle) = (run(true), run(false));
        for (what, (a, b)) in ["output", "input gradient", "kernel gradient"]
            .iter()
            .zip(ours.iter().zip(&candle))
        {
            let scale = b.iter().fold(0f32, |m, v| m.max(v.abs()));
            let diff = a.iter().zip(b).fold(0f32, |m, (p, q)| m.max((p - q).abs()));
            assert!(
                scale > 0.1 && diff <= 1e-5 * scale,
                "{what} of {:?}: {diff} of {scale}",
                (n, c_in, c_out, h, w, k)
            );
        }
    }
}
