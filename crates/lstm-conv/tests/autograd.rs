//! A model that writes its forward in candle ops and nothing else is complete: it trains
//! through candle's autograd. Here each of the two models, stripped of its fast paths (the
//! written-out backward in candle ops and the slice kernels), gives the gradients and the
//! training steps its fast paths give.

use candle_core::{DType, Device, Result, Tensor};
use harness::adam::Adam;
use harness::gradcheck::{generic_point, random_batch};
use harness::{loss_and_grads, train_step, Backward, Plan, SequenceModel, Step};
use lstm_core::cell::Peepholes;
use lstm_core::{GateOps, Head, Recurrent, Stack};

/// `M` with its forward alone: what a model gets that implements [`GateOps`] and no more.
struct ForwardOnly<'a, M>(&'a M);

impl<M: Recurrent> GateOps for ForwardOnly<'_, M> {
    fn input_preact(&self, k: usize, x: &Tensor) -> Result<Tensor> {
        self.0.input_preact(k, x)
    }

    fn add_recurrent(&self, k: usize, preact: &Tensor, h: Option<&Tensor>) -> Result<Tensor> {
        self.0.add_recurrent(k, preact, h)
    }

    fn peepholes(&self, k: usize) -> Option<Peepholes<'_>> {
        self.0.peepholes(k)
    }

    fn head_forward(&self, h: &Tensor) -> Result<Tensor> {
        self.0.head_forward(h)
    }
}

impl<M: Recurrent> Recurrent for ForwardOnly<'_, M> {
    fn stack(&self) -> &Stack {
        self.0.stack()
    }

    fn parameters(&self) -> Vec<&Tensor> {
        self.0.parameters()
    }
}

/// The largest difference between two lists of tensors, relative to the largest value of
/// `reference` (at least `floor`).
fn relative_difference(ours: &[Tensor], reference: &[Tensor], floor: f64) -> f64 {
    assert_eq!(ours.len(), reference.len());
    ours.iter()
        .zip(reference)
        .map(|(a, b)| {
            let a = a.to_dtype(DType::F64).unwrap().flatten_all().unwrap();
            let b = b.to_dtype(DType::F64).unwrap().flatten_all().unwrap();
            let diff: f64 = (&a - &b)
                .unwrap()
                .abs()
                .unwrap()
                .max(0)
                .unwrap()
                .to_scalar()
                .unwrap();
            let scale: f64 = b.abs().unwrap().max(0).unwrap().to_scalar().unwrap();
            assert!(scale > 0.0, "a reference gradient is all zeros");
            diff / scale.max(floor)
        })
        .fold(0.0, f64::max)
}

/// The gradients of `M` stripped of its fast paths (autograd) against its fast paths': the
/// written-out backward in f64, to 1e-10; the slice kernels in f32, to 1e-4.
fn gradients_agree<M: SequenceModel>(config: &M::Config, frame: [usize; 3], plan: &Plan) {
    for (dtype, tolerance, floor) in [(DType::F64, 1e-10, 0.0), (DType::F32, 1e-4, 1e-3)] {
        let batch = random_batch(plan.window_len(), plan.batch, frame, 7, dtype).unwrap();
        let (_, _, model) = generic_point::<M>(config, frame, 3, dtype, &Device::Cpu).unwrap();
        let (loss, grads) =
            loss_and_grads(&ForwardOnly(&model), &batch, plan, Backward::Fastest).unwrap();
        let (fast_loss, fast_grads) =
            loss_and_grads(&model, &batch, plan, Backward::Fastest).unwrap();
        let diff = relative_difference(&grads, &fast_grads, floor);
        println!(
            "{} {dtype:?}: loss {loss} vs {fast_loss}, gradients {diff:.2e}",
            M::KIND
        );
        assert!(
            (loss - fast_loss).abs() <= tolerance * fast_loss,
            "{loss} vs {fast_loss}"
        );
        assert!(
            diff <= tolerance,
            "{}: {dtype:?} gradients differ by {diff:.2e}",
            M::KIND
        );
    }
}

/// Five Adam steps in f32 of `M` stripped of its fast paths and of `M` itself, from the
/// same weights: the same losses, to 1e-5.
fn trains_alike<M: SequenceModel>(config: &M::Config, frame: [usize; 3], plan: &Plan) {
    let batches: Vec<Tensor> = (0..5)
        .map(|seed| random_batch(plan.window_len(), plan.batch, frame, seed, DType::F32).unwrap())
        .collect();
    let losses = |fast: bool| -> Vec<f64> {
        let (_, vars, model) =
            generic_point::<M>(config, frame, 1, DType::F32, &Device::Cpu).unwrap();
        let mut adam = Adam::new(Default::default(), &vars).unwrap();
        batches
            .iter()
            .map(|batch| {
                let step = match fast {
                    true => train_step(&model, batch, plan, &vars, &mut adam, Backward::Fastest),
                    false => train_step(
                        &ForwardOnly(&model),
                        batch,
                        plan,
                        &vars,
                        &mut adam,
                        Backward::Fastest,
                    ),
                };
                match step.unwrap() {
                    Step::Updated {
                        loss,
                        not_finite: None,
                    } => loss,
                    other => panic!("{other:?}"),
                }
            })
            .collect()
    };
    let (autograd, fast) = (losses(false), losses(true));
    println!("{}: autograd {autograd:?}\n      fast {fast:?}", M::KIND);
    for (a, f) in autograd.iter().zip(&fast) {
        assert!((a - f).abs() <= 1e-5 * f, "{a} vs {f}");
    }
    assert!(fast[4] != fast[0], "the steps changed the weights");
}

