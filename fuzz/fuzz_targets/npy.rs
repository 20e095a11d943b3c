//! `.npy` reading on arbitrary bytes (`--data FILE.npy`): the header check and the loader
//! may refuse a file, with an error naming it, but must not panic or run out of memory
//! (the header is checked against the file's length before anything is allocated).
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use frames::npy::{self, Layout4};
use frames::ColorMode;
use libfuzzer_sys::fuzz_target;

fn file() -> &'static PathBuf {
    static FILE: OnceLock<PathBuf> = OnceLock::new();
    FILE.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("fuzz-npy")
            .tempdir_in(std::env::temp_dir())
            .expect("temporary folder")
            .keep();
        dir.join("videos.npy")
    })
}

fuzz_target!(|bytes: &[u8]| {
    let path = file();
    std::fs::write(path, bytes).expect("write the fuzzed file");
    let layout = match bytes.last() {
        Some(b) if b & 1 == 1 => Layout4::SequencesFirst,
        _ => Layout4::FramesFirst,
    };
    for color in [ColorMode::Luma, ColorMode::Rgb] {
        if let Err(err) = npy::load(path, layout, color) {
            let text = err.to_string();
            assert!(text.contains("videos.npy"), "an error without the file: {text}");
        }
    }
});
