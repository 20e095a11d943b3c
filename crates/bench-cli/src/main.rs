//! `bench-cli`: the command line. Parses flags, builds configurations, picks the model and
//! hands over to the harness; no training logic lives here.

mod args;
mod bench;
mod config;
mod eval;
mod fit;
mod plot;
mod predict;

use std::process::ExitCode;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{ArgMatches, CommandFactory, FromArgMatches};
use harness::SequenceModel;
use lstm_conv::ConvLstm;
use lstm_linear::LinearLstm;

use args::{Cli, Command, FramesArgs, ModelKind, TrainArgs};

// The linear model frees and reallocates 643 MB of gradients every window. glibc hands
// such blocks back to the kernel at once, and faulting them in again (2.7M page faults in
// two epochs) cost a third of an epoch. mimalloc, told not to purge, reuses them instead.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay`: its place in `mi_option_e` of mimalloc v3's `mimalloc.h`.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Keeps freed memory mapped for reuse (see `ALLOCATOR`). Checks the option holds one of
/// its known defaults (1000 ms in v3's `options.c`, 10 ms in v2) first, so another mimalloc
/// layout is left untouched.
fn keep_freed_memory_mapped() {
    // SAFETY: reading and setting a mimalloc option has no preconditions.
    unsafe {
        if matches!(
            libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY),
            10 | 1000
        ) {
            libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1);
        }
    }
}

fn main() -> ExitCode {
    keep_freed_memory_mapped();
    // Like other command-line tools, end quietly when the reader of our output goes away
    // (`bench-cli ... | head`), instead of panicking on the failed write; every file is
    // written atomically, so nothing is left half-written.
    #[cfg(unix)]
    // SAFETY: restoring the default disposition of SIGPIPE, before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    // Parsed in two steps to keep the matches: --resume needs to know which flags were
    // typed.
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    match run(cli, &matches) {
        Ok(code) => code,
        Err(err) => {
            eprintln!(
                "bench-cli: error: {}",
                without_backtrace(&format!("{err:#}"))
            );
            ExitCode::FAILURE
        }
    }
}

