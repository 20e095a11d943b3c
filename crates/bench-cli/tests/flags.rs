//! Flags that change what a run trains on or how, each checked for its effect, and the
//! RGB path end to end (three channels through training, predictions and evaluation).

use std::path::Path;

mod common;

use common::{bench_cli_env, fails, ok, read_rows, s};

/// The `data ...` line a run prints.
fn data_line(stdout: &str) -> &str {
    stdout
        .lines()
        .find(|l| l.starts_with("data "))
        .unwrap_or_else(|| panic!("no data line:\n{stdout}"))
}

#[test]
fn train_frames_and_stride_cut_the_windows() {
    let out = tempfile::tempdir().unwrap();
    let run = ok(&[
        "--model",
        "conv",
        "--train-frames",
        "100",
        "--stride",
        "5",
        "--epochs",
        "1",
        "--quiet",
        "--out",
        s(out.path()),
    ]);
    // 100 training frames in windows of 26 every 5 frames: 1 + (100 - 26) / 5 = 15; the 52
    // left: 1 + (52 - 26) / 5 = 6.
    assert!(
        data_line(&run.stdout)
            .contains("train 100 frames -> 15 windows of 26 (stride 5), test 52 frames -> 6"),
        "{}",
        run.stdout
    );
    // The epoch predicts 15 windows of 25 steps.
    let row = &read_rows(&out.path().join("conv.csv"))[0];
    assert!((row.frames_per_second * row.seconds - 375.0).abs() < 1e-6);
}

#[test]
fn adam_torch_places_eps_differently_and_is_recorded() {
    let (chainer, torch) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let args = |out: &Path, adam: &'static str| {
        vec![
            "--model".to_string(),
            "conv".into(),
            "--epochs".into(),
            "2".into(),
            "--adam".into(),
            adam.into(),
            "--quiet".into(),
            "--out".into(),
            s(out).into(),
        ]
    };
    ok(&common::strs(&args(chainer.path(), "chainer")));
    let run = ok(&common::strs(&args(torch.path(), "torch")));
    assert!(run.stdout.contains("Adam (Torch form)"), "{}", run.stdout);
    let losses = |dir: &Path| -> Vec<f64> {
        read_rows(&dir.join("conv.csv"))
            .iter()
            .map(|r| r.train_loss)
            .collect()
    };
    let (a, b) = (losses(chainer.path()), losses(torch.path()));
    // The first update is the same in both forms up to eps's place (1e-8 against the
    // first step's |m| / sqrt(v) = 1): the first epoch's losses are close, not equal.
    assert_ne!(a, b);
    assert!(((a[0] - b[0]) / a[0]).abs() < 1e-3, "{a:?} {b:?}");
    // Resuming in the other form is refused, naming the setting.
    let err = fails(&[
        "--model",
        "conv",
        "--adam",
        "chainer",
        "--resume",
        "--out",
        s(torch.path()),
    ]);
    assert!(err.contains("adam"), "{err}");
}

#[test]
fn checkpoint_every_sets_which_epochs_leave_a_checkpoint() {
    let out = tempfile::tempdir().unwrap();
    let args = [
        "--model",
        "conv",
        "--epochs",
        "3",
        "--checkpoint-every",
        "2",
        "--quiet",
        "--out",
        s(out.path()),
    ];
    // Killed in epoch 3 (window 13 of 15): the checkpoint is epoch 2's, not epoch 1's or
    // none.
    let run = bench_cli_env(&args, &[("BENCH_CLI_FAULT", "kill:window:13")]);
    assert_eq!(run.signal, Some(libc::SIGKILL), "{}", run.stderr);
    let mut resume = args.to_vec();
    resume.push("--resume");
    let run = ok(&resume);
    assert!(
        run.stdout.contains("2 epoch(s) and 0 window(s) done"),
        "{}",
        run.stdout
    );
    // Killed in epoch 2 with checkpoints every 2 epochs: nothing to resume from.
    let fresh = tempfile::tempdir().unwrap();
    let mut args = args.to_vec();
    let last = args.len() - 1;
    args[last] = s(fresh.path());
    let run = bench_cli_env(&args, &[("BENCH_CLI_FAULT", "kill:window:8")]);
    assert_eq!(run.signal, Some(libc::SIGKILL), "{}", run.stderr);
    assert!(!fresh.path().join("conv.resume.safetensors").exists());
}

