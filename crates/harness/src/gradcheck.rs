//! Finite-difference gradient checks for any [`SequenceModel`]: an independent computation
//! to test a model's gradients (autograd's or hand-written) against.

use candle_core::{DType, Device, Tensor, Var};

use crate::model::{window_loss, SequenceModel};
use crate::params::{init_parameters, var_builder};
use crate::Result;

/// How one parameter tensor's analytic gradient compares with central differences.
#[derive(Debug, Clone)]
pub struct GradCheck {
    pub name: String,
    /// Largest `|analytic - numeric|` over the tensor's entries.
    pub max_abs_diff: f64,
    /// Largest `|analytic - numeric| / max(|analytic|, |numeric|, 1e-3 * max_numeric)`.
    pub max_rel_diff: f64,
    /// Largest `|numeric|`, to show the check is not comparing zeros.
    pub max_numeric: f64,
}

/// Model `M` with every parameter drawn from `seed`, biases too (not left at zero): a
/// generic point, where a wrong bias gradient cannot hide.
fn generic_point<M: SequenceModel>(
    config: &M::Config,
    seed: u64,
    dtype: DType,
    device: &Device,
) -> Result<(Vec<crate::ParamSpec>, Vec<Var>, M)> {
    let mut specs = M::parameter_specs(config);
    for spec in &mut specs {
        spec.init = crate::ParamInit::Normal { fan_in: 4 };
    }
    let vars = init_parameters(&specs, seed, dtype, device)?;
    let model = M::load(config, var_builder(&specs, &vars, dtype, device))?;
    Ok((specs, vars, model))
}

/// Compares `M::loss_and_grads` with central differences `(L(p+e) - L(p-e)) / 2e` for every
/// entry of every parameter, in f64 on the CPU, from weights drawn with `seed`. Biases are
/// drawn too (not left at zero) so their gradients are exercised at a generic point.
///
/// `window`: `[L, C, H, W]`, any float type (converted to f64).
pub fn check_gradients<M: SequenceModel>(
    config: &M::Config,
    window: &Tensor,
    seed: u64,
    step: f64,
) -> Result<Vec<GradCheck>> {
    let device = Device::Cpu;
    let window = window.to_dtype(DType::F64)?;
    let (specs, vars, model) = generic_point::<M>(config, seed, DType::F64, &device)?;
    let (_, grads) = model.loss_and_grads(&window, &vars)?;
    let loss_at = |model: &M| -> Result<f64> {
        Ok(window_loss(&model.predict(&window)?, &window)?.to_scalar::<f64>()?)
    };
    let mut report = Vec::new();
    for ((spec, var), grad) in specs.iter().zip(&vars).zip(&grads) {
        let analytic: Vec<f64> = grad.flatten_all()?.to_vec1()?;
        let original: Vec<f64> = var.as_tensor().flatten_all()?.to_vec1()?;
        let mut numeric = Vec::with_capacity(original.len());
        for j in 0..original.len() {
            let mut values = original.clone();
            values[j] = original[j] + step;
            set(var, &values)?;
            let plus = loss_at(&model)?;
            values[j] = original[j] - step;
            set(var, &values)?;
            let minus = loss_at(&model)?;
            numeric.push((plus - minus) / (2.0 * step));
        }
        let max_numeric = numeric.iter().fold(0f64, |m, x| m.max(x.abs()));
        // Entries far below the tensor's largest gradient carry the differences' round-off
        // (about 1e-16 / step); measure them against a floor of 1e-3 of that largest one.
        let floor = (1e-3 * max_numeric).max(1e-12);
        let mut check = GradCheck {
            name: spec.name.clone(),
            max_abs_diff: 0.0,
            max_rel_diff: 0.0,
            max_numeric,
        };
        for (a, n) in analytic.iter().zip(&numeric) {
            let diff = (a - n).abs();
            check.max_abs_diff = check.max_abs_diff.max(diff);
            check.max_rel_diff = check
                .max_rel_diff
                .max(diff / a.abs().max(n.abs()).max(floor));
        }
        set(var, &original)?;
        report.push(check);
    }
    Ok(report)
}

fn set(var: &Var, values: &[f64]) -> Result<()> {
    let t = Tensor::from_slice(values, var.as_tensor().shape(), var.device())?;
    var.set(&t)?;
    Ok(())
}

/// How one parameter's gradient from `M::loss_and_grads` compares with candle's autograd
/// through `M::predict` ([`crate::autograd_loss_and_grads`]), the reference path.
#[derive(Debug, Clone)]
pub struct PathCheck {
    pub name: String,
    /// Largest `|fast - reference|` over the tensor's entries.
    pub max_abs_diff: f64,
    /// Largest `|reference|`, the scale `max_abs_diff` is read against.
    pub max_reference: f64,
}

