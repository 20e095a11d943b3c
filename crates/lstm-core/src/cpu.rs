//! Plain-slice access to candle's CPU tensors, for hand-written kernels.
//!
//! candle keeps a tensor's values in a `CpuStorage` behind a lock. Reading borrows that
//! storage for the duration of a closure; writing goes through candle's `InplaceOp1`, the
//! one sanctioned way to mutate a tensor's storage in place.

use candle_core::{CpuStorage, Layout, Result, Storage, Tensor};

/// Calls `f` with the values of a contiguous f32 CPU tensor, without copying them.
/// Errors on any other device, dtype or layout: callers pick their fast path by
/// [`is_f32_cpu`] first.
pub fn with_f32<R>(tensor: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    with_f32_all([tensor], |[values]| f(values))
}

/// [`with_f32`] for several tensors at once: `f` gets the values of each, in order.
pub fn with_f32_all<const N: usize, R>(
    tensors: [&Tensor; N],
    f: impl FnOnce([&[f32]; N]) -> R,
) -> Result<R> {
    let views = tensors.map(|t| t.storage_and_layout());
    let mut slices: [&[f32]; N] = [&[]; N];
    for (slice, (storage, layout)) in slices.iter_mut().zip(&views) {
        *slice = f32_slice(storage, layout)?;
    }
    Ok(f(slices))
}

/// [`with_f32`] for any number of tensors: `f` gets the values of each, in order.
pub fn with_f32_slices<R>(tensors: &[&Tensor], f: impl FnOnce(&[&[f32]]) -> R) -> Result<R> {
    let views: Vec<_> = tensors.iter().map(|t| t.storage_and_layout()).collect();
    let slices = views
        .iter()
        .map(|(storage, layout)| f32_slice(storage, layout))
        .collect::<Result<Vec<_>>>()?;
    Ok(f(&slices))
}

/// True for an f32 tensor on the CPU: the tensors the hand-written kernels take.
pub fn is_f32_cpu(tensor: &Tensor) -> bool {
    tensor.device().is_cpu() && tensor.dtype() == candle_core::DType::F32
}

/// A tensor `shape` on the CPU owning `values` (no copy).
pub fn tensor_from(values: Vec<f32>, shape: &[usize]) -> Result<Tensor> {
    Tensor::from_vec(values, shape, &candle_core::Device::Cpu)
}

/// Runs `f` on the values of a contiguous f32 CPU tensor, mutably, in place.
pub fn update_f32(tensor: &Tensor, f: impl FnMut(&mut [f32])) -> Result<()> {
    struct InPlace<F>(std::cell::RefCell<F>);
    impl<F: FnMut(&mut [f32])> candle_core::InplaceOp1 for InPlace<F> {
        fn name(&self) -> &'static str {
            "update-f32"
        }
        fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> Result<()> {
            let CpuStorage::F32(values) = storage else {
                candle_core::bail!("update_f32 on a tensor that is not f32");
            };
            let (start, end) = layout
                .contiguous_offsets()
                .ok_or_else(|| candle_core::Error::Msg("expected a contiguous tensor".into()))?;
            (self.0.borrow_mut())(&mut values[start..end]);
            Ok(())
        }
    }
    tensor.inplace_op1(&InPlace(std::cell::RefCell::new(f)))
}

/// The values of a contiguous f32 CPU tensor, borrowed from its storage guard:
/// `let (s, l) = t.storage_and_layout(); let values = f32_slice(&s, l)?;`
pub fn f32_slice<'a>(storage: &'a Storage, layout: &Layout) -> Result<&'a [f32]> {
    let Storage::Cpu(cpu) = storage else {
        candle_core::bail!("expected a CPU tensor");
    };
    let values = cpu.as_slice::<f32>()?;
    let (start, end) = layout
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg("expected a contiguous tensor".into()))?;
    Ok(&values[start..end])
}

/// Gradients computed on slices, as tensors shaped like their parameters (no copy).
pub fn tensors_like(
    grads: impl IntoIterator<Item = Vec<f32>>,
    specs: &[crate::ParamSpec],
) -> Result<Vec<Tensor>> {
    grads
        .into_iter()
        .zip(specs)
        .map(|(g, spec)| tensor_from(g, &spec.shape))
        .collect()
}
