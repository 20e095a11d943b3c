//! The BPTT driver on f32 slices: the CPU fast path of every model. One forward and one
//! backward through time and layers, written once; a model supplies only its
//! [`GateKernels`].
//!
//! Layout (row-major, time-major): a batch of `B` windows of `L = T + 1` frames is
//! `[L, B, C_m, S]` in model space. Per layer `k`, every step's gates are kept as
//! `[T, B, 4C, S]` and its `c`, `tanh(c)` and `h` as `[T, B, C, S]`; the predictions as
//! `[T, B, C_m, S]`.
//!
//! Order of work. Steps whose inputs are known (true frames) run layer by layer: each
//! layer's input half for all of them at once (folded into one call over `T*B` samples),
//! then the recurrent steps. Steps that read the previous prediction (forecasting) run
//! one at a time through every layer and the head. The backward walks the same schedule in
//! reverse; weight gradients are formed at the end, from what the backward kept.

use std::borrow::Cow;

use crate::cell::slices::sigmoid;
use crate::grad::Grad;
use crate::plan::{Loss, Plan};
use crate::scratch::{give_back, take, take_zeroed};
use crate::seam::{GateIo, GateKernels, StackSlices};
use crate::stack::{Head, Stack};

/// Gate channels per hidden channel: i, f, g, o.
const GATES: usize = 4;

/// Values one layer's forward keeps per sample and step, in units of its state `C*S`: the
/// gates ([`GATES`]), `c`, `tanh(c)` and `h`. What [`Layer`] allocates for the forward;
/// the memory estimate reads it.
pub const FORWARD_STATES_PER_STEP: usize = GATES + 3;

/// Values one layer's backward adds per sample and step, in units of its state: the
/// gradient of the gate pre-activations ([`GATES`]) and the gradient reaching `h` from
/// above.
pub const BACKWARD_STATES_PER_STEP: usize = GATES + 1;

/// What the forward of one layer keeps, and its backward fills.
struct Layer {
    /// Hidden channels `C` times positions `S`: one sample's state.
    state: usize,
    /// `[T*B, 4C*S]`: pre-activations, then (in place) the gates after their nonlinearities.
    gates: Vec<f32>,
    /// `[T*B, C*S]` each: `c`, `tanh(c)`, `h` after every step.
    cells: Vec<f32>,
    tanh_c: Vec<f32>,
    hs: Vec<f32>,
    /// `[T*B, 4C*S]`: dLoss/d(pre-activations).
    d_preact: Vec<f32>,
    /// `[T*B, C*S]`: the gradient reaching `h` from above (the head, or the next layer).
    d_above: Vec<f32>,
    /// The gradients of `w_ci, w_cf, w_co`, `[C*S]` each, when the model has peepholes.
    d_peep: Option<[Vec<f32>; 3]>,
}

/// The steps whose predictions count in the loss, with their weights ([`Plan::weight`]).
fn counted_steps(plan: Plan) -> impl Iterator<Item = (usize, f64)> {
    (0..plan.steps)
        .map(move |t| (t, plan.weight(t)))
        .filter(|&(_, weight)| weight != 0.0)
}

/// A batch's forward and backward through time: the loss, and what the parameters'
/// gradients are made of ([`Bptt::grads`]).
pub struct Bptt {
    pub loss: f64,
    plan: Plan,
    stack: Stack,
    /// `[L, B, C_m*S]`: the windows in model space.
    frames: Vec<f32>,
    /// `[T*B, C_m*S]`: the first layer's inputs when some steps read a prediction (else the
    /// first `T` frames of `frames` are the inputs).
    fed: Option<Vec<f32>>,
    layers: Vec<Layer>,
    /// `[T*B, C_m*S]`: the predictions.
    preds: Vec<f32>,
    /// `[T*B, C_m*S]`: the logits of a head that ends in a sigmoid, kept for the
    /// cross-entropy; empty otherwise.
    logits: Vec<f32>,
    /// `[T*B, C_m*S]`: dLoss/d(the head's affine output); empty without a head.
    d_y: Vec<f32>,
    /// `[T*B, C_m*S]`: the cross-entropy's own gradient at the logits, `(p - y)` times the
    /// step's weight; empty for the squared error.
    d_logits: Vec<f32>,
}

