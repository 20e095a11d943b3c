//! The binary end to end: training runs on the shipped data, determinism, checkpoints,
//! and the errors a user sees.

use std::path::Path;

mod common;

use common::{fails, ok, read_rows, repo_root, s};

#[test]
fn conv_seed_config_learns_over_ten_epochs() {
    let out = tempfile::tempdir().unwrap();
    let run = ok(&["--model", "conv", "--out", s(out.path())]);
    assert!(run.stdout.contains("208 parameters"), "{}", run.stdout);
    let rows = read_rows(&out.path().join("conv.csv"));
    assert_eq!(rows.len(), 10);
    for (k, row) in rows.iter().enumerate() {
        assert_eq!(row.epoch, k + 1);
        assert!(row.seconds > 0.0);
        assert!((row.frames_per_second * row.seconds - 125.0).abs() < 1e-6 * 125.0);
    }
    // The run is deterministic: every column but the timing ones is the committed
    // reference's, digit for digit (the file the README's command made).
    let ours = std::fs::read_to_string(out.path().join("conv.csv")).unwrap();
    let reference =
        std::fs::read_to_string(repo_root().join("results/reference/conv.csv")).unwrap();
    common::assert_same_but_timing(&ours, &reference, "results/reference/conv.csv");
    assert!(out.path().join("conv.safetensors").is_file());
    // The summary sets the model's figures and copy-last's side by side under the same
    // unit-named keys; copy-last's are numpy's and scikit-image's, every key
    // (bench/copy_last_reference.py; the frames are f32 here, f64 there).
    let summary: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.path().join("conv.summary.json")).unwrap(),
    )
    .unwrap();
    common::assert_figures_match_numpy(&summary["copy_last_frame"], "one_step");
    let (test, copy) = (&summary["test"], &summary["copy_last_frame"]);
    let keys = |v: &serde_json::Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(test), keys(copy), "{summary:#}");
    // The model's block is the last row's figures, in the same units.
    let last = &rows[9];
    assert_eq!(test["loss_per_window"].as_f64(), Some(last.test_loss));
    assert_eq!(summary["final"]["test_bce"], test["bce_per_window"]);
    assert_eq!(summary["final"]["test_mse"], test["mse_per_pixel"]);
    assert!(
        run.stdout.contains("copy-last-frame baseline"),
        "{}",
        run.stdout
    );
}

#[test]
fn one_seed_gives_identical_rows_and_another_seed_does_not() {
    let (a, b, c) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let args = |dir: &Path, seed: &'static str| {
        vec![
            "--model".to_string(),
            "conv".into(),
            "--epochs".into(),
            "2".into(),
            "--seed".into(),
            seed.into(),
            "--out".into(),
            s(dir).into(),
        ]
    };
    for (dir, seed) in [(&a, "3"), (&b, "3"), (&c, "4")] {
        let v = args(dir.path(), seed);
        ok(&v.iter().map(String::as_str).collect::<Vec<_>>());
    }
    let losses = |dir: &Path| -> Vec<(usize, f64, f64)> {
        read_rows(&dir.join("conv.csv"))
            .into_iter()
            .map(|r| (r.epoch, r.train_loss, r.test_loss))
            .collect()
    };
    assert_eq!(losses(a.path()), losses(b.path()));
    assert_ne!(losses(a.path()), losses(c.path()));
    // The tensors, bit for bit (the header names each run's own --out).
    let weights = |dir: &Path| {
        let bytes = std::fs::read(dir.join("conv.safetensors")).unwrap();
        let header = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        bytes[8 + header..].to_vec()
    };
    assert_eq!(weights(a.path()), weights(b.path()));
    assert_ne!(weights(a.path()), weights(c.path()));
}

#[test]
fn init_from_round_trip_restores_the_weights() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    ok(&["--model", "conv", "--epochs", "1", "--out", s(a.path())]);
    let checkpoint = a.path().join("conv.safetensors");
    // A step of 1e-30 cannot move an f32 weight, so the loaded weights are evaluated as
    // they were saved: the test loss must come back bit for bit.
    let run = ok(&[
        "--model",
        "conv",
        "--epochs",
        "1",
        "--lr",
        "1e-30",
        "--init-from",
        s(&checkpoint),
        "--out",
        s(b.path()),
    ]);
    assert!(run.stdout.contains("weights from"), "{}", run.stdout);
    let saved = read_rows(&a.path().join("conv.csv"));
    let loaded = read_rows(&b.path().join("conv.csv"));
    assert_eq!(saved[0].test_loss, loaded[0].test_loss);
    assert_ne!(saved[0].train_loss, loaded[0].train_loss);
}

