//! Crashes and resumes: a run killed at any point (SIGKILL, by fault injection at exact
//! points and by a timer at arbitrary ones) or stopped by Ctrl-C, then resumed, ends with
//! the same weights bit for bit and the same CSV rows (timing columns aside) as a run that
//! was never interrupted.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

mod common;

use common::{bench_cli_env, fails, finish, ok, s, strs, ChildGuard, Lines, Output};

/// A short conv run: 3 epochs of 5 windows, a checkpoint after each.
const EPOCHS: &str = "3";

fn train_args<'a>(out: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "--model",
        "conv",
        "--epochs",
        EPOCHS,
        "--out",
        s(out),
        "--quiet",
    ];
    args.extend_from_slice(extra);
    args
}

/// The conv run's CSV without its timing columns (`seconds`, `frames_per_second`).
fn rows_without_timing(dir: &Path) -> Vec<String> {
    model_rows_without_timing(dir, "conv")
}

fn model_rows_without_timing(dir: &Path, model: &str) -> Vec<String> {
    let text = std::fs::read_to_string(dir.join(format!("{model}.csv"))).unwrap();
    text.lines()
        .map(|line| {
            let fields: Vec<&str> = line.split(',').collect();
            [&fields[..3], &fields[5..]].concat().join(",")
        })
        .collect()
}

/// Every tensor of a safetensors file: name -> (dtype, shape, bytes).
fn tensors(path: &Path) -> BTreeMap<String, (String, Vec<usize>, Vec<u8>)> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    file.tensors()
        .into_iter()
        .map(|(name, view)| {
            (
                name,
                (
                    format!("{:?}", view.dtype()),
                    view.shape().to_vec(),
                    view.data().to_vec(),
                ),
            )
        })
        .collect()
}

/// Asserts that `dir` holds the results of `reference`: same CSV rows apart from timing,
/// the same final weights and training checkpoint tensors, bit for bit.
fn assert_same_run(dir: &Path, reference: &Path, what: &str) {
    assert_eq!(
        rows_without_timing(dir),
        rows_without_timing(reference),
        "{what}: CSV rows differ"
    );
    assert_eq!(
        rows_without_timing(dir).len(),
        1 + EPOCHS.parse::<usize>().unwrap(),
        "{what}: one header and one row per epoch"
    );
    for file in ["conv.safetensors", "conv.resume.safetensors"] {
        assert!(
            tensors(&dir.join(file)) == tensors(&reference.join(file)),
            "{what}: the tensors of {file} differ"
        );
    }
    // Nothing a killed write left behind survives the resume.
    let leftovers: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{what}: left behind {leftovers:?}");
}

fn reference_run(extra: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    ok(&train_args(dir.path(), extra));
    dir
}

/// Runs with `BENCH_CLI_FAULT=fault`, which must end the process by SIGKILL.
fn killed_by(fault: &str, out: &Path, extra: &[&str]) -> Output {
    let run = bench_cli_env(&train_args(out, extra), &[("BENCH_CLI_FAULT", fault)]);
    assert_eq!(
        run.signal,
        Some(libc::SIGKILL),
        "{fault}: expected death by SIGKILL, got code {} / {:?}\n{}",
        run.code,
        run.signal,
        run.stderr
    );
    run
}

#[test]
fn killed_at_any_point_then_resumed_matches_an_uninterrupted_run() {
    let reference = reference_run(&[]);
    // Each point in the life of a run; a checkpoint holds 12 tensors (4 parameters and
    // their two moments), so tensor 2 is inside epoch 1's write and 17 inside epoch 2's.
    let faults = [
        ("kill:window:2", "epoch 1, before any checkpoint"),
        ("kill:window:7", "epoch 2, window 2"),
        ("kill:checkpoint-tensor:2", "writing epoch 1's checkpoint"),
        ("kill:checkpoint-tensor:17", "writing epoch 2's checkpoint"),
        (
            "kill:checkpoint-saved:2",
            "between epoch 2's checkpoint and its CSV row",
        ),
        ("kill:final:1", "before the final weights file"),
    ];
    for (fault, what) in faults {
        let dir = tempfile::tempdir().unwrap();
        killed_by(fault, dir.path(), &[]);
        let resumed = ok(&train_args(dir.path(), &["--resume"]));
        assert!(
            resumed.stdout.contains("resuming from")
                || resumed.stdout.contains("from the beginning"),
            "{what}: {}",
            resumed.stdout
        );
        assert_same_run(dir.path(), reference.path(), what);
    }
}

