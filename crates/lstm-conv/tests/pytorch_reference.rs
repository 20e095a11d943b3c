//! Against PyTorch: losses and gradients its autograd computed in float64 for the same
//! weights and windows, from two independent implementations of the model:
//!
//! - the seed's ConvLSTM on the first training window of `data/` (`bench/torch_reference.py`,
//!   fused-gate convolutions of x and h):
//!   ```text
//!   python bench/torch_reference.py --model conv --dtype float64 --threads 1 \
//!     --save-init crates/lstm-conv/tests/fixtures/torch_init.safetensors \
//!     --dump-grads crates/lstm-conv/tests/fixtures/torch_grads.safetensors
//!   ```
//! - every option alone and combined (layers, kernels per layer, peepholes, each head,
//!   patches, batches, three channels, forecasting with fed-back predictions, layers of
//!   many channels that run as matrix products, the cross-entropy loss, scheduled
//!   sampling, Shi et al.'s encoder-forecaster), each case a file holding its windows,
//!   weights, loss, gradients and predictions (`bench/torch_general.py`, its own ConvLSTM
//!   written with `nn.functional.conv2d` and `pixel_unshuffle`; the cases and their seeds
//!   are in its docstring):
//!   ```text
//!   python bench/torch_general.py --all-fixtures crates/lstm-conv/tests/fixtures/general \
//!     crates/lstm-linear/tests/fixtures/general
//!   ```
//!
//! Both drivers are compared: the candle-ops one in f64, and the f32 slice driver.

use std::path::Path;

use frames::{Dataset, LoadOptions, WindowSpec};
use harness::gradcheck::{assert_agree, assert_matches_fixture, compare_with_files, fixture_plan};
use harness::Plan;
use lstm_conv::{Config, ConvLstm};
use lstm_core::Head;

#[test]
fn seed_loss_and_gradients_match_pytorch() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let data = Dataset::load(
        &root.join("../../data"),
        &LoadOptions::default(),
        WindowSpec::seed(),
        None,
    )
    .unwrap();
    let batch = data.train_windows().unwrap()[0].unsqueeze(1).unwrap(); // [26, 1, 1, 65, 65]
    let fixtures = root.join("tests/fixtures");
    let (loss, torch_loss, checks) = compare_with_files::<ConvLstm>(
        &Config::default(),
        &fixtures.join("torch_init.safetensors"),
        &fixtures.join("torch_grads.safetensors"),
        &batch,
        &Plan::one_step(26, 1),
    )
    .unwrap();
    println!("loss {loss} (PyTorch {torch_loss})");
    // PyTorch printed 1.8025104011616848 for this window.
    assert!((torch_loss - 1.8025104011616848).abs() < 1e-12);
    assert!(
        (loss - torch_loss).abs() < 1e-12 * torch_loss,
        "{loss} vs {torch_loss}"
    );
    assert_agree(&checks, 1e-10, 0.0);
}

/// A fixture's configuration and plan, from the JSON `bench/torch_general.py` writes.
fn case(path: &Path) -> (Config, Plan) {
    let file = harness::checkpoint::Checkpoint::read(path).unwrap();
    let about: serde_json::Value = serde_json::from_str(&file.metadata["config"]).unwrap();
    let sizes = |key: &str| -> Vec<usize> {
        about[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect()
    };
    let number = |key: &str| about[key].as_u64().map(|v| v as usize);
    let head = match about["head"].as_str().unwrap() {
        "none" => Head::None,
        "conv1x1" => Head::Affine,
        "conv1x1-sigmoid" => Head::AffineSigmoid,
        "residual" => Head::Residual,
        other => panic!("head {other}"),
    };
    let config = Config {
        channels: number("channels").unwrap(),
        kernel: sizes("kernel"),
        hidden_channels: sizes("hidden"),
        peephole: about["peephole"].as_bool().unwrap(),
        head,
        patch: number("patch").unwrap(),
        encoder_forecaster: about["encoder_forecaster"].as_bool().unwrap_or(false),
    };
    (config, fixture_plan(&about))
}

#[test]
fn every_option_matches_pytorch() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/general");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    assert_eq!(names.len(), 13, "{names:?}");
    for path in names {
        let (config, plan) = case(&path);
        assert_matches_fixture::<ConvLstm>(&config, &path, &plan);
    }
}
