//! `--tensorboard DIR`, read back with TensorBoard's own reader (`EventAccumulator`, the
//! `tensorboard` Python package, through `bench/read_tensorboard.py`): every update's loss
//! and learning rate once each, every epoch's test and copy-last figures equal to the
//! CSV's, a prediction grid per epoch, and a run killed mid-epoch then resumed logging what
//! the uninterrupted run logs, with no step twice. Skipped without the package unless
//! `BENCH_CLI_REQUIRE_PYTHON_TOOLS` is set (CI installs it and sets it).

use std::path::Path;
use std::process::Command;

mod common;

use common::{bench_cli_env, ok, repo_root, s};

fn have_tensorboard() -> bool {
    let found = Command::new("python3")
        .args(["-c", "import tensorboard"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var_os("BENCH_CLI_REQUIRE_PYTHON_TOOLS").is_none(),
            "the tensorboard Python package is required here"
        );
        eprintln!("python3 -m pip install tensorboard: the TensorBoard tests are skipped");
    }
    found
}

/// The log in `dir` as TensorBoard reads it.
fn read(dir: &Path) -> serde_json::Value {
    let out = Command::new("python3")
        .arg(repo_root().join("bench/read_tensorboard.py"))
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn args<'a>(out: &'a Path, board: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "--model",
        "conv",
        "--seq-len",
        "6",
        "--epochs",
        "3",
        "--shuffle",
        "--lr-schedule",
        "cosine",
        "--quiet",
        "--out",
        s(out),
        "--tensorboard",
        s(board),
    ];
    args.extend_from_slice(extra);
    args
}

#[test]
fn the_log_holds_every_update_and_the_csv_figures_and_a_resumed_run_continues_it() {
    if !have_tensorboard() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (out, board) = (dir.path().join("out"), dir.path().join("board"));
    ok(&args(&out, &board, &[]));
    let log = read(&board);
    let scalars = &log["scalars"];
    // 20 training windows of 6 frames (the validation split's 4 apart), batches of one: 60
    // updates.
    let steps = |tag: &str| -> Vec<u64> {
        let points = scalars[tag]
            .as_array()
            .unwrap_or_else(|| panic!("{tag}: {log}"));
        points.iter().map(|p| p[0].as_u64().unwrap()).collect()
    };
    assert_eq!(steps("train/loss"), (1..=60).collect::<Vec<_>>());
    assert_eq!(steps("train/lr"), (1..=60).collect::<Vec<_>>());
    assert_eq!(steps("test/mse"), [20, 40, 60]);
    // Cosine decay: the rate falls from 1e-3.
    let lr: Vec<f64> = scalars["train/lr"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p[1].as_f64().unwrap())
        .collect();
    assert!((lr[0] - 1e-3).abs() < 1e-9 && lr.windows(2).all(|w| w[1] < w[0]));
    // Every epoch's figures are the CSV row's (as f32, TensorBoard's scalar type).
    let csv = std::fs::read_to_string(out.join("conv.csv")).unwrap();
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    for (row, line) in csv.lines().skip(1).enumerate() {
        let fields: Vec<&str> = line.split(',').collect();
        for (tag, column) in [
            ("test/mse", "test_mse"),
            ("test/ssim", "test_ssim"),
            ("test/loss", "test_loss"),
            ("val/loss", "val_loss"),
            ("val/copy_last", "val_copy_last"),
        ] {
            let at = header.iter().position(|h| *h == column).unwrap();
            let want: f64 = fields[at].parse().unwrap();
            let got = scalars[tag][row][1].as_f64().unwrap();
            assert!(
                (got - want).abs() <= 1e-6 * want.abs(),
                "{tag} epoch {}: {got} vs {want}",
                row + 1
            );
        }
    }
    let images = log["images"]["test/predictions"].as_array().unwrap();
    assert_eq!(images.len(), 3);
    // Ten predicted frames at most, 65x65 each, truth above predictions.
    assert_eq!(
        (images[0][1].as_u64(), images[0][2].as_u64()),
        (Some(5 * 65), Some(130))
    );

    // Killed in epoch 2, then resumed: the same log, each step once.
    let (out2, board2) = (dir.path().join("out2"), dir.path().join("board2"));
    let run = bench_cli_env(
        &args(&out2, &board2, &[]),
        &[("BENCH_CLI_FAULT", "kill:window:30")],
    );
    assert_eq!(run.signal, Some(libc::SIGKILL), "{}", run.stderr);
    ok(&args(&out2, &board2, &["--resume"]));
    let resumed = read(&board2);
    for tag in [
        "train/loss",
        "train/lr",
        "test/mse",
        "copy_last/mse",
        "val/loss",
        "epoch",
    ] {
        assert_eq!(resumed["scalars"][tag], log["scalars"][tag], "{tag}");
    }
    assert_eq!(
        resumed["images"]["test/predictions"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    assert_eq!(
        std::fs::read_dir(&board2).unwrap().count(),
        1,
        "one event file"
    );
}