#[test]
fn a_kill_during_a_checkpoint_write_keeps_the_previous_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    killed_by("kill:checkpoint-tensor:17", dir.path(), &[]);
    // The half-written temporary is there, the checkpoint itself is epoch 1's, whole.
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names
            .iter()
            .any(|n| n.starts_with(".conv.resume.safetensors.") && n.ends_with(".tmp")),
        "{names:?}"
    );
    let resumed = ok(&train_args(dir.path(), &["--resume"]));
    assert!(
        resumed.stdout.contains("1 epoch(s) and 0 window(s) done"),
        "{}",
        resumed.stdout
    );
}

#[test]
fn killed_at_arbitrary_moments_then_resumed_matches_an_uninterrupted_run() {
    // The fault hooks kill at exact points; this kills between them, wherever the run
    // happens to be just after a window (its update, the next window, a checkpoint being
    // written). The moment is set by events, not by the clock: each round kills the
    // process as soon as it says it reached its k-th window, so every round but the last
    // is killed before it can finish, on any machine.
    let reference = reference_run(&[]);
    let dir = tempfile::tempdir().unwrap();
    // Windows counted in each process; the 3 epochs hold 5 each, with a checkpoint after
    // each epoch. Kills: in epoch 1 (nothing saved yet, the next run starts afresh), in
    // epoch 2, in epoch 2 again from its checkpoint, in epoch 3; the last run has 5
    // windows left, fewer than 9, and finishes.
    let marks = [2usize, 6, 3, 7, 9];
    let (mut finished, mut kills) = (false, 0);
    for (round, k) in marks.iter().enumerate() {
        let resume: &[&str] = if round == 0 { &[] } else { &["--resume"] };
        let args = train_args(dir.path(), resume);
        let mut child = Watched::start(&args, &format!("mark:window:{k}"));
        // Up to the mark, or to the end of a run that finished first.
        let deadline = Instant::now() + common::CHILD_TIMEOUT;
        while let Some(line) = child
            .stderr
            .next(deadline.saturating_duration_since(Instant::now()))
        {
            if line.starts_with("fault: reached window") {
                child.child.signal(libc::SIGKILL); // to an exited child: nothing
                break;
            }
        }
        let run = child.finish(&args);
        if run.code == 0 {
            assert!(!run.stderr.contains("fault: reached"), "{}", run.stderr);
            finished = true;
            break;
        }
        assert_eq!(run.signal, Some(libc::SIGKILL), "{}", run.stderr);
        kills += 1;
    }
    assert!(finished, "no run finished within {} rounds", marks.len());
    assert_eq!(kills, marks.len() - 1);
    assert_same_run(dir.path(), reference.path(), "kills at marked moments");
}

/// A run of the binary whose stderr a test reads line by line, with deadlines, to act
/// when the run reaches a point (a `mark` fault's line); killed with its process group
/// however the test ends.
struct Watched {
    child: ChildGuard,
    stderr: Lines,
    stdout: std::thread::JoinHandle<String>,
    _workdir: tempfile::TempDir,
}

