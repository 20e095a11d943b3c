//! Against PyTorch: the first training window of `data/`, weights written by PyTorch's
//! `safetensors.torch.save_file` from `nn.LSTM(4225, 3)` + `nn.Linear(3, 4225)`, and the
//! loss and gradients PyTorch's autograd computed for them in float64.
//!
//! Regenerate the fixtures (torch 2.15, see the script's docstring for the install line):
//! ```text
//! python bench/torch_reference.py --model linear --hidden 3 --dtype float64 --threads 1 \
//!   --save-init crates/lstm-linear/tests/fixtures/torch_init.safetensors \
//!   --dump-grads crates/lstm-linear/tests/fixtures/torch_grads.safetensors
//! ```

use std::path::Path;

use frames::{Dataset, LoadOptions, WindowSpec};
use harness::gradcheck::{assert_paths_agree, compare_with_saved};
use lstm_linear::{Config, LinearLstm};

#[test]
fn loss_and_gradients_match_pytorch() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let data = Dataset::load(
        &root.join("../../data"),
        &LoadOptions::default(),
        WindowSpec::seed(),
        None,
    )
    .unwrap();
    let window = &data.train_windows().unwrap()[0];
    let config = Config {
        hidden: 3,
        ..Config::default()
    };
    let fixtures = root.join("tests/fixtures");
    let (loss, torch_loss, checks) = compare_with_saved::<LinearLstm>(
        &config,
        &fixtures.join("torch_init.safetensors"),
        &fixtures.join("torch_grads.safetensors"),
        window,
    )
    .unwrap();
    println!("loss {loss} (PyTorch {torch_loss})");
    // PyTorch printed 8.58379688071556 for this window.
    assert!((torch_loss - 8.58379688071556).abs() < 1e-12);
    assert!(
        (loss - torch_loss).abs() < 1e-12 * torch_loss,
        "{loss} vs {torch_loss}"
    );
    assert_paths_agree(&checks, 1e-10, 0.0);
}
