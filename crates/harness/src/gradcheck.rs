//! Gradient checks for any [`SequenceModel`], for tests (the `testing` feature): central
//! differences, candle's autograd, and gradients another implementation saved. Each is an
//! independent computation to test the drivers' backpropagation through time against.

use candle_core::{DType, Device, Tensor, Var};
use lstm_core::{tensors, Plan};

use crate::model::{loss_and_grads, Backward, SequenceModel};
use crate::params::{init_parameters, var_builder};
use crate::Result;

/// How one parameter tensor's gradient compares with a reference.
#[derive(Debug, Clone)]
pub struct GradCheck {
    pub name: String,
    /// Largest `|gradient - reference|` over the tensor's entries.
    pub max_abs_diff: f64,
    /// Largest `|reference|`, the scale `max_abs_diff` is read against.
    pub max_reference: f64,
}

/// Model `M` over frames `frame` with every parameter drawn from `seed`, biases and
/// peepholes too (not left at zero): a generic point, where a wrong gradient cannot hide
/// behind a zero.
pub fn generic_point<M: SequenceModel>(
    config: &M::Config,
    frame: [usize; 3],
    seed: u64,
    dtype: DType,
    device: &Device,
) -> Result<(Vec<crate::ParamSpec>, Vec<Var>, M)> {
    let mut specs = M::parameter_specs(config, frame)?;
    for spec in &mut specs {
        spec.init = crate::ParamInit::Normal { fan_in: 4 };
    }
    let vars = init_parameters(&specs, seed, dtype, device)?;
    let model = M::load(config, frame, var_builder(&specs, &vars, dtype, device))?;
    Ok((specs, vars, model))
}

/// Compares the drivers' gradients with central differences `(L(p+e) - L(p-e)) / 2e` of
/// the candle-ops forward, for every entry of every parameter, in f64 on the CPU, at a
/// generic point drawn with `seed`. `batch`: `[L, B, C, H, W]`, any float type.
pub fn check_gradients<M: SequenceModel>(
    config: &M::Config,
    batch: &Tensor,
    plan: &Plan,
    seed: u64,
    step: f64,
) -> Result<Vec<GradCheck>> {
    let device = Device::Cpu;
    let batch = batch.to_dtype(DType::F64)?;
    let (_, _, c, h, w) = batch.dims5()?;
    let (specs, vars, model) = generic_point::<M>(config, [c, h, w], seed, DType::F64, &device)?;
    let (_, grads) = loss_and_grads(&model, &batch, plan, Backward::Fastest)?;
    let loss_at = |model: &M| -> Result<f64> {
        let (_, loss) = tensors::forward_loss(model, &batch, plan)?;
        Ok(loss.to_scalar::<f64>()?)
    };
    let mut report = Vec::new();
    for ((spec, var), grad) in specs.iter().zip(&vars).zip(&grads) {
        let analytic: Vec<f64> = grad.flatten_all()?.to_vec1()?;
        let original: Vec<f64> = var.as_tensor().flatten_all()?.to_vec1()?;
        let mut check = GradCheck {
            name: spec.name.clone(),
            max_abs_diff: 0.0,
            max_reference: 0.0,
        };
        for j in 0..original.len() {
            let mut values = original.clone();
            values[j] = original[j] + step;
            set(var, &values)?;
            let plus = loss_at(&model)?;
            values[j] = original[j] - step;
            set(var, &values)?;
            let minus = loss_at(&model)?;
            let numeric = (plus - minus) / (2.0 * step);
            check.max_abs_diff = check.max_abs_diff.max((analytic[j] - numeric).abs());
            check.max_reference = check.max_reference.max(numeric.abs());
        }
        set(var, &original)?;
        report.push(check);
    }
    Ok(report)
}

/// A batch of `batch` windows of `len` random frames `[len, batch, C, H, W]`, values in
/// [0, 1), in `dtype` (drawn in f64 from `seed`).
pub fn random_batch(
    len: usize,
    batch: usize,
    [c, h, w]: [usize; 3],
    seed: u64,
    dtype: DType,
) -> Result<Tensor> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let n = len * batch * c * h * w;
    let values: Vec<f64> = (0..n).map(|_| rng.random::<f64>()).collect();
    Ok(Tensor::from_vec(values, (len, batch, c, h, w), &Device::Cpu)?.to_dtype(dtype)?)
}

fn set(var: &Var, values: &[f64]) -> Result<()> {
    let t = Tensor::from_slice(values, var.as_tensor().shape(), var.device())?;
    var.set(&t)?;
    Ok(())
}