#[test]
fn linear_model_trains_end_to_end_on_small_frames() {
    let out = tempfile::tempdir().unwrap();
    ok(&[
        "--model",
        "linear",
        "--size",
        "9",
        "--hidden",
        "16",
        "--epochs",
        "3",
        "--out",
        s(out.path()),
    ]);
    let rows = read_rows(&out.path().join("linear.csv"));
    assert_eq!(rows.len(), 3);
    assert!(rows[2].train_loss < rows[0].train_loss, "{rows:?}");
    // And its checkpoint loads back into the same shape, but not into the conv model.
    let checkpoint = out.path().join("linear.safetensors");
    ok(&[
        "--model",
        "linear",
        "--size",
        "9",
        "--hidden",
        "16",
        "--epochs",
        "1",
        "--init-from",
        s(&checkpoint),
        "--out",
        s(out.path()),
        "--force",
    ]);
    // The file records its model: other typed sizes are refused, naming both.
    let err = fails(&[
        "--model",
        "linear",
        "--size",
        "9",
        "--hidden",
        "8",
        "--epochs",
        "1",
        "--init-from",
        s(&checkpoint),
        "--out",
        s(out.path()),
        "--force",
    ]);
    assert!(
        err.contains(r#""hidden":16"#) && err.contains(r#""hidden":8"#) && err.contains("--hidden"),
        "{err}"
    );
    let err = fails(&[
        "--model",
        "conv",
        "--epochs",
        "1",
        "--init-from",
        s(&checkpoint),
        "--out",
        s(out.path()),
    ]);
    assert!(
        err.contains("holds a linear model, not a conv model"),
        "{err}"
    );
}

/// Shi et al.'s ConvLSTM through the binary: two layers with their own kernels,
/// peepholes, a sigmoid head, 5x5 patches and batches of two. The weights carry PyTorch's
/// names and the configuration; `predict` and `--init-from` rebuild the model from them
/// without the flags, and `--resume` continues with the run's own.
#[test]
fn general_convlstm_trains_predicts_and_restarts_from_its_files() {
    let out = tempfile::tempdir().unwrap();
    let flags = [
        "--model",
        "conv",
        "--seq-len",
        "6",
        "--hidden-channels",
        "4,3",
        "--kernel",
        "5,3",
        "--peephole",
        "--head",
        "conv1x1-sigmoid",
        "--patch",
        "5",
        "--batch-size",
        "2",
        "--epochs",
        "2",
        "--out",
        s(out.path()),
    ];
    let run = ok(&flags);
    assert!(run.stdout.contains("batches of 2"), "{}", run.stdout);
    let rows = read_rows(&out.path().join("conv.csv"));
    assert_eq!(rows.len(), 2);
    let weights = out.path().join("conv.safetensors");
    // The loss training reported is the one `eval` computes from the saved weights, which
    // it rebuilds from the file alone (patches, head, peepholes and all).
    let json = out.path().join("eval.json");
    ok(&[
        "eval",
        "--checkpoint",
        s(&weights),
        "--seq-len",
        "6",
        "--json",
        s(&json),
    ]);
    let eval: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(
        eval["test"]["loss_per_window"].as_f64(),
        Some(rows[1].test_loss),
        "{eval:#}"
    );
    assert!(
        rows[1].test_loss > 0.0 && rows[1].train_loss.is_finite(),
        "{rows:?}"
    );

    // Tensor names and shapes: 65x65 frames in 5x5 patches are 25 channels of 13x13.
    let file = harness::checkpoint::Checkpoint::read(&weights).unwrap();
    let shape = |name: &str| file.tensors[name].shape.clone();
    assert_eq!(shape("convlstm.weight_ih_l0"), [16, 25, 5, 5]);
    assert_eq!(shape("convlstm.weight_hh_l1"), [12, 3, 3, 3]);
    assert_eq!(shape("convlstm.weight_co_l1"), [3, 13, 13]);
    assert_eq!(shape("head.weight"), [25, 3, 1, 1]);
    assert_eq!(file.names().len(), 2 * 7 + 2);
    let about: serde_json::Value = serde_json::from_str(&file.metadata["bench_cli"]).unwrap();
    assert_eq!(
        about["model_config"],
        serde_json::json!({"channels": 1, "kernel": [5, 3], "hidden_channels": [4, 3],
            "peephole": true, "head": "conv1x1-sigmoid", "patch": 5})
    );

    // predict needs no model flags.
    let png = out.path().join("p.png");
    ok(&[
        "predict",
        "--model",
        "conv",
        "--checkpoint",
        s(&weights),
        "--seq-len",
        "6",
        "-o",
        s(&png),
    ]);
    assert!(png.exists());

    // --init-from rebuilds the file's model from its record, flags or none.
    let again = tempfile::tempdir().unwrap();
    let run = ok(&[
        "--model",
        "conv",
        "--epochs",
        "1",
        "--seq-len",
        "6",
        "--init-from",
        s(&weights),
        "--out",
        s(again.path()),
    ]);
    assert!(
        run.stdout.contains(r#""hidden_channels":[4,3]"#),
        "{}",
        run.stdout
    );
    let err = fails(&[
        "--model",
        "conv",
        "--epochs",
        "1",
        "--hidden-channels",
        "8",
        "--head",
        "conv1x1",
        "--init-from",
        s(&weights),
        "--out",
        s(again.path()),
        "--force",
    ]);
    assert!(err.contains("[4,3]") && err.contains("[8]"), "{err}");

    // --resume takes the run's settings; a typed one that changes the model is refused.
    ok(&[
        "--model",
        "conv",
        "--out",
        s(out.path()),
        "--resume",
        "--epochs",
        "3",
    ]);
    assert_eq!(read_rows(&out.path().join("conv.csv")).len(), 3);
    let err = fails(&[
        "--model",
        "conv",
        "--out",
        s(out.path()),
        "--resume",
        "--epochs",
        "4",
        "--batch-size",
        "3",
    ]);
    assert!(err.contains("batch_size (2 there, 3 here)"), "{err}");
}

/// Flags that do not fit the model, or shapes the model cannot take, are refused by name.
#[test]
fn general_model_flags_are_checked() {
    let out = tempfile::tempdir().unwrap();
    let o = s(out.path());
    for (args, want) in [
        (
            vec!["--model", "linear", "--peephole"],
            "--peephole applies to --model conv only",
        ),
        (
            vec!["--model", "linear", "--patch", "5"],
            "--patch applies to --model conv only",
        ),
        (
            vec!["--model", "conv", "--hidden", "8"],
            "--hidden applies to --model linear only",
        ),
        (
            vec!["--model", "conv", "--kernel", "4"],
            "--kernel 4: 4 is even",
        ),
        (
            vec!["--model", "conv", "--hidden-channels", "4,0"],
            "--hidden-channels 4,0",
        ),
        (
            vec![
                "--model",
                "conv",
                "--hidden-channels",
                "4,4",
                "--kernel",
                "5,3,3",
            ],
            "one per layer (2 layers)",
        ),
        (
            vec!["--model", "conv", "--hidden-channels", "8"],
            "--head none",
        ),
        (
            vec!["--model", "conv", "--patch", "4", "--head", "conv1x1"],
            "--patch 4",
        ),
        (
            vec!["--model", "conv", "--batch-size", "0"],
            "--batch-size 0",
        ),
        (vec!["--model", "linear", "--hidden", "8,0"], "--hidden 8,0"),
    ] {
        let mut args = args;
        args.extend(["--out", o]);
        let err = fails(&args);
        assert!(err.contains(want), "{args:?}: {err}");
    }
    assert!(
        std::fs::read_dir(out.path()).unwrap().next().is_none(),
        "nothing written"
    );
}

#[test]
fn frames_subcommand_reports_the_seed_split() {
    let out = ok(&["frames"]);
    assert!(out.stdout.contains("152 frames, 65x65"), "{}", out.stdout);
    assert!(
        out.stdout
            .contains("train 126 frames (5000.png .. 5125.png)"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("test 26 frames (5126.png .. 5151.png)"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("train 5, test 1"), "{}", out.stdout);
    // The copy-last baseline agrees with numpy's (bench/copy_last_reference.py).
    let mse: f64 = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("copy-last-frame MSE per pixel on the test windows: "))
        .unwrap()
        .parse()
        .unwrap();
    let numpy = common::copy_last_reference("test_mse");
    assert!((mse / numpy - 1.0).abs() < 1e-6, "{mse} vs {numpy}");
}

#[test]
fn bad_input_is_a_clear_error_with_nonzero_exit() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    let err = fails(&["frames", "--data", s(&missing)]);
    assert!(
        err.contains("missing") && err.contains("cannot read"),
        "{err}"
    );
    let err = fails(&["--model", "conv", "--data", s(&missing)]);
    assert!(err.contains("missing"), "{err}");
    let err = fails(&["frames", "--seq-len", "100"]);
    assert!(err.contains("needs 100"), "{err}");
    let err = fails(&["frames", "--size", "0x3"]);
    assert!(err.contains("invalid size"), "{err}");
    let err = fails(&["--model", "conv", "--hidden", "10"]);
    assert!(err.contains("--hidden"), "{err}");
    let err = fails(&["--model", "linear", "--kernel", "3"]);
    assert!(err.contains("--kernel"), "{err}");
    let err = fails(&["--model", "conv", "--kernel", "4"]);
    assert!(err.contains("--kernel 4"), "{err}");
    let err = fails(&["--model", "conv", "--lr=-1"]);
    assert!(err.contains("--lr"), "{err}");
    let err = fails(&["--model", "resnet"]);
    assert!(err.contains("invalid value 'resnet'"), "{err}");
    let err = fails(&["--model", "conv", "--init-from", s(&missing)]);
    assert!(
        err.contains("--init-from") && err.contains("missing"),
        "{err}"
    );
    let err = fails(&[]);
    assert!(err.contains("--model"), "{err}");
    if !cfg!(feature = "cuda") {
        let err = fails(&["--model", "conv", "--device", "cuda"]);
        assert!(err.contains("without CUDA"), "{err}");
    }
}

#[test]
fn unwritable_out_names_the_folder() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let out = file.join("results");
    let err = fails(&["--model", "conv", "--epochs", "1", "--out", s(&out)]);
    assert!(err.contains("a-file/results"), "{err}");
}

#[test]
fn bench_subcommand_prints_a_row_per_model() {
    let out = ok(&["bench", "--models", "conv", "--conv-epochs", "3"]);
    let row = out
        .stdout
        .lines()
        .find(|l| l.starts_with("conv"))
        .unwrap_or_else(|| panic!("{}", out.stdout));
    let fields: Vec<&str> = row.split_whitespace().collect();
    // model, epochs timed, median, min, "-", max, frames/s, peak MB
    assert_eq!(fields.len(), 8, "{row}");
    assert_eq!(fields[1], "2", "{row}");
    let number = |k: usize| -> f64 { fields[k].parse().unwrap() };
    let (median, min, max, frames_per_second) = (number(2), number(3), number(5), number(6));
    assert!(0.0 < min && min <= median && median <= max, "{row}");
    // An epoch of the seed's conv run predicts 5 windows of 25 frames; the rate is the
    // median's (both printed rounded, hence the tolerance).
    assert!(
        (frames_per_second * median / 125.0 - 1.0).abs() < 0.05,
        "{row}"
    );
    let peak_mb = number(7);
    assert!(peak_mb > 1.0 && peak_mb < 1000.0, "{row}");
    let err = fails(&["bench", "--models", "conv", "--conv-epochs", "1"]);
    assert!(err.contains("--conv-epochs 1"), "{err}");
}

#[test]
fn threads_flag_is_checked() {
    let err = fails(&["--model", "conv", "--threads", "0"]);
    assert!(err.contains("--threads 0"), "{err}");
    let out = tempfile::tempdir().unwrap();
    let run = ok(&[
        "--model",
        "conv",
        "--epochs",
        "1",
        "--threads",
        "2",
        "--out",
        s(out.path()),
    ]);
    assert!(run.stdout.contains("2 thread(s)"), "{}", run.stdout);
}

#[test]
fn predict_draws_png_grids_and_gif_animations_of_the_expected_size() {
    let dir = tempfile::tempdir().unwrap();
    ok(&["--model", "conv", "--epochs", "1", "--out", s(dir.path())]);
    let checkpoint = dir.path().join("conv.safetensors");
    let png = dir.path().join("p.png");
    ok(&[
        "predict",
        "--model",
        "conv",
        "--checkpoint",
        s(&checkpoint),
        "-o",
        s(&png),
    ]);
    // 10 columns and 4 rows of 65x65 frames at scale 3, one-pixel separators.
    let grid = image::open(&png).unwrap();
    // A 120-pixel column of row labels, then the cells.
    assert_eq!(
        (grid.width(), grid.height()),
        (120 + 10 * 196 + 1, 4 * 196 + 1)
    );
    let levels: std::collections::HashSet<u8> = grid.to_luma8().pixels().map(|p| p.0[0]).collect();
    assert!(
        levels.len() > 100,
        "a real picture has many grey levels: {}",
        levels.len()
    );
    // Each row's label is written in the margin: dark pixels on white, in every row's band
    // and nowhere below the last.
    let luma = grid.to_luma8();
    let dark_in = |y0: u32, y1: u32| {
        (y0..y1)
            .flat_map(|y| (0..110).map(move |x| (x, y)))
            .filter(|&(x, y)| luma.get_pixel(x, y).0[0] < 100)
            .count()
    };
    for row in 0..4 {
        assert!(
            dark_in(row * 196 + 60, row * 196 + 136) > 20,
            "row {row} has no label"
        );
    }

    let rollout = dir.path().join("r.png");
    ok(&[
        "predict",
        "--model",
        "conv",
        "--checkpoint",
        s(&checkpoint),
        "--horizon",
        "5",
        "--scale",
        "2",
        "-o",
        s(&rollout),
    ]);
    let grid = image::open(&rollout).unwrap();
    assert_eq!(
        (grid.width(), grid.height()),
        (120 + 5 * 131 + 1, 3 * 131 + 1)
    );

    let gif = dir.path().join("a.gif");
    ok(&[
        "predict",
        "--model",
        "conv",
        "--checkpoint",
        s(&checkpoint),
        "--frames",
        "6",
        "-o",
        s(&gif),
    ]);
    use image::AnimationDecoder;
    let decoder = image::codecs::gif::GifDecoder::new(std::io::BufReader::new(
        std::fs::File::open(&gif).unwrap(),
    ))
    .unwrap();
    let frames = decoder.into_frames().collect_frames().unwrap();
    assert_eq!(frames.len(), 6);
    let first = frames[0].buffer();
    assert_eq!((first.width(), first.height()), (2 * 195 + 3, 195 + 2));

    // The short run's CSV plots too.
    let plot = dir.path().join("short.png");
    ok(&["plot", s(&dir.path().join("conv.csv")), "-o", s(&plot)]);
    assert_eq!(image::open(&plot).unwrap().width(), 1200);

    let err = fails(&[
        "predict",
        "--model",
        "linear",
        "--checkpoint",
        s(&checkpoint),
        "-o",
        s(&png),
    ]);
    assert!(err.contains("conv model, not the linear model"), "{err}");
    let err = fails(&[
        "predict",
        "--model",
        "conv",
        "--checkpoint",
        s(&checkpoint),
        "-o",
        "x.jpg",
    ]);
    assert!(err.contains(".png or .gif"), "{err}");
    let err = fails(&[
        "predict",
        "--model",
        "conv",
        "--checkpoint",
        s(&checkpoint),
        "--horizon",
        "26",
        "-o",
        s(&png),
    ]);
    assert!(err.contains("--horizon 26"), "{err}");
}

#[test]
fn plot_draws_the_reference_runs() {
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("compare.png");
    let reference = repo_root().join("results/reference");
    let (linear, conv) = (reference.join("linear.csv"), reference.join("conv.csv"));
    ok(&["plot", s(&linear), s(&conv), "-o", s(&png)]);
    let img = image::open(&png).unwrap();
    assert_eq!((img.width(), img.height()), (1200, 450));
    let colours: std::collections::HashSet<[u8; 3]> = img.to_rgb8().pixels().map(|p| p.0).collect();
    assert!(colours.len() > 20, "{} colours", colours.len());
    ok(&[
        "plot",
        s(&linear),
        s(&conv),
        "--metric",
        "test_ssim",
        "-o",
        s(&png),
    ]);
    assert_eq!(image::open(&png).unwrap().width(), 1800);
    let svg = dir.path().join("compare.svg");
    ok(&["plot", s(&linear), s(&conv), "-o", s(&svg)]);
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.contains("linear") && text.contains("conv"));
    let err = fails(&["plot", s(&conv), "--metric", "nope", "-o", s(&png)]);
    assert!(err.contains("nope") && err.contains("conv.csv"), "{err}");
}

