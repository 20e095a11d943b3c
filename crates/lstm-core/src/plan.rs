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

/// One batch's schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
        }
    }

    /// This plan measured by `loss`.
    pub fn with_loss(self, loss: Loss) -> Plan {
        Plan { loss, ..self }
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

    /// The plan of `windows` of this batch run on their own, their loss still a share of
    /// the whole batch's mean: the shards' losses and gradients add up to the batch's.
    pub fn shard(&self, windows: usize) -> Plan {
        Plan {
            batch: windows,
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