/// Runs the drivers ([`loss_and_grads`]: the slice driver for an f32 CPU batch, the
/// candle-ops one otherwise) and candle's autograd through the candle-ops forward on the
/// same weights (drawn with `seed`, biases nonzero) and batch; the reference in
/// `reference_dtype` (f64 for an f32 batch, so that the comparison measures the driver's
/// rounding and not the reference's). Returns `(loss, reference_loss, per-tensor checks)`.
pub fn compare_with_autograd<M: SequenceModel>(
    config: &M::Config,
    batch: &Tensor,
    plan: &Plan,
    seed: u64,
    reference_dtype: DType,
) -> Result<(f64, f64, Vec<GradCheck>)> {
    let (dtype, device) = (batch.dtype(), batch.device().clone());
    let (_, _, c, h, w) = batch.dims5()?;
    let frame = [c, h, w];
    let (specs, vars, model) = generic_point::<M>(config, frame, seed, dtype, &device)?;
    let (loss, grads) = loss_and_grads(&model, batch, plan, Backward::Fastest)?;
    let ref_vars = vars
        .iter()
        .map(|v| Var::from_tensor(&v.as_tensor().to_dtype(reference_dtype)?))
        .collect::<candle_core::Result<Vec<_>>>()?;
    let ref_model = M::load(
        config,
        frame,
        var_builder(&specs, &ref_vars, reference_dtype, &device),
    )?;
    let ref_batch = batch.to_dtype(reference_dtype)?;
    let (ref_loss, ref_grads) = loss_and_grads(&ref_model, &ref_batch, plan, Backward::Autograd)?;
    let checks = compare(&specs, &grads, &ref_grads)?;
    Ok((loss, ref_loss, checks))
}

/// Compares the drivers' predictions and gradients with those another implementation saved,
/// on the CPU in `dtype` (f64: the candle-ops driver; f32: the slice driver). `fixture`: a
/// safetensors file holding the batch as `window` `[B, L, C, H, W]`, every parameter under
/// its name, the gradient of each as `grad.<name>`, the batch loss as `loss` `[1]` and every
/// step's output as `prediction` `[B, T, C, H, W]` (as `bench/torch_general.py` writes them).
/// Returns `(loss, reference_loss, prediction check, gradient checks)`.
pub fn compare_with_saved<M: SequenceModel>(
    config: &M::Config,
    fixture: &std::path::Path,
    plan: &Plan,
    dtype: DType,
) -> Result<(f64, f64, GradCheck, Vec<GradCheck>)> {
    let saved = Saved::read(fixture)?;
    let batch = saved.get("window")?.transpose(0, 1)?.contiguous()?; // [L, B, C, H, W]
    let batch = batch.to_dtype(dtype)?;
    let (specs, model) = load_saved::<M>(config, &saved, &batch)?;
    let (loss, ref_loss, checks) = compare_saved(&specs, &model, &saved, "grad.", &batch, plan)?;
    // The drivers' own forward: the slice driver's for f32, as evaluation runs it.
    let ours = crate::model::forward_plan(&model, &batch, plan)?.transpose(0, 1)?;
    let prediction = check("prediction", &ours, &saved.get("prediction")?)?;
    Ok((loss, ref_loss, prediction, checks))
}

/// [`compare_with_saved`] for weights and gradients in two files (the gradients under the
/// parameters' own names, the loss as `loss`), on a batch `[L, B, C, H, W]` of your own, as
/// `bench/torch_reference.py --save-init ... --dump-grads ...` writes them.
pub fn compare_with_files<M: SequenceModel>(
    config: &M::Config,
    weights: &std::path::Path,
    grads: &std::path::Path,
    batch: &Tensor,
    plan: &Plan,
) -> Result<(f64, f64, Vec<GradCheck>)> {
    let (weights, grads) = (Saved::read(weights)?, Saved::read(grads)?);
    let batch = batch.to_dtype(DType::F64)?;
    let (specs, model) = load_saved::<M>(config, &weights, &batch)?;
    compare_saved(&specs, &model, &grads, "", &batch, plan)
}

/// A safetensors file's tensors, read as f64.
struct Saved(crate::checkpoint::Checkpoint);

impl Saved {
    fn read(path: &std::path::Path) -> Result<Saved> {
        Ok(Saved(crate::checkpoint::Checkpoint::read(path)?))
    }

    fn get(&self, name: &str) -> Result<Tensor> {
        Ok(self.0.tensor(name)?.to_dtype(DType::F64)?)
    }
}