#[test]
fn an_earlier_run_is_not_overwritten_without_force() {
    let out = tempfile::tempdir().unwrap();
    ok(&["--model", "conv", "--epochs", "1", "--out", s(out.path())]);
    let before = std::fs::read(out.path().join("conv.csv")).unwrap();
    let err = fails(&["--model", "conv", "--epochs", "2", "--out", s(out.path())]);
    assert!(
        err.contains("--force") && err.contains(s(out.path())),
        "{err}"
    );
    assert_eq!(std::fs::read(out.path().join("conv.csv")).unwrap(), before);
    ok(&[
        "--model",
        "conv",
        "--epochs",
        "2",
        "--out",
        s(out.path()),
        "--force",
    ]);
    assert_eq!(read_rows(&out.path().join("conv.csv")).len(), 2);
}

#[test]
fn a_diverging_run_stops_naming_epoch_and_window() {
    let out = tempfile::tempdir().unwrap();
    let err = fails(&[
        "--model",
        "linear",
        "--size",
        "9",
        "--hidden",
        "8",
        "--lr",
        "1e30",
        "--epochs",
        "3",
        "--out",
        s(out.path()),
    ]);
    assert!(
        err.contains("epoch 1, window 2") && err.contains("loss is inf"),
        "{err}"
    );
    // Nothing of the failed epoch is saved as if it were good.
    assert!(!out.path().join("linear.safetensors").exists());
}