impl Watched {
    /// Starts bench-cli `args` with `BENCH_CLI_FAULT=fault`.
    fn start(args: &[&str], fault: &str) -> Self {
        let (mut cmd, workdir) = common::command();
        let mut child = ChildGuard::spawn(
            cmd.args(args)
                .env("BENCH_CLI_FAULT", fault)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped()),
        )
        .unwrap();
        let stderr = Lines::new(child.stderr.take().unwrap());
        let mut stdout = child.stdout.take().unwrap();
        let stdout = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = std::io::Read::read_to_string(&mut stdout, &mut text);
            text
        });
        Self {
            child,
            stderr,
            stdout,
            _workdir: workdir,
        }
    }

    /// Reads up to the first stderr line that starts with `prefix`.
    fn until(&mut self, prefix: &str) -> String {
        self.stderr.until(prefix, common::CHILD_TIMEOUT)
    }

    /// Waits for the end of the run, at most [`common::CHILD_TIMEOUT`], and checks it (see
    /// [`finish`]); its stderr is every line read.
    fn finish(mut self, args: &[&str]) -> Output {
        let status = self.child.wait_timeout(common::CHILD_TIMEOUT);
        // Past the deadline the guard, dropped, kills the run.
        let status = status.unwrap_or_else(|| {
            panic!(
                "bench-cli {args:?} still ran after {:?}:\n{}",
                common::CHILD_TIMEOUT,
                self.stderr.seen
            )
        });
        let stderr = self.stderr.rest(Duration::from_secs(60)).to_string();
        let stdout = self.stdout.join().unwrap();
        finish(
            args,
            std::process::Output {
                status,
                stdout: stdout.into_bytes(),
                stderr: stderr.into_bytes(),
            },
        )
    }
}

/// Longer windows than the short conv run's (about half a second each on a 2-core
/// machine, where reading a line of the run's output and sending a signal takes
/// milliseconds): the signal tests must act inside one. Epochs of 3 windows.
fn slow_args(out: &Path) -> Vec<&str> {
    vec![
        "--model",
        "conv",
        "--hidden-channels",
        "8,8",
        "--head",
        "conv1x1",
        "--train-frames",
        "78",
        "--epochs",
        "2",
        "--out",
        s(out),
        "--quiet",
    ]
}

/// The `*.tmp` files a write cut short left in `dir`.
fn temporaries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect()
}

#[test]
fn sigterm_stops_after_the_window_with_a_checkpoint_and_the_run_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let args = slow_args(dir.path());
    let mut run = Watched::start(&args, "mark:checkpoint-saved:1");
    // Epoch 1's checkpoint is in place and epoch 2's first window comes next: SIGTERM now
    // lands inside epoch 2 (a window takes far longer than reading a line), whose end is
    // windows away.
    run.until("fault: reached checkpoint-saved 1");
    run.child.signal(libc::SIGTERM);
    let out = run.finish(&args);
    assert_eq!(out.code, 130, "{}\n{}", out.stdout, out.stderr);
    // Mid-epoch: after the window it was in, the checkpoint written there.
    let checkpoint = dir.path().join("conv.resume.safetensors");
    let stopped = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("stopped in epoch 2 after window "))
        .unwrap_or_else(|| panic!("no mid-epoch stop:\n{}", out.stdout));
    let (windows, rest) = stopped.split_once(" of ").unwrap();
    let (total, written) = rest.split_once("; ").unwrap();
    let (windows, total): (usize, usize) = (windows.parse().unwrap(), total.parse().unwrap());
    assert!(windows >= 1 && windows < total, "{stopped}");
    assert_eq!(
        written,
        format!("wrote the training checkpoint {}", checkpoint.display())
    );
    assert!(!tensors(&checkpoint).is_empty());
    assert!(
        temporaries(dir.path()).is_empty(),
        "{:?}",
        temporaries(dir.path())
    );
    // The final weights are only written by a finished run.
    assert!(!dir.path().join("conv.safetensors").exists());
    // The command it prints continues the run from that window to the end.
    let command = out
        .stderr
        .lines()
        .find_map(|l| l.strip_prefix("bench-cli: stopped on request; to continue the run: "))
        .unwrap_or_else(|| panic!("no command to continue:\n{}", out.stderr));
    let words: Vec<&str> = command.split_whitespace().collect();
    assert_eq!(words[0], env!("CARGO_BIN_EXE_bench-cli"), "{command}");
    assert_eq!(
        words[1..],
        ["--model", "conv", "--out", s(dir.path()), "--resume"],
        "{command}"
    );
    let resumed = ok(&words[1..]);
    assert!(
        resumed
            .stdout
            .contains(&format!("1 epoch(s) and {windows} window(s) done")),
        "{}",
        resumed.stdout
    );
    assert!(resumed.stdout.contains("epoch   2/2"), "{}", resumed.stdout);
    assert_eq!(rows_without_timing(dir.path()).len(), 3);
    assert!(dir.path().join("conv.safetensors").exists());
}