/// Model `M` with the weights `weights` holds under the parameters' names, in the dtype of
/// `batch` `[L, B, C, H, W]`, on the CPU.
fn load_saved<M: SequenceModel>(
    config: &M::Config,
    weights: &Saved,
    batch: &Tensor,
) -> Result<(Vec<crate::ParamSpec>, M)> {
    let (_, _, c, h, w) = batch.dims5()?;
    let frame = [c, h, w];
    let specs = M::parameter_specs(config, frame)?;
    let dtype = batch.dtype();
    let vars = specs
        .iter()
        .map(|s| Ok(Var::from_tensor(&weights.get(&s.name)?.to_dtype(dtype)?)?))
        .collect::<Result<Vec<_>>>()?;
    let model = M::load(
        config,
        frame,
        var_builder(&specs, &vars, dtype, &Device::Cpu),
    )?;
    Ok((specs, model))
}

fn compare_saved<M: SequenceModel>(
    specs: &[crate::ParamSpec],
    model: &M,
    grads: &Saved,
    grad_prefix: &str,
    batch: &Tensor,
    plan: &Plan,
) -> Result<(f64, f64, Vec<GradCheck>)> {
    let (loss, ours) = loss_and_grads(model, batch, plan, Backward::Fastest)?;
    let ref_loss = grads.get("loss")?.flatten_all()?.to_vec1::<f64>()?[0];
    let theirs = specs
        .iter()
        .map(|s| grads.get(&format!("{grad_prefix}{}", s.name)))
        .collect::<Result<Vec<_>>>()?;
    let checks = compare(specs, &ours, &theirs)?;
    Ok((loss, ref_loss, checks))
}

fn compare(
    specs: &[crate::ParamSpec],
    grads: &[Tensor],
    reference: &[Tensor],
) -> Result<Vec<GradCheck>> {
    specs
        .iter()
        .zip(grads)
        .zip(reference)
        .map(|((spec, ours), theirs)| check(&spec.name, ours, theirs))
        .collect()
}

/// How `ours` compares with `theirs` (same shape), in the reference's dtype.
fn check(name: &str, ours: &Tensor, theirs: &Tensor) -> Result<GradCheck> {
    let max_abs = |t: &Tensor| -> Result<f64> {
        Ok(t.abs()?
            .flatten_all()?
            .max(0)?
            .to_dtype(DType::F64)?
            .to_scalar::<f64>()?)
    };
    if ours.dims() != theirs.dims() {
        return Err(crate::Error::Config(format!(
            "{name}: shape {:?}, reference {:?}",
            ours.dims(),
            theirs.dims()
        )));
    }
    Ok(GradCheck {
        name: name.to_string(),
        max_abs_diff: max_abs(&(ours.to_dtype(theirs.dtype())? - theirs)?)?,
        max_reference: max_abs(theirs)?,
    })
}

/// [`compare_with_autograd`] on a batch drawn from `seed`, in `dtype` (the reference in
/// f64), asserting the losses agree to `loss_rel` and the gradients as [`assert_agree`]
/// with `rel` and `floor`. For tests.
#[allow(clippy::too_many_arguments)]
pub fn assert_matches_autograd<M: SequenceModel>(
    name: &str,
    config: &M::Config,
    frame: [usize; 3],
    plan: &Plan,
    dtype: DType,
    loss_rel: f64,
    rel: f64,
    floor: f64,
) {
    let batch = random_batch(plan.window_len(), plan.batch, frame, 4, dtype).unwrap();
    let (loss, ref_loss, checks) =
        compare_with_autograd::<M>(config, &batch, plan, 3, DType::F64).unwrap();
    println!("{name} ({dtype:?}): loss {loss} vs {ref_loss}");
    assert!(
        (loss - ref_loss).abs() <= loss_rel * ref_loss,
        "{name}: {loss} vs {ref_loss}"
    );
    assert_agree(&checks, rel, floor);
}

/// Both drivers against a fixture another implementation computed in f64
/// ([`compare_with_saved`]): the candle-ops driver in f64 to 1e-12 in the loss and the
/// predictions and 1e-10 in each gradient, the f32 slice driver to 1e-5 and 1e-4 (each
/// relative to the largest reference value, gradients with a floor). For tests.
pub fn assert_matches_fixture<M: SequenceModel>(
    config: &M::Config,
    path: &std::path::Path,
    plan: &Plan,
) {
    let name = path.display();
    for (dtype, loss_rel, rel, floor) in [
        (DType::F64, 1e-12, 1e-10, 0.0),
        (DType::F32, 1e-5, 1e-4, 1e-3),
    ] {
        let (loss, ref_loss, prediction, checks) =
            compare_with_saved::<M>(config, path, plan, dtype).unwrap();
        println!("{name} {plan:?} ({dtype:?}): loss {loss} (reference {ref_loss})");
        assert!(
            (loss - ref_loss).abs() <= loss_rel * ref_loss,
            "{name} ({dtype:?}): {loss} vs {ref_loss}"
        );
        // A prediction is a forward value as the loss is: the loss's tolerance.
        assert_agree(std::slice::from_ref(&prediction), loss_rel, 0.0);
        assert_agree(&checks, rel, floor);
    }
}