/// candle appends a backtrace to its errors' messages when `RUST_BACKTRACE` is set; what a
/// user reads is the message.
fn without_backtrace(message: &str) -> String {
    let is_frame = |line: &str| {
        let t = line.trim_start();
        line.starts_with(' ')
            && (t.starts_with("at ")
                || t.split_once(": ")
                    .is_some_and(|(n, _)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())))
    };
    message
        .lines()
        .filter(|line| !is_frame(line) && !line.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Exit status of a run stopped by Ctrl-C or SIGTERM, as shells report one (128 + SIGINT).
const EXIT_INTERRUPTED: u8 = 130;

fn run(cli: Cli, matches: &ArgMatches) -> Result<ExitCode> {
    match cli.command {
        Some(Command::Frames(args)) => frames(&args),
        Some(Command::Eval(args)) => eval::run(&args),
        Some(Command::Bench(args)) => bench::run(&args),
        Some(Command::Predict(args)) => predict::run(&args),
        Some(Command::Plot(args)) => {
            if args.horizon {
                plot::plot_horizon(&args.csvs, &args.output, args.metric.as_deref())?;
            } else {
                plot::plot(&args.csvs, &args.output, args.metric.as_deref())?;
            }
            println!("wrote {}", args.output.display());
            Ok(())
        }
        None => return train(cli.train, matches),
    }
    .map(|()| ExitCode::SUCCESS)
}

/// `bench-cli --model linear|conv`: train one model.
fn train(mut args: TrainArgs, matches: &ArgMatches) -> Result<ExitCode> {
    let model = args
        .model
        .expect("clap requires --model without a subcommand");
    let kind = match model {
        ModelKind::Linear => LinearLstm::KIND,
        ModelKind::Conv => ConvLstm::KIND,
    };
    let paths = harness::OutputPaths::new(&args.out, kind);
    if args.resume && paths.resume.exists() {
        let state = harness::resume::peek(&paths.resume).context("--resume")?;
        let launch = serde_json::from_value(state.launch).with_context(|| {
            format!(
                "{}: no command-line settings recorded to resume with",
                paths.resume.display()
            )
        })?;
        config::resume_settings(&mut args, matches, launch);
    }
    let args = &args;
    let mut config = config::train_config(args, model)?;
    // Threads first: the thread pool's size goes into the environment for candle, which
    // must happen before any other thread (the Ctrl-C handler's) exists.
    let threads = config::set_threads(args, model)?;
    let (stop, started) = stop_on_signals()?;
    config.stop = Some(stop);
    config.started = Some(started);
    let device = config::device(args.device)?;
    let probe = fit::probe(&args.data, config.forecast.map(|f| f.context + f.horizon))?;
    let frame = probe.frame;
    let summary = match model {
        ModelKind::Linear => {
            let flags = config::linear_config(args, frame)?;
            let model_config = config::model_config::<LinearLstm>(args, matches, frame, flags)?;
            fit_load_train::<LinearLstm>(&model_config, &probe, args, &config, threads, &device)?
        }
        ModelKind::Conv => {
            let flags = config::conv_config(args, frame)?;
            let model_config = config::model_config::<ConvLstm>(args, matches, frame, flags)?;
            fit_load_train::<ConvLstm>(&model_config, &probe, args, &config, threads, &device)?
        }
    };
    if let Some(peak) = bench::peak_rss_mib() {
        println!("peak memory: {peak:.0} MiB");
    }
    if summary.stopped_at.is_some() {
        let program = std::env::args()
            .next()
            .unwrap_or_else(|| "bench-cli".into());
        let out = match matches.value_source("out") {
            Some(clap::parser::ValueSource::CommandLine) => {
                format!(" --out {}", args.out.display())
            }
            _ => String::new(),
        };
        eprintln!(
            "bench-cli: stopped on request; to continue the run: {program} --model {kind}{out} --resume"
        );
        return Ok(ExitCode::from(EXIT_INTERRUPTED));
    }
    Ok(ExitCode::SUCCESS)
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
    probe: &fit::DataProbe,
    args: &TrainArgs,
    config: &harness::TrainConfig,
    threads: usize,
    device: &candle_core::Device,
) -> Result<harness::RunSummary> {
    let needs = fit::check_run::<M>(model, probe, args, config, threads, device)?;
    println!("{}", fit::describe(&needs));
    if !args.quiet {
        eprintln!("{}...", probe.describe());
    }
    let data = fit::load_data(&args.data, config.forecast.map(|f| f.context + f.horizon))?;
    if data.frame_shape() != probe.frame {
        anyhow::bail!(
            "{}: the frames changed while loading ({:?} expected, {:?} found)",
            probe.source,
            probe.frame,
            data.frame_shape()
        );
    }
    Ok(harness::train::<M>(model, &data, config, device)?)
}

/// `bench-cli frames`: what would be trained on.
fn frames(args: &FramesArgs) -> Result<()> {
    let data = fit::load_data(&args.data, None)?;
    println!(
        "{}: {} video(s), {} frames, {}, {} channel(s)",
        data.source,
        data.videos.len(),
        data.frame_count(),
        data.size(),
        data.channels()
    );
    let (train_windows, test_windows) = (data.train_windows()?.len(), data.test_windows()?.len());
    match data.holdout {
        frames::Holdout::Frames(split) => {
            let video = &data.videos[0];
            let name = |i: usize| {
                video.paths[i]
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            };
            println!(
                "split: train {} frames ({} .. {}), test {} frames ({} .. {})",
                split.train,
                name(0),
                name(split.train - 1),
                split.test,
                name(split.train),
                name(video.len() - 1)
            );
        }
        frames::Holdout::Videos { train, test } => {
            let names = |range: std::ops::Range<usize>| {
                let v = &data.videos[range];
                match v {
                    [one] => one.name.clone(),
                    [first, .., last] => format!("{} .. {}", first.name, last.name),
                    [] => String::new(),
                }
            };
            println!(
                "split: train {train} videos ({}), test {test} videos ({}), held out whole",
                names(0..train),
                names(train..train + test)
            );
        }
    }
    println!(
        "windows of {} frames, stride {}: train {train_windows}, test {test_windows}",
        data.windows.len, data.windows.stride,
    );
    // The same copy-last figure training reports (one step ahead, on the test windows).
    let test_windows = data
        .test_windows()?
        .into_iter()
        .map(|w| w.to_dtype(candle_core::DType::F32))
        .collect::<candle_core::Result<Vec<_>>>()?;
    println!(
        "copy-last-frame MSE per pixel on the test windows: {:.8}",
        harness::evaluate::copy_last(&test_windows, None)?
            .metrics
            .mse
    );
    if let Some(dir) = &args.export {
        data.export(dir)?;
        println!(
            "wrote {} folders of PNG frames into {}",
            data.videos.len(),
            dir.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::without_backtrace;

    #[test]
    fn backtraces_are_cut_from_messages_and_the_message_kept() {
        let message = "--kernel 99: larger than the 65x65 plane\n   0: bt\n             at \
                       /x/error.rs:260:25\n  12: std::panic::catch_unwind\n             at \
                       /rustc/panic.rs:359:14\n";
        assert_eq!(
            without_backtrace(message),
            "--kernel 99: larger than the 65x65 plane"
        );
        let two = "first line\nsecond: line";
        assert_eq!(without_backtrace(two), two);
    }
}
