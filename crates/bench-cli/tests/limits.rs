//! Sizes that cannot fit, paths that are not files, kernels wider than the frame, and
//! signals before training: each through the binary, refused up front with the flag
//! named, or stopped at once, and nothing written.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::{fails, ok, repo_root, s, ChildGuard, Lines};

/// Trains with `args` into a fresh `--out`, expecting a refusal; checks nothing was made.
fn refused(args: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let mut all = vec!["--out", s(&out), "--epochs", "1"];
    all.extend_from_slice(args);
    let err = fails(&all);
    assert!(!out.exists(), "{args:?} made {}", out.display());
    err
}

#[test]
fn a_model_too_large_for_memory_is_refused_naming_the_flag() {
    // 4e16 parameters: without the estimate this allocated until the OOM killer came.
    let started = Instant::now();
    let err = refused(&["--model", "linear", "--hidden", "100000000"]);
    assert!(
        err.contains("needs about")
            && err.contains("lower --hidden")
            && (err.contains("physical memory") || err.contains("cgroup")),
        "{err}"
    );
    // Refused from the flags alone, not after loading or allocating anything.
    assert!(started.elapsed() < Duration::from_secs(30));
}

/// The figure after `needs about` in a refusal, in bytes.
fn needed(err: &str) -> f64 {
    let rest = err
        .split("needs about ")
        .nth(1)
        .unwrap_or_else(|| panic!("{err}"));
    harness::memory::parse_human(rest).unwrap_or_else(|| panic!("no figure in {err}"))
}

#[test]
fn activations_too_large_are_refused_naming_batch_and_sequence_flags() {
    let wide = [
        "--model",
        "conv",
        "--hidden-channels",
        "512,512",
        "--head",
        "conv1x1",
    ];
    let err = refused(&[&wide[..], &["--batch-size", "16"]].concat());
    assert!(
        err.contains("needs about") && err.contains("--batch-size") && err.contains("--seq-len"),
        "{err}"
    );
    // Long windows: the steps kept for backpropagation. Patches of 5 shrink each plane 25
    // times, and the estimate with it.
    let long = refused(&[&wide[..], &["--seq-len", "20000"]].concat());
    let patched = refused(&[&wide[..], &["--seq-len", "20000", "--patch", "5"]].concat());
    assert!(patched.contains("--seq-len"), "{patched}");
    let ratio = needed(&long) / needed(&patched);
    assert!(ratio > 20.0 && ratio < 26.0, "{ratio}: {long}\n{patched}");
}

#[test]
fn frames_too_many_for_memory_are_refused_naming_their_flags() {
    let err = refused(&[
        "--model",
        "conv",
        "--data",
        "moving-mnist",
        "--sequences",
        "1000000000",
    ]);
    assert!(err.contains("--sequences"), "{err}");
    // The largest frame --size allows, 152 times, and the seed's windows over it.
    let err = refused(&["--model", "conv", "--size", "5792"]);
    assert!(
        err.contains("needs about") && err.contains("lower --size"),
        "{err}"
    );
    // `frames` checks the frames alone.
    let err = fails(&[
        "frames",
        "--data",
        "moving-mnist",
        "--sequences",
        "1000000000",
    ]);
    assert!(
        err.contains("--sequences") && err.contains("memory"),
        "{err}"
    );
}

#[test]
fn a_size_beyond_the_decoders_limit_is_refused_like_a_decoded_frame() {
    let err = refused(&["--model", "conv", "--size", "100000"]);
    assert!(
        err.contains("--size 100000") && err.contains("33554432") && err.contains("pixels"),
        "{err}"
    );
    let err = fails(&["frames", "--size", "8000x5000"]);
    assert!(
        err.contains("--size 8000x5000") && err.contains("40000000 pixels"),
        "{err}"
    );
}

#[test]
fn a_run_prints_its_estimate_first() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let run = ok(&[
        "--model",
        "conv",
        "--epochs",
        "1",
        "--quiet",
        "--out",
        s(&out),
    ]);
    let first = run.stdout.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("memory: about ") && first.contains("frames 2 MiB"),
        "{}",
        run.stdout
    );
}