/// Forecasting through the binary: 3 frames read, 2 predicted; the CSV's cross-entropy
/// column, the summary's figures per frame ahead; eval on the same frames gives the run's
/// own last figures, and beside them copying the last frame; plot --horizon draws both.
#[test]
fn forecasts_train_evaluate_and_plot_per_frame_ahead() {
    let out = tempfile::tempdir().unwrap();
    let o = s(out.path());
    let flags = [
        "--model",
        "conv",
        "--context",
        "3",
        "--horizon",
        "2",
        "--stride",
        "5",
        "--hidden-channels",
        "4",
        "--head",
        "conv1x1-sigmoid",
        "--batch-size",
        "4",
        "--epochs",
        "2",
        "--out",
        o,
    ];
    ok(&flags);
    let rows = read_rows(&out.path().join("conv.csv"));
    assert_eq!(rows.len(), 2);
    let csv = std::fs::read_to_string(out.path().join("conv.csv")).unwrap();
    let bce: f64 = csv
        .lines()
        .last()
        .unwrap()
        .split(',')
        .nth(9)
        .unwrap()
        .parse()
        .unwrap();
    // Summed over 2 frames of 65x65 pixels: thousands, not a per-pixel mean.
    assert!(bce > 100.0 && bce.is_finite(), "{bce}");
    let summary: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.path().join("conv.summary.json")).unwrap(),
    )
    .unwrap();
    let forecast = &summary["forecast"];
    assert_eq!(
        (forecast["context"].as_u64(), forecast["horizon"].as_u64()),
        (Some(3), Some(2))
    );
    let ahead = &summary["test"]["per_frame_ahead"];
    let mse = ahead["mse_per_pixel"].as_array().unwrap();
    assert_eq!(mse.len(), 2);
    // The CSV's cross-entropy is per window: the summary's per-window figure, and the
    // per-frame figures ahead sum to it over the window's 2 predicted frames.
    assert_eq!(summary["test"]["bce_per_window"].as_f64(), Some(bce));
    let per_frame: f64 = ahead["bce_per_frame"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .sum();
    assert!(
        (per_frame / bce - 1.0).abs() < 1e-12,
        "{per_frame} vs {bce}"
    );
    // Copying frame 2 is a worse guess of frame 4 than of frame 3.
    let copy_ahead = &summary["copy_last_frame"]["per_frame_ahead"];
    let copy = copy_ahead["mse_per_pixel"].as_array().unwrap();
    assert!(copy[1].as_f64() > copy[0].as_f64(), "{copy:?}");

    let json = out.path().join("eval.json");
    let run = ok(&[
        "eval",
        "--checkpoint",
        s(&out.path().join("conv.safetensors")),
        "--context",
        "3",
        "--horizon",
        "2",
        "--stride",
        "5",
        "--json",
        s(&json),
    ]);
    assert!(run.stdout.contains("copy last frame"), "{}", run.stdout);
    let eval: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(eval["test"], summary["test"], "eval and training disagree");
    assert_eq!(eval["copy_last_frame"], summary["copy_last_frame"]);

    let png = out.path().join("horizon.png");
    ok(&[
        "plot",
        "--horizon",
        s(&out.path().join("conv.summary.json")),
        s(&json),
        "--metric",
        "ssim",
        "-o",
        s(&png),
    ]);
    assert_eq!(image::open(&png).unwrap().width(), 800);
    let err = fails(&[
        "plot",
        "--horizon",
        s(&out.path().join("conv.csv")),
        "-o",
        s(&png),
    ]);
    assert!(err.contains("conv.csv"), "{err}");

    // Frames the model cannot take are refused, naming the file and both shapes.
    let err = fails(&[
        "eval",
        "--checkpoint",
        s(&out.path().join("conv.safetensors")),
        "--color",
        "rgb",
        "--seq-len",
        "5",
    ]);
    // (The run kept a validation split's best weights, which eval reads and names.)
    assert!(
        err.contains("conv.best.safetensors")
            && err.contains("1-channel")
            && err.contains("3-channel"),
        "{err}"
    );
}

