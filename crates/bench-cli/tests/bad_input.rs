//! Bad input, each case through the binary: a clear error that names what was wrong, a
//! non-zero exit, no panic (see `common`), and nothing written or half-written.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

mod common;

use common::{bench_cli, fails, ok, repo_root, s};

/// Every file under `dir` with its bytes: to show that a failed run changed nothing.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries {
            let path = entry.unwrap().path();
            files.insert(path.clone(), std::fs::read(&path).unwrap_or_default());
        }
    }
    files
}

/// A folder with the first `n` shipped frames.
fn frames_dir(n: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for k in 0..n {
        let name = format!("{}.png", 5000 + k);
        std::fs::copy(repo_root().join("data").join(&name), dir.path().join(&name)).unwrap();
    }
    dir
}

/// Trains on `data` into a fresh `out`, expecting failure; returns the error text and
/// checks that `out` was left empty.
fn train_fails(data: &Path, extra: &[&str]) -> String {
    let out = tempfile::tempdir().unwrap();
    let mut args = vec![
        "--model",
        "conv",
        "--epochs",
        "1",
        "--data",
        s(data),
        "--out",
        s(out.path()),
    ];
    args.extend_from_slice(extra);
    let err = fails(&args);
    assert!(
        snapshot(out.path()).is_empty(),
        "{:?}",
        snapshot(out.path())
    );
    err
}

/// CRC-32 (IEEE), as PNG chunks carry it.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn png_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut chunk = (data.len() as u32).to_be_bytes().to_vec();
    let mut body = kind.to_vec();
    body.extend_from_slice(data);
    chunk.extend_from_slice(&body);
    chunk.extend_from_slice(&crc32(&body).to_be_bytes());
    chunk
}

/// A well-formed PNG header announcing a `width` x `height` 8-bit grey image, with one
/// tiny (incomplete) data chunk: what a hostile or corrupted file looks like.
fn png_claiming(width: u32, height: u32) -> Vec<u8> {
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = width.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 0, 0, 0, 0]); // 8 bits, grey, deflate, no filter, no interlace
    png.extend(png_chunk(b"IHDR", &ihdr));
    png.extend(png_chunk(b"IDAT", &[0x78, 0x9c, 0x63, 0, 0, 0, 1, 0, 1]));
    png.extend(png_chunk(b"IEND", &[]));
    png
}

#[test]
fn data_folder_missing() {
    let dir = tempfile::tempdir().unwrap();
    let err = train_fails(&dir.path().join("no-such-folder"), &[]);
    assert!(
        err.contains("no-such-folder") && err.contains("cannot read"),
        "{err}"
    );
}

#[test]
fn data_folder_empty() {
    let dir = tempfile::tempdir().unwrap();
    let err = train_fails(dir.path(), &[]);
    assert!(
        err.contains(s(dir.path())) && err.contains("no image files"),
        "{err}"
    );
}

#[test]
fn data_folder_unreadable() {
    // A path through a file cannot be listed, whoever runs the test.
    let dir = frames_dir(1);
    let through = dir.path().join("5000.png").join("frames");
    let err = train_fails(&through, &[]);
    assert!(
        err.contains("5000.png/frames") && err.contains("cannot read"),
        "{err}"
    );
    // A frame that cannot be opened: a link to nowhere.
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink("/nonexistent/frame.png", dir.path().join("5001.png")).unwrap();
        let err = train_fails(dir.path(), &[]);
        assert!(err.contains("5001.png"), "{err}");
    }
    // And a folder without read permission (run as an unprivileged user when the tests
    // run as root, who reads through permissions), and a frame without.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |path: &Path, mode| {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap()
        };
        let locked = frames_dir(1);
        mode(locked.path(), 0o000);
        let run = common::bench_cli_unprivileged(&["frames", "--data", s(locked.path())]);
        mode(locked.path(), 0o755);
        assert_eq!(run.code, 1, "{}", run.stderr);
        assert!(
            run.stderr.contains(s(locked.path())) && run.stderr.contains("ermission denied"),
            "{}",
            run.stderr
        );
        let frames = frames_dir(3);
        mode(frames.path(), 0o755);
        mode(&frames.path().join("5001.png"), 0o000);
        let run = common::bench_cli_unprivileged(&["frames", "--data", s(frames.path())]);
        assert_eq!(run.code, 1, "{}", run.stderr);
        assert!(
            run.stderr.contains("5001.png") && run.stderr.contains("ermission denied"),
            "{}",
            run.stderr
        );
    }
}

#[test]
fn truncated_png_names_the_file() {
    let dir = frames_dir(3);
    let path = dir.path().join("5001.png");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let err = train_fails(dir.path(), &[]);
    assert!(err.contains("5001.png"), "{err}");
}