/// `memory: about N MiB needed` and `peak memory: N MiB` of a run's output, both in MiB.
fn estimate_and_peak(stdout: &str) -> (f64, f64) {
    let number_after = |prefix: &str| -> f64 {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no `{prefix}` in\n{stdout}"));
        line[prefix.len()..]
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    (
        number_after("memory: about "),
        number_after("peak memory: "),
    )
}

#[test]
fn the_estimate_is_within_a_factor_of_two_of_the_measured_peak() {
    // Runs where each part of the estimate dominates in turn: a linear model's weights and
    // moments, a ConvLSTM's activations over a batch, and Moving MNIST's frames.
    let cases: [&[&str]; 3] = [
        &[
            "--model",
            "linear",
            "--hidden",
            "700",
            "--train-frames",
            "52",
        ],
        &[
            "--model",
            "conv",
            "--hidden-channels",
            "16,16",
            "--head",
            "conv1x1",
            "--batch-size",
            "8",
            "--seq-len",
            "6",
            "--train-frames",
            "46",
        ],
        &[
            "--model",
            "conv",
            "--data",
            "moving-mnist",
            "--sequences",
            "1500",
            "--test-sequences",
            "20",
            "--seq-len",
            "2",
            "--stride",
            "19",
        ],
    ];
    for case in cases {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let mut args = vec!["--epochs", "1", "--quiet", "--out", s(&out)];
        args.extend_from_slice(case);
        let run = ok(&args);
        let (estimate, peak) = estimate_and_peak(&run.stdout);
        println!("{case:?}: estimate {estimate} MiB, peak {peak} MiB");
        assert!(
            peak > 100.0 && estimate / peak > 0.5 && estimate / peak < 2.0,
            "{case:?}: estimated {estimate} MiB, measured {peak} MiB"
        );
    }
}

#[test]
fn a_kernel_wider_than_the_frame_is_refused_naming_both_sizes() {
    let err = refused(&["--model", "conv", "--kernel", "99"]);
    assert!(
        err.contains("--kernel 99") && err.contains("65x65"),
        "{err}"
    );
    // Patches shrink the plane the kernel slides over: 65 in patches of 5 is 13.
    let err = refused(&[
        "--model",
        "conv",
        "--kernel",
        "15",
        "--patch",
        "5",
        "--hidden-channels",
        "4",
        "--head",
        "conv1x1",
    ]);
    assert!(
        err.contains("--kernel 15") && err.contains("13x13") && err.contains("5x5 patches"),
        "{err}"
    );
    assert!(
        !err.contains("   0: "),
        "a backtrace in the message:\n{err}"
    );
}

#[test]
fn paths_that_are_not_files_are_named_for_what_they_are() {
    let data = repo_root().join("data");
    let err = refused(&["--model", "conv", "--init-from", s(&data)]);
    assert!(
        err.contains("--init-from") && err.contains("a folder"),
        "{err}"
    );
    if Path::new("/dev/zero").exists() {
        // Read as a file, /dev/zero never ends.
        let err = refused(&["--model", "conv", "--init-from", "/dev/zero"]);
        assert!(err.contains("not a regular file"), "{err}");
        let err = fails(&["eval", "--checkpoint", "/dev/zero"]);
        assert!(
            err.contains("--checkpoint /dev/zero: not a regular file"),
            "{err}"
        );
    }
    let picture = tempfile::tempdir().unwrap();
    let output = picture.path().join("p.png");
    let err = fails(&[
        "predict",
        "--model",
        "conv",
        "--checkpoint",
        s(&data),
        "--output",
        s(&output),
    ]);
    assert!(!output.exists());
    assert!(
        err.contains("--checkpoint") && err.contains("a folder"),
        "{err}"
    );
    let err = refused(&["--model", "conv", "--init-from", "no/such/file.safetensors"]);
    assert!(
        err.contains("no/such/file.safetensors") && err.contains("No such file"),
        "{err}"
    );

    // --resume with a folder where the training checkpoint belongs.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("conv.resume.safetensors")).unwrap();
    let err = fails(&["--model", "conv", "--resume", "--out", s(dir.path())]);
    assert!(
        err.contains("--resume") && err.contains("conv.resume.safetensors: a folder"),
        "{err}"
    );
}

/// Starts a run whose frames load from a named pipe no one writes: it blocks there, as on
/// a stalled network file system, until a signal `signal` arrives. Returns the exit code
/// and the time from the signal to the exit. The test never opens the pipe itself (that
/// would block it too); the run, blocked on it for good, is killed with its group whenever
/// the test fails.
fn signalled_while_loading(signal: i32) -> (Option<i32>, Duration, String) {
    let dir = tempfile::tempdir().unwrap();
    let frames = dir.path().join("frames");
    std::fs::create_dir(&frames).unwrap();
    for k in 0..3 {
        let name = format!("{}.png", 5000 + k);
        std::fs::copy(repo_root().join("data").join(&name), frames.join(&name)).unwrap();
    }
    let fifo = frames.join("5003.png");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let out = dir.path().join("out");
    let (mut cmd, _workdir) = common::command();
    let mut child = ChildGuard::spawn(
        cmd.args([
            "--model",
            "conv",
            "--seq-len",
            "2",
            "--data",
            s(&frames),
            "--out",
            s(&out),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped()),
    )
    .unwrap();
    let mut stderr = Lines::new(child.stderr.take().unwrap());
    // The progress line comes just before the frames load.
    stderr.until("loading 4 frames", Duration::from_secs(60));
    child.signal(signal);
    let sent = Instant::now();
    // Far past the bound the test checks, to tell a slow exit from none.
    let status = child
        .wait_timeout(Duration::from_secs(120))
        .unwrap_or_else(|| panic!("still running 120 s after the signal:\n{}", stderr.seen));
    let took = sent.elapsed();
    let text = stderr.rest(Duration::from_secs(10)).to_string();
    assert!(!out.exists(), "{} was made", out.display());
    (status.code(), took, text)
}

/// How soon a run stalled loading its frames must end after SIGTERM or SIGINT. The load
/// is stalled forever (a pipe no one writes), so any bound shows the run did not wait for
/// it. The handler exits at once (milliseconds), but on a loaded 2-core CI machine the
/// handler's thread, the exit and this test's polling wait for a core each, which can
/// take seconds: the bound is one such a machine meets, while a run that waited for the
/// load would never end.
const SIGNAL_BOUND: Duration = Duration::from_secs(20);

#[test]
fn sigterm_and_sigint_stop_a_run_while_it_loads() {
    for signal in [libc::SIGTERM, libc::SIGINT] {
        let (code, took, stderr) = signalled_while_loading(signal);
        assert_eq!(code, Some(130), "signal {signal}:\n{stderr}");
        assert!(
            stderr.contains("interrupted before training started; nothing was written"),
            "{stderr}"
        );
        // Without the handler's early exit the run waits on the pipe forever.
        assert!(took < SIGNAL_BOUND, "signal {signal}: {took:?}");
    }
}

/// Drawing Moving MNIST afresh holds a second set of training sequences while the next is
/// drawn: the estimate counts it (40 sequences of 20 64x64 frames, 12.5 MiB as f32).
#[test]
fn fresh_sequences_count_in_the_memory_estimate() {
    let frames_line = |extra: &[&str]| -> f64 {
        let dir = tempfile::tempdir().unwrap();
        let mut args = vec![
            "--model",
            "conv",
            "--data",
            "moving-mnist",
            "--sequences",
            "40",
            "--test-sequences",
            "8",
            "--epochs",
            "1",
            "--out",
            s(dir.path()),
        ];
        args.extend_from_slice(extra);
        let run = ok(&args);
        let line = run
            .stdout
            .lines()
            .find(|l| l.starts_with("memory: "))
            .unwrap_or_else(|| panic!("{}", run.stdout));
        let mib = line
            .split("frames ")
            .nth(1)
            .unwrap()
            .split(" MiB")
            .next()
            .unwrap();
        mib.parse().unwrap()
    };
    let (plain, fresh) = (frames_line(&[]), frames_line(&["--fresh-sequences"]));
    assert!(
        (fresh - plain - 12.5).abs() < 0.6,
        "{plain} MiB, {fresh} MiB"
    );
}