/// Runs the forward and backward of `plan` on `frames` (`[L, B, C_m, S]`, model space) with
/// the model's kernels and weights. Panics on sizes that do not fit: callers check the
/// plan and the stack first ([`Plan::check`], [`Stack::check`]).
pub fn bptt<M: GateKernels + ?Sized>(
    model: &M,
    stack: &Stack,
    weights: &StackSlices,
    frames: Vec<f32>,
    plan: &Plan,
) -> Bptt {
    let mut run = forward(model, stack, weights, frames, plan);
    run.loss = run.loss_and_output_grads();
    run.backward(model, weights);
    run
}

/// The forward alone: predictions `[T, B, C_m, S]` in model space, with what a backward
/// would need (the loss is not taken: [`Bptt::loss`] is 0).
pub fn forward<M: GateKernels + ?Sized>(
    model: &M,
    stack: &Stack,
    weights: &StackSlices,
    frames: Vec<f32>,
    plan: &Plan,
) -> Bptt {
    let (steps, batch, known) = (plan.steps, plan.batch, plan.known);
    let frame = stack.model_channels() * stack.positions();
    assert_eq!(
        frames.len(),
        (steps + 1) * batch * frame,
        "frames are not [L, B, C_m, S]"
    );
    let samples = steps * batch;
    let fed = (known < steps).then(|| {
        let mut inputs = take(samples * frame);
        inputs[..known * batch * frame].copy_from_slice(&frames[..known * batch * frame]);
        inputs
    });
    let layers = stack
        .hidden
        .iter()
        .map(|&c| {
            let state = c * stack.positions();
            Layer {
                state,
                gates: take(samples * GATES * state),
                cells: take(samples * state),
                tanh_c: take(samples * state),
                hs: take(samples * state),
                d_preact: Vec::new(),
                d_above: Vec::new(),
                d_peep: None,
            }
        })
        .collect();
    let mut run = Bptt {
        loss: 0.0,
        plan: *plan,
        stack: stack.clone(),
        frames,
        fed,
        layers,
        preds: take(samples * frame),
        logits: match (plan.loss, stack.head) {
            (Loss::Bce, Head::AffineSigmoid) => take(samples * frame),
            _ => Vec::new(),
        },
        d_y: Vec::new(),
        d_logits: Vec::new(),
    };
    // Known inputs: layer by layer, each layer's input half folded over the steps.
    for k in 0..stack.layers() {
        run.layer_forward(model, weights, k, 0, known);
    }
    run.head_forward(model, weights, 0, known);
    // Each later step reads the prediction before it (or, sampled, the true frame).
    for t in known..steps {
        let fed = run.fed.as_mut().expect("forecast steps have fed inputs");
        for b in 0..batch {
            let to = (t * batch + b) * frame;
            let from = match plan.reads_truth(t, b) {
                true => &run.frames[to..to + frame],
                false => &run.preds[to - batch * frame..][..frame],
            };
            fed[to..to + frame].copy_from_slice(from);
        }
        for k in 0..stack.layers() {
            run.layer_forward(model, weights, k, t, t + 1);
        }
        run.head_forward(model, weights, t, t + 1);
    }
    run
}

impl Drop for Bptt {
    fn drop(&mut self) {
        let mut all = vec![
            std::mem::take(&mut self.frames),
            std::mem::take(&mut self.preds),
            std::mem::take(&mut self.d_y),
            std::mem::take(&mut self.logits),
            std::mem::take(&mut self.d_logits),
        ];
        all.extend(self.fed.take());
        for layer in &mut self.layers {
            for v in [
                &mut layer.gates,
                &mut layer.cells,
                &mut layer.tanh_c,
                &mut layer.hs,
                &mut layer.d_preact,
                &mut layer.d_above,
            ] {
                all.push(std::mem::take(v));
            }
        }
        all.into_iter().for_each(give_back);
    }
}