/// eval on the frames a one-step run tested on gives that run's last test figures.
#[test]
fn eval_of_a_one_step_run_matches_its_last_row() {
    let out = tempfile::tempdir().unwrap();
    ok(&["--model", "conv", "--epochs", "2", "--out", s(out.path())]);
    let json = out.path().join("e.json");
    ok(&[
        "eval",
        "--checkpoint",
        s(&out.path().join("conv.safetensors")),
        "--json",
        s(&json),
    ]);
    let eval: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let csv = std::fs::read_to_string(out.path().join("conv.csv")).unwrap();
    let last: Vec<f64> = csv
        .lines()
        .last()
        .unwrap()
        .split(',')
        .map(|f| f.parse().unwrap())
        .collect();
    let test = &eval["test"];
    assert_eq!(test["loss_per_window"].as_f64(), Some(last[2]));
    assert_eq!(test["mse_per_pixel"].as_f64(), Some(last[5]));
    assert_eq!(test["mae_per_pixel"].as_f64(), Some(last[6]));
    assert_eq!(test["psnr_db_per_frame"].as_f64(), Some(last[7]));
    assert_eq!(test["ssim_per_frame"].as_f64(), Some(last[8]));
    assert_eq!(test["bce_per_window"].as_f64(), Some(last[9]));
    // eval's copy-last on the seed's split is numpy's, every key.
    common::assert_figures_match_numpy(&eval["copy_last_frame"], "one_step");
}

