//! `bench-cli bench`: each model trained in a child process of this same binary, so each
//! run's peak memory is its own; timings come from the run's CSV (the harness's own clock).

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::args::{BenchArgs, BenchConfig};

/// Peak resident memory of this process in MiB (Linux: `VmHWM`, which is in KiB); `None`
/// elsewhere.
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// The windows of the batched configurations: 64x64 frames, batches of 16 windows of 20
/// frames, cut so that an epoch is one batch (data/ at 64x64: 126 training frames, windows
/// of 20 every 7 frames).
const BATCHED: [&str; 8] = [
    "--size",
    "64",
    "--seq-len",
    "20",
    "--stride",
    "7",
    "--batch-size",
    "16",
];

/// A ConvLSTM of `hidden` channels per layer in Shi et al.'s form: 4x4 patches, 5x5 kernels,
/// a 1x1 sigmoid head.
fn convlstm(hidden: &'static str) -> [&'static str; 8] {
    [
        "--patch",
        "4",
        "--hidden-channels",
        hidden,
        "--kernel",
        "5",
        "--head",
        "conv1x1-sigmoid",
    ]
}

pub fn run(args: &BenchArgs) -> Result<()> {
    let exe = std::env::current_exe().context("cannot find this executable to re-run it")?;
    let scratch = tempfile::tempdir().context("cannot make a scratch folder")?;
    println!(
        "{:<19} {:>7} {:>14} {:>19} {:>9} {:>10}",
        "config", "epochs", "s/epoch median", "min - max", "frames/s", "peak MiB"
    );
    for &config in &args.configs {
        // Each row times what its name says: the seed's models per epoch, the others per
        // batch of [`BATCHED`] windows.
        let (name, kind, epochs, flag, model): (&str, &str, usize, &str, Vec<&str>) = match config {
            BenchConfig::Conv => ("conv", "conv", args.conv_epochs, "--conv-epochs", vec![]),
            BenchConfig::Linear => {
                let epochs = args.linear_epochs;
                ("linear", "linear", epochs, "--linear-epochs", vec![])
            }
            BenchConfig::Convlstm32x2 => {
                let model = convlstm("32,32").to_vec();
                ("convlstm-32x2", "conv", args.batches, "--batches", model)
            }
            BenchConfig::Convlstm128x64x64 => {
                let model = convlstm("128,64,64").to_vec();
                (
                    "convlstm-128-64-64",
                    "conv",
                    args.batches,
                    "--batches",
                    model,
                )
            }
            BenchConfig::Fc2048x2 => {
                let model = vec!["--hidden", "2048,2048"];
                ("fc-2048x2", "linear", args.batches, "--batches", model)
            }
        };
        let extra = match model.is_empty() {
            true => model,
            false => [&BATCHED[..], &model].concat(),
        };
        if epochs < 2 {
            bail!("{flag} {epochs}: need at least 2 (the first is warm-up)");
        }
        timed_row(args, &exe, scratch.path(), (name, kind, epochs, &extra))?;
    }
    Ok(())
}

/// Runs one configuration in a child process of this binary (`kind` with `extra` flags for
/// `epochs` epochs) and prints its row: the median and range of the timed epochs, frames per
/// second and the child's peak memory.
fn timed_row(
    args: &BenchArgs,
    exe: &Path,
    scratch: &Path,
    (name, kind, epochs, extra): (&str, &str, usize, &[&str]),
) -> Result<()> {
    let mut cmd = match args.ranks {
        0 => bail!("--ranks 0: use at least one"),
        1 => Command::new(exe),
        ranks => {
            let mut mpirun = Command::new("mpirun");
            // SAFETY: geteuid has no preconditions.
            if unsafe { libc::geteuid() } == 0 {
                mpirun.arg("--allow-run-as-root");
            }
            mpirun.args(["-np", &ranks.to_string()]).arg(exe);
            mpirun
        }
    };
    // One training checkpoint, at the end: the timed epochs exclude writing it either
    // way, but for the linear model it is 1.8 GiB of disk traffic after each.
    cmd.args(["--model", kind, "--epochs", &epochs.to_string()])
        .args(extra)
        .args(["--checkpoint-every", "0", "--quiet"])
        .arg("--data")
        .arg(&args.data)
        .arg("--out")
        .arg(scratch);
    if let Some(t) = args.threads {
        cmd.args(["--threads", &t.to_string()]);
    }
    if let Some(device) = args.device {
        cmd.args(["--device", device.name()]);
    }
    cmd.args(["--backward", args.backward.name()]);
    let out = cmd.output().with_context(|| match args.ranks {
        1 => "cannot run the training child".to_string(),
        _ => "cannot run mpirun (install OpenMPI: apt-get install openmpi-bin)".to_string(),
    })?;
    // The next configuration of the same model writes the same file names.
    for file in ["safetensors", "resume.safetensors", "summary.json"] {
        std::fs::remove_file(scratch.join(format!("{kind}.{file}"))).ok();
    }
    if !out.status.success() {
        bail!(
            "{name} run failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    // One line per rank ("rank 1: peak memory: ..." on several): the largest.
    let peak = stdout
        .lines()
        .filter_map(|l| l.split_once("peak memory: "))
        .filter_map(|(_, v)| v.trim_end_matches(" MiB").parse::<f64>().ok())
        .reduce(f64::max);
    let rows = harness::rows::read_csv(&scratch.join(format!("{kind}.csv")))?;
    std::fs::remove_file(scratch.join(format!("{kind}.csv"))).ok();
    let mut seconds: Vec<f64> = rows.iter().skip(1).map(|r| r.seconds).collect();
    seconds.sort_by(f64::total_cmp);
    let median = seconds[seconds.len() / 2];
    let steps = rows[0].frames_per_second * rows[0].seconds;
    println!(
        "{:<19} {:>7} {:>14.4} {:>19} {:>9.0} {:>10}",
        name,
        rows.len() - 1,
        median,
        format!("{:.4} - {:.4}", seconds[0], seconds[seconds.len() - 1]),
        steps / median,
        peak.map_or("?".into(), |p| format!("{p:.0}"))
    );
    Ok(())
}