impl Bptt {
    /// `[T*B, C_m*S]`: the first layer's input at every step.
    fn inputs(&self) -> &[f32] {
        match &self.fed {
            Some(fed) => fed,
            None => &self.frames[..self.preds.len()],
        }
    }

    fn frame_len(&self) -> usize {
        self.stack.model_channels() * self.stack.positions()
    }

    /// The predictions `[T, B, C_m, S]` in model space.
    pub fn predictions(&self) -> &[f32] {
        &self.preds
    }

    /// Layer `k`'s steps `t0 .. t1`.
    fn layer_forward<M: GateKernels + ?Sized>(
        &mut self,
        model: &M,
        weights: &StackSlices,
        k: usize,
        t0: usize,
        t1: usize,
    ) {
        let batch = self.plan.batch;
        let w = &weights.layers[k];
        let in_len = self.stack.input_channels(k) * self.stack.positions();
        let (below, rest) = self.layers.split_at_mut(k);
        let layer = &mut rest[0];
        let input: &[f32] = match below.last() {
            Some(prev) => &prev.hs,
            None => match &self.fed {
                Some(fed) => fed,
                None => &self.frames,
            },
        };
        let (state, gates_len) = (layer.state, GATES * layer.state);
        let range = |t: usize, len: usize| t * batch * len..(t + 1) * batch * len;
        model.input_preact(
            k,
            w,
            &input[t0 * batch * in_len..t1 * batch * in_len],
            (t1 - t0) * batch,
            &mut layer.gates[t0 * batch * gates_len..t1 * batch * gates_len],
        );
        for t in t0..t1 {
            let (done, now) = layer.hs.split_at_mut(t * batch * state);
            let h_prev = (t > 0).then(|| &done[(t - 1) * batch * state..]);
            let gates = &mut layer.gates[range(t, gates_len)];
            model.add_recurrent(k, w, h_prev, batch, gates);
            let (c_done, c_now) = layer.cells.split_at_mut(t * batch * state);
            let c_prev = (t > 0).then(|| &c_done[(t - 1) * batch * state..]);
            cells_forward(
                gates,
                c_prev,
                w.peepholes,
                &mut c_now[..batch * state],
                &mut layer.tanh_c[range(t, state)],
                &mut now[..batch * state],
                state,
            );
        }
    }

    /// The head over steps `t0 .. t1`: predictions from the top layer's `h`.
    fn head_forward<M: GateKernels + ?Sized>(
        &mut self,
        model: &M,
        weights: &StackSlices,
        t0: usize,
        t1: usize,
    ) {
        let frame = self.frame_len();
        let batch = self.plan.batch;
        let top = self.layers.last().expect("a stack has layers");
        let (lo, hi) = (t0 * batch, t1 * batch);
        let h = &top.hs[lo * top.state..hi * top.state];
        let preds = &mut self.preds[lo * frame..hi * frame];
        match (self.stack.head, &weights.head) {
            (Head::None, _) => preds.copy_from_slice(h),
            (head, Some(w)) => {
                model.head_forward(w, h, hi - lo, preds);
                match head {
                    Head::AffineSigmoid => {
                        if !self.logits.is_empty() {
                            self.logits[lo * frame..hi * frame].copy_from_slice(preds);
                        }
                        preds.iter_mut().for_each(|p| *p = sigmoid(*p));
                    }
                    Head::Residual => {
                        let inputs = match &self.fed {
                            Some(fed) => fed,
                            None => &self.frames,
                        };
                        for (p, x) in preds.iter_mut().zip(&inputs[lo * frame..hi * frame]) {
                            *p += x;
                        }
                    }
                    _ => {}
                }
            }
            (_, None) => panic!("a head without weights"),
        }
    }