#[test]
fn corrupt_png_names_the_file() {
    let dir = frames_dir(3);
    let path = dir.path().join("5002.png");
    let mut bytes = std::fs::read(&path).unwrap();
    // Scramble the compressed pixel data in the middle of the file.
    let middle = bytes.len() / 2;
    for b in &mut bytes[middle..middle + 64] {
        *b ^= 0x5a;
    }
    std::fs::write(&path, &bytes).unwrap();
    let err = train_fails(dir.path(), &[]);
    assert!(err.contains("5002.png"), "{err}");
    // Not an image at all, under an image's name.
    std::fs::write(&path, "<html>not a png</html>").unwrap();
    let err = train_fails(dir.path(), &[]);
    assert!(err.contains("5002.png"), "{err}");
}

#[test]
fn zero_byte_file_names_the_file() {
    let dir = frames_dir(2);
    std::fs::write(dir.path().join("5001.png"), b"").unwrap();
    let err = train_fails(dir.path(), &[]);
    assert!(err.contains("5001.png"), "{err}");
}

#[test]
fn absurd_dimensions_are_refused_without_allocating() {
    let dir = frames_dir(2);
    for (w, h) in [(100_000, 100_000), (u32::MAX >> 1, 1), (1, 2_000_000_000)] {
        std::fs::write(dir.path().join("5001.png"), png_claiming(w, h)).unwrap();
        let err = train_fails(dir.path(), &[]);
        assert!(
            err.contains("5001.png") && err.contains("decoder's limits"),
            "{w}x{h}: {err}"
        );
    }
}

#[test]
fn mixed_sizes_name_both_files_and_the_fix() {
    let dir = frames_dir(2);
    image::GrayImage::new(64, 65)
        .save(dir.path().join("5001.png"))
        .unwrap();
    let err = train_fails(dir.path(), &[]);
    assert!(
        err.contains("5001.png") && err.contains("5000.png") && err.contains("--size"),
        "{err}"
    );
}

#[test]
fn too_few_frames_for_one_window() {
    let dir = frames_dir(3);
    let err = train_fails(dir.path(), &[]);
    // 3 frames: 5/6 of them would be 2, capped at 3 - 26, i.e. none for training.
    assert!(
        err.contains("the training split has 0 frames but one window needs 26")
            && err.contains("3 frames in all, at least 52 needed"),
        "{err}"
    );
}

/// A one-epoch run of `model` at `size` in a fresh folder, for its checkpoints.
fn trained(model: &str, size: &str) -> tempfile::TempDir {
    let out = tempfile::tempdir().unwrap();
    let mut args = vec![
        "--model",
        model,
        "--size",
        size,
        "--epochs",
        "1",
        "--out",
        s(out.path()),
        "-q",
    ];
    if model == "linear" {
        args.extend_from_slice(&["--hidden", "6"]);
    }
    ok(&args);
    out
}

#[test]
fn checkpoint_of_the_other_model() {
    let conv = trained("conv", "9");
    let weights = conv.path().join("conv.safetensors");
    let err = fails(&[
        "--model",
        "linear",
        "--size",
        "9",
        "--hidden",
        "6",
        "--init-from",
        s(&weights),
        "--out",
        s(&conv.path().join("x")),
    ]);
    assert!(
        err.contains("conv.safetensors") && err.contains("holds a conv model, not a linear model"),
        "{err}"
    );
    let png = conv.path().join("p.png");
    let err = fails(&[
        "predict",
        "--model",
        "linear",
        "--checkpoint",
        s(&weights),
        "--size",
        "9",
        "-o",
        s(&png),
    ]);
    assert!(
        err.contains("conv model") && err.contains("conv.safetensors"),
        "{err}"
    );
    assert!(!png.exists());
}

/// The tensors of `path` in a file without bench-cli's record of the model, as PyTorch
/// would write them.
fn without_record(path: &Path) -> PathBuf {
    let tensors = candle_core::safetensors::load(path, &candle_core::Device::Cpu).unwrap();
    let bare = path.with_extension("bare.safetensors");
    candle_core::safetensors::save(&tensors, &bare).unwrap();
    bare
}

#[test]
fn checkpoint_of_another_size_names_the_tensor_and_both_shapes() {
    let linear = trained("linear", "9");
    let weights = linear.path().join("linear.safetensors");
    let args = |file: &Path, size: &'static str| {
        vec![
            "--model".to_string(),
            "linear".into(),
            "--size".into(),
            size.into(),
            "--hidden".into(),
            "6".into(),
            "--init-from".into(),
            s(file).into(),
            "--out".into(),
            s(&linear.path().join("x")).into(),
        ]
    };
    let run = |args: Vec<String>| fails(&args.iter().map(String::as_str).collect::<Vec<_>>());
    // A file without a record: the first tensor that does not fit, and both shapes.
    let err = run(args(&without_record(&weights), "11"));
    assert!(
        err.contains("`lstm.weight_ih_l0`")
            && err.contains("[24, 81]")
            && err.contains("[24, 121]"),
        "{err}"
    );
    // A file with its record: the frames the model takes, and these.
    let err = run(args(&weights, "11"));
    assert!(err.contains("1x9x9") && err.contains("1x11x11"), "{err}");

    let conv = trained("conv", "9");
    let weights = conv.path().join("conv.safetensors");
    let args = |file: &Path| {
        [
            "--model",
            "conv",
            "--kernel",
            "3",
            "--size",
            "9",
            "--init-from",
            s(file),
            "--out",
            s(&conv.path().join("x")),
        ]
        .map(str::to_string)
        .to_vec()
    };
    let err = run(args(&without_record(&weights)));
    assert!(
        err.contains("`convlstm.weight_ih_l0`")
            && err.contains("[4, 1, 5, 5]")
            && err.contains("[4, 1, 3, 3]"),
        "{err}"
    );
    let err = run(args(&weights));
    assert!(
        err.contains(r#""kernel":5"#) && err.contains(r#""kernel":3"#) && err.contains("--kernel"),
        "{err}"
    );
}

