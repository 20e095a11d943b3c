//! `.npy` files of videos: files numpy wrote (`fixtures/npy`, by `bench/npy_fixtures.py`)
//! read to the values their formula gives, in every layout and dtype; what this crate writes
//! reads back; and every malformed file is refused naming the file and what is wrong.

use std::path::{Path, PathBuf};

use frames::npy::{self, Layout4};
use frames::{ColorMode, Dataset, Frames, LoadOptions, WindowSpec};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/npy")
        .join(name)
}

fn values(video: &Frames) -> Vec<f32> {
    video.data.flatten_all().unwrap().to_vec1().unwrap()
}

#[test]
fn numpys_frames_first_uint8_reads_sequence_by_sequence() {
    let videos = npy::load(
        &fixture("frames_first_u8.npy"),
        Layout4::FramesFirst,
        ColorMode::Luma,
    )
    .unwrap();
    assert_eq!(videos.len(), 3);
    for (n, video) in videos.iter().enumerate() {
        assert_eq!(video.data.dims(), [2, 1, 4, 5]);
        let expected: Vec<f32> = (0..2)
            .flat_map(|t| (0..20).map(move |p| (t * 60 + n * 20 + p) as f32 / 255.0))
            .collect();
        assert_eq!(values(video), expected, "sequence {n}");
    }
}

#[test]
fn numpys_sequences_first_floats_read_as_they_are() {
    let five = npy::load(
        &fixture("sequences_first_f32.npy"),
        Layout4::FramesFirst,
        ColorMode::Luma,
    )
    .unwrap();
    let four = npy::load(
        &fixture("sequences_first_f64.npy"),
        Layout4::SequencesFirst,
        ColorMode::Luma,
    )
    .unwrap();
    for videos in [&five, &four] {
        assert_eq!(videos.len(), 2);
        for (n, video) in videos.iter().enumerate() {
            assert_eq!(video.data.dims(), [3, 1, 2, 2]);
            let expected: Vec<f32> = (0..12).map(|k| (n * 12 + k) as f32 / 100.0).collect();
            let got = values(video);
            for (a, b) in got.iter().zip(&expected) {
                assert!((a - b).abs() <= 1e-7, "{got:?} vs {expected:?}");
            }
        }
    }
}

/// Frames whose values are on the uint8 grid, so a written file reads back exactly.
fn grid_videos(count: usize, frames: usize, channels: usize) -> Vec<Frames> {
    (0..count)
        .map(|n| {
            let len = frames * channels * 3 * 4;
            let values: Vec<f32> = (0..len)
                .map(|k| ((n * 31 + k * 7) % 256) as f32 / 255.0)
                .collect();
            Frames {
                data: candle_core::Tensor::from_vec(
                    values,
                    (frames, channels, 3, 4),
                    &candle_core::Device::Cpu,
                )
                .unwrap(),
                paths: Vec::new(),
                name: format!("v{n}"),
            }
        })
        .collect()
}

#[test]
fn written_files_read_back_exactly_in_both_layouts() {
    let dir = tempfile::tempdir().unwrap();
    for channels in [1, 3] {
        let path = dir.path().join(format!("c{channels}.npy"));
        let videos = grid_videos(4, 5, channels);
        npy::write(&path, &videos).unwrap();
        let header = npy::read_header(&path).unwrap();
        let expected_shape = match channels {
            1 => vec![5, 4, 3, 4],
            _ => vec![4, 5, 3, 3, 4],
        };
        assert_eq!(header.shape, expected_shape);
        assert_eq!(
            std::fs::metadata(&path).unwrap().len() % 64,
            (4 * 5 * channels * 12) as u64 % 64
        );
        let color = match channels {
            1 => ColorMode::Luma,
            _ => ColorMode::Rgb,
        };
        let back = npy::load(&path, Layout4::FramesFirst, color).unwrap();
        for (a, b) in back.iter().zip(&videos) {
            assert_eq!(values(a), values(b));
        }
    }
    // The temporary is gone.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
}

#[test]
fn a_dataset_of_a_npy_file_holds_out_whole_sequences() {
    let options = LoadOptions {
        test_videos: Some(1),
        ..LoadOptions::default()
    };
    let data = Dataset::load(
        &fixture("frames_first_u8.npy"),
        &options,
        WindowSpec::new(2, None).unwrap(),
        None,
    )
    .unwrap();
    assert_eq!(data.videos.len(), 3);
    assert_eq!(
        (
            data.train_windows().unwrap().len(),
            data.test_windows().unwrap().len()
        ),
        (2, 1)
    );
    let probed = frames::probe(&fixture("frames_first_u8.npy"), &options).unwrap();
    assert_eq!(probed, (6, [1, 4, 5]));
    let sized = LoadOptions {
        size: Some(frames::Size::parse("8").unwrap()),
        ..options
    };
    let err = Dataset::load(
        &fixture("frames_first_u8.npy"),
        &sized,
        WindowSpec::new(2, None).unwrap(),
        None,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("--size") && err.contains("frames_first_u8.npy"),
        "{err}"
    );
}

/// A malformed file to make: name, descr, fortran_order, shape, data, what the refusal says.
type Made = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    Vec<u8>,
    &'static str,
);