#[test]
fn a_second_ctrl_c_exits_at_once_keeping_the_last_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let args = slow_args(dir.path());
    let checkpoint = dir.path().join("conv.resume.safetensors");
    let mut run = Watched::start(&args, "mark:checkpoint-saved:1");
    run.until("fault: reached checkpoint-saved 1");
    let kept = std::fs::read(&checkpoint).unwrap();
    // The first Ctrl-C lands in epoch 2's first window (see the SIGTERM test) and asks for
    // a stop after it; the second, sent once the first was handled (two sent together may
    // arrive as one), comes long before that window ends.
    run.child.signal(libc::SIGINT);
    run.until("bench-cli: interrupted: stopping after the current window");
    run.child.signal(libc::SIGINT);
    let sent = Instant::now();
    let out = run.finish(&args);
    let took = sent.elapsed();
    assert_eq!(out.code, 130, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stderr
            .contains("interrupted again: exiting now; the last training checkpoint is kept"),
        "{}",
        out.stderr
    );
    // At once, not after the window; the bound is one a loaded 2-core machine meets.
    assert!(took < Duration::from_secs(20), "{took:?}");
    // The window was not finished and nothing was written: epoch 1's checkpoint is there,
    // whole and unchanged, with no half-written file beside it.
    assert!(!out.stdout.contains("stopped in epoch"), "{}", out.stdout);
    assert!(
        std::fs::read(&checkpoint).unwrap() == kept,
        "the checkpoint changed"
    );
    assert!(
        temporaries(dir.path()).is_empty(),
        "{:?}",
        temporaries(dir.path())
    );
    assert!(!dir.path().join("conv.safetensors").exists());
    let resumed = ok(&["--model", "conv", "--out", s(dir.path()), "--resume", "-q"]);
    assert!(
        resumed.stdout.contains("1 epoch(s) and 0 window(s) done"),
        "{}",
        resumed.stdout
    );
    assert_eq!(rows_without_timing(dir.path()).len(), 3);
}

#[test]
fn ctrl_c_stops_after_the_window_and_the_run_resumes_exactly() {
    let reference = reference_run(&[]);
    let dir = tempfile::tempdir().unwrap();
    let run = bench_cli_env(
        &train_args(dir.path(), &[]),
        &[("BENCH_CLI_FAULT", "interrupt:window:8")],
    );
    assert_eq!(run.code, 130, "{}", run.stderr);
    assert!(
        run.stdout.contains("stopped in epoch 2 after window"),
        "{}",
        run.stdout
    );
    assert!(
        run.stderr.contains("--model conv --out") && run.stderr.contains("--resume"),
        "{}",
        run.stderr
    );
    // The final weights are only written by a finished run.
    assert!(!dir.path().join("conv.safetensors").exists());
    let resumed = ok(&train_args(dir.path(), &["--resume"]));
    assert!(
        resumed.stdout.contains("1 epoch(s) and"),
        "{}",
        resumed.stdout
    );
    assert_same_run(dir.path(), reference.path(), "Ctrl-C in epoch 2");
}

#[test]
fn shuffled_runs_resume_exactly_too() {
    let reference = reference_run(&["--shuffle", "--seed", "3"]);
    let in_order = reference_run(&["--seed", "3"]);
    assert_ne!(
        rows_without_timing(reference.path()),
        rows_without_timing(in_order.path()),
        "--shuffle changed nothing"
    );
    for fault in ["kill:window:8", "interrupt:window:12"] {
        let dir = tempfile::tempdir().unwrap();
        let run = bench_cli_env(
            &train_args(dir.path(), &["--shuffle", "--seed", "3"]),
            &[("BENCH_CLI_FAULT", fault)],
        );
        assert_ne!(run.code, 0, "{fault}");
        // Settings come back from the checkpoint: --resume needs none of them.
        ok(&train_args(dir.path(), &["--resume"]));
        assert_same_run(dir.path(), reference.path(), fault);
    }
}

