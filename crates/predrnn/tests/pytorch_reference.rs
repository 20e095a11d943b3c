//! Against PyTorch: PredRNN's loss, predictions and gradients, which
//! `bench/torch_predrnn.py` computed with PyTorch's autograd in float64 from its own
//! implementation of the paper's equations (`nn.functional.conv2d`, `pixel_unshuffle`),
//! for every option: one layer whose `H` is the prediction, stacked layers (the zigzag of
//! `M`), three channels and patches, each head, forecasts that read their own predictions,
//! the cross-entropy loss and scheduled sampling:
//!
//! ```text
//! python bench/torch_predrnn.py --all-fixtures crates/predrnn/tests/fixtures
//! ```
//!
//! The candle-ops driver and candle's autograd in f64 (to 1e-12 in the loss and the
//! predictions, 1e-10 in each gradient) and in f32.

use std::path::Path;

use harness::gradcheck::{assert_matches_fixture, fixture_plan};
use harness::Plan;
use lstm_core::Head;
use predrnn::{Config, PredRnn};

/// A fixture's configuration and plan, from the JSON the script writes.
fn case(path: &Path) -> (Config, Plan) {
    let file = harness::checkpoint::Checkpoint::read(path).unwrap();
    let about: serde_json::Value = serde_json::from_str(&file.metadata["config"]).unwrap();
    assert_eq!(about["model"], "predrnn");
    let sizes = |key: &str| -> Vec<usize> {
        let values = about[key].as_array().unwrap().iter();
        values.map(|v| v.as_u64().unwrap() as usize).collect()
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
        kernel: sizes("kernel")[0],
        hidden_channels: sizes("hidden"),
        head,
        patch: number("patch").unwrap(),
    };
    (config, fixture_plan(&about))
}

#[test]
fn every_option_matches_pytorch() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    assert_eq!(names.len(), 6, "{names:?}");
    for path in names {
        let (config, plan) = case(&path);
        assert_matches_fixture::<PredRnn>(&config, &path, &plan);
    }
}