/// A .npy file of `header` (the dict) and `data` bytes, version 1.
fn handmade(dir: &Path, name: &str, header: &str, data: &[u8]) -> PathBuf {
    let path = dir.join(name);
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    let text = format!("{header}\n");
    bytes.extend((text.len() as u16).to_le_bytes());
    bytes.extend(text.as_bytes());
    bytes.extend(data);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn malformed_files_are_refused_naming_the_file_and_the_fault() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let dict = |descr: &str, order: &str, shape: &str| {
        format!("{{'descr': '{descr}', 'fortran_order': {order}, 'shape': {shape}, }}")
    };
    let not_npy = d.join("text.npy");
    std::fs::write(&not_npy, b"just some text, long enough").unwrap();
    let mut version = b"\x93NUMPY\x09\x00".to_vec();
    version.extend([0u8; 16]);
    std::fs::write(d.join("version.npy"), version).unwrap();
    // (file, descr, fortran_order, shape, data, what the refusal says)
    let made: [Made; 10] = [
        (
            "truncated.npy",
            "|u1",
            "False",
            "(2, 2, 4, 4)",
            vec![0; 40],
            "truncated or damaged",
        ),
        (
            "big.npy",
            ">f4",
            "False",
            "(1, 1, 1, 1)",
            vec![0; 4],
            "big-endian",
        ),
        (
            "int.npy",
            "<i4",
            "False",
            "(1, 1, 1, 1)",
            vec![0; 4],
            "dtype <i4",
        ),
        (
            "fortran.npy",
            "|u1",
            "True",
            "(1, 1, 1, 1)",
            vec![0; 1],
            "Fortran",
        ),
        (
            "absurd.npy",
            "|u1",
            "False",
            "(4294967296, 4294967296, 4294967296, 4)",
            vec![0; 8],
            "too large",
        ),
        (
            "rank.npy",
            "|u1",
            "False",
            "(2, 4, 4)",
            vec![0; 32],
            "videos are [T, N, H, W]",
        ),
        (
            "empty.npy",
            "|u1",
            "False",
            "(2, 0, 4, 4)",
            vec![],
            "an empty array",
        ),
        (
            "channels.npy",
            "|u1",
            "False",
            "(1, 2, 2, 2, 2)",
            vec![0; 16],
            "2 channels",
        ),
        (
            "range.npy",
            "<f4",
            "False",
            "(1, 1, 1, 1)",
            2.5f32.to_le_bytes().to_vec(),
            "must lie in [0, 1]",
        ),
        (
            "nan.npy",
            "<f4",
            "False",
            "(1, 1, 1, 1)",
            f32::NAN.to_le_bytes().to_vec(),
            "must lie in [0, 1]",
        ),
    ];
    let mut cases: Vec<(PathBuf, &str)> = vec![
        (not_npy, "no \\x93NUMPY magic"),
        (d.join("version.npy"), "format version 9.0"),
        (
            handmade(
                d,
                "noshape.npy",
                "{'descr': '|u1', 'fortran_order': False, }",
                &[],
            ),
            "without 'shape'",
        ),
        (d.join("missing.npy"), "cannot open"),
    ];
    for (name, descr, order, shape, data, expected) in &made {
        cases.push((
            handmade(d, name, &dict(descr, order, shape), data),
            expected,
        ));
    }
    for (path, expected) in cases {
        let err = npy::load(&path, Layout4::FramesFirst, ColorMode::Luma)
            .unwrap_err()
            .to_string();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        assert!(err.contains(&name), "{name}: {err}");
        assert!(
            err.contains(expected),
            "{name}: expected {expected:?} in {err}"
        );
    }
    let grey = handmade(d, "grey.npy", &dict("|u1", "False", "(1, 1, 1, 1)"), &[7]);
    let err = npy::load(&grey, Layout4::FramesFirst, ColorMode::Rgb)
        .unwrap_err()
        .to_string();
    assert!(err.contains("--color rgb"), "{err}");
}

/// Seeded mutations of valid files (bytes flipped, the file cut or grown, header digits
/// changed): each is read or refused naming the file, never a panic.
#[test]
fn mutated_files_are_read_or_refused_by_name() {
    use rand::{Rng, SeedableRng};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mutant.npy");
    let originals: Vec<Vec<u8>> = [
        "frames_first_u8.npy",
        "sequences_first_f32.npy",
        "sequences_first_f64.npy",
    ]
    .iter()
    .map(|name| std::fs::read(fixture(name)).unwrap())
    .collect();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    let (mut read, mut refused) = (0, 0);
    for k in 0..3000 {
        let mut bytes = originals[k % originals.len()].clone();
        match rng.random_range(0..4) {
            0 => {
                let at = rng.random_range(0..bytes.len());
                bytes[at] = rng.random();
            }
            1 => bytes.truncate(rng.random_range(0..bytes.len())),
            2 => bytes.extend((0..rng.random_range(1..64)).map(|_| rng.random::<u8>())),
            _ => {
                // A digit of the header's shape or length changed.
                let at = rng.random_range(8..bytes.len().min(80));
                bytes[at] = b'0' + rng.random_range(0..10u8);
            }
        }
        std::fs::write(&path, &bytes).unwrap();
        let layout = if k % 2 == 0 {
            Layout4::FramesFirst
        } else {
            Layout4::SequencesFirst
        };
        match npy::load(&path, layout, ColorMode::Luma) {
            Ok(_) => read += 1,
            Err(err) => {
                assert!(err.to_string().contains("mutant.npy"), "{err}");
                refused += 1;
            }
        }
    }
    println!("{read} read, {refused} refused");
    assert!(read > 0 && refused > 0, "{read} read, {refused} refused");
}