    /// The batch loss (see [`Plan::weight`]) and its gradient with respect to each
    /// prediction (or, for the cross-entropy, each logit), kept for the backward.
    fn loss_and_output_grads(&mut self) -> f64 {
        let frame = self.frame_len();
        // Steps whose predictions do not count keep a zero gradient.
        let mut d_preds = take_zeroed(self.preds.len());
        let loss = match self.plan.loss {
            Loss::Mse => self.squared_error(&mut d_preds),
            Loss::Bce => {
                assert!(
                    !self.logits.is_empty(),
                    "the cross-entropy needs a head that ends in a sigmoid"
                );
                self.d_logits = take_zeroed(self.preds.len());
                self.cross_entropy()
            }
        };
        // Where there is no head, the prediction is the top layer's h.
        let top = self.layers.last_mut().expect("a stack has layers");
        if self.stack.head.is_none() {
            top.d_above = d_preds;
        } else {
            top.d_above = take(self.preds.len() / frame * top.state);
            self.d_y = d_preds;
        }
        loss
    }

    /// The cross-entropy from the logits, into `d_logits`. Per step: the sum over the
    /// frame's values of `max(z, 0) - z y + ln(1 + exp(-|z|))`; `dL/dz = (p - y) w`.
    fn cross_entropy(&mut self) -> f64 {
        let frame = self.frame_len();
        let batch = self.plan.batch;
        let mut loss = 0f64;
        for (t, weight) in counted_steps(self.plan) {
            let at = t * batch * frame;
            let len = batch * frame;
            let targets = &self.frames[at + len..][..len];
            let mut step_sum = 0f64;
            for (((z, p), y), d) in self.logits[at..at + len]
                .iter()
                .zip(&self.preds[at..at + len])
                .zip(targets)
                .zip(&mut self.d_logits[at..at + len])
            {
                step_sum += (z.max(0.0) - z * y + (-z.abs()).exp().ln_1p()) as f64;
                *d = (p - y) * weight as f32;
            }
            loss += step_sum * weight;
        }
        loss
    }

    /// The squared error, into `d_preds`. Per step: the sum over the frame's `P` values of
    /// the squared error, over `P`; `dL/dpred = 2 (pred - frame) w / P`.
    fn squared_error(&self, d_preds: &mut [f32]) -> f64 {
        let frame = self.frame_len();
        let batch = self.plan.batch;
        let mut loss = 0f64;
        for (t, weight) in counted_steps(self.plan) {
            let scale = (2.0 / frame as f32) * weight as f32;
            for b in 0..batch {
                let at = (t * batch + b) * frame;
                let target = &self.frames[at + batch * frame..][..frame];
                let mut step_sum = 0f64;
                for ((p, y), d) in self.preds[at..at + frame]
                    .iter()
                    .zip(target)
                    .zip(&mut d_preds[at..at + frame])
                {
                    let diff = p - y;
                    step_sum += (diff * diff) as f64;
                    *d = scale * diff;
                }
                loss += step_sum / frame as f64 * weight;
            }
        }
        loss
    }

    /// Backpropagation through time, the forward's schedule in reverse.
    fn backward<M: GateKernels + ?Sized>(&mut self, model: &M, weights: &StackSlices) {
        let (steps, batch, known) = (self.plan.steps, self.plan.batch, self.plan.known);
        let frame = self.frame_len();
        let samples = steps * batch;
        let top = self.stack.layers() - 1;
        for (k, layer) in self.layers.iter_mut().enumerate() {
            layer.d_preact = take(samples * GATES * layer.state);
            if k < top {
                layer.d_above = take(samples * layer.state);
            }
            if self.stack.peephole {
                layer.d_peep = Some(std::array::from_fn(|_| vec![0f32; layer.state]));
            }
        }
        // The gradient reaching each fed input (a prediction read again).
        let mut d_fed = self.fed.as_ref().map(|_| take_zeroed(samples * frame));
        let mut dh_next: Vec<Vec<f32>> = self
            .layers
            .iter()
            .map(|l| vec![0f32; batch * l.state])
            .collect();
        let mut dc_next = dh_next.clone();
        for t in (known..steps).rev() {
            self.head_backward(model, weights, d_fed.as_deref_mut(), t, t + 1);
            for k in (0..=top).rev() {
                self.layer_backward(
                    model,
                    weights,
                    k,
                    t,
                    t + 1,
                    (&mut dh_next[k], &mut dc_next[k]),
                    d_fed.as_deref_mut(),
                );
            }
            // Step t read the prediction of step t - 1, where it did not read the truth.
            let d_fed = d_fed.as_ref().expect("forecast steps have fed inputs");
            let plan = self.plan;
            let d = self.d_of_predictions();
            for w in (0..batch).filter(|&w| !plan.reads_truth(t, w)) {
                let from = (t * batch + w) * frame;
                let to = from - batch * frame;
                for (a, b) in d[to..to + frame].iter_mut().zip(&d_fed[from..from + frame]) {
                    *a += b;
                }
            }
        }
        self.head_backward(model, weights, d_fed.as_deref_mut(), 0, known);
        for k in (0..=top).rev() {
            self.layer_backward(
                model,
                weights,
                k,
                0,
                known,
                (&mut dh_next[k], &mut dc_next[k]),
                d_fed.as_deref_mut(),
            );
        }
    }

