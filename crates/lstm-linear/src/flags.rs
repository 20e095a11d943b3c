//! The linear model on the command line: its flags, and the [`Config`] they describe.

use candle_core::Result;
use clap::Args;
use serde::{Deserialize, Serialize};

use crate::Config;

/// Flags of `--model linear`. Left out: the seed's one layer, one unit per frame value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Args, Serialize, Deserialize)]
#[command(next_help_heading = "Options of --model linear")]
#[group(id = "linear-flags")]
pub struct Flags {
    /// Hidden units of each layer of the linear model, e.g. 2048,2048. Default: one layer,
    /// one unit per frame value (4225 for 65x65).
    #[arg(long, value_delimiter = ',', value_name = "N,..")]
    #[serde(default, with = "lstm_core::stack::one_or_many_opt")]
    pub hidden: Option<Vec<usize>>,
    /// The output layer's activation: linear (the seed's), or sigmoid (predictions in
    /// (0, 1); what --loss bce needs).
    #[arg(long, value_enum, value_name = "KIND")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Output>,
}

/// What follows the linear model's output layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Output {
    Linear,
    Sigmoid,
}

impl Flags {
    /// The model these flags describe over frames `[C, H, W]`, checked.
    pub fn config(&self, [c, h, w]: [usize; 3]) -> Result<Config> {
        let hidden = self.hidden.clone().unwrap_or_else(|| vec![c * h * w]);
        if hidden.is_empty() || hidden.contains(&0) {
            let list: Vec<String> = hidden.iter().map(usize::to_string).collect();
            candle_core::bail!(
                "--hidden {}: the linear model needs at least one hidden unit in every layer",
                list.join(",")
            );
        }
        Ok(Config {
            channels: c,
            height: h,
            width: w,
            hidden,
            sigmoid: self.output == Some(Output::Sigmoid),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_flags_are_the_seed_and_zero_units_are_refused() {
        assert_eq!(
            Flags::default().config([1, 65, 65]).unwrap(),
            Config::default()
        );
        let flags = Flags {
            hidden: Some(vec![16, 0]),
            ..Flags::default()
        };
        let err = flags.config([1, 8, 8]).unwrap_err().to_string();
        assert!(err.starts_with("--hidden 16,0:"), "{err}");
    }
}
