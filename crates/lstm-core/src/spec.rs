//! Named parameters: what a model asks for, in PyTorch's naming and layout.

/// One named parameter a model needs, in PyTorch's naming and layout.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamSpec {
    /// PyTorch-style name, e.g. `lstm.weight_ih_l0`.
    pub name: String,
    /// Shape in PyTorch's layout (weights `[out, in]`, conv kernels `[out, in, kh, kw]`).
    pub shape: Vec<usize>,
    /// How the seed initialises it.
    pub init: ParamInit,
}

/// The seed's initialisation: weights `~ Normal(0, sqrt(1 / fan_in))`, biases zero.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ParamInit {
    /// Normal with mean 0 and standard deviation `sqrt(1 / fan_in)`.
    Normal { fan_in: usize },
    /// All zeros: biases, and peephole weights (so a model with peepholes starts as the
    /// same model without them).
    Zeros,
}

impl ParamSpec {
    pub fn weight(name: impl Into<String>, shape: &[usize], fan_in: usize) -> ParamSpec {
        ParamSpec {
            name: name.into(),
            shape: shape.to_vec(),
            init: ParamInit::Normal { fan_in },
        }
    }

    pub fn zeros(name: impl Into<String>, shape: &[usize]) -> ParamSpec {
        ParamSpec {
            name: name.into(),
            shape: shape.to_vec(),
            init: ParamInit::Zeros,
        }
    }

    /// A bias: zeros.
    pub fn bias(name: impl Into<String>, shape: &[usize]) -> ParamSpec {
        Self::zeros(name, shape)
    }

    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// How many parameters `specs` hold: the one count the run's report, the memory estimate and
/// its refusal all use. In f64, so that sizes a memory check must refuse (1e16 and more)
/// count without overflow.
pub fn parameter_count(specs: &[ParamSpec]) -> f64 {
    specs
        .iter()
        .map(|s| s.shape.iter().map(|&d| d as f64).product::<f64>())
        .sum()
}

/// The tensors of `specs` from a `VarBuilder`, in order: from a `VarMap` they are created
/// with the seed's initialisation (weights `Normal(0, sqrt(1/fan_in))`, the rest zero);
/// from a file they are read, their shapes checked.
pub fn tensors_from(
    specs: &[ParamSpec],
    vb: &candle_nn::VarBuilder,
) -> candle_core::Result<Vec<candle_core::Tensor>> {
    specs
        .iter()
        .map(|spec| {
            let init = match spec.init {
                ParamInit::Normal { fan_in } => candle_nn::Init::Randn {
                    mean: 0.0,
                    stdev: (1.0 / fan_in as f64).sqrt(),
                },
                ParamInit::Zeros => candle_nn::Init::Const(0.0),
            };
            vb.get_with_hints(spec.shape.as_slice(), &spec.name, init)
        })
        .collect()
}

/// Checks `tensors` against `specs`, one for one, naming the first that does not fit.
pub fn check_shapes(
    specs: &[ParamSpec],
    tensors: &[candle_core::Tensor],
) -> candle_core::Result<()> {
    if tensors.len() != specs.len() {
        candle_core::bail!("{} tensors for {} parameters", tensors.len(), specs.len());
    }
    for (spec, t) in specs.iter().zip(tensors) {
        if t.dims() != spec.shape.as_slice() {
            candle_core::bail!(
                "{}: shape {:?}, expected {:?}",
                spec.name,
                t.dims(),
                spec.shape
            );
        }
    }
    Ok(())
}
