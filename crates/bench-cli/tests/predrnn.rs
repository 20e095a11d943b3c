//! PredRNN through the command line, as a user runs it: train, the checkpoint's tensor
//! names, `eval` and `predict` from the weights, a run killed mid-epoch then resumed to the
//! same end, the memory estimate against the measured peak, and the flags it refuses.

use std::path::Path;

mod common;

use common::{bench_cli_env, fails, ok, s};

/// A small PredRNN on `data/` shrunk to 16x16: 2 epochs of 5 windows of 6 frames.
fn train_args<'a>(out: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "--model",
        "predrnn",
        "--hidden-channels",
        "3,3",
        "--kernel",
        "3",
        "--head",
        "residual",
        "--size",
        "16",
        "--seq-len",
        "6",
        "--train-frames",
        "31",
        "--validation",
        "off",
        "--epochs",
        "2",
        "--quiet",
        "--out",
        s(out),
    ];
    args.extend_from_slice(extra);
    args
}

/// The CSV without its timing columns (`seconds`, `frames_per_second`).
fn rows_without_timing(dir: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(dir.join("predrnn.csv")).unwrap();
    text.lines()
        .map(|line| {
            let fields: Vec<&str> = line.split(',').collect();
            [&fields[..3], &fields[5..]].concat().join(",")
        })
        .collect()
}

#[test]
fn predrnn_trains_evaluates_predicts_and_resumes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let reference = dir.path().join("reference");
    let run = ok(&train_args(&reference, &[]));
    assert!(run.stdout.contains("model predrnn"), "{}", run.stdout);
    let rows = rows_without_timing(&reference);
    assert_eq!(rows.len(), 3, "{rows:?}");

    // The tensors under OpenSTL's module names, and the head's.
    let weights = reference.join("predrnn.safetensors");
    let tensors = candle_core::safetensors::load(&weights, &candle_core::Device::Cpu).unwrap();
    for (name, dims) in [
        ("cell_list.0.conv_x.weight", vec![21, 1, 3, 3]),
        ("cell_list.0.conv_x.bias", vec![21]),
        ("cell_list.1.conv_x.weight", vec![21, 3, 3, 3]),
        ("cell_list.1.conv_h.weight", vec![12, 3, 3, 3]),
        ("cell_list.1.conv_m.weight", vec![9, 3, 3, 3]),
        ("cell_list.1.conv_o.weight", vec![3, 6, 3, 3]),
        ("cell_list.1.conv_last.weight", vec![3, 6, 1, 1]),
        ("head.weight", vec![1, 3, 1, 1]),
        ("head.bias", vec![1]),
    ] {
        assert_eq!(tensors[name].dims(), dims.as_slice(), "{name}");
    }
    assert_eq!(tensors.len(), 2 * 6 + 2);

    // eval from the weights alone gives the CSV's last test loss.
    let json = dir.path().join("eval.json");
    ok(&["eval", "--checkpoint", s(&weights), "--json", s(&json)]);
    let eval: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let last = std::fs::read_to_string(reference.join("predrnn.csv")).unwrap();
    let header: Vec<&str> = last.lines().next().unwrap().split(',').collect();
    let fields: Vec<&str> = last.lines().last().unwrap().split(',').collect();
    let at = header.iter().position(|h| *h == "test_loss").unwrap();
    let csv_loss: f64 = fields[at].parse().unwrap();
    let eval_loss = eval["test"]["loss_per_window"].as_f64().unwrap();
    assert!(
        (csv_loss - eval_loss).abs() <= 1e-9 * csv_loss,
        "{csv_loss} vs {eval_loss}"
    );
    let png = dir.path().join("predict.png");
    ok(&[
        "predict",
        "--model",
        "predrnn",
        "--checkpoint",
        s(&weights),
        "-o",
        s(&png),
    ]);
    assert!(image::open(&png).is_ok());

    // Killed in epoch 2, then resumed: the same rows and weights bit for bit.
    let killed = dir.path().join("killed");
    let run = bench_cli_env(
        &train_args(&killed, &[]),
        &[("BENCH_CLI_FAULT", "kill:window:7")],
    );
    assert_eq!(run.signal, Some(libc::SIGKILL), "{}", run.stderr);
    ok(&train_args(&killed, &["--resume"]));
    assert_eq!(rows_without_timing(&killed), rows);
    let resumed = candle_core::safetensors::load(
        killed.join("predrnn.safetensors"),
        &candle_core::Device::Cpu,
    )
    .unwrap();
    let bits = |t: &candle_core::Tensor| -> Vec<u32> {
        let values: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
        values.iter().map(|v| v.to_bits()).collect()
    };
    for (name, tensor) in &tensors {
        assert_eq!(bits(tensor), bits(&resumed[name]), "{name}");
    }
}

#[test]
fn predrnn_refuses_the_flags_it_does_not_take() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    for (extra, named) in [
        (&["--peephole"][..], "--peephole"),
        (&["--hidden-channels", "4,2"][..], "--hidden-channels 4,2"),
        (
            &["--hidden", "8"][..],
            "--hidden applies to --model linear only",
        ),
        (&["--kernel", "3,5"][..], "--kernel 3,5"),
    ] {
        let mut args = vec!["--model", "predrnn", "--out", s(&out)];
        args.extend_from_slice(extra);
        let err = fails(&args);
        assert!(err.contains(named), "{extra:?}: {err}");
        assert!(!out.exists(), "{extra:?} wrote {}", out.display());
    }
}

/// `memory: about N MiB needed` against `peak memory: N MiB`: PredRNN trains by autograd,
/// which the estimate counts with the model's own measured states per step.
#[test]
fn the_memory_estimate_holds_for_predrnn() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let run = ok(&[
        "--model",
        "predrnn",
        "--data",
        "moving-mnist",
        "--sequences",
        "16",
        "--test-sequences",
        "4",
        "--patch",
        "4",
        "--hidden-channels",
        "8,8",
        "--head",
        "conv1x1",
        "--batch-size",
        "16",
        "--epochs",
        "1",
        "--quiet",
        "--out",
        s(&out),
    ]);
    let number_after = |key: &str| -> f64 {
        let at = run.stdout.find(key).unwrap() + key.len();
        let rest = &run.stdout[at..];
        rest[..rest.find(' ').unwrap()].parse().unwrap()
    };
    let (estimate, peak) = (
        number_after("memory: about "),
        number_after("peak memory: "),
    );
    println!("estimate {estimate} MiB, peak {peak} MiB");
    assert!(
        peak > 100.0 && estimate / peak > 0.5 && estimate / peak < 2.0,
        "estimated {estimate} MiB, measured {peak} MiB"
    );
}
