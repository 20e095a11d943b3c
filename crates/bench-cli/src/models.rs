//! The models this command line knows: the one list, one line each. Everything else in
//! `bench-cli` is generic over [`SequenceModel`]; a new model is a crate of its own and a
//! line here.

use anyhow::{bail, Result};
use clap::builder::{PossibleValue, PossibleValuesParser};
use clap::parser::ValueSource;
use clap::{ArgMatches, Args, Command};
use harness::SequenceModel;

/// Work to do with a model whose kind is known only at run time: `run` is called with its
/// type.
pub trait WithModel {
    type Output;
    fn run<M: SequenceModel>(self) -> Self::Output;
}

macro_rules! models {
    ($($model:ty),+ $(,)?) => {
        /// Runs `job` with the model of kind `kind`; `None` if no model has that kind.
        pub fn with_model<J: WithModel>(kind: &str, job: J) -> Option<J::Output> {
            $(if kind == <$model as SequenceModel>::KIND {
                return Some(job.run::<$model>());
            })+
            None
        }

        /// Every model, in the list's order.
        pub fn all() -> Vec<About> {
            vec![$(About::of::<$model>()),+]
        }

        /// `command` with every model's flags added, each model's under its own heading
        /// (its own description kept: clap would take a flags struct's doc for it).
        pub fn add_flags(command: Command) -> Command {
            let about = command.get_about().cloned();
            let long_about = command.get_long_about().cloned();
            // Models may share a flags struct (PredRNN takes the ConvLSTM's): each is
            // added once.
            let mut added = Vec::new();
            $(let id = std::any::TypeId::of::<<$model as SequenceModel>::Flags>();
            let command = match added.contains(&id) {
                true => command,
                false => {
                    added.push(id);
                    <<$model as SequenceModel>::Flags as Args>::augment_args(command)
                }
            };)+
            let command = match about {
                Some(about) => command.about(about),
                None => command.about(None::<&str>),
            };
            match long_about {
                Some(long) => command.long_about(long),
                None => command.long_about(None::<&str>),
            }
        }
    };
}

models! {
    lstm_linear::LinearLstm,
    lstm_conv::ConvLstm,
    predrnn::PredRnn,
}

/// What the command line shows and checks of a model.
pub struct About {
    pub kind: &'static str,
    pub about: &'static str,
    /// Its flags: clap ids with their long names.
    pub flags: Vec<Flag>,
}

/// One flag of a model.
pub struct Flag {
    pub id: String,
    pub long: String,
}

impl About {
    fn of<M: SequenceModel>() -> About {
        About {
            kind: M::KIND,
            about: M::ABOUT,
            flags: flags::<M>(),
        }
    }
}

/// `M`'s flags.
pub fn flags<M: SequenceModel>() -> Vec<Flag> {
    let command = <M::Flags as Args>::augment_args(Command::new(M::KIND));
    command
        .get_arguments()
        .map(|arg| Flag {
            id: arg.get_id().to_string(),
            long: arg.get_long().unwrap_or_default().to_string(),
        })
        .collect()
}

/// `--model`'s values, each with its model's help line.
pub fn kind_parser() -> PossibleValuesParser {
    PossibleValuesParser::new(
        all()
            .into_iter()
            .map(|m| PossibleValue::new(m.kind).help(m.about)),
    )
}

/// Whether the flag of clap id `id` was typed on the command line.
pub fn typed(matches: &ArgMatches, id: &str) -> bool {
    matches.try_get_raw(id).is_ok() && matches.value_source(id) == Some(ValueSource::CommandLine)
}

/// `M`'s flags as typed (each one left out at its default), as `M` records them.
pub fn parse_flags<M: SequenceModel>(matches: &ArgMatches) -> Result<serde_json::Value> {
    let flags = <M::Flags as clap::FromArgMatches>::from_arg_matches(matches)?;
    Ok(serde_json::to_value(flags)?)
}

/// Refuses a flag of another model than `kind`, naming the model it belongs to and the
/// flags `kind` takes.
pub fn refuse_other_models_flags(kind: &str, matches: &ArgMatches) -> Result<()> {
    let models = all();
    let longs =
        |m: &About| -> Vec<String> { m.flags.iter().map(|f| format!("--{}", f.long)).collect() };
    let own = models
        .iter()
        .find(|m| m.kind == kind)
        .map(longs)
        .unwrap_or_default();
    for other in models.iter().filter(|m| m.kind != kind) {
        let foreign = |f: &&Flag| !own.contains(&format!("--{}", f.long));
        if let Some(flag) = other
            .flags
            .iter()
            .filter(foreign)
            .find(|f| typed(matches, &f.id))
        {
            let takes = match own.as_slice() {
                [] => "no flags of its own".to_string(),
                own => own.join(", "),
            };
            bail!(
                "--{} applies to --model {} only (--model {kind} takes {takes})",
                flag.long,
                other.kind
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_flags_are_unique_across_models() {
        let models = all();
        let mut kinds: Vec<&str> = models.iter().map(|m| m.kind).collect();
        kinds.sort();
        kinds.dedup();
        assert_eq!(kinds.len(), models.len());
        // Flags share one command line: clap would refuse two of the same id.
        let command = add_flags(Command::new("t").about("ours")).long_about("all of ours");
        command.clone().debug_assert();
        assert_eq!(
            command.get_about().map(|a| a.to_string()),
            Some("ours".into())
        );
        assert!(models.iter().all(|m| !m.about.is_empty()));
    }
}
