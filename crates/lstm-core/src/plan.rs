//! What a training window asks of a driver: how many steps read true frames, and which
//! predictions count in the loss, and by what measure.

use serde::{Deserialize, Serialize};

/// The loss of one window. Either way the loss of a batch is the mean over its windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Objective {
    /// The seed's: the sum over every step of the per-step mean squared error.
    SumOverSteps,
    /// Forecasting: the mean over the last `n` steps' predictions of the per-frame mean
    /// squared error; earlier steps only read their context.
    MeanOverLast(usize),
}

/// What a prediction's error is measured by.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Loss {
    /// A frame's loss is the mean over its values of the squared error (the seed's).
    #[default]
    Mse,
    /// Shi et al.'s: a frame's loss is the cross-entropy of its values, summed over them,
    /// `-(y ln p + (1 - y) ln(1 - p))`, taken from the logits `z` of a head that ends in a
    /// sigmoid as `max(z, 0) - z y + ln(1 + exp(-|z|))`, which never takes the log of a
    /// rounded probability. Its gradient at the logit is `p - y`.
    Bce,
}

impl Loss {
    /// The name `--loss` takes.
    pub fn name(&self) -> &'static str {
        match self {
            Loss::Mse => "mse",
            Loss::Bce => "bce",
        }
    }
}

/// Scheduled sampling (Bengio et al. 2015, as PredRNN and OpenSTL train): each forecast
/// step of each window reads the true frame instead of the previous prediction with
/// probability `truth`, drawn independently per step and window from `seed` (see
/// [`Plan::reads_truth`]), so a batch's draws are the same whatever the drivers or shards.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampling {
    pub truth: f64,
    pub seed: u64,
}

/// One batch's schedule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Plan {
    /// Steps `T`: a window's length minus one. Step `t` predicts frame `t + 1`.
    pub steps: usize,
    /// Windows in the batch, `B`.
    pub batch: usize,
    /// Windows the loss is the mean over: `B`, or the whole batch's size when this plan
    /// runs one shard of it.
    pub mean_over: usize,
    /// Leading steps that read a true frame; every later step reads the previous step's
    /// prediction. `steps` for one-step-ahead prediction (the seed).
    pub known: usize,
    pub objective: Objective,
    pub loss: Loss,
    /// Forecast steps that read the true frame by chance; `None`: each reads the previous
    /// prediction (as evaluation always does).
    pub sampling: Option<Sampling>,
    /// This batch's first window in the batch it is a shard of (0 for a whole batch): the
    /// draws of [`Sampling`] follow a window wherever it runs.
    pub first_window: usize,
}

impl Plan {
    /// The seed's one-step-ahead plan for windows of `len` frames.
    pub fn one_step(len: usize, batch: usize) -> Plan {
        Plan {
            steps: len - 1,
            batch,
            mean_over: batch,
            known: len - 1,
            objective: Objective::SumOverSteps,
            loss: Loss::Mse,
            sampling: None,
            first_window: 0,
        }
    }

    /// `context` frames in, `horizon` frames forecast, each step after the context reading
    /// the model's own previous prediction.
    pub fn forecast(context: usize, horizon: usize, batch: usize) -> Plan {
        Plan {
            steps: context + horizon - 1,
            batch,
            mean_over: batch,
            known: context,
            objective: Objective::MeanOverLast(horizon),
            loss: Loss::Mse,
            sampling: None,
            first_window: 0,
        }
    }

    /// This plan measured by `loss`.
    pub fn with_loss(self, loss: Loss) -> Plan {
        Plan { loss, ..self }
    }

    /// This plan with scheduled sampling (no effect on a plan without forecast steps).
    pub fn with_sampling(self, sampling: Option<Sampling>) -> Plan {
        Plan { sampling, ..self }
    }

    /// Whether step `t` of window `b` (of this batch) reads the true frame `t` rather than
    /// the prediction of step `t - 1`: every step before `known`; a later one where the
    /// plan's [`Sampling`] draws a uniform number below its probability. The draw is
    /// SplitMix64 of the seed, the step and the window's place in the whole batch, its top
    /// 53 bits over 2^53.
    pub fn reads_truth(&self, t: usize, b: usize) -> bool {
        if t < self.known {
            return true;
        }
        match self.sampling {
            None => false,
            Some(s) => {
                let key = s.seed ^ ((t as u64) << 32) ^ (self.first_window + b) as u64;
                uniform(splitmix64(key)) < s.truth
            }
        }
    }

