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

fuzz_target!(|data: &[u8]| {
    let path = file();
    std::fs::write(path, data).expect("write the fuzzed checkpoint");
    let specs = ConvLstm::parameter_specs(&lstm_conv::Config {
        channels: 1,
        kernel: 5,
    });
    names_the_file(
        harness::params::load_parameters(path, &specs, DType::F32, &Device::Cpu),
        path,
    );
    names_the_file(harness::resume::peek(path), path);
    names_the_file(harness::resume::load(path), path);
    names_the_file(
        harness::predict::load_model::<ConvLstm>(path, &Device::Cpu).map(|_| ()),
        path,
    );
});