    /// dLoss/d(predictions): the head's output gradient, or without a head the top layer's.
    fn d_of_predictions(&mut self) -> &mut [f32] {
        if self.stack.head.is_none() {
            &mut self.layers.last_mut().expect("a stack has layers").d_above
        } else {
            &mut self.d_y
        }
    }

    /// The head's backward over steps `t0 .. t1`: from dLoss/d(predictions) (held in
    /// `d_y`) to the affine output's gradient (in place) and the top layer's `d_above`.
    fn head_backward<M: GateKernels + ?Sized>(
        &mut self,
        model: &M,
        weights: &StackSlices,
        d_fed: Option<&mut [f32]>,
        t0: usize,
        t1: usize,
    ) {
        let frame = self.frame_len();
        let batch = self.plan.batch;
        let (lo, hi) = (t0 * batch, t1 * batch);
        let head = self.stack.head;
        if head.is_none() {
            return;
        }
        let d_y = &mut self.d_y[lo * frame..hi * frame];
        if let (Head::Residual, Some(d_fed)) = (head, d_fed) {
            // pred = x + A(h): the input gets the prediction's gradient as it is.
            for (a, b) in d_fed[lo * frame..hi * frame].iter_mut().zip(d_y.iter()) {
                *a += b;
            }
        }
        if head == Head::AffineSigmoid {
            for (d, p) in d_y.iter_mut().zip(&self.preds[lo * frame..hi * frame]) {
                *d *= p * (1.0 - p);
            }
            if !self.d_logits.is_empty() {
                for (d, dl) in d_y.iter_mut().zip(&self.d_logits[lo * frame..hi * frame]) {
                    *d += dl;
                }
            }
        }
        let w = weights.head.as_ref().expect("a head has weights");
        let top = self.layers.last_mut().expect("a stack has layers");
        model.head_backward(
            w,
            d_y,
            hi - lo,
            &mut top.d_above[lo * top.state..hi * top.state],
        );
    }

