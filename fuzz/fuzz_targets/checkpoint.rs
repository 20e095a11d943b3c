//! Checkpoint loading on arbitrary bytes: the weights loader (`--init-from`, `predict`)
//! and the training-checkpoint reader (`--resume`) may refuse a file, with an error naming
//! it, but must not panic or run out of memory.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use candle_core::{DType, Device};
use harness::SequenceModel;
use libfuzzer_sys::fuzz_target;
use lstm_conv::ConvLstm;
use lstm_linear::LinearLstm;

fn file() -> &'static PathBuf {
    static FILE: OnceLock<PathBuf> = OnceLock::new();
    FILE.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("fuzz-checkpoint")
            .tempdir_in(std::env::temp_dir())
            .expect("temporary folder")
            .keep();
        dir.join("conv.resume.safetensors")
    })
}

fn names_the_file<T>(result: harness::Result<T>, path: &std::path::Path) {
    if let Err(err) = result {
        let text = err.to_string();
        assert!(
            text.contains(&path.display().to_string()),
            "the error does not name the file: {text}"
        );
    }
}

// The shapes a checkpoint is read against: the first byte picks the seed's conv model,
// a general two-layer ConvLSTM, or a small linear model (its fused-Adam layout).
fuzz_target!(|data: &[u8]| {
    let Some((&choice, bytes)) = data.split_first() else {
        return;
    };
    let path = file();
    std::fs::write(path, bytes).expect("write the fuzzed checkpoint");
    match choice % 3 {
        0 => check::<ConvLstm>(path, &lstm_conv::Config::default(), [1, 65, 65]),
        1 => {
            let config = lstm_conv::Config {
                hidden_channels: vec![4, 3],
                peephole: true,
                head: lstm_core::Head::Affine,
                ..lstm_conv::Config::default()
            };
            check::<ConvLstm>(path, &config, [1, 16, 16])
        }
        _ => {
            let config = lstm_linear::Config {
                channels: 1,
                height: 9,
                width: 9,
                hidden: vec![16, 8],
                sigmoid: false,
            };
            check::<LinearLstm>(path, &config, [1, 9, 9])
        }
    }
    names_the_file(harness::resume::peek(path), path);
    names_the_file(harness::resume::load(path), path);
});

fn check<M: SequenceModel>(path: &std::path::Path, config: &M::Config, frame: [usize; 3]) {
    let specs = M::parameter_specs(config, frame).expect("the model's shapes");
    names_the_file(
        harness::params::load_parameters(path, &specs, DType::F32, &Device::Cpu),
        path,
    );
    names_the_file(
        harness::predict::load_model::<M>(path, frame, &Device::Cpu).map(|_| ()),
        path,
    );
}