#[test]
fn a_nan_gradient_stops_the_run_and_keeps_the_last_good_checkpoint() {
    let reference = reference_run(&[]);
    let dir = tempfile::tempdir().unwrap();
    let run = bench_cli_env(
        &train_args(dir.path(), &[]),
        &[("BENCH_CLI_FAULT", "nan:window:7")],
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("epoch 2, window 2: the gradient of `convlstm.")
            && run.stderr.contains("not finite")
            && run.stderr.contains("(epoch 1) is kept"),
        "{}",
        run.stderr
    );
    // The kept checkpoint is the good one: resuming from it gives the uninterrupted run.
    ok(&train_args(dir.path(), &["--resume"]));
    assert_same_run(dir.path(), reference.path(), "NaN gradient in epoch 2");
}

#[test]
fn resume_refuses_other_settings_and_accepts_more_epochs() {
    let dir = tempfile::tempdir().unwrap();
    ok(&train_args(dir.path(), &[]));
    let err = fails(&train_args(dir.path(), &["--resume", "--lr", "0.01"]));
    assert!(
        err.contains("adam.lr (0.001 there, 0.01 here)") && err.contains("conv.resume.safetensors"),
        "{err}"
    );
    let err = fails(&train_args(dir.path(), &["--resume", "--size", "33"]));
    assert!(err.contains("data.height (65 there, 33 here)"), "{err}");
    let err = fails(&[
        "--model",
        "conv",
        "--epochs",
        "2",
        "--out",
        s(dir.path()),
        "--resume",
    ]);
    assert!(
        err.contains("--epochs 2") && err.contains("already done 3"),
        "{err}"
    );
    // A finished run resumed with more epochs goes on where it ended.
    let more = ok(&[
        "--model",
        "conv",
        "--epochs",
        "4",
        "--out",
        s(dir.path()),
        "--resume",
        "-q",
    ]);
    assert!(more.stdout.contains("epoch   4/4"), "{}", more.stdout);
    assert!(!more.stdout.contains("epoch   3/4"), "{}", more.stdout);
    assert_eq!(rows_without_timing(dir.path()).len(), 5);
    // The other flags that clash with --resume.
    let err = fails(&train_args(dir.path(), &["--resume", "--force"]));
    assert!(err.contains("--force") && err.contains("--resume"), "{err}");
    let weights = dir.path().join("conv.safetensors");
    let err = fails(&train_args(
        dir.path(),
        &["--resume", "--init-from", s(&weights)],
    ));
    assert!(
        err.contains("--init-from") && err.contains("--resume"),
        "{err}"
    );
}

#[test]
fn results_without_a_checkpoint_are_not_resumed_or_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("conv.csv"), "epoch\n").unwrap();
    let err = fails(&train_args(dir.path(), &["--resume"]));
    assert!(err.contains("conv.csv") && err.contains("--force"), "{err}");
    let err = fails(&train_args(dir.path(), &[]));
    assert!(err.contains("--resume") && err.contains("--force"), "{err}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("conv.csv")).unwrap(),
        "epoch\n"
    );
}

/// The linear model never stores its weight gradients (each is summed inside Adam's
/// update): its checkpoint and resume are a path of their own, tested here at a small size,
/// killed inside an epoch and in the middle of a checkpoint write, bit for bit.
#[test]
fn linear_runs_killed_and_resumed_match_an_uninterrupted_run() {
    let args = |out: &Path, resume: bool| {
        let mut args = vec![
            "--model".to_string(),
            "linear".into(),
            "--size".into(),
            "9".into(),
            "--hidden".into(),
            "16,8".into(),
            "--epochs".into(),
            "3".into(),
            "--shuffle".into(),
            "--quiet".into(),
            "--out".into(),
            s(out).into(),
        ];
        if resume {
            args.push("--resume".into());
        }
        args
    };
    let reference = tempfile::tempdir().unwrap();
    ok(&common::strs(&args(reference.path(), false)));
    let dir = tempfile::tempdir().unwrap();
    // Epochs of 5 windows. The first run dies in window 7 (epoch 2), after the first
    // checkpoint; the resumed one dies while writing the third tensor of its first
    // checkpoint (after epoch 2), leaving a half-written temporary; the last one finishes.
    for (round, fault) in ["kill:window:7", "kill:checkpoint-tensor:3"]
        .iter()
        .enumerate()
    {
        let run = bench_cli_env(
            &common::strs(&args(dir.path(), round > 0)),
            &[("BENCH_CLI_FAULT", fault)],
        );
        assert_eq!(run.signal, Some(libc::SIGKILL), "{fault}: {}", run.stderr);
    }
    ok(&common::strs(&args(dir.path(), true)));
    assert_eq!(
        model_rows_without_timing(dir.path(), "linear"),
        model_rows_without_timing(reference.path(), "linear")
    );
    assert_eq!(model_rows_without_timing(dir.path(), "linear").len(), 4);
    for file in ["linear.safetensors", "linear.resume.safetensors"] {
        assert!(
            tensors(&dir.path().join(file)) == tensors(&reference.path().join(file)),
            "the tensors of {file} differ"
        );
    }
}