#[test]
fn rgb_frames_train_predict_and_evaluate_end_to_end() {
    let out = tempfile::tempdir().unwrap();
    let run = ok(&[
        "--model",
        "conv",
        "--color",
        "rgb",
        "--size",
        "17",
        "--hidden-channels",
        "4",
        "--head",
        "conv1x1-sigmoid",
        "--epochs",
        "2",
        "--quiet",
        "--out",
        s(out.path()),
    ]);
    assert!(run.stdout.contains(r#""channels":3"#), "{}", run.stdout);
    let rows = read_rows(&out.path().join("conv.csv"));
    assert!(rows[1].train_loss < rows[0].train_loss, "{rows:?}");
    let weights = out.path().join("conv.safetensors");
    // Predictions are drawn in colour: an RGB PNG whose channels differ somewhere (the
    // street's colours), 4 rows of 10 frames of 17x17 at scale 4.
    let png = out.path().join("rgb.png");
    ok(&[
        "predict",
        "--model",
        "conv",
        "--checkpoint",
        s(&weights),
        "--color",
        "rgb",
        "--size",
        "17",
        "-o",
        s(&png),
    ]);
    let img = image::open(&png).unwrap();
    assert_eq!(img.color(), image::ColorType::Rgb8);
    let rgb = img.to_rgb8();
    assert!(rgb.pixels().any(|p| p.0[0] != p.0[1] || p.0[1] != p.0[2]));
    let json = out.path().join("eval.json");
    let eval = ok(&[
        "eval",
        "--checkpoint",
        s(&weights),
        "--color",
        "rgb",
        "--size",
        "17",
        "--json",
        s(&json),
    ]);
    assert!(eval.stdout.contains("copy last frame"), "{}", eval.stdout);
    let figures: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    // eval rebuilt the RGB model from its file and tested it on the frames training
    // tested on: the last row's figures, exactly.
    let last = &rows[rows.len() - 1];
    assert_eq!(
        figures["test"]["loss_per_window"].as_f64(),
        Some(last.test_loss),
        "{figures:#}"
    );
    // Left out, the colour is the run's; grey frames typed for an RGB model are refused,
    // naming both shapes.
    let rgb = ok(&["eval", "--checkpoint", s(&weights), "--size", "17"]);
    assert!(rgb.stdout.contains("3 channel(s)"), "{}", rgb.stdout);
    let luma = ["--color", "luma"];
    let err = fails(
        &[
            &["eval", "--checkpoint", s(&weights), "--size", "17"][..],
            &luma,
        ]
        .concat(),
    );
    assert!(err.contains("3") && err.contains("1"), "{err}");
}

#[test]
fn predict_draws_a_linear_checkpoint_and_checks_its_flags() {
    let out = tempfile::tempdir().unwrap();
    ok(&[
        "--model",
        "linear",
        "--size",
        "9",
        "--hidden",
        "16",
        "--epochs",
        "1",
        "--quiet",
        "--out",
        s(out.path()),
    ]);
    let weights = out.path().join("linear.safetensors");
    let predict = |extra: &[&str]| -> Vec<String> {
        let mut args = vec![
            "predict".to_string(),
            "--model".into(),
            "linear".into(),
            "--checkpoint".into(),
            s(&weights).into(),
            "--size".into(),
            "9".into(),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        args
    };
    let png = out.path().join("p.png");
    ok(&common::strs(&predict(&[
        "-o",
        s(&png),
        "--frames",
        "3",
        "--scale",
        "2",
    ])));
    // 3 columns of 9x9 frames at scale 2 (19 px a cell with its separator) beside the
    // label column; 4 rows.
    let img = image::open(&png).unwrap();
    assert_eq!(img.color(), image::ColorType::L8);
    assert_eq!(img.height(), 4 * 19 + 1);
    // The test split has one window: --window 1 is out of range, and names the count.
    let err = fails(&common::strs(&predict(&["-o", s(&png), "--window", "1"])));
    assert!(
        err.contains("--window 1") && err.contains("1 window(s)"),
        "{err}"
    );
    for scale in ["0", "65"] {
        let err = fails(&common::strs(&predict(&["-o", s(&png), "--scale", scale])));
        assert!(
            err.contains(&format!("--scale {scale}")) && err.contains("1 to 64"),
            "{err}"
        );
    }
    let err = fails(&common::strs(&predict(&["-o", s(&png), "--horizon", "0"])));
    assert!(
        err.contains("--horizon 0") && err.contains("1 to 25"),
        "{err}"
    );
}

#[test]
fn bench_threads_reaches_the_timed_runs() {
    let run = ok(&[
        "bench",
        "--configs",
        "conv",
        "--conv-epochs",
        "2",
        "--threads",
        "1",
    ]);
    assert!(
        run.stdout.lines().any(|l| l.starts_with("conv ")),
        "{}",
        run.stdout
    );
    let err = fails(&["bench", "--configs", "conv", "--threads", "0"]);
    assert!(err.contains("--threads"), "{err}");
}

/// `--encoder-forecaster`: Shi et al.'s encoder and forecaster, each layer of its own
/// (`convlstm.*`, `forecaster.*`), the head reading every forecaster layer; it trains on
/// forecasts, `eval` reads it back from its file, and without --context it is refused
/// before anything is written.
#[test]
fn an_encoder_forecaster_trains_saves_its_forecaster_and_evaluates() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("ef");
    let model = [
        "--model",
        "conv",
        "--data",
        "moving-mnist",
        "--sequences",
        "4",
        "--test-sequences",
        "2",
        "--hidden-channels",
        "4,3",
        "--patch",
        "4",
        "--head",
        "conv1x1-sigmoid",
        "--encoder-forecaster",
        "--quiet",
        "--out",
        s(&out),
    ];
    let refused = fails(&model);
    assert!(refused.contains("--context and --horizon"), "{refused}");
    assert!(!out.exists());
    let mut args = model.to_vec();
    args.extend([
        "--context",
        "10",
        "--horizon",
        "10",
        "--loss",
        "bce",
        "--epochs",
        "1",
    ]);
    ok(&args);
    let weights = out.join("conv.safetensors");
    let tensors = candle_core::safetensors::load(&weights, &candle_core::Device::Cpu).unwrap();
    for (name, dims) in [
        ("convlstm.weight_ih_l0", vec![16, 16, 5, 5]),
        ("convlstm.weight_ih_l1", vec![12, 4, 5, 5]),
        ("forecaster.weight_ih_l0", vec![16, 16, 5, 5]),
        ("forecaster.weight_hh_l1", vec![12, 3, 5, 5]),
        ("head.weight", vec![16, 7, 1, 1]),
    ] {
        assert_eq!(tensors[name].dims(), dims.as_slice(), "{name}");
    }
    assert_eq!(tensors.len(), 4 * 4 + 2);
    let eval = ok(&["eval", "--checkpoint", s(&weights)]);
    assert!(
        eval.stdout.contains("10 frames read, 10 forecast"),
        "{}",
        eval.stdout
    );
}

/// `--validation`: by default a sixth of the training frames where that holds a window and
/// leaves five (none for the seed's windows of 26); every row then has the validation
/// loss beside copy-last's on the same windows; `off` removes it; a split that leaves no
/// window is refused by name, before anything is written.
#[test]
fn a_validation_split_is_carved_from_the_training_frames() {
    let dir = tempfile::tempdir().unwrap();
    let run = |out: &Path, extra: &[&str]| {
        let mut args = vec![
            "--model",
            "conv",
            "--seq-len",
            "6",
            "--epochs",
            "2",
            "--quiet",
        ];
        args.extend_from_slice(extra);
        args.extend(["--out", s(out)]);
        ok(&args)
    };
    let auto = dir.path().join("auto");
    let out = run(&auto, &[]);
    // 126 training frames: the last 21 validate, in windows of 6 every 5 frames.
    assert!(
        data_line(&out.stdout).contains(
            "train 126 frames -> 20 windows of 6 (stride 5), test 26 frames -> 5 windows; \
             validation: the last 21 training frames -> 4 windows"
        ),
        "{}",
        out.stdout
    );
    let csv = std::fs::read_to_string(auto.join("conv.csv")).unwrap();
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    let at = |name: &str| header.iter().position(|h| *h == name).unwrap();
    for line in csv.lines().skip(1) {
        let fields: Vec<&str> = line.split(',').collect();
        let number = |name: &str| -> f64 { fields[at(name)].parse().unwrap() };
        let (ours, copy) = (number("val_loss"), number("val_copy_last"));
        assert!(ours.is_finite() && copy > 0.0, "{line}");
    }
    let off = dir.path().join("off");
    run(&off, &["--validation", "off"]);
    let csv = std::fs::read_to_string(off.join("conv.csv")).unwrap();
    assert!(!csv.contains("val_loss"), "{csv}");
    // The seed's windows of 26: a sixth of 126 frames holds none, so no split.
    let seed = ok(&["frames"]);
    assert!(!seed.stdout.contains("validation"), "{}", seed.stdout);
    let six = ok(&["frames", "--seq-len", "6"]);
    assert!(
        six.stdout
            .contains("validation (--validation): the last 21 training frames -> 4 windows"),
        "{}",
        six.stdout
    );
    let too_many = dir.path().join("too-many");
    let refused = fails(&[
        "--model",
        "conv",
        "--validation",
        "124",
        "--out",
        s(&too_many),
    ]);
    assert!(
        refused.contains("--validation 124") && refused.contains("both need one"),
        "{refused}"
    );
    assert!(!too_many.exists());
}

/// With a validation split: the best epoch's weights are kept beside the last ones and are
/// what `eval` reads unless `--last`; `--patience` ends the run that many epochs after its
/// best; and the end of the run says in words, in the CSV's last row and the summary,
/// whether the model beats copying the last frame on the validation frames.
#[test]
fn best_weights_patience_and_the_verdict_on_copy_last() {
    let dir = tempfile::tempdir().unwrap();
    let train = |name: &str, extra: &[&str]| -> (std::path::PathBuf, common::Output) {
        let out = dir.path().join(name);
        let mut args = vec!["--model", "conv", "--seq-len", "6", "--quiet"];
        args.extend_from_slice(extra);
        args.extend(["--out", s(&out)]);
        let run = ok(&args);
        (out, run)
    };
    let note = |out: &Path| -> (usize, String) {
        let csv = std::fs::read_to_string(out.join("conv.csv")).unwrap();
        assert!(csv.lines().next().unwrap().ends_with(",note"), "{csv}");
        let last = csv.lines().last().unwrap();
        let epoch = last.split(',').next().unwrap().parse().unwrap();
        (epoch, last.rsplit(',').next().unwrap().to_string())
    };
    // An untrained seed model predicts far worse than copying the last frame.
    let (untrained, run) = train("untrained", &["--epochs", "1", "--lr", "1e-9"]);
    let worse = "this model is worse than copying the last frame on the validation frames";
    assert!(run.stdout.contains(worse), "{}", run.stdout);
    assert_eq!(note(&untrained), (1, worse.to_string()));
    let summary: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(untrained.join("conv.summary.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(summary["validation"]["verdict"], worse);
    assert_eq!(summary["validation"]["best_epoch"], 1);

    // Too large a step: the validation loss stops falling, and the run stops `patience`
    // epochs after its best.
    let (unstable, _) = train(
        "unstable",
        &["--epochs", "30", "--lr", "0.3", "--patience", "2"],
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(unstable.join("conv.summary.json")).unwrap())
            .unwrap();
    let best = summary["validation"]["best_epoch"].as_u64().unwrap() as usize;
    let (last, words) = note(&unstable);
    assert!(last < 30 && last == best + 2, "best {best}, last {last}");
    assert!(words.starts_with("this model"), "{words}");
    // eval reads the best epoch's weights unless told otherwise.
    let weights = unstable.join("conv.safetensors");
    let best_eval = ok(&["eval", "--checkpoint", s(&weights)]);
    assert!(
        best_eval.stdout.contains("conv.best.safetensors"),
        "{}",
        best_eval.stdout
    );
    let last_eval = ok(&["eval", "--checkpoint", s(&weights), "--last"]);
    assert!(!last_eval.stdout.contains("best"), "{}", last_eval.stdout);
    let tensors = |name: &str| {
        candle_core::safetensors::load(unstable.join(name), &candle_core::Device::Cpu).unwrap()
    };
    let (kept, ended) = (
        tensors("conv.best.safetensors"),
        tensors("conv.safetensors"),
    );
    let bits = |t: &candle_core::Tensor| -> Vec<u32> {
        let values: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
        values.iter().map(|v| v.to_bits()).collect()
    };
    let name = "convlstm.weight_ih_l0";
    assert_ne!(bits(&kept[name]), bits(&ended[name]), "two epochs apart");

    let refused = fails(&[
        "--model",
        "conv",
        "--patience",
        "3",
        "--out",
        s(&dir.path().join("none")),
    ]);
    assert!(refused.contains("no validation split"), "{refused}");
}

/// Do no harm: with a residual head and a validation split, the best weights start as the
/// model's copy of the last frame (the head zeroed, "epoch 0"); a model that never beats
/// copy-last on the validation frames keeps them, says so, and `eval` of its best weights
/// gives copy-last's figures exactly.
#[test]
fn a_residual_model_that_learns_nothing_falls_back_on_copy_last() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("residual");
    let run = ok(&[
        "--model",
        "conv",
        "--head",
        "residual",
        "--seq-len",
        "6",
        "--epochs",
        "2",
        "--lr",
        "1e-9",
        "--quiet",
        "--out",
        s(&out),
    ]);
    assert!(
        run.stdout
            .contains("its best weights are the copy-last fallback"),
        "{}",
        run.stdout
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("conv.summary.json")).unwrap())
            .unwrap();
    assert_eq!(summary["validation"]["best_epoch"], 0);
    assert_eq!(
        summary["validation"]["val_loss"],
        summary["validation"]["val_copy_last"]
    );
    let best = candle_core::safetensors::load(
        out.join("conv.best.safetensors"),
        &candle_core::Device::Cpu,
    )
    .unwrap();
    for name in ["head.weight", "head.bias"] {
        let values: Vec<f32> = best[name].flatten_all().unwrap().to_vec1().unwrap();
        assert!(values.iter().all(|&v| v == 0.0), "{name}");
    }
    let json = dir.path().join("eval.json");
    ok(&[
        "eval",
        "--checkpoint",
        s(&out.join("conv.safetensors")),
        "--json",
        s(&json),
    ]);
    let eval: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    for key in ["loss_per_window", "mse_per_pixel", "ssim_per_frame"] {
        assert_eq!(eval["test"][key], eval["copy_last_frame"][key], "{key}");
    }
    // The last weights are the trained model's own, worse than copy-last.
    ok(&[
        "eval",
        "--checkpoint",
        s(&out.join("conv.safetensors")),
        "--last",
        "--json",
        s(&json),
    ]);
    let last: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let loss = |v: &serde_json::Value, k: &str| v[k]["loss_per_window"].as_f64().unwrap();
    assert!(loss(&last, "test") > loss(&last, "copy_last_frame"));
}
