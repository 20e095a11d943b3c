//! The frame loader on arbitrary bytes, as an image file in a folder beside a good frame:
//! it may refuse them, with an error naming the file, but must not panic or run out of
//! memory. The first byte picks the file's extension and the loader's options.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use frames::{ColorMode, LoadOptions, Size};
use libfuzzer_sys::fuzz_target;

/// One folder for the whole fuzzing process: a good 3x3 frame and the file under test.
fn folder() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("fuzz-frames")
            .tempdir_in(std::env::temp_dir())
            .expect("temporary folder")
            .keep();
        std::fs::write(dir.join("0.png"), GOOD_PNG).expect("write the good frame");
        dir
    })
}

/// A 3x3 8-bit grey PNG.
const GOOD_PNG: &[u8] = include_bytes!("../good-3x3.png");

fuzz_target!(|data: &[u8]| {
    let Some((&choice, bytes)) = data.split_first() else {
        return;
    };
    let dir = folder();
    let extension = ["png", "jpg", "bmp", "jpeg"][usize::from(choice & 3)];
    for old in ["1.png", "1.jpg", "1.bmp", "1.jpeg"] {
        let _ = std::fs::remove_file(dir.join(old));
    }
    let path = dir.join(format!("1.{extension}"));
    std::fs::write(&path, bytes).expect("write the fuzzed frame");
    let options = LoadOptions {
        size: (choice & 4 != 0).then_some(Size {
            height: 3,
            width: 3,
        }),
        color: if choice & 8 != 0 {
            ColorMode::Rgb
        } else {
            ColorMode::Luma
        },
        test_videos: None,
        every: None,
        max_frames: None,
        npy_layout: Default::default(),
    };
    match frames::load_dir(dir, &options) {
        Ok(frames) => assert_eq!(frames.len(), 2),
        Err(err) => {
            let text = err.to_string();
            assert!(
                text.contains("1."),
                "the error does not name the file: {text}"
            );
        }
    }
});
