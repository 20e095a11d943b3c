//! `bench-cli --model <kind>`: train one model; the flags become a run's settings and
//! configurations (`config`), the run is checked to fit (`fit`), then the harness trains.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::ArgMatches;
use harness::SequenceModel;

use crate::args::{DataArgs, TrainArgs};
use crate::{bench, config, distributed, fit, models};

/// Exit status of a run stopped by Ctrl-C or SIGTERM, as shells report one (128 + SIGINT).
const EXIT_INTERRUPTED: u8 = 130;

/// `bench-cli --model <kind>`: train one model.
pub fn run(args: TrainArgs, matches: &ArgMatches) -> Result<ExitCode> {
    let kind = args
        .run
        .model
        .clone()
        .expect("clap requires --model without a subcommand");
    models::refuse_other_models_flags(&kind, matches)?;
    models::with_model(&kind, Train { args, matches }).expect("clap takes listed kinds only")
}

/// Training, once the model's type is known.
struct Train<'a> {
    args: TrainArgs,
    matches: &'a ArgMatches,
}

impl models::WithModel for Train<'_> {
    type Output = Result<ExitCode>;

    fn run<M: SequenceModel>(self) -> Result<ExitCode> {
        let Train { mut args, matches } = self;
        let paths = harness::OutputPaths::new(&args.out, M::KIND);
        args.run.model_flags = models::parse_flags::<M>(matches)?;
        if args.resume && paths.resume.exists() {
            let state = harness::resume::peek(&paths.resume).context("--resume")?;
            config::resume_settings(&mut args.run, matches, state.launch, &paths.resume)?;
        }
        let flags: M::Flags =
            serde_json::from_value(args.run.model_flags.clone()).with_context(|| {
                format!(
                    "{}: unreadable flags of the {} model",
                    paths.resume.display(),
                    M::KIND
                )
            })?;
        // As the model records them: a migrated record keeps the model's flags alone.
        args.run.model_flags = serde_json::to_value(&flags)?;
        let mut config = config::train_config(&args)?;
        // Threads first: the thread pool's size goes into the environment for candle,
        // which must happen before any other thread (the Ctrl-C handler's) exists.
        // Ranks launched on one machine share its cores.
        let cores = config::available_cores() / distributed::ranks_on_this_machine();
        let default_threads = M::default_threads(&flags, cores.max(1));
        let threads = config::set_threads(args.threads, default_threads)?;
        distributed::start()?;
        let (stop, started) = stop_on_signals()?;
        config.stop = Some(stop);
        config.started = Some(started);
        let device = config::device(args.device)?;
        let probe = fit::probe(
            &args.run.data,
            config.training.forecast.map(|f| f.context + f.horizon),
        )?;
        let model = config::model_config::<M>(&args, matches, probe.frame, &flags)?;
        let summary =
            fit_load_train::<M>(&model, &args.run.data, &probe, &config, threads, &device)?;
        if let Some(peak) = bench::peak_rss_mib() {
            // Every rank's, with its rank: each holds its own copy of the model and data.
            println!("{}peak memory: {peak:.0} MiB", distributed::rank_prefix());
        }
        if summary.stopped_at.is_some() && harness::collective::writes() {
            eprintln!(
                "bench-cli: stopped on request; to continue the run: {}",
                resume_command(M::KIND, &args, matches)
            );
            return Ok(ExitCode::from(EXIT_INTERRUPTED));
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// The command that continues a run stopped on request.
fn resume_command(kind: &str, args: &TrainArgs, matches: &ArgMatches) -> String {
    let program = std::env::args()
        .next()
        .unwrap_or_else(|| "bench-cli".into());
    let out = match models::typed(matches, "out") {
        true => format!(" --out {}", args.out.display()),
        false => String::new(),
    };
    format!("{program} --model {kind}{out} --resume")
}

/// SIGINT and SIGTERM (ctrlc's `termination` feature): before training starts, exit at
/// once (nothing is written yet); during training, the first asks for a stop after the
/// current window with a checkpoint (the returned `stop` flag), a second exits at once.
/// Returns the flags `(stop, started)` the harness reads and sets.
fn stop_on_signals() -> Result<(Arc<AtomicBool>, Arc<AtomicBool>)> {
    let stop = Arc::new(AtomicBool::new(false));
    let started = Arc::new(AtomicBool::new(false));
    let (stop_flag, started_flag) = (stop.clone(), started.clone());
    ctrlc::set_handler(move || {
        // Loading, resizing and building the model write nothing: stop at once.
        if !started_flag.load(Ordering::SeqCst) {
            frames::video::kill_decoders();
            eprintln!("bench-cli: interrupted before training started; nothing was written");
            std::process::exit(EXIT_INTERRUPTED.into());
        }
        if stop_flag.swap(true, Ordering::SeqCst) {
            eprintln!(
                "bench-cli: interrupted again: exiting now; the last training checkpoint is kept"
            );
            // A file being written keeps its previous version; its temporary goes.
            harness::files::remove_in_flight_temporaries();
            std::process::exit(EXIT_INTERRUPTED.into());
        }
        eprintln!(
            "bench-cli: interrupted: stopping after the current window with a checkpoint \
             (again to exit at once)"
        );
    })
    .context("cannot install the Ctrl-C handler")?;
    Ok((stop, started))
}

/// Checks that the run fits in memory, loads its frames and trains.
fn fit_load_train<M: SequenceModel>(
    model: &M::Config,
    data_args: &DataArgs,
    probe: &fit::DataProbe,
    config: &harness::TrainConfig,
    threads: usize,
    device: &candle_core::Device,
) -> Result<harness::RunSummary> {
    let needs = fit::check_run::<M>(model, probe, config, threads, device)?;
    let writes = harness::collective::writes();
    if writes {
        println!("{}", fit::describe(&needs));
    }
    if !config.quiet && writes {
        eprintln!("{}...", probe.describe());
    }
    let data = fit::load_data(
        data_args,
        config.training.forecast.map(|f| f.context + f.horizon),
    )?;
    if data.frame_shape() != probe.frame {
        anyhow::bail!(
            "{}: the frames changed while loading ({:?} expected, {:?} found)",
            probe.source,
            probe.frame,
            data.frame_shape()
        );
    }
    let mut config = config.clone();
    if config.training.fresh_windows {
        let (spec, base) = (config::moving_mnist(data_args)?, data.clone());
        let draw = move |epoch| {
            base.with_train_videos(spec.train_sequences(epoch)?)?
                .train_windows()
        };
        config.fresh_windows = Some(harness::FreshWindows(std::sync::Arc::new(draw)));
    }
    Ok(harness::train::<M>(model, &data, &config, device)?)
}
