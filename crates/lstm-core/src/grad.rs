//! A parameter's gradient as a driver hands it to the optimizer: a tensor (the candle-ops
//! driver), values, or a sum of outer products that is never stored (the slice driver). The
//! one gradient kind: the harness's Adam takes these.

use std::borrow::Cow;

/// One parameter's gradient, in the parameter's own layout.
#[derive(Debug, Clone)]
pub enum Grad<'a> {
    /// A tensor shaped like the parameter, on its device.
    Tensor(&'a candle_core::Tensor),
    /// The values, shaped like the parameter (row-major).
    Values(Cow<'a, [f32]>),
    /// A weight gradient that is a sum of outer products over samples (`dW = A^T B`, as
    /// every matrix product's weight gradient is): an optimizer can form it a register tile
    /// at a time inside its update, so that it never exists whole (643 MB for the seed's
    /// linear model).
    Outer(Outer<'a>),
}

impl Grad<'_> {
    /// The values, formed if the gradient is an outer-product sum (`rows x cols` entries).
    ///
    /// # Panics
    /// On a tensor gradient: the slice driver, whose gradients these are, makes none.
    pub fn to_values(&self, rows: usize, cols: usize) -> Vec<f32> {
        match self {
            Grad::Values(v) => v.to_vec(),
            Grad::Outer(outer) => outer.to_values(rows, cols),
            Grad::Tensor(_) => panic!("to_values of a tensor gradient"),
        }
    }

    /// The same gradient, borrowed: no values are copied.
    pub fn borrowed(&self) -> Grad<'_> {
        match self {
            Grad::Tensor(t) => Grad::Tensor(t),
            Grad::Values(v) => Grad::Values(std::borrow::Cow::Borrowed(v)),
            Grad::Outer(outer) => Grad::Outer(*outer),
        }
    }
}

/// `g[r, c] = sum_{t < steps} a[t * a_stride + r] * b[t * cols + c]` for a parameter
/// `[rows, cols]`: row `t` of `a` holds sample `t`'s gradient at the parameter's outputs
/// (`rows` values from the row's start), row `t` of `b` the sample's input (`cols` values).
#[derive(Debug, Clone, Copy)]
pub struct Outer<'a> {
    pub a: &'a [f32],
    pub a_stride: usize,
    pub b: &'a [f32],
    pub steps: usize,
}

impl Outer<'_> {
    /// Whether `a` and `b` hold enough values for a `[rows, cols]` parameter.
    pub fn fits(&self, rows: usize, cols: usize) -> bool {
        let a_needed = match self.steps {
            0 => 0,
            t => (t - 1) * self.a_stride + rows,
        };
        rows <= self.a_stride && self.a.len() >= a_needed && self.b.len() >= self.steps * cols
    }

    /// The sum formed with the product kernel (`gemm`), samples added in order.
    pub fn to_values(&self, rows: usize, cols: usize) -> Vec<f32> {
        assert!(self.fits(rows, cols), "outer-product gradient too short");
        let mut out = vec![0f32; rows * cols];
        if self.steps == 0 {
            return out;
        }
        let a: Vec<f32> = if self.a_stride == rows {
            self.a[..self.steps * rows].to_vec()
        } else {
            (0..self.steps)
                .flat_map(|t| &self.a[t * self.a_stride..t * self.a_stride + rows])
                .copied()
                .collect()
        };
        crate::linalg::matmul(
            &mut out,
            &a,
            true,
            &self.b[..self.steps * cols],
            false,
            (rows, self.steps, cols),
            false,
        );
        out
    }
}