    /// Layer `k`'s steps `t1 - 1` down to `t0`; then the gradient reaching its input over
    /// those steps (the layer below's `d_above`, or the fed inputs' for the first layer).
    #[allow(clippy::too_many_arguments)]
    fn layer_backward<M: GateKernels + ?Sized>(
        &mut self,
        model: &M,
        weights: &StackSlices,
        k: usize,
        t0: usize,
        t1: usize,
        (dh_next, dc_next): (&mut [f32], &mut [f32]),
        d_fed: Option<&mut [f32]>,
    ) {
        let batch = self.plan.batch;
        let w = &weights.layers[k];
        let (below, rest) = self.layers.split_at_mut(k);
        let layer = &mut rest[0];
        let state = layer.state;
        let g = GATES * state;
        for t in (t0..t1).rev() {
            let (lo, hi) = (t * batch, (t + 1) * batch);
            let c_prev = (t > 0).then(|| &layer.cells[(lo - batch) * state..lo * state]);
            cells_backward(
                StepCache {
                    gates: &layer.gates[lo * g..hi * g],
                    tanh_c: &layer.tanh_c[lo * state..hi * state],
                    cells: &layer.cells[lo * state..hi * state],
                    c_prev,
                },
                w.peepholes,
                &layer.d_above[lo * state..hi * state],
                (dh_next, dc_next),
                &mut layer.d_preact[lo * g..hi * g],
                layer.d_peep.as_mut(),
                state,
            );
            if t > 0 {
                // dL/dh of step t - 1 through step t's recurrent half.
                let d = &layer.d_preact[t * batch * g..(t + 1) * batch * g];
                model.recurrent_backward(k, w, d, batch, dh_next);
            }
        }
        let (lo, hi) = (t0 * batch, t1 * batch);
        let d_preact = &layer.d_preact[lo * g..hi * g];
        if let Some(prev) = below.last_mut() {
            let dx = &mut prev.d_above[lo * prev.state..hi * prev.state];
            model.input_backward(k, w, d_preact, hi - lo, dx);
        } else if let Some(d_fed) = d_fed {
            let in_len = self.stack.input_channels(0) * self.stack.positions();
            let mut dx = vec![0f32; (hi - lo) * in_len];
            model.input_backward(0, w, d_preact, hi - lo, &mut dx);
            for (a, b) in d_fed[lo * in_len..hi * in_len].iter_mut().zip(&dx) {
                *a += b;
            }
        }
    }

    /// Every parameter's gradient, in the layout order of [`Stack::params_per_layer`]:
    /// borrowed from what the backward kept, or formed by the model's kernels.
    pub fn grads<'a, M: GateKernels + ?Sized>(&'a self, model: &M) -> Vec<Grad<'a>> {
        let mut grads = Vec::with_capacity(self.stack.param_count());
        for (k, layer) in self.layers.iter().enumerate() {
            let inputs = match k {
                0 => self.inputs(),
                _ => &self.layers[k - 1].hs,
            };
            let io = GateIo {
                inputs,
                hs: &layer.hs,
                d_preact: &layer.d_preact,
                steps: self.plan.steps,
                batch: self.plan.batch,
            };
            grads.extend(model.gate_grads(k, &io));
            if let Some(d_peep) = &layer.d_peep {
                grads.extend(d_peep.iter().map(|g| Grad::Values(Cow::Borrowed(&g[..]))));
            }
        }
        if self.stack.head.has_affine() {
            let top = self.layers.last().expect("a stack has layers");
            grads.extend(model.head_grads(&top.hs, &self.d_y, self.plan.steps * self.plan.batch));
        }
        grads
    }
}

/// One step's cells for every sample of a batch: `gates` `[B, 4n]` (pre-activations in,
/// gates out), the states `[B, n]`; `c_prev` `None` where it is zero.
fn cells_forward(
    gates: &mut [f32],
    c_prev: Option<&[f32]>,
    peepholes: Option<[&[f32]; 3]>,
    cells: &mut [f32],
    tanh_c: &mut [f32],
    hs: &mut [f32],
    n: usize,
) {
    let zeros;
    let c_prev = match c_prev {
        Some(c) => c,
        None => {
            zeros = vec![0f32; hs.len()];
            &zeros
        }
    };
    for ((((g, cp), c), tc), h) in gates
        .chunks_exact_mut(4 * n)
        .zip(c_prev.chunks_exact(n))
        .zip(cells.chunks_exact_mut(n))
        .zip(tanh_c.chunks_exact_mut(n))
        .zip(hs.chunks_exact_mut(n))
    {
        match peepholes {
            Some(w) => simd::forward_peephole(g, cp, w, c, tc, h),
            None => simd::forward(g, cp, c, tc, h),
        }
    }
}

/// The cell of one sample, compiled with AVX2 where the CPU has it: the cell's loops give
/// the same bits at any vector width. Each is its own function, never inlined: its `&mut`
/// slices then tell the compiler they cannot overlap, which it needs to vectorise; inlined
/// into the step loop, the loops ran one value at a time.
mod simd {
    use crate::cell::slices::{
        cell_backward, cell_backward_peephole, cell_forward, cell_forward_peephole,
    };

