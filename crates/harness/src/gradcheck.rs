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
    let mut specs = M::parameter_specs(config);
    for spec in &mut specs {
        // Nonzero biases: a generic point, where a wrong bias gradient cannot hide.
        spec.init = crate::ParamInit::Normal { fan_in: 4 };
    }
    let vars = init_parameters(&specs, seed, DType::F64, &device)?;
    let model = M::load(config, var_builder(&specs, &vars, DType::F64, &device))?;
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
