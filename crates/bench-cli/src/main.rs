//! `bench-cli`: the command line. Parses flags, builds configurations, picks the model and
//! hands over to the harness; no training logic lives here.

mod args;
mod bench;
mod config;
mod distributed;
mod errors;
mod eval;
mod export;
mod fit;
mod models;
#[cfg(feature = "mpi")]
mod mpi_collective;
mod plot;
mod predict;
mod show_frames;
mod train;

use std::process::ExitCode;

use anyhow::Result;
use clap::{ArgMatches, CommandFactory, FromArgMatches};
use errors::without_backtrace;

use args::{Cli, Command};

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
    let matches = models::add_flags(Cli::command()).get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    match run(cli, &matches) {
        Ok(code) => {
            distributed::finish();
            code
        }
        Err(err) => {
            eprintln!(
                "bench-cli: {}error: {}",
                distributed::rank_prefix(),
                without_backtrace(&format!("{err:#}"))
            );
            distributed::abort_all();
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli, matches: &ArgMatches) -> Result<ExitCode> {
    match cli.command {
        Some(Command::Frames(args)) => show_frames::run(&args),
        Some(Command::Eval(args)) => eval::run(args, subcommand(matches, "eval")),
        Some(Command::Export(args)) => export::run(&args),
        Some(Command::Bench(args)) => bench::run(&args),
        Some(Command::Predict(args)) => predict::run(args, subcommand(matches, "predict")),
        Some(Command::Plot(args)) => {
            if args.horizon {
                plot::plot_horizon(&args.csvs, &args.output, args.metric.as_deref())?;
            } else {
                plot::plot(&args.csvs, &args.output, args.metric.as_deref())?;
            }
            println!("wrote {}", args.output.display());
            Ok(())
        }
        None => return train::run(cli.train, matches),
    }
    .map(|()| ExitCode::SUCCESS)
}

/// The matches of subcommand `name`, which clap parsed.
fn subcommand<'a>(matches: &'a ArgMatches, name: &str) -> &'a ArgMatches {
    matches
        .subcommand_matches(name)
        .expect("clap parsed this subcommand")
}