    crate::dispatch!(
        #[inline(never)]
        pub(super) fn forward(
            g: &mut [f32], cp: &[f32], c: &mut [f32], tc: &mut [f32], h: &mut [f32]
        ) with "avx2" => cell_forward(g, cp, c, tc, h), else cell_forward(g, cp, c, tc, h)
    );
    crate::dispatch!(
        #[inline(never)]
        pub(super) fn forward_peephole(
            g: &mut [f32], cp: &[f32], w: [&[f32]; 3], c: &mut [f32], tc: &mut [f32],
            h: &mut [f32]
        ) with "avx2"
            => cell_forward_peephole(g, cp, w, c, tc, h),
            else cell_forward_peephole(g, cp, w, c, tc, h)
    );
    crate::dispatch!(
        #[inline(never)]
        pub(super) fn backward(
            gates: &[f32], tanh_c: &[f32], c_prev: &[f32], d_above: &[f32],
            dh_next: &mut [f32], dc_next: &mut [f32], d_preact: &mut [f32]
        ) with "avx2"
            => cell_backward(gates, tanh_c, c_prev, d_above, dh_next, dc_next, d_preact),
            else cell_backward(gates, tanh_c, c_prev, d_above, dh_next, dc_next, d_preact)
    );
    crate::dispatch!(
        #[inline(never)]
        pub(super) fn backward_peephole(
            gates: &[f32], tanh_c: &[f32], c: &[f32], c_prev: &[f32], w: [&[f32]; 3],
            d_above: &[f32], dh_next: &mut [f32], dc_next: &mut [f32], d_preact: &mut [f32],
            d_peep: &mut [Vec<f32>; 3]
        ) with "avx2"
            => cell_backward_peephole(
                gates, tanh_c, c, c_prev, w, d_above, dh_next, dc_next, d_preact, d_peep
            ),
            else cell_backward_peephole(
                gates, tanh_c, c, c_prev, w, d_above, dh_next, dc_next, d_preact, d_peep
            )
    );
}

/// What one step's forward kept, for a batch: `gates` `[B, 4n]`, the rest `[B, n]`;
/// `c_prev` `None` where it is zero.
struct StepCache<'a> {
    gates: &'a [f32],
    tanh_c: &'a [f32],
    cells: &'a [f32],
    c_prev: Option<&'a [f32]>,
}

/// One step's cell backward for every sample of a batch (see
/// [`crate::cell::slices::cell_backward`]).
fn cells_backward(
    cache: StepCache,
    peepholes: Option<[&[f32]; 3]>,
    d_above: &[f32],
    (dh_next, dc_next): (&mut [f32], &mut [f32]),
    d_preact: &mut [f32],
    mut d_peep: Option<&mut [Vec<f32>; 3]>,
    n: usize,
) {
    let zeros;
    let c_prev = match cache.c_prev {
        Some(c) => c,
        None => {
            zeros = vec![0f32; cache.cells.len()];
            &zeros
        }
    };
    let batch = cache.cells.len() / n.max(1);
    for b in 0..batch {
        let one = b * n..(b + 1) * n;
        let four = 4 * b * n..4 * (b + 1) * n;
        match (peepholes, d_peep.as_deref_mut()) {
            (Some(w), Some(d_peep)) => simd::backward_peephole(
                &cache.gates[four.clone()],
                &cache.tanh_c[one.clone()],
                &cache.cells[one.clone()],
                &c_prev[one.clone()],
                w,
                &d_above[one.clone()],
                &mut dh_next[one.clone()],
                &mut dc_next[one.clone()],
                &mut d_preact[four],
                d_peep,
            ),
            _ => simd::backward(
                &cache.gates[four.clone()],
                &cache.tanh_c[one.clone()],
                &c_prev[one.clone()],
                &d_above[one.clone()],
                &mut dh_next[one.clone()],
                &mut dc_next[one],
                &mut d_preact[four],
            ),
        }
    }
}
