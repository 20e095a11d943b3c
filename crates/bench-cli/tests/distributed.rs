//! Data-parallel training under `mpirun` (the `mpi` feature): the weights of R ranks are a
//! single process's bit for bit, ranks that differ are refused, and a rank killed mid-epoch
//! stops the others within seconds, leaving a checkpoint that resumes exactly.
//!
//! Run with `cargo test -p bench-cli --features mpi --test distributed` where OpenMPI's
//! `mpirun` is installed (`.ci/run` does both).
#![cfg(feature = "mpi")]

mod common;

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{wait, workdir};

/// A small Moving MNIST ConvLSTM whose batches of 24 are three shards of 8: on two ranks,
/// rank 0 computes two and rank 1 one.
const RUN: &[&str] = &[
    "--model",
    "conv",
    "--data",
    "moving-mnist",
    "--sequences",
    "64",
    "--test-sequences",
    "16",
    "--context",
    "5",
    "--horizon",
    "5",
    "--patch",
    "4",
    "--hidden-channels",
    "8,8",
    "--kernel",
    "3",
    "--head",
    "conv1x1",
    "--batch-size",
    "24",
    "--shuffle",
    "--quiet",
    "--threads",
    "1",
];

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_bench-cli")
}

/// `mpirun` over `contexts` (MPMD: each a rank's program and arguments, run as one rank),
/// in `dir`.
fn mpirun(dir: &Path, contexts: &[Vec<String>]) -> Output {
    let mut cmd = Command::new("mpirun");
    // As root in CI's containers; more ranks than cores is fine for these tiny runs.
    cmd.args(["--allow-run-as-root", "--oversubscribe"]);
    for (i, context) in contexts.iter().enumerate() {
        if i > 0 {
            cmd.arg(":");
        }
        cmd.args(["-np", "1"]).args(context);
    }
    cmd.current_dir(dir)
        .process_group(0)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd
        .spawn()
        .expect("mpirun runs (install OpenMPI: apt-get install openmpi-bin)");
    wait(&["mpirun"], child)
}

/// One rank's command line: the binary, `RUN`, then `extra`.
fn rank(extra: &[&str]) -> Vec<String> {
    std::iter::once(bin())
        .chain(RUN.iter().copied())
        .chain(extra.iter().copied())
        .map(String::from)
        .collect()
}

/// A single process's run of `RUN` and `extra` in `dir`.
fn single(dir: &Path, extra: &[&str]) -> Output {
    let child = Command::new(bin())
        .args(RUN)
        .args(extra)
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait(extra, child)
}

fn text(output: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Every tensor of a safetensors file, by name, as bytes (the header's metadata, which
/// records the output folder, aside).
fn tensors(path: &Path) -> Vec<(String, Vec<u8>)> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut all: Vec<_> = file
        .tensors()
        .into_iter()
        .map(|(name, view)| (name, view.data().to_vec()))
        .collect();
    all.sort();
    all
}

/// The CSV without its timing columns (`seconds`, `frames_per_second`).
fn rows(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            let cells: Vec<&str> = l.split(',').collect();
            [&cells[..3], &cells[5..]].concat().join(",")
        })
        .collect()
}

fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn two_ranks_train_the_weights_of_one_process_bit_for_bit() {
    let dir = workdir();
    let one = single(dir.path(), &["--epochs", "2", "--out", "one"]);
    assert!(one.status.success(), "{}", text(&one));
    let two = mpirun(
        dir.path(),
        &[
            rank(&["--epochs", "2", "--out", "two"]),
            rank(&["--epochs", "2", "--out", "two"]),
        ],
    );
    let said = text(&two);
    assert!(two.status.success(), "{said}");
    assert!(said.contains("data-parallel: 2 MPI ranks"), "{said}");
    // Rank 0 alone prints the run's lines, and writes its files.
    assert_eq!(said.matches("epoch   2/2").count(), 1, "{said}");
    let (one, two) = (dir.path().join("one"), dir.path().join("two"));
    assert_eq!(files(&one), files(&two));
    for name in ["conv.safetensors", "conv.resume.safetensors"] {
        assert_eq!(tensors(&one.join(name)), tensors(&two.join(name)), "{name}");
    }
    assert_eq!(rows(&one.join("conv.csv")), rows(&two.join("conv.csv")));
}

#[test]
fn ranks_with_different_settings_are_refused_naming_the_rank() {
    let dir = workdir();
    let out = mpirun(
        dir.path(),
        &[
            rank(&["--epochs", "2", "--out", "r"]),
            rank(&["--epochs", "3", "--out", "r"]),
        ],
    );
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(
        said.contains("rank 1 differs from rank 0")
            && said.contains("training.epochs (2 there, 3 here)"),
        "{said}"
    );
    assert!(!said.contains("panicked"), "{said}");
    // Refused before anything was written.
    assert!(!dir.path().join("r").exists());
}

#[test]
fn a_killed_rank_stops_the_others_and_the_run_resumes_exactly() {
    let dir = workdir();
    // Six batches an epoch: rank 1 dies (SIGKILL) at its ninth, in the second epoch.
    let mut doomed = vec![
        "env".to_string(),
        "BENCH_CLI_FAULT=kill:window:9".to_string(),
    ];
    doomed.extend(rank(&["--epochs", "3", "--out", "k"]));
    let start = Instant::now();
    let out = mpirun(
        dir.path(),
        &[rank(&["--epochs", "3", "--out", "k"]), doomed],
    );
    let took = start.elapsed();
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(
        said.contains("rank 1") && said.contains("signal 9"),
        "{said}"
    );
    assert!(
        took < Duration::from_secs(60),
        "the others took {took:?} to stop\n{said}"
    );
    // The first epoch's checkpoint is whole, and the CSV has its row.
    let k = dir.path().join("k");
    assert_eq!(rows(&k.join("conv.csv")).len(), 2, "{said}");
    assert!(!k.join("conv.safetensors").exists());

    // Resumed on two ranks, it ends as an uninterrupted single process does.
    let resumed = mpirun(
        dir.path(),
        &[
            rank(&["--epochs", "3", "--out", "k", "--resume"]),
            rank(&["--epochs", "3", "--out", "k", "--resume"]),
        ],
    );
    assert!(resumed.status.success(), "{}", text(&resumed));
    assert!(
        text(&resumed).contains("resuming from"),
        "{}",
        text(&resumed)
    );
    let whole = single(dir.path(), &["--epochs", "3", "--out", "u"]);
    assert!(whole.status.success(), "{}", text(&whole));
    let u = dir.path().join("u");
    assert_eq!(
        tensors(&k.join("conv.safetensors")),
        tensors(&u.join("conv.safetensors"))
    );
    assert_eq!(rows(&k.join("conv.csv")), rows(&u.join("conv.csv")));
}