/// The run settings a training checkpoint records, as JSON.
fn recorded_settings(path: &Path) -> serde_json::Value {
    let bytes = std::fs::read(path).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let about = &header.metadata().as_ref().unwrap()["bench_cli"];
    serde_json::from_str::<serde_json::Value>(about).unwrap()["launch"].clone()
}

/// `fixtures/old-settings/conv.resume.safetensors` was written by the binary of commit
/// 43839a4, before a model's flags had a record of their own (`bench-cli --model conv
/// --hidden-channels 2 --kernel 3 --head conv1x1 --epochs 1`): its settings hold the model's
/// flags among the others. Resumed with nothing but `--epochs 2`, it trains the model it
/// records and ends where an uninterrupted two-epoch run of today ends, bit for bit; its
/// settings are written back in today's form; a model flag typed differently is refused by
/// name.
#[test]
fn a_checkpoint_of_the_old_settings_layout_resumes_its_own_model() {
    let fixture = common::repo_root().join("crates/bench-cli/tests/fixtures/old-settings");
    let resumed = tempfile::tempdir().unwrap();
    std::fs::copy(
        fixture.join("conv.resume.safetensors"),
        resumed.path().join("conv.resume.safetensors"),
    )
    .unwrap();
    let dir = resumed.path();
    let resume = |extra: &[&'static str]| {
        let mut args = vec!["--model", "conv", "--out", s(dir), "--resume", "--quiet"];
        args.extend_from_slice(extra);
        args
    };
    ok(&resume(&["--epochs", "2"]));
    let straight = tempfile::tempdir().unwrap();
    let model = [
        "--hidden-channels",
        "2",
        "--kernel",
        "3",
        "--head",
        "conv1x1",
    ];
    let mut args = vec![
        "--model",
        "conv",
        "--epochs",
        "2",
        "--quiet",
        "--out",
        s(straight.path()),
    ];
    args.extend(model);
    ok(&args);
    assert_eq!(
        rows_without_timing(dir),
        rows_without_timing(straight.path())
    );
    assert_eq!(
        tensors(&dir.join("conv.safetensors")),
        tensors(&straight.path().join("conv.safetensors"))
    );
    let settings = recorded_settings(&dir.join("conv.resume.safetensors"));
    assert_eq!(settings["model"], "conv");
    assert_eq!(
        settings["model_flags"],
        serde_json::json!({"hidden_channels": [2], "kernel": 3, "peephole": false,
            "head": "conv1x1", "patch": null})
    );
    assert!(settings.get("hidden_channels").is_none(), "{settings}");
    assert_eq!(
        settings,
        recorded_settings(&straight.path().join("conv.resume.safetensors")),
        "a resumed run records what a fresh one does"
    );
    let refused = fails(&resume(&["--epochs", "3", "--kernel", "5"]));
    assert!(
        refused.contains("model_config.kernel (3 there, 5 here)"),
        "{refused}"
    );
}