/// Two training steps of model `M` (seeded weights, Adam) on `batches` in a thread pool of
/// `threads`: the weights after them, each tensor's bits. For tests of determinism.
pub fn weights_after_steps<M: SequenceModel>(
    config: &M::Config,
    batches: &[Tensor],
    plan: &Plan,
    threads: usize,
) -> Vec<Vec<u32>> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    pool.install(|| {
        let (_, _, c, h, w) = batches[0].dims5().unwrap();
        let (_, vars, model) =
            generic_point::<M>(config, [c, h, w], 1, DType::F32, &Device::Cpu).unwrap();
        let mut adam = crate::adam::Adam::new(Default::default(), &vars).unwrap();
        for batch in batches {
            let step = crate::model::train_step(
                &model,
                batch,
                plan,
                &vars,
                &mut adam,
                crate::Backward::Fastest,
            )
            .unwrap();
            assert!(
                matches!(
                    step,
                    crate::Step::Updated {
                        not_finite: None,
                        ..
                    }
                ),
                "{step:?}"
            );
        }
        vars.iter()
            .map(|v| {
                let values: Vec<f32> = v.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
                values.iter().map(|x| x.to_bits()).collect()
            })
            .collect()
    })
}

/// Prints every check and panics, naming the tensor, if one differs by more than
/// `rel * max(|reference|, floor)`, or if a reference is all zeros (with no floor) and
/// ours is not exactly zero too (a weight the loss does not reach, as the blind
/// forecaster's input weights). For tests.
pub fn assert_agree(checks: &[GradCheck], rel: f64, floor: f64) {
    for check in checks {
        println!(
            "{:<28} max|diff| {:.3e}  max|reference| {:.3e}",
            check.name, check.max_abs_diff, check.max_reference
        );
    }
    for check in checks {
        assert!(
            check.max_reference > 0.0 || floor > 0.0 || check.max_abs_diff == 0.0,
            "{}: the reference gradient is all zeros, ours is not",
            check.name
        );
        let bound = rel * check.max_reference.max(floor);
        assert!(
            check.max_abs_diff <= bound,
            "{}: max|diff| {:.3e} > {bound:.3e}",
            check.name,
            check.max_abs_diff
        );
    }
}

/// The seed's window loss, written as the seed wrote it: the sum over steps of the per-step
/// mean squared error of predictions `[L-1, C, H, W]` against frames `1 .. L-1` of `window`
/// `[L, C, H, W]`. An independent reference for tests, apart from [`tensors::loss`].
pub fn seed_window_loss(predictions: &Tensor, window: &Tensor) -> Tensor {
    let steps = predictions.dim(0).unwrap();
    let targets = window.narrow(0, 1, steps).unwrap();
    let squared = (predictions - targets).and_then(|d| d.sqr()).unwrap();
    let per_step = squared.flatten_from(1).and_then(|s| s.mean(1)).unwrap();
    per_step.sum_all().unwrap()
}

/// The plan a fixture's configuration records (the keys `bench/torch_general.py` writes:
/// `batch`, `seq_len` or `context` and `horizon`, `loss`, `sampling`).
pub fn fixture_plan(about: &serde_json::Value) -> Plan {
    let number = |key: &str| about[key].as_u64().map(|v| v as usize);
    let batch = number("batch").expect("a fixture records its batch");
    let plan = match (number("context"), number("horizon")) {
        (Some(k), Some(n)) => Plan::forecast(k, n, batch),
        _ => Plan::one_step(number("seq_len").expect("a window length"), batch),
    };
    let plan = match about["loss"].as_str() {
        Some("bce") => plan.with_loss(lstm_core::Loss::Bce),
        _ => plan,
    };
    plan.with_sampling(about["sampling"].as_array().map(|s| lstm_core::Sampling {
        truth: s[0].as_f64().expect("a chance"),
        seed: s[1].as_u64().expect("a seed"),
    }))
}
