//! Against PyTorch: losses and gradients its autograd computed in float64 for the same
//! weights and windows, from two independent implementations of the model:
//!
//! - the seed's shape (one layer, here of 3 units) on the first training window of `data/`,
//!   `nn.LSTM(4225, 3)` + `nn.Linear(3, 4225)` (`bench/torch_reference.py`):
//!   ```text
//!   python bench/torch_reference.py --model linear --hidden 3 --dtype float64 --threads 1 \
//!     --save-init crates/lstm-linear/tests/fixtures/torch_init.safetensors \
//!     --dump-grads crates/lstm-linear/tests/fixtures/torch_grads.safetensors
//!   ```
//! - layers, batches, three channels and forecasting with fed-back predictions, each case a
//!   file holding its windows, weights, loss and gradients (`bench/torch_general.py`, whose
//!   cell is checked against `nn.LSTM`):
//!   ```text
//!   python bench/torch_general.py --all-fixtures crates/lstm-conv/tests/fixtures/general \
//!     crates/lstm-linear/tests/fixtures/general
//!   ```
//!
//! Both drivers are compared: the candle-ops one in f64, and the f32 slice driver.

use std::path::Path;

use frames::{Dataset, LoadOptions, WindowSpec};
use harness::gradcheck::{assert_agree, assert_matches_fixture, compare_with_files};
use harness::Plan;
use lstm_linear::{Config, LinearLstm};

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
    let config = Config {
        hidden: vec![3],
        ..Config::default()
    };
    let fixtures = root.join("tests/fixtures");
    let (loss, torch_loss, checks) = compare_with_files::<LinearLstm>(
        &config,
        &fixtures.join("torch_init.safetensors"),
        &fixtures.join("torch_grads.safetensors"),
        &batch,
        &Plan::one_step(26, 1),
    )
    .unwrap();
    println!("loss {loss} (PyTorch {torch_loss})");
    // PyTorch printed 8.58379688071556 for this window.
    assert!((torch_loss - 8.58379688071556).abs() < 1e-12);
    assert!(
        (loss - torch_loss).abs() < 1e-12 * torch_loss,
        "{loss} vs {torch_loss}"
    );
    assert_agree(&checks, 1e-10, 0.0);
}

#[test]
fn every_option_matches_pytorch() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/general");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    paths.sort();
    assert_eq!(paths.len(), 5, "{paths:?}");
    for path in paths {
        let file = harness::checkpoint::Checkpoint::read(&path).unwrap();
        let about: serde_json::Value = serde_json::from_str(&file.metadata["config"]).unwrap();
        let number = |key: &str| about[key].as_u64().map(|v| v as usize);
        let config = Config {
            channels: number("channels").unwrap(),
            height: number("height").unwrap(),
            width: number("width").unwrap(),
            hidden: about["hidden"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as usize)
                .collect(),
            sigmoid: about["head"] == "linear-sigmoid",
        };
        let plan = harness::gradcheck::fixture_plan(&about);
        assert_matches_fixture::<LinearLstm>(&config, &path, &plan);
    }
}