    /// Whether any forecast step of any window reads the true frame.
    pub fn samples_truth(&self) -> bool {
        (self.known..self.steps).any(|t| (0..self.batch).any(|b| self.reads_truth(t, b)))
    }

    /// Frames per window, `T + 1`.
    pub fn window_len(&self) -> usize {
        self.steps + 1
    }

    /// The weight of step `t`'s per-frame loss in the batch loss: the objective's weight
    /// over the batch size. The cross-entropy is summed over the frames that count, as Shi
    /// et al. report it, whatever the objective.
    pub fn weight(&self, t: usize) -> f64 {
        let w = match (self.objective, self.loss) {
            (Objective::SumOverSteps, _) => 1.0,
            (Objective::MeanOverLast(n), Loss::Mse) if t + n >= self.steps => 1.0 / n as f64,
            (Objective::MeanOverLast(n), Loss::Bce) if t + n >= self.steps => 1.0,
            (Objective::MeanOverLast(_), _) => 0.0,
        };
        // Kept exact for the seed: one window, weight 1.
        if self.mean_over == 1 {
            w
        } else {
            w / self.mean_over as f64
        }
    }

    /// The plan of `windows` of this batch from window `first` run on their own, their loss still a share of
    /// the whole batch's mean: the shards' losses and gradients add up to the batch's.
    pub fn shard(&self, first: usize, windows: usize) -> Plan {
        Plan {
            batch: windows,
            first_window: self.first_window + first,
            ..*self
        }
    }

    /// Checks the plan is one the drivers can run.
    pub fn check(&self) -> Result<(), String> {
        if self.steps == 0 || self.batch == 0 || self.mean_over < self.batch {
            return Err(format!(
                "{} steps of {} windows: a window needs at least two frames",
                self.steps, self.batch
            ));
        }
        if self.known == 0 || self.known > self.steps {
            return Err(format!(
                "{} context frames for {} steps: use 1 to {}",
                self.known, self.steps, self.steps
            ));
        }
        if let Objective::MeanOverLast(n) = self.objective {
            if n == 0 || n > self.steps || self.known + n - 1 != self.steps {
                return Err(format!(
                    "a horizon of {n} after {} context frames in windows of {}",
                    self.known,
                    self.window_len()
                ));
            }
        }
        Ok(())
    }
}

/// SplitMix64's output function (Steele, Lea and Flood 2014): a well-mixed 64-bit hash.
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The top 53 bits of `x` as a number in [0, 1).
fn uniform(x: u64) -> f64 {
    (x >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_draws_follow_the_probability_and_the_window() {
        let plan = Plan::forecast(10, 10, 16);
        let sampled = |truth: f64| plan.with_sampling(Some(Sampling { truth, seed: 7 }));
        assert!(!sampled(0.0).samples_truth());
        assert!((10..19).all(|t| (0..16).all(|b| sampled(1.0).reads_truth(t, b))));
        assert!((0..10).all(|t| plan.reads_truth(t, 3)) && !plan.reads_truth(10, 3));
        // About 30% of 9 x 16 x 100 draws at 0.3.
        let mut hits = 0;
        for seed in 0..100 {
            let p = plan.with_sampling(Some(Sampling { truth: 0.3, seed }));
            hits += (10..19)
                .flat_map(|t| (0..16).map(move |b| (t, b)))
                .filter(|&(t, b)| p.reads_truth(t, b))
                .count();
        }
        let share = hits as f64 / (9 * 16 * 100) as f64;
        assert!((share - 0.3).abs() < 0.02, "{share}");
        // A shard's window draws what it draws in the whole batch.
        let whole = sampled(0.5);
        let shard = whole.shard(8, 8);
        assert!((10..19)
            .all(|t| (0..8).all(|b| shard.reads_truth(t, b) == whole.reads_truth(t, 8 + b))));
    }
}
