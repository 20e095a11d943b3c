//! PredRNN's convolutions on f32 CPU tensors through the ConvLSTM's kernels
//! (`lstm_conv::products`: AVX2/FMA implicit products, or im2col and `gemm`) as candle custom
//! ops, with their backward (the data gradient and the kernel gradient by the same
//! kernels), so that candle's autograd of a PredRNN step spends its time where the
//! ConvLSTM's fast path does instead of in candle's generic convolution and its transpose.
//! Any other dtype or device takes candle's `conv2d`, which the tests hold these against.
//!
//! Samples are split into fixed chunks of [`SAMPLES`] run in parallel; a kernel gradient is
//! the sum of the chunks' in chunk order, so results do not depend on the thread count.

use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};
use lstm_conv::products::{backward_data, forward, kernel_grad, Geometry};
use rayon::prelude::*;

/// Samples per parallel task.
const SAMPLES: usize = 2;

/// `conv(x, kernel)`, stride 1, padding `K/2`: `x` `[n, C_in, H, W]`, `kernel`
/// `[C_out, C_in, K, K]` -> `[n, C_out, H, W]`. Differentiable by candle's autograd.
pub fn same_conv(x: &Tensor, kernel: &Tensor) -> Result<Tensor> {
    let fast = x.device().is_cpu()
        && x.dtype() == candle_core::DType::F32
        && kernel.dtype() == candle_core::DType::F32;
    match fast {
        true => x.contiguous()?.apply_op2(&kernel.contiguous()?, Conv),
        false => x.conv2d(kernel, kernel.dim(3)? / 2, 1, 1, 1),
    }
}

/// The contiguous f32 values of a CPU tensor's storage.
fn values<'a>(storage: &'a CpuStorage, layout: &Layout) -> Result<&'a [f32]> {
    let all = storage.as_slice::<f32>()?;
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&all[start..end]),
        None => candle_core::bail!("predrnn conv: a tensor that is not contiguous"),
    }
}

/// The geometry of `x` `[n, C_in, H, W]` convolved by a kernel `[C_out, C_in, K, K]`.
fn geometry(x: &Layout, kernel: &[usize]) -> Result<(usize, Geometry)> {
    let (n, c_in, h, w) = x.shape().dims4()?;
    match kernel {
        [c_out, k_in, k, k2] if *k_in == c_in && k == k2 && k % 2 == 1 => {
            Ok((n, Geometry::new(c_in, *c_out, h, w, *k)))
        }
        _ => candle_core::bail!("predrnn conv: kernel {kernel:?} for input {:?}", x.dims()),
    }
}

/// The convolution: `cpu_fwd(x, kernel)`.
struct Conv;

impl CustomOp2 for Conv {
    fn name(&self) -> &'static str {
        "predrnn-conv"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, g) = geometry(l1, l2.dims())?;
        let (x, kernel) = (values(s1, l1)?, values(s2, l2)?);
        let (x_len, out_len) = (g.c_in * g.h * g.w, g.c_out * g.h * g.w);
        let mut out = vec![0f32; n * out_len];
        out.par_chunks_mut(SAMPLES * out_len)
            .zip(x.par_chunks(SAMPLES * x_len))
            .for_each(|(out, x)| forward(x, kernel, None, out, &g));
        Ok((CpuStorage::F32(out), Shape::from((n, g.c_out, g.h, g.w))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        kernel: &Tensor,
        _out: &Tensor,
        d_out: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let d_out = d_out.contiguous()?;
        let dx = d_out.apply_op2_no_bwd(kernel, &DataGrad { c_in: x.dim(1)? })?;
        let dk = x.apply_op2_no_bwd(&d_out, &KernelGrad { k: kernel.dim(3)? })?;
        Ok((Some(dx), Some(dk)))
    }
}

/// The gradient reaching the input: `cpu_fwd(d_out, kernel)` -> `[n, C_in, H, W]`.
struct DataGrad {
    c_in: usize,
}

impl CustomOp2 for DataGrad {
    fn name(&self) -> &'static str {
        "predrnn-conv-data-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, c_out, h, w) = l1.shape().dims4()?;
        let k = l2.dims()[3];
        let g = Geometry::new(self.c_in, c_out, h, w, k);
        let (d, kernel) = (values(s1, l1)?, values(s2, l2)?);
        let (x_len, d_len) = (g.c_in * h * w, c_out * h * w);
        let mut dx = vec![0f32; n * x_len];
        dx.par_chunks_mut(SAMPLES * x_len)
            .zip(d.par_chunks(SAMPLES * d_len))
            .for_each(|(dx, d)| backward_data(d, kernel, dx, &g));
        Ok((CpuStorage::F32(dx), Shape::from((n, g.c_in, h, w))))
    }
}

/// The kernel's gradient: `cpu_fwd(x, d_out)` -> `[C_out, C_in, K, K]`, summed over the
/// samples chunk by chunk, in chunk order.
struct KernelGrad {
    k: usize,
}

impl CustomOp2 for KernelGrad {
    fn name(&self) -> &'static str {
        "predrnn-conv-kernel-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, c_in, h, w) = l1.shape().dims4()?;
        let c_out = l2.dims()[1];
        let g = Geometry::new(c_in, c_out, h, w, self.k);
        let (x, d) = (values(s1, l1)?, values(s2, l2)?);
        let (x_len, d_len) = (c_in * h * w, c_out * h * w);
        let size = c_out * c_in * self.k * self.k;
        let parts: Vec<Vec<f32>> = x
            .par_chunks(SAMPLES * x_len)
            .zip(d.par_chunks(SAMPLES * d_len))
            .map(|(x, d)| {
                let mut dk = vec![0f32; size];
                kernel_grad(x, d, &mut dk, &g);
                dk
            })
            .collect();
        let mut dk = vec![0f32; size];
        for part in parts.iter().take(n.div_ceil(SAMPLES)) {
            dk.iter_mut().zip(part).for_each(|(a, b)| *a += b);
        }
        Ok((
            CpuStorage::F32(dk),
            Shape::from((c_out, c_in, self.k, self.k)),
        ))
    }
}
