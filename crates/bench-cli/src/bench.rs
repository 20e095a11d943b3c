//! `bench-cli bench`: each model trained in a child process of this same binary, so each
//! run's peak memory is its own; timings come from the run's CSV (the harness's own clock).

use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::args::{BenchArgs, ModelKind};

/// Peak resident memory of this process in MB (Linux: `VmHWM`); `None` elsewhere.
pub fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

pub fn run(args: &BenchArgs) -> Result<()> {
    let exe = std::env::current_exe().context("cannot find this executable to re-run it")?;
    let scratch = tempfile::tempdir().context("cannot make a scratch folder")?;
    println!(
        "{:<7} {:>7} {:>14} {:>19} {:>9} {:>10}",
        "model", "epochs", "s/epoch median", "min - max", "frames/s", "peak MB"
    );
    for &model in &args.models {
        let (name, epochs) = match model {
            ModelKind::Conv => ("conv", args.conv_epochs),
            ModelKind::Linear => ("linear", args.linear_epochs),
        };
        if epochs < 2 {
            bail!("--{name}-epochs {epochs}: need at least 2 (the first is warm-up)");
        }
        let mut cmd = Command::new(&exe);
        // One training checkpoint, at the end: the timed epochs exclude writing it either
        // way, but for the linear model it is 1.9 GB of disk traffic after each.
        cmd.args(["--model", name, "--epochs", &epochs.to_string()])
            .args(["--checkpoint-every", "0", "--quiet"])
            .arg("--data")
            .arg(&args.data)
            .arg("--out")
            .arg(scratch.path());
        if let Some(t) = args.threads {
            cmd.args(["--threads", &t.to_string()]);
        }
        let out = cmd.output().context("cannot run the training child")?;
        if !out.status.success() {
            bail!(
                "{name} run failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        let peak = stdout
            .lines()
            .find_map(|l| l.strip_prefix("peak memory: "))
            .and_then(|v| v.trim_end_matches(" MB").parse::<f64>().ok());
        let rows = harness::train::read_csv(&scratch.path().join(format!("{name}.csv")))?;
        let mut seconds: Vec<f64> = rows.iter().skip(1).map(|r| r.seconds).collect();
        seconds.sort_by(f64::total_cmp);
        let median = seconds[seconds.len() / 2];
        let steps = rows[0].frames_per_second * rows[0].seconds;
        println!(
            "{:<7} {:>7} {:>14.4} {:>19} {:>9.0} {:>10}",
            name,
            rows.len() - 1,
            median,
            format!("{:.4} - {:.4}", seconds[0], seconds[seconds.len() - 1]),
            steps / median,
            peak.map_or("?".into(), |p| format!("{p:.0}"))
        );
    }
    Ok(())
}