/// A learning-rate schedule resumes exactly too (the step it reads is Adam's, which the
/// checkpoint holds), and the CSV records each epoch's rate, falling under cosine decay.
#[test]
fn a_scheduled_run_resumes_exactly_and_records_its_rates() {
    let schedule = ["--lr-schedule", "cosine"];
    let reference = reference_run(&schedule);
    let dir = tempfile::tempdir().unwrap();
    killed_by("kill:window:7", dir.path(), &schedule);
    ok(&train_args(dir.path(), &["--resume"]));
    assert_same_run(dir.path(), reference.path(), "cosine, killed in epoch 2");
    let csv = std::fs::read_to_string(dir.path().join("conv.csv")).unwrap();
    assert!(csv.lines().next().unwrap().ends_with(",lr"), "{csv}");
    let rates: Vec<f64> = csv
        .lines()
        .skip(1)
        .map(|l| l.rsplit(',').next().unwrap().parse().unwrap())
        .collect();
    assert!(
        rates.windows(2).all(|w| w[1] < w[0]) && rates[2] < 1e-4,
        "{rates:?}"
    );
}

/// Moving MNIST drawn afresh every epoch (`--fresh-sequences`): epoch 1 trains on the
/// sequences of a run without it and later epochs on new ones (their losses differ), and a
/// run killed in epoch 2 resumes to the same end, bit for bit, drawing the same sequences.
#[test]
fn fresh_moving_mnist_sequences_resume_exactly() {
    let data = [
        "--data",
        "moving-mnist",
        "--sequences",
        "6",
        "--test-sequences",
        "2",
    ];
    let fresh = [&data[..], &["--fresh-sequences"]].concat();
    let reference = reference_run(&fresh);
    let fixed = reference_run(&data);
    let (drawn, kept) = (
        rows_without_timing(reference.path()),
        rows_without_timing(fixed.path()),
    );
    assert_eq!(drawn[1], kept[1], "epoch 1 trains on the same sequences");
    assert_ne!(drawn[2], kept[2], "epoch 2 trains on new ones");
    killed_in_epoch_2_then_resumed(&fresh, reference.path(), "fresh sequences");
}

/// A run of `extra` killed at its ninth window (epoch 2 of 6 windows an epoch), resumed:
/// the same as the uninterrupted run in `reference`, bit for bit.
fn killed_in_epoch_2_then_resumed(extra: &[&str], reference: &Path, what: &str) {
    let dir = tempfile::tempdir().unwrap();
    killed_by("kill:window:9", dir.path(), extra);
    ok(&train_args(dir.path(), &["--resume"]));
    assert_same_run(dir.path(), reference, &format!("{what}, killed in epoch 2"));
}

/// RMSProp trains and is recorded: a resume with Adam instead is refused, naming the
/// optimiser's form and both values.
#[test]
fn an_rmsprop_run_is_recorded_and_resumed_only_as_one() {
    let dir = tempfile::tempdir().unwrap();
    let run = ok(&train_args(dir.path(), &["--optimizer", "rmsprop"]));
    assert!(
        run.stdout.contains("RMSProp lr 0.001 decay 0.9"),
        "{}",
        run.stdout
    );
    let refused = fails(&train_args(
        dir.path(),
        &["--resume", "--optimizer", "adam"],
    ));
    assert!(
        refused.contains("adam.form (\"rmsprop\" there, \"chainer\" here)"),
        "{refused}"
    );
    let resumed = ok(&train_args(dir.path(), &["--resume"]));
    assert!(resumed.stdout.contains("RMSProp"), "{}", resumed.stdout);
    assert_eq!(rows_without_timing(dir.path()).len(), 1 + 3);
}