#[test]
fn checkpoint_that_is_not_safetensors_or_is_truncated() {
    let conv = trained("conv", "9");
    let weights = conv.path().join("conv.safetensors");
    let resume = conv.path().join("conv.resume.safetensors");
    let junk = conv.path().join("junk.safetensors");
    std::fs::write(&junk, "this is not a safetensors file, just text").unwrap();
    let truncated = conv.path().join("truncated.safetensors");
    let bytes = std::fs::read(&weights).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() - 100]).unwrap();
    let out = conv.path().join("x");
    let png = conv.path().join("p.png");
    for bad in [&junk, &truncated] {
        let err = fails(&[
            "--model",
            "conv",
            "--size",
            "9",
            "--init-from",
            s(bad),
            "--out",
            s(&out),
        ]);
        assert!(err.contains(s(bad)), "{err}");
        let err = fails(&[
            "predict",
            "--model",
            "conv",
            "--checkpoint",
            s(bad),
            "--size",
            "9",
            "-o",
            s(&png),
        ]);
        assert!(err.contains(s(bad)), "{err}");
    }
    assert!(!out.exists() && !png.exists());
    // A damaged training checkpoint: --resume names it and leaves the run's files alone.
    for damage in [&junk, &truncated] {
        std::fs::copy(damage, &resume).unwrap();
        let damaged = snapshot(conv.path());
        let err = fails(&[
            "--model",
            "conv",
            "--size",
            "9",
            "--out",
            s(conv.path()),
            "--resume",
        ]);
        assert!(err.contains("conv.resume.safetensors"), "{err}");
        assert_eq!(snapshot(conv.path()), damaged);
    }
    // A weights file where the training checkpoint should be: it has no optimizer state.
    std::fs::copy(&weights, &resume).unwrap();
    let placed = snapshot(conv.path());
    let err = fails(&[
        "--model",
        "conv",
        "--size",
        "9",
        "--out",
        s(conv.path()),
        "--resume",
    ]);
    assert!(err.contains("not a training checkpoint"), "{err}");
    assert_eq!(snapshot(conv.path()), placed);
}

#[test]
fn out_not_writable() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    for out in [file.join("results"), file.clone()] {
        let err = fails(&[
            "--model",
            "conv",
            "--size",
            "9",
            "--epochs",
            "1",
            "--out",
            s(&out),
        ]);
        assert!(err.contains("a-file"), "{err}");
    }
    assert_eq!(std::fs::read(&file).unwrap(), b"x");
    let err = fails(&[
        "plot",
        "results/reference/conv.csv",
        "-o",
        s(&file.join("p.png")),
    ]);
    assert!(err.contains("a-file/p.png"), "{err}");
}

#[test]
fn unknown_and_conflicting_flags() {
    let run = bench_cli(&["--model", "conv", "--bogus"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("unexpected argument '--bogus'"),
        "{}",
        run.stderr
    );
    let run = bench_cli(&["--model", "conv", "--epochs", "many"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("'many'") && run.stderr.contains("--epochs"),
        "{}",
        run.stderr
    );
    for pair in [
        ["--resume", "--force"],
        ["--resume", "--init-from=x.safetensors"],
    ] {
        let run = bench_cli(&["--model", "conv", pair[0], pair[1]]);
        assert_eq!(run.code, 2, "{pair:?}: {}", run.stderr);
        assert!(run.stderr.contains("cannot be used with"), "{}", run.stderr);
    }
    let run = bench_cli(&["frames", "--model", "conv"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
}

#[test]
fn cuda_device_without_cuda() {
    if cfg!(feature = "cuda") {
        return;
    }
    let out = tempfile::tempdir().unwrap();
    let err = fails(&[
        "--model",
        "conv",
        "--device",
        "cuda",
        "--out",
        s(out.path()),
    ]);
    assert!(
        err.contains("--device cuda") && err.contains("without CUDA"),
        "{err}"
    );
    assert!(snapshot(out.path()).is_empty());
}