/// Runs both gradient paths on the same weights (drawn with `seed`, biases nonzero) and
/// window: `M::loss_and_grads` in the window's dtype, and the autograd reference in
/// `reference_dtype` (f64 for an f32 window, so the comparison measures the fast path's
/// rounding and not the reference's own f32 sums). Returns
/// `(loss, reference_loss, per-tensor checks)`.
pub fn compare_with_autograd<M: SequenceModel>(
    config: &M::Config,
    window: &Tensor,
    seed: u64,
    reference_dtype: DType,
) -> Result<(f64, f64, Vec<PathCheck>)> {
    let (dtype, device) = (window.dtype(), window.device().clone());
    let (specs, vars, model) = generic_point::<M>(config, seed, dtype, &device)?;
    let (loss, grads) = model.loss_and_grads(window, &vars)?;
    let ref_vars = vars
        .iter()
        .map(|v| Var::from_tensor(&v.as_tensor().to_dtype(reference_dtype)?))
        .collect::<candle_core::Result<Vec<_>>>()?;
    let ref_model = M::load(
        config,
        var_builder(&specs, &ref_vars, reference_dtype, &device),
    )?;
    let ref_window = window.to_dtype(reference_dtype)?;
    let (ref_loss, ref_grads) = crate::autograd_loss_and_grads(&ref_model, &ref_window, &ref_vars)?;
    let grads = grads
        .iter()
        .map(|g| g.to_dtype(reference_dtype))
        .collect::<candle_core::Result<Vec<_>>>()?;
    let max_abs = |t: &Tensor| -> Result<f64> {
        Ok(t.abs()?
            .flatten_all()?
            .max(0)?
            .to_dtype(DType::F64)?
            .to_scalar::<f64>()?)
    };
    let mut checks = Vec::new();
    for ((spec, fast), reference) in specs.iter().zip(&grads).zip(&ref_grads) {
        if fast.dims() != reference.dims() {
            return Err(crate::Error::Config(format!(
                "{}: gradient shape {:?}, reference {:?}",
                spec.name,
                fast.dims(),
                reference.dims()
            )));
        }
        checks.push(PathCheck {
            name: spec.name.clone(),
            max_abs_diff: max_abs(&(fast - reference)?)?,
            max_reference: max_abs(reference)?,
        });
    }
    Ok((loss, ref_loss, checks))
}

/// Compares `M::loss_and_grads` with gradients another implementation saved.
///
/// `weights`: a safetensors file of the model's parameters (PyTorch names); `reference`:
/// a safetensors file with the gradient of each parameter under the same name and the
/// window's loss as `loss` (shape `[1]`), as `bench/torch_reference.py --dump-grads`
/// writes them. Computed in f64 on the CPU; returns `(loss, reference_loss, checks)`.
pub fn compare_with_saved<M: SequenceModel>(
    config: &M::Config,
    weights: &std::path::Path,
    reference: &std::path::Path,
    window: &Tensor,
) -> Result<(f64, f64, Vec<PathCheck>)> {
    let device = Device::Cpu;
    let window = window.to_dtype(DType::F64)?;
    let specs = M::parameter_specs(config);
    let vars = crate::params::load_parameters(weights, &specs, DType::F64, &device)?;
    let model = M::load(config, var_builder(&specs, &vars, DType::F64, &device))?;
    let (loss, grads) = model.loss_and_grads(&window, &vars)?;
    let saved = crate::params::Checkpoint::read(reference)?;
    let missing = |name: &str| crate::Error::Checkpoint {
        path: reference.to_path_buf(),
        message: format!("no tensor `{name}`"),
    };
    let ref_loss = saved
        .tensors
        .get("loss")
        .ok_or_else(|| missing("loss"))?
        .to_dtype(DType::F64)?
        .flatten_all()?
        .to_vec1::<f64>()?[0];
    let max_abs =
        |t: &Tensor| -> Result<f64> { Ok(t.abs()?.flatten_all()?.max(0)?.to_scalar::<f64>()?) };
    let mut checks = Vec::new();
    for (spec, grad) in specs.iter().zip(&grads) {
        let theirs = saved
            .tensors
            .get(&spec.name)
            .ok_or_else(|| missing(&spec.name))?
            .to_dtype(DType::F64)?;
        checks.push(PathCheck {
            name: spec.name.clone(),
            max_abs_diff: max_abs(&(grad - &theirs)?)?,
            max_reference: max_abs(&theirs)?,
        });
    }
    Ok((loss, ref_loss, checks))
}

/// Prints every check and panics, naming the tensor, if one differs by more than
/// `rel * max(|reference|, floor)`. For tests.
pub fn assert_paths_agree(checks: &[PathCheck], rel: f64, floor: f64) {
    for check in checks {
        println!(
            "{:<24} max|diff| {:.3e}  max|reference| {:.3e}",
            check.name, check.max_abs_diff, check.max_reference
        );
    }
    for check in checks {
        assert!(
            check.max_reference > 0.0 || floor > 0.0,
            "{}: the reference gradient is all zeros",
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