/// `frames --export DIR` writes the split as `DIR/train/` and `DIR/test/`, the layout of
/// KITTI, UCF101 and OpenSTL's datasets, and a folder laid out so is split by it: training
/// on an export holds out exactly the exported test sequences (Moving MNIST's, whole), or,
/// for one video split by frames, exactly its test frames (the same test windows, the same
/// copy-last figure to the digit).
#[test]
fn exports_are_split_layouts_that_load_back_with_the_same_split() {
    let dir = tempfile::tempdir().unwrap();
    let mnist = dir.path().join("mnist");
    let run = ok(&[
        "frames",
        "--data",
        "moving-mnist",
        "--sequences",
        "5",
        "--test-sequences",
        "2",
        "--export",
        s(&mnist),
    ]);
    assert!(
        run.stdout.contains("7 video(s), 140 frames, 64x64"),
        "{}",
        run.stdout
    );
    let listed = |side: &str| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(mnist.join(side))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    assert_eq!(
        listed("train"),
        [
            "train-00000",
            "train-00001",
            "train-00002",
            "train-00003",
            "train-00004"
        ]
    );
    assert_eq!(listed("test"), ["test-00000", "test-00001"]);
    let frame = image::open(mnist.join("train/train-00003/019.png"))
        .unwrap()
        .to_luma8();
    assert_eq!(frame.dimensions(), (64, 64));
    let run = ok(&["frames", "--data", s(&mnist), "--seq-len", "20"]);
    assert!(
        run.stdout.contains(
            "split: train 5 videos (train/train-00000 .. train/train-00004), test 2 videos \
             (test/test-00000 .. test/test-00001)"
        ),
        "{}",
        run.stdout
    );
    let refused = fails(&["frames", "--data", s(&mnist), "--test-videos", "3"]);
    assert!(
        refused.contains("--test-videos: this folder's split is its train/ and test/ folders"),
        "{refused}"
    );

    // One video split by frames: its training and test frames, as two videos.
    let seed = dir.path().join("seed");
    let source = ok(&["frames", "--export", s(&seed)]);
    assert_eq!(
        std::fs::read_dir(seed.join("train/data")).unwrap().count(),
        126
    );
    assert_eq!(
        std::fs::read_dir(seed.join("test/data")).unwrap().count(),
        26
    );
    let exported = ok(&["frames", "--data", s(&seed)]);
    let copy_last = |out: &str| -> String {
        let line = out
            .lines()
            .find(|l| l.starts_with("copy-last-frame MSE"))
            .unwrap();
        line.to_string()
    };
    assert_eq!(copy_last(&exported.stdout), copy_last(&source.stdout));
    assert!(
        exported
            .stdout
            .contains("train 1 videos (train/data), test 1 videos (test/data)"),
        "{}",
        exported.stdout
    );
}

