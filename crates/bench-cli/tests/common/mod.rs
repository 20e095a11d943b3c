//! Running the binary, as every binary test does. A panic anywhere in it is a bug: any
//! "panicked at" in its output fails the test whatever the exit code.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub struct Output {
    pub code: i32,
    /// The signal that ended the process, if one did.
    pub signal: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs bench-cli from the repository root. A panic anywhere is a bug, so any
/// "panicked at" fails the test whatever the exit code.
pub fn bench_cli(args: &[&str]) -> Output {
    bench_cli_env(args, &[])
}

/// [`bench_cli`] with extra environment variables.
pub fn bench_cli_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_bench-cli"))
        .args(args)
        .envs(env.iter().copied())
        .current_dir(repo_root())
        .output()
        .expect("run bench-cli");
    finish(args, out)
}

/// Checks a finished process for panics and collects its output.
pub fn finish(args: &[&str], out: std::process::Output) -> Output {
    #[cfg(unix)]
    let signal = std::os::unix::process::ExitStatusExt::signal(&out.status);
    #[cfg(not(unix))]
    let signal = None;
    let output = Output {
        code: out.status.code().unwrap_or(-1),
        signal,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert!(
        !output.stderr.contains("panicked at") && !output.stdout.contains("panicked at"),
        "bench-cli {args:?} panicked:\n{}",
        output.stderr
    );
    output
}

pub fn ok(args: &[&str]) -> Output {
    let out = bench_cli(args);
    assert_eq!(out.code, 0, "bench-cli {args:?} failed:\n{}", out.stderr);
    out
}

pub fn fails(args: &[&str]) -> String {
    let out = bench_cli(args);
    assert_ne!(
        out.code, 0,
        "bench-cli {args:?} should fail:\n{}",
        out.stdout
    );
    assert!(out.stderr.contains("error"), "{}", out.stderr);
    out.stderr
}

#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub epoch: usize,
    pub train_loss: f64,
    pub test_loss: f64,
    pub seconds: f64,
    pub frames_per_second: f64,
}

pub fn read_rows(path: &Path) -> Vec<Row> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut lines = text.lines();
    // The first five columns are a contract; test metrics follow them.
    assert_eq!(
        lines.next(),
        Some(
            "epoch,train_loss,test_loss,seconds,frames_per_second,\
             test_mse,test_mae,test_psnr,test_ssim,test_bce"
        )
    );
    lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            assert_eq!(f.len(), 10, "{l}");
            Row {
                epoch: f[0].parse().unwrap(),
                train_loss: f[1].parse().unwrap(),
                test_loss: f[2].parse().unwrap(),
                seconds: f[3].parse().unwrap(),
                frames_per_second: f[4].parse().unwrap(),
            }
        })
        .collect()
}

pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}