/// Shi et al.'s cross-entropy loss: refused, with the flag that fixes it and nothing
/// written, where the output does not end in a sigmoid; with one it trains, is recorded,
/// and a resume with the squared error instead is refused, naming both.
#[test]
fn a_cross_entropy_run_needs_a_sigmoid_output_and_resumes_only_as_one() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let args = |extra: &[&'static str]| -> Vec<String> {
        let mut args: Vec<String> = ["--model", "conv", "--quiet", "--out", s(&out)]
            .map(String::from)
            .into();
        args.extend(extra.iter().map(|a| a.to_string()));
        args
    };
    let refused = fails(&strs(&args(&["--epochs", "1", "--loss", "bce"])));
    assert!(
        refused.contains("--loss bce")
            && refused.contains("ends in none")
            && refused.contains("add --head conv1x1-sigmoid"),
        "{refused}"
    );
    assert!(!out.exists(), "a refused run wrote {}", out.display());
    let linear = fails(&[
        "--model",
        "linear",
        "--hidden",
        "8",
        "--loss",
        "bce",
        "--out",
        s(&out),
    ]);
    assert!(linear.contains("add --output sigmoid"), "{linear}");

    let bce = ["--loss", "bce", "--head", "conv1x1-sigmoid"];
    let run = ok(&strs(&args(&[&["--epochs", "1"], &bce[..]].concat())));
    assert!(run.stdout.contains("loss bce"), "{}", run.stdout);
    // The training loss is a sum over a frame's 4225 values: far above any mean squared
    // error of frames in [0, 1].
    let rows = common::read_rows(&out.join("conv.csv"));
    assert!(rows[0].train_loss > 100.0, "{}", rows[0].train_loss);
    // The test loss is the loss trained on: the cross-entropy per window, test_bce.
    let csv = std::fs::read_to_string(out.join("conv.csv")).unwrap();
    let (header, row) = (csv.lines().next().unwrap(), csv.lines().nth(1).unwrap());
    let column = |name: &str| {
        let at = header.split(',').position(|h| h == name).unwrap();
        row.split(',').nth(at).unwrap().to_string()
    };
    assert_eq!(column("test_loss"), column("test_bce"), "{csv}");
    let refused = fails(&strs(&args(&[
        "--resume", "--epochs", "2", "--loss", "mse",
    ])));
    assert!(
        refused.contains("loss (\"bce\" there, \"mse\" here)"),
        "{refused}"
    );
    ok(&strs(&args(&["--resume", "--epochs", "2"])));
    assert_eq!(rows_without_timing(&out).len(), 1 + 2);
}

/// Scheduled sampling changes what training reads (epoch 1's loss differs from a run
/// without it, the test figures read the model's own predictions either way), and a run
/// killed in epoch 2 resumes to the same end, bit for bit: the draws follow the update.
#[test]
fn scheduled_sampling_trains_differently_and_resumes_exactly() {
    let forecast = [
        "--data",
        "moving-mnist",
        "--sequences",
        "6",
        "--test-sequences",
        "2",
        "--context",
        "10",
        "--horizon",
        "10",
    ];
    let sampled = [&forecast[..], &["--scheduled-sampling", "12"]].concat();
    let reference = reference_run(&sampled);
    let plain = reference_run(&forecast);
    let train_loss = |dir: &Path, epoch: usize| -> String {
        rows_without_timing(dir)[epoch]
            .split(',')
            .nth(1)
            .unwrap()
            .to_string()
    };
    assert_ne!(
        train_loss(reference.path(), 1),
        train_loss(plain.path(), 1),
        "reading true frames changes epoch 1's training loss"
    );
    killed_in_epoch_2_then_resumed(&sampled, reference.path(), "scheduled sampling");
    let out = tempfile::tempdir().unwrap();
    let refused = fails(&[
        "--model",
        "conv",
        "--scheduled-sampling",
        "10",
        "--out",
        s(out.path()),
    ]);
    assert!(refused.contains("--context"), "{refused}");
}

/// `--augment flip,reverse,crop`: epoch 1 trains on other windows than a run without it
/// (its loss differs), crops alone change the run too (from epoch 2, the first whose five
/// windows draw one for seed 0), and a run killed in epoch 2 resumes to the same end, bit
/// for bit: the draws follow the seed, the epoch and the window.
#[test]
fn augmented_runs_train_differently_and_resume_exactly() {
    let augment = ["--augment", "flip,reverse,crop"];
    let reference = reference_run(&augment);
    let plain = reference_run(&[]);
    let crops = reference_run(&["--augment", "crop"]);
    let first_loss = |dir: &Path| {
        rows_without_timing(dir)[1]
            .split(',')
            .nth(1)
            .map(String::from)
    };
    assert_ne!(first_loss(reference.path()), first_loss(plain.path()));
    assert_ne!(
        rows_without_timing(crops.path()),
        rows_without_timing(plain.path())
    );
    assert_ne!(first_loss(crops.path()), first_loss(reference.path()));
    killed_in_epoch_2_then_resumed(&augment, reference.path(), "augmented");
}