/// A second run of one model into one --out while the first runs is refused, naming the
/// first's process; another model's run is not.
#[test]
fn a_second_run_into_the_same_folder_is_refused_naming_the_first() {
    let out = tempfile::tempdir().unwrap();
    let (mut cmd, _workdir) = common::command();
    let first = cmd
        .args([
            "--model",
            "conv",
            "--epochs",
            "100000",
            "--quiet",
            "--out",
            s(out.path()),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // A run of hours: killed, with its process group, however this test ends.
    let mut first = common::ChildGuard::from(first);
    // Wait (an event, not a duration) for the first run to hold its lock and say so.
    let lock = out.path().join(".conv.lock");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::fs::read_to_string(&lock).map_or(true, |t| t.trim().is_empty()) {
        assert!(
            std::time::Instant::now() < deadline,
            "the first run took no lock"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let err = fails(&[
        "--model",
        "conv",
        "--epochs",
        "1",
        "--force",
        "--out",
        s(out.path()),
    ]);
    first.kill();
    assert!(
        err.contains(&format!("process {}", first.id())) && err.contains("another conv run"),
        "{err}"
    );
    ok(&[
        "--model",
        "linear",
        "--size",
        "9",
        "--hidden",
        "8",
        "--epochs",
        "1",
        "--out",
        s(out.path()),
    ]);
}

/// `eval` and `predict` read the data settings of the run that wrote the weights (here its
/// frame size, which the linear model's weights fix), so they need none of its flags; a
/// flag typed again takes its typed value.
#[test]
fn eval_and_predict_take_the_runs_data_settings() {
    let out = tempfile::tempdir().unwrap();
    let dir = s(out.path());
    let args = ["--model", "linear", "--size", "12x10", "--hidden", "8"];
    ok(&[&args[..], &["--epochs", "1", "--quiet", "--out", dir]].concat());
    let weights = out.path().join("linear.safetensors");
    let eval = ok(&["eval", "--checkpoint", s(&weights)]);
    assert!(
        eval.stdout.contains("(12x10, 1 channel(s))"),
        "{}",
        eval.stdout
    );
    let png = out.path().join("p.png");
    ok(&["predict", "--checkpoint", s(&weights), "-o", s(&png)]);
    assert!(png.exists());
    let refused = fails(&["eval", "--checkpoint", s(&weights), "--size", "16"]);
    assert!(refused.contains("16x16"), "{refused}");
}

/// Moving MNIST written as a `.npy` file (`frames --export FILE.npy`, the layout of the
/// field's `mnist_test_seq.npy`) is the same data read back: the same copy-last figure, and
/// a model trains on it and evaluates from its record alone.
#[test]
fn a_npy_file_of_sequences_trains_and_evaluates() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mm.npy");
    let mnist = [
        "--data",
        "moving-mnist",
        "--sequences",
        "12",
        "--test-sequences",
        "4",
    ];
    let export = ok(&[&["frames"][..], &mnist, &["--export", s(&file)]].concat());
    assert!(
        export
            .stdout
            .contains("wrote 16 sequences as one uint8 array"),
        "{}",
        export.stdout
    );
    let copy_last = |out: &str| -> String {
        out.lines()
            .find(|l| l.starts_with("copy-last"))
            .unwrap_or_default()
            .to_string()
    };
    let generated = ok(&[&["frames"][..], &mnist].concat());
    let read = ok(&["frames", "--data", s(&file), "--test-videos", "4"]);
    assert!(
        read.stdout.contains("16 video(s), 320 frames, 64x64"),
        "{}",
        read.stdout
    );
    assert_eq!(copy_last(&read.stdout), copy_last(&generated.stdout));
    let out = dir.path().join("run");
    ok(&[
        "--model",
        "conv",
        "--data",
        s(&file),
        "--test-videos",
        "4",
        "--epochs",
        "1",
        "--quiet",
        "--out",
        s(&out),
    ]);
    let eval = ok(&["eval", "--checkpoint", s(&out.join("conv.safetensors"))]);
    assert!(
        eval.stdout.contains("4 test window(s) of 20 frames"),
        "{}",
        eval.stdout
    );
}

/// A float32 `.npy` file that `eval --save-predictions` wrote: its shape and values, read
/// here with a parser of its own (the header's length, its `shape`, then the data).
fn read_f32_npy(path: &std::path::Path) -> (Vec<usize>, Vec<f64>) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00", "{}", path.display());
    let len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = std::str::from_utf8(&bytes[10..10 + len]).unwrap();
    assert!(header.contains("'descr': '<f4'"), "{header}");
    let shape = header
        .split("'shape': (")
        .nth(1)
        .unwrap()
        .split(')')
        .next()
        .unwrap();
    let shape: Vec<usize> = shape
        .split(',')
        .filter_map(|d| d.trim().parse().ok())
        .collect();
    let values = bytes[10 + len..]
        .chunks_exact(4)
        .map(|b| f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]])))
        .collect();
    (shape, values)
}