/// The general ConvLSTM over 8x8 frames at its generic point of seed 1, in f32.
fn seeded_conv() -> (
    Vec<harness::ParamSpec>,
    Vec<candle_core::Var>,
    lstm_conv::ConvLstm,
) {
    generic_point::<lstm_conv::ConvLstm>(&general_conv(), [1, 8, 8], 1, DType::F32, &Device::Cpu)
        .unwrap()
}

fn general_conv() -> lstm_conv::Config {
    lstm_conv::Config {
        channels: 1,
        kernel: vec![3],
        hidden_channels: vec![4, 3],
        peephole: true,
        head: Head::AffineSigmoid,
        patch: 2,
        encoder_forecaster: false,
    }
}

#[test]
fn a_conv_lstm_without_fast_paths_has_their_gradients() {
    gradients_agree::<lstm_conv::ConvLstm>(&general_conv(), [1, 8, 8], &Plan::forecast(3, 2, 2));
    gradients_agree::<lstm_conv::ConvLstm>(&Default::default(), [1, 6, 6], &Plan::one_step(5, 1));
}

#[test]
fn a_linear_lstm_without_fast_paths_has_their_gradients() {
    let config = lstm_linear::Config {
        channels: 1,
        height: 3,
        width: 4,
        hidden: vec![6, 5],
        sigmoid: false,
    };
    gradients_agree::<lstm_linear::LinearLstm>(&config, [1, 3, 4], &Plan::one_step(5, 2));
}

#[test]
fn a_model_without_fast_paths_trains_as_with_them() {
    trains_alike::<lstm_conv::ConvLstm>(&general_conv(), [1, 8, 8], &Plan::one_step(5, 3));
}

/// The weights after one Adam step of `model`'s kind from seeded weights on `batch`, with
/// `options`; `strip` trains it without its fast paths.
fn weights_after_step(
    batch: &Tensor,
    plan: &Plan,
    options: harness::StepOptions,
    strip: bool,
) -> Vec<Vec<f32>> {
    let (_, vars, model) = seeded_conv();
    let mut adam = Adam::new(Default::default(), &vars).unwrap();
    let step = match strip {
        true => train_step(&ForwardOnly(&model), batch, plan, &vars, &mut adam, options),
        false => train_step(&model, batch, plan, &vars, &mut adam, options),
    };
    assert!(matches!(
        step.unwrap(),
        Step::Updated {
            not_finite: None,
            ..
        }
    ));
    vars.iter()
        .map(|v| v.as_tensor().flatten_all().unwrap().to_vec1().unwrap())
        .collect()
}

/// Clipping the gradients' norm: a bound above the norm changes nothing, bit for bit; a
/// bound below it gives the update of the gradients scaled by hand (PyTorch's
/// `clip_grad_norm_`), on the slice driver and under autograd alike.
#[test]
fn clipped_gradients_update_as_scaled_ones() {
    let plan = Plan::one_step(5, 3);
    let batch = random_batch(plan.window_len(), plan.batch, [1, 8, 8], 2, DType::F32).unwrap();
    let (_, _, model) = seeded_conv();
    for strip in [false, true] {
        let (_, grads) = match strip {
            false => loss_and_grads(&model, &batch, &plan, Backward::Fastest),
            true => loss_and_grads(&ForwardOnly(&model), &batch, &plan, Backward::Fastest),
        }
        .unwrap();
        let squares = |g: &Tensor| {
            g.sqr()
                .and_then(|s| s.sum_all())
                .and_then(|s| s.to_scalar::<f32>())
        };
        let norm = grads
            .iter()
            .map(|g| squares(g).unwrap() as f64)
            .sum::<f64>()
            .sqrt();
        let clip = |max: f64| harness::StepOptions {
            backward: Backward::Fastest,
            clip_grad_norm: Some(max),
        };
        let plain = weights_after_step(&batch, &plan, Backward::Fastest.into(), strip);
        assert_eq!(
            weights_after_step(&batch, &plan, clip(2.0 * norm), strip),
            plain
        );
        let clipped = weights_after_step(&batch, &plan, clip(0.1 * norm), strip);
        // By hand: the same gradients times 0.1 / (1 + 1e-6 / norm), then Adam.
        let (_, vars, _) = seeded_conv();
        let coef = 0.1 * norm / (norm + 1e-6);
        let scaled: Vec<Tensor> = grads.iter().map(|g| g.affine(coef, 0.0).unwrap()).collect();
        Adam::new(Default::default(), &vars)
            .unwrap()
            .update(&vars, &scaled)
            .unwrap();
        for (ours, theirs) in clipped.iter().zip(&vars) {
            let theirs: Vec<f32> = theirs.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
            for (a, b) in ours.iter().zip(&theirs) {
                assert!(
                    (a - b).abs() <= 1e-6 * b.abs().max(1e-3),
                    "{a} vs {b} (stripped: {strip})"
                );
            }
        }
        assert_ne!(clipped, plain);
    }
}
