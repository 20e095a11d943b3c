//! The conv model on the command line: its flags, and the [`Config`] they describe, checked
//! against the frames with every error naming the flag at fault.

use candle_core::Result;
use clap::{Args, ValueEnum};
use lstm_core::Head;
use serde::{Deserialize, Serialize};

use crate::Config;

/// Flags of `--model conv`. Left out, each is the seed's: one layer of the frame's
/// channels, 5x5 kernels, no peepholes, the prediction is `h`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Args, Serialize, Deserialize)]
#[command(next_help_heading = "Options of the convolutional models (--model conv, predrnn)")]
#[group(id = "conv-flags")]
pub struct Flags {
    /// Hidden channels of each ConvLSTM layer, e.g. 64,64 (stacked: layer k reads layer
    /// k-1's h). Default: one layer with the frame's channels, whose h is the prediction.
    #[arg(long, value_delimiter = ',', value_name = "C,..")]
    #[serde(default)]
    pub hidden_channels: Option<Vec<usize>>,
    /// Kernel side of the conv model (odd): one for every layer, or one per layer.
    /// Default: 5.
    #[arg(long, value_delimiter = ',', value_name = "K,..")]
    #[serde(default, with = "lstm_core::stack::one_or_many_opt")]
    pub kernel: Option<Vec<usize>>,
    /// Shi et al.'s peephole connections: i and f also see w_ci*c_prev and w_cf*c_prev,
    /// o sees w_co*c, each weight learned per channel and pixel.
    #[arg(long)]
    #[serde(default)]
    pub peephole: bool,
    /// What turns the last layer's h into the prediction. Default: none.
    #[arg(long, value_enum)]
    #[serde(default)]
    pub head: Option<HeadKind>,
    /// Cut frames into PxP patches (space-to-depth: C x H x W becomes C*P*P x H/P x W/P);
    /// predictions are turned back into frames. Default: 1.
    #[arg(long, value_name = "P")]
    #[serde(default)]
    pub patch: Option<usize>,
    /// Shi et al.'s encoder-forecaster instead of one stack that reads its own
    /// predictions: the --hidden-channels layers read the context; a forecaster of the
    /// same layers, weights of its own, starts from their final states, reads no frames,
    /// and the head (--head conv1x1 or conv1x1-sigmoid) reads all its layers. Needs
    /// --context and --horizon. Trains through candle's autograd (no fast path yet).
    #[arg(long)]
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub encoder_forecaster: bool,
}

/// `--head`: what turns the last layer's h into the prediction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HeadKind {
    /// The prediction is h itself (the last layer needs the frame's channels).
    None,
    /// A 1x1 convolution from the last layer's channels to the frame's.
    Conv1x1,
    /// The 1x1 convolution followed by a sigmoid: predictions in (0, 1).
    Conv1x1Sigmoid,
    /// The step's input frame plus the 1x1 convolution: starts near copying the last frame.
    Residual,
}

impl From<HeadKind> for Head {
    fn from(kind: HeadKind) -> Head {
        match kind {
            HeadKind::None => Head::None,
            HeadKind::Conv1x1 => Head::Affine,
            HeadKind::Conv1x1Sigmoid => Head::AffineSigmoid,
            HeadKind::Residual => Head::Residual,
        }
    }
}