/// `eval --save-predictions` writes the frames it scored as OpenSTL does (preds, trues,
/// inputs, float32 `[N, T, C, H, W]`); the figures recomputed from those files alone, here
/// and with numpy where it is installed (`bench/recompute_figures.py`), are eval's.
#[test]
fn saved_predictions_give_evals_figures_when_recomputed() {
    let out = tempfile::tempdir().unwrap();
    let dir = s(out.path());
    let model = [
        "--model",
        "conv",
        "--hidden-channels",
        "3",
        "--head",
        "conv1x1-sigmoid",
    ];
    ok(&[
        &model[..],
        &["--size", "16", "--epochs", "1", "--quiet", "--out", dir],
    ]
    .concat());
    let (json, saved) = (out.path().join("eval.json"), out.path().join("saved"));
    let weights = out.path().join("conv.safetensors");
    let forecast = ["--context", "4", "--horizon", "3"];
    let eval = ok(&[
        &["eval", "--checkpoint", s(&weights), "--json", s(&json)][..],
        &forecast,
        &["--save-predictions", s(&saved)],
    ]
    .concat());
    assert!(eval.stdout.contains("preds.npy"), "{}", eval.stdout);
    let figures: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let test = &figures["test"];
    let (shape, preds) = read_f32_npy(&saved.join("preds.npy"));
    let (true_shape, trues) = read_f32_npy(&saved.join("trues.npy"));
    let (input_shape, _) = read_f32_npy(&saved.join("inputs.npy"));
    let windows = test["windows"].as_u64().unwrap() as usize;
    assert_eq!(shape, [windows, 3, 1, 16, 16]);
    assert_eq!(true_shape, shape);
    assert_eq!(input_shape, [windows, 4, 1, 16, 16]);
    let pairs = || preds.iter().zip(&trues);
    let mse = pairs()
        .map(|(p, t)| (p.clamp(0.0, 1.0) - t).powi(2))
        .sum::<f64>()
        / preds.len() as f64;
    let bce = pairs()
        .map(|(p, t)| {
            let p = p.clamp(1e-7, 1.0 - 1e-7);
            -(t * p.ln() + (1.0 - t) * (1.0 - p).ln())
        })
        .sum::<f64>()
        / windows as f64;
    let close = |ours: f64, key: &str| {
        let theirs = test[key].as_f64().unwrap();
        assert!(
            (ours - theirs).abs() <= 1e-6 * theirs.abs(),
            "{key}: {ours} vs eval's {theirs}"
        );
    };
    close(mse, "mse_per_pixel");
    close(bce, "bce_per_window");
    let numpy = std::process::Command::new("python3")
        .arg(common::repo_root().join("bench/recompute_figures.py"))
        .arg(&saved)
        .output();
    match numpy {
        Ok(run) if run.status.success() => {
            let theirs: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
            for key in ["mse_per_pixel", "mae_per_pixel", "bce_per_window"] {
                close(theirs[key].as_f64().unwrap(), key);
            }
            println!("numpy agrees: {theirs}");
        }
        other => println!("numpy's recomputation skipped (no python3 with numpy): {other:?}"),
    }
}

/// A build without the `mpi` feature, started by `mpirun` as one of several ranks, would
/// run that many independent trainings into the same files: it refuses, saying how to
/// build the one that can.
#[cfg(not(feature = "mpi"))]
#[test]
fn an_mpirun_launch_of_a_build_without_mpi_is_refused() {
    let out = tempfile::tempdir().unwrap();
    let (mut cmd, _dir) = common::command();
    let child = cmd
        .args(["--model", "conv", "--epochs", "1", "--out", s(out.path())])
        .env("OMPI_COMM_WORLD_SIZE", "2")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let run = common::wait(&["--model", "conv"], child);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success());
    assert!(
        stderr.contains("one of 2 ranks") && stderr.contains("--features mpi"),
        "{stderr}"
    );
    assert!(!out.path().join("conv.csv").exists());
}
