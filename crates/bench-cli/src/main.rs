//! `bench-cli`: the command line. Parses flags, builds configurations, picks the model and
//! hands over to the harness; no training logic lives here.

mod args;
mod bench;
mod config;
mod plot;
mod predict;

use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;
use lstm_conv::ConvLstm;
use lstm_linear::LinearLstm;

use args::{Cli, Command, DataArgs, ModelKind, TrainArgs};

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
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("bench-cli: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Some(Command::Frames(data)) => frames(&data),
        Some(Command::Bench(args)) => bench::run(&args),
        Some(Command::Predict(args)) => predict::run(&args),
        Some(Command::Plot(args)) => {
            plot::plot(&args.csvs, &args.output, args.metric.as_deref())?;
            println!("wrote {}", args.output.display());
            Ok(())
        }
        None => train(&cli.train),
    }
}

/// `bench-cli --model linear|conv`: train one model.
fn train(args: &TrainArgs) -> Result<()> {
    let model = args
        .model
        .expect("clap requires --model without a subcommand");
    let config = config::train_config(args, model)?;
    config::set_threads(args.threads, model)?;
    let device = config::device(args.device)?;
    let data = config::load_data(&args.data)?;
    let size = data.frames.size();
    let channels = data.frames.channels();
    match model {
        ModelKind::Linear => {
            let model_config = lstm_linear::Config {
                channels,
                height: size.height as usize,
                width: size.width as usize,
                hidden: args
                    .hidden
                    .unwrap_or(channels * (size.height * size.width) as usize),
            };
            harness::train::<LinearLstm>(&model_config, &data, &config, &device)?;
        }
        ModelKind::Conv => {
            let model_config = lstm_conv::Config {
                channels,
                kernel: args.kernel.unwrap_or(5),
            };
            harness::train::<ConvLstm>(&model_config, &data, &config, &device)?;
        }
    }
    if let Some(peak) = bench::peak_rss_mb() {
        println!("peak memory: {peak:.0} MB");
    }
    Ok(())
}

/// `bench-cli frames`: what would be trained on.
fn frames(args: &DataArgs) -> Result<()> {
    let data = config::load_data(args)?;
    let name = |i: usize| {
        data.frames.paths[i]
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let (train, test) = (data.split.train, data.split.test);
    let total = data.frames.len();
    println!(
        "{}: {} frames, {}, {} channel(s)",
        args.data.display(),
        total,
        data.frames.size(),
        data.frames.channels()
    );
    println!(
        "split: train {} frames ({} .. {}), test {} frames ({} .. {})",
        train,
        name(0),
        name(train - 1),
        test,
        name(train),
        name(total - 1)
    );
    println!(
        "windows of {} frames, stride {}: train {}, test {}",
        data.windows.len,
        data.windows.stride,
        data.windows.count(train),
        data.windows.count(test)
    );
    println!(
        "copy-last-frame MSE on the test windows: {:.8}",
        data.copy_last_test_mse()?
    );
    Ok(())
}