impl Flags {
    /// The model these flags describe over frames `[C, H, W]`, checked.
    pub fn config(&self, frame: [usize; 3]) -> Result<Config> {
        let list = |flag: &str, values: &Option<Vec<usize>>| -> Result<()> {
            match values {
                Some(v) if v.is_empty() || v.contains(&0) => {
                    candle_core::bail!("{flag} {}: every entry must be at least 1", join(v))
                }
                _ => Ok(()),
            }
        };
        list("--hidden-channels", &self.hidden_channels)?;
        list("--kernel", &self.kernel)?;
        if let Some(k) = self.kernel.iter().flatten().find(|k| k.is_multiple_of(2)) {
            candle_core::bail!(
                "--kernel {}: {k} is even; a kernel side must be odd (padding K/2 keeps the \
                 frame size)",
                join(self.kernel.as_deref().unwrap_or_default())
            );
        }
        if self.patch == Some(0) {
            candle_core::bail!("--patch 0: use 1 (no patches) or more");
        }
        let config = Config {
            channels: frame[0],
            kernel: self.kernel.clone().unwrap_or_else(|| vec![5]),
            hidden_channels: self.hidden_channels.clone().unwrap_or_default(),
            peephole: self.peephole,
            head: self.head.map_or(Head::None, Head::from),
            patch: self.patch.unwrap_or(1),
            encoder_forecaster: self.encoder_forecaster,
        };
        if config.encoder_forecaster {
            if self.hidden_channels.is_none() {
                candle_core::bail!(
                    "--encoder-forecaster: give the encoder's layers with --hidden-channels \
                     (Shi et al.: 128,64,64)"
                );
            }
            if !matches!(config.head, Head::Affine | Head::AffineSigmoid) {
                candle_core::bail!(
                    "--encoder-forecaster: the head reads every forecaster layer through a 1x1 \
                     convolution; use --head conv1x1 or conv1x1-sigmoid"
                );
            }
        }
        let layers = config.hidden().len();
        if config.kernel.len() != 1 && config.kernel.len() != layers {
            candle_core::bail!(
                "--kernel {}: give one kernel side for every layer or one per layer ({layers} \
                 layers)",
                join(&config.kernel)
            );
        }
        let size = [frame[1], frame[2]];
        config
            .stack(size)
            .and_then(|_| config.check_kernel_fits(size))
            .map_err(|e| candle_core::Error::Msg(flag_names(&e.to_string())))?;
        Ok(config)
    }

    /// Every core for a ConvLSTM of hidden channels (its steps are matrix products); one
    /// for the seed's 208-parameter model, which gains nothing from a second thread and,
    /// on a shared machine, can be stalled by a spinning second worker.
    pub fn default_threads(&self, available: usize) -> usize {
        match self.hidden_channels {
            Some(_) => available,
            None => 1,
        }
    }
}

/// `1,2,3`: a list flag's values as typed.
pub fn join(values: &[usize]) -> String {
    values
        .iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// A shape error of the configuration, with the flags that set each thing named.
pub fn flag_names(message: &str) -> String {
    message
        .replace("head none:", "--head none:")
        .replace("add a head (conv1x1)", "add --head conv1x1")
        .replace("patch ", "--patch ")
        .replace("kernel ", "--kernel ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_flags_are_the_seed() {
        let config = Flags::default().config([1, 65, 65]).unwrap();
        assert_eq!(config, Config::default());
    }

    #[test]
    fn bad_flags_are_named() {
        let flags = |f: fn(&mut Flags)| {
            let mut flags = Flags::default();
            f(&mut flags);
            flags.config([1, 16, 16]).unwrap_err().to_string()
        };
        assert!(flags(|f| f.kernel = Some(vec![4])).starts_with("--kernel 4: 4 is even"));
        assert!(flags(|f| f.patch = Some(0)).starts_with("--patch 0"));
        assert!(
            flags(|f| f.hidden_channels = Some(vec![8, 0])).starts_with("--hidden-channels 8,0")
        );
        let err = flags(|f| {
            f.hidden_channels = Some(vec![8, 8]);
            f.kernel = Some(vec![3, 3, 3]);
        });
        assert!(err.contains("(2 layers)"), "{err}");
        let err = flags(|f| f.kernel = Some(vec![33]));
        assert!(err.contains("--kernel"), "{err}");
    }

    #[test]
    fn flags_read_back_from_records_of_either_kernel_form() {
        let old: Flags = serde_json::from_str(r#"{"kernel": 5, "hidden": [9]}"#).unwrap();
        assert_eq!(old.kernel, Some(vec![5]));
        let flags = Flags {
            kernel: Some(vec![3, 5]),
            head: Some(HeadKind::Conv1x1Sigmoid),
            ..Flags::default()
        };
        let text = serde_json::to_string(&flags).unwrap();
        assert!(text.contains("conv1x1-sigmoid"), "{text}");
        assert_eq!(serde_json::from_str::<Flags>(&text).unwrap(), flags);
    }
}
