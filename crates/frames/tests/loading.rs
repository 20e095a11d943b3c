use std::cmp::Ordering;
use std::path::Path;

use frames::{
    load_dir, natural_cmp, ColorMode, Dataset, Error, LoadOptions, Size, Split, WindowSpec,
};
use image::{GrayImage, Luma, Rgb, RgbImage};

fn grey(dir: &Path, name: &str, w: u32, h: u32, value: u8) {
    GrayImage::from_pixel(w, h, Luma([value]))
        .save(dir.join(name))
        .unwrap();
}

fn names(dir: &Path) -> Vec<String> {
    frames::list_images(dir)
        .unwrap()
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn natural_order_compares_digit_runs_as_numbers() {
    assert_eq!(natural_cmp("frame_2.png", "frame_10.png"), Ordering::Less);
    assert_eq!(natural_cmp("5000.png", "5151.png"), Ordering::Less);
    assert_eq!(natural_cmp("999.png", "1000.png"), Ordering::Less);
    assert_eq!(
        natural_cmp("0000000009.png", "0000000010.png"),
        Ordering::Less
    );
    assert_eq!(natural_cmp("a10b2", "a10b10"), Ordering::Less);
    assert_eq!(natural_cmp("b1", "a2"), Ordering::Greater);
    assert_eq!(natural_cmp("x.png", "x.png"), Ordering::Equal);
    // Longer than u64: compared digit by digit, not parsed.
    assert_eq!(
        natural_cmp(
            "123456789012345678901234.png",
            "123456789012345678901235.png"
        ),
        Ordering::Less
    );
}

#[test]
fn folder_is_listed_in_natural_order_and_non_images_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    for n in [10, 2, 1, 100] {
        grey(dir.path(), &format!("frame_{n}.png"), 3, 3, 0);
    }
    std::fs::write(dir.path().join("README.md"), "not a frame").unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not a frame").unwrap();
    assert_eq!(
        names(dir.path()),
        [
            "frame_1.png",
            "frame_2.png",
            "frame_10.png",
            "frame_100.png"
        ]
    );
}

#[test]
fn kitti_style_zero_padded_names_keep_their_order() {
    let dir = tempfile::tempdir().unwrap();
    for n in [11, 9, 10, 0] {
        grey(dir.path(), &format!("{n:010}.png"), 2, 2, 0);
    }
    assert_eq!(
        names(dir.path()),
        [
            "0000000000.png",
            "0000000009.png",
            "0000000010.png",
            "0000000011.png"
        ]
    );
}

#[test]
fn grey_png_values_are_scaled_to_unit_interval() {
    let dir = tempfile::tempdir().unwrap();
    let mut img = GrayImage::new(2, 1);
    img.put_pixel(0, 0, Luma([0]));
    img.put_pixel(1, 0, Luma([51]));
    img.save(dir.path().join("0.png")).unwrap();
    let frames = load_dir(dir.path(), &LoadOptions::default()).unwrap();
    assert_eq!(frames.data.dims(), &[1, 1, 1, 2]);
    let v: Vec<f32> = frames.data.flatten_all().unwrap().to_vec1().unwrap();
    assert_eq!(v, vec![0.0, 0.2]);
}

#[test]
fn rgb_becomes_bt601_luma_by_hand() {
    // Pure red, green, blue and one mixed pixel; luma = 0.299 R + 0.587 G + 0.114 B.
    let dir = tempfile::tempdir().unwrap();
    let mut img = RgbImage::new(4, 1);
    img.put_pixel(0, 0, Rgb([255, 0, 0]));
    img.put_pixel(1, 0, Rgb([0, 255, 0]));
    img.put_pixel(2, 0, Rgb([0, 0, 255]));
    img.put_pixel(3, 0, Rgb([100, 150, 200]));
    img.save(dir.path().join("0.png")).unwrap();
    let frames = load_dir(dir.path(), &LoadOptions::default()).unwrap();
    let v: Vec<f32> = frames.data.flatten_all().unwrap().to_vec1().unwrap();
    let mixed = (0.299 * 100.0 + 0.587 * 150.0 + 0.114 * 200.0) / 255.0; // 0.55843...
    let want = [0.299, 0.587, 0.114, mixed];
    for (got, want) in v.iter().zip(want) {
        assert!((got - want).abs() < 1e-6, "{got} vs {want}");
    }
}

#[test]
fn rgb_mode_keeps_three_planes() {
    let dir = tempfile::tempdir().unwrap();
    let mut img = RgbImage::new(2, 1);
    img.put_pixel(0, 0, Rgb([255, 0, 51]));
    img.put_pixel(1, 0, Rgb([0, 102, 255]));
    img.save(dir.path().join("0.png")).unwrap();
    let options = LoadOptions {
        color: ColorMode::Rgb,
        ..Default::default()
    };
    let frames = load_dir(dir.path(), &options).unwrap();
    assert_eq!(frames.data.dims(), &[1, 3, 1, 2]);
    let v: Vec<f32> = frames.data.flatten_all().unwrap().to_vec1().unwrap();
    assert_eq!(v, vec![1.0, 0.0, 0.0, 0.4, 0.2, 1.0]);
}

#[test]
fn jpeg_and_bmp_load_too() {
    let dir = tempfile::tempdir().unwrap();
    GrayImage::from_pixel(4, 4, Luma([200]))
        .save(dir.path().join("1.bmp"))
        .unwrap();
    RgbImage::from_pixel(4, 4, Rgb([200, 200, 200]))
        .save(dir.path().join("2.jpg"))
        .unwrap();
    let frames = load_dir(dir.path(), &LoadOptions::default()).unwrap();
    assert_eq!(frames.data.dims(), &[2, 1, 4, 4]);
    let v: Vec<f32> = frames.data.flatten_all().unwrap().to_vec1().unwrap();
    for x in v {
        assert!((x - 200.0 / 255.0).abs() < 0.02, "{x}");
    }
}

#[test]
fn size_flag_parses_and_resizes() {
    assert_eq!(
        Size::parse("65").unwrap(),
        Size {
            height: 65,
            width: 65
        }
    );
    assert_eq!(
        Size::parse("64x80").unwrap(),
        Size {
            height: 64,
            width: 80
        }
    );
    for bad in ["", "0", "x5", "5x", "-3", "ax2", "3x0"] {
        let err = Size::parse(bad).unwrap_err().to_string();
        assert!(err.contains("invalid size"), "{bad}: {err}");
    }
    let dir = tempfile::tempdir().unwrap();
    grey(dir.path(), "1.png", 10, 10, 128);
    grey(dir.path(), "2.png", 20, 8, 128);
    let options = LoadOptions {
        size: Some(Size::parse("4x6").unwrap()),
        ..Default::default()
    };
    let frames = load_dir(dir.path(), &options).unwrap();
    assert_eq!(frames.data.dims(), &[2, 1, 4, 6]);
    let v: Vec<f32> = frames.data.flatten_all().unwrap().to_vec1().unwrap();
    assert!(v.iter().all(|x| (x - 128.0 / 255.0).abs() < 1e-6));
}

#[test]
fn seed_split_and_windows() {
    let spec = WindowSpec::seed();
    assert_eq!((spec.len, spec.stride), (26, 25));
    let split = Split::new(152, None, &spec).unwrap();
    assert_eq!((split.train, split.test), (126, 26));
    let starts = spec.starts(126);
    assert_eq!(starts, vec![0, 25, 50, 75, 100]);
    // Each window ends on the frame the next one starts with; the last ends on frame 125.
    for pair in starts.windows(2) {
        assert_eq!(pair[0] + spec.len - 1, pair[1]);
    }
    assert_eq!(starts.last().unwrap() + spec.len, 126);
    assert_eq!(spec.count(26), 1);
    assert_eq!(spec.count(25), 0);
    assert_eq!(spec.count(50), 1);
    assert_eq!(spec.count(51), 2);
}

#[test]
fn split_defaults_and_overrides() {
    let spec = WindowSpec::new(4, None).unwrap();
    // Five sixths train...
    assert_eq!(
        Split::new(60, None, &spec).unwrap(),
        Split {
            train: 50,
            test: 10
        }
    );
    // ...but the test split always keeps one window.
    assert_eq!(
        Split::new(10, None, &spec).unwrap(),
        Split { train: 6, test: 4 }
    );
    assert_eq!(
        Split::new(60, Some(30), &spec).unwrap(),
        Split {
            train: 30,
            test: 30
        }
    );
    let stride = WindowSpec::new(4, Some(1)).unwrap();
    assert_eq!(stride.starts(6), vec![0, 1, 2]);
    assert!(WindowSpec::new(1, None).is_err());
    assert!(WindowSpec::new(3, Some(0)).is_err());
}

#[test]
fn too_few_frames_say_how_many_they_have_and_need() {
    let spec = WindowSpec::seed();
    let err = Split::new(40, None, &spec).unwrap_err().to_string();
    assert!(
        err.contains("has 14 frames") && err.contains("needs 26"),
        "{err}"
    );
    let err = Split::new(152, Some(140), &spec).unwrap_err().to_string();
    assert!(
        err.contains("test split has 12 frames") && err.contains("needs 26"),
        "{err}"
    );
    let err = Split::new(152, Some(152), &spec).unwrap_err().to_string();
    assert!(err.contains("--train-frames 152"), "{err}");
}

#[test]
fn dataset_cuts_windows_and_copy_last_baseline_is_exact() {
    // Frame k is constant k/10: copy-last error per step is (1/10)^2 = 0.01 everywhere.
    let dir = tempfile::tempdir().unwrap();
    for k in 0..12u8 {
        grey(dir.path(), &format!("{k}.png"), 3, 2, k * 17);
    }
    let spec = WindowSpec::new(3, None).unwrap();
    let data = Dataset::load(dir.path(), &LoadOptions::default(), spec, None).unwrap();
    assert_eq!(
        data.holdout,
        frames::Holdout::Frames(Split { train: 9, test: 3 })
    );
    let train = data.train_windows().unwrap();
    assert_eq!(train.len(), 4);
    assert_eq!(train[0].dims(), &[3, 1, 2, 3]);
    let first_of = |w: &candle_core::Tensor, t: usize| -> f32 {
        w.get(t)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()[0]
    };
    assert_eq!(first_of(&train[1], 0), first_of(&train[0], 2));
    let test = data.test_windows().unwrap();
    assert_eq!(test.len(), 1);
    assert!((first_of(&test[0], 0) - 9.0 * 17.0 / 255.0).abs() < 1e-6);
    // Every frame is the one before plus 17 grey levels: each step within a window moves
    // every pixel by exactly that much, in the test window and the training ones alike.
    let step = 17.0f64 / 255.0;
    for window in test.iter().chain(&train) {
        let steps = window.dim(0).unwrap() - 1;
        let diff = (window.narrow(0, 1, steps).unwrap() - window.narrow(0, 0, steps).unwrap())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert!(
            diff.iter().all(|&d| (f64::from(d) - step).abs() < 1e-6),
            "{diff:?}"
        );
    }
}

#[test]
fn missing_folder_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let err = load_dir(&missing, &LoadOptions::default()).unwrap_err();
    assert!(matches!(err, Error::ReadDir { .. }));
    assert!(err.to_string().contains("nope"), "{err}");
    let file = dir.path().join("file.png");
    grey(dir.path(), "file.png", 1, 1, 0);
    let err = load_dir(&file, &LoadOptions::default()).unwrap_err();
    assert!(err.to_string().contains("not a directory"), "{err}");
}

/// Root reads through file permissions. When the tests run as root (as CI does), runs the
/// test `name` of this binary again as an unprivileged user (util-linux's `setpriv`) and
/// returns true: the caller's own body then runs only there, where permissions bind.
#[cfg(unix)]
fn rerun_unprivileged(name: &str) -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return false;
    }
    let nobody = ["--reuid", "65534", "--regid", "65534", "--clear-groups"];
    let mut exe = std::env::current_exe().unwrap();
    // A build folder out of that user's reach (a checkout under root's home) gets a copy.
    let reachable = std::process::Command::new("setpriv")
        .args(nobody)
        .args(["test", "-x"])
        .arg(&exe)
        .status()
        .is_ok_and(|s| s.success());
    let copy_dir = tempfile::tempdir().unwrap();
    if !reachable {
        use std::os::unix::fs::PermissionsExt;
        let mode =
            |p: &Path| std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
        mode(copy_dir.path());
        let copy = copy_dir.path().join(exe.file_name().unwrap());
        std::fs::copy(&exe, &copy).unwrap();
        mode(&copy);
        exe = copy;
    }
    use std::os::unix::process::CommandExt;
    // A group of its own, for the guard to kill.
    let mut child = ChildGuard(
        std::process::Command::new("setpriv")
            .args(nobody)
            .arg(&exe)
            .args(["--exact", name, "--nocapture", "--test-threads", "1"])
            .current_dir("/")
            .process_group(0)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("as root, the permission tests need setpriv (util-linux) to drop root"),
    );
    let stdout = drain(child.0.stdout.take().unwrap());
    let stderr = drain(child.0.stderr.take().unwrap());
    // One small test: seconds at most. Past the deadline the guard kills it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{name} as user 65534 still ran after 120 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    let text = format!("{}{}", stdout.join().unwrap(), stderr.join().unwrap());
    assert!(status.success(), "{name} as user 65534:\n{text}");
    assert!(
        text.contains("1 passed"),
        "{name} did not run as user 65534:\n{text}"
    );
    true
}

/// A child that cannot outlive its test: dropped before it ended (its test failed or timed
/// out), it is killed with its process group (it leads one of its own) and reaped.
#[cfg(unix)]
struct ChildGuard(std::process::Child);

#[cfg(unix)]
impl Drop for ChildGuard {
    fn drop(&mut self) {
        // Not reaped yet, so its id still names it and its group.
        if let Ok(None) = self.0.try_wait() {
            // SAFETY: kill has no memory-safety preconditions.
            unsafe {
                libc::kill(-(self.0.id() as libc::pid_t), libc::SIGKILL);
            }
            let _ = self.0.wait();
        }
    }
}

/// Reads a child's pipe to its end on a thread of its own.
#[cfg(unix)]
fn drain(mut pipe: impl std::io::Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

#[cfg(unix)]
#[test]
fn unreadable_folder_names_the_path() {
    use std::os::unix::fs::PermissionsExt;
    if rerun_unprivileged("unreadable_folder_names_the_path") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let locked = dir.path().join("locked");
    std::fs::create_dir(&locked).unwrap();
    grey(&locked, "0.png", 1, 1, 0);
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();
    let result = load_dir(&locked, &LoadOptions::default());
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o755)).unwrap();
    let err = result.unwrap_err().to_string();
    assert!(
        err.contains("locked") && err.contains("cannot read"),
        "{err}"
    );
}

#[cfg(unix)]
#[test]
fn unreadable_frame_names_the_file() {
    use std::os::unix::fs::PermissionsExt;
    if rerun_unprivileged("unreadable_frame_names_the_file") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    grey(dir.path(), "0.png", 2, 2, 0);
    grey(dir.path(), "1.png", 2, 2, 9);
    let locked = dir.path().join("1.png");
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();
    let err = load_dir(dir.path(), &LoadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("1.png"), "{err}");
}

#[test]
fn path_through_a_file_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    grey(dir.path(), "0.png", 1, 1, 0);
    let inside = dir.path().join("0.png").join("frames");
    let err = load_dir(&inside, &LoadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("0.png/frames") && err.contains("cannot read"),
        "{err}"
    );
}

#[test]
fn folder_without_images_says_so() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.txt"), "x").unwrap();
    let err = load_dir(dir.path(), &LoadOptions::default()).unwrap_err();
    assert!(matches!(err, Error::NoImages { .. }), "{err}");
    assert!(err.to_string().contains("no image files"), "{err}");
}

#[test]
fn corrupt_and_empty_files_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    grey(dir.path(), "1.png", 2, 2, 0);
    let good = std::fs::read(dir.path().join("1.png")).unwrap();
    std::fs::write(dir.path().join("2.png"), &good[..good.len() / 2]).unwrap();
    let err = load_dir(dir.path(), &LoadOptions::default()).unwrap_err();
    assert!(matches!(err, Error::Decode { .. }), "{err}");
    assert!(err.to_string().contains("2.png"), "{err}");

    std::fs::remove_file(dir.path().join("2.png")).unwrap();
    std::fs::write(dir.path().join("3.png"), b"").unwrap();
    let err = load_dir(dir.path(), &LoadOptions::default()).unwrap_err();
    assert!(err.to_string().contains("3.png"), "{err}");
}

#[test]
fn mixed_sizes_without_resize_name_both_files() {
    let dir = tempfile::tempdir().unwrap();
    grey(dir.path(), "1.png", 4, 4, 0);
    grey(dir.path(), "2.png", 5, 4, 0);
    let err = load_dir(dir.path(), &LoadOptions::default()).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::MixedSizes { .. }), "{msg}");
    assert!(msg.contains("2.png") && msg.contains("1.png"), "{msg}");
    assert!(msg.contains("5x4") && msg.contains("4x4"), "{msg}");
    assert!(msg.contains("--size"), "{msg}");
}

#[test]
fn dataset_with_too_few_frames_names_the_folder() {
    let dir = tempfile::tempdir().unwrap();
    for k in 0..5 {
        grey(dir.path(), &format!("{k}.png"), 2, 2, 0);
    }
    let err = Dataset::load(
        dir.path(),
        &LoadOptions::default(),
        WindowSpec::seed(),
        None,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains(&dir.path().display().to_string()), "{err}");
    assert!(err.contains("needs 26"), "{err}");
}

#[test]
fn tiny_file_claiming_a_huge_frame_is_refused_from_its_header() {
    // Found by fuzzing (fuzz/FUZZING.md): 530 bytes of JPEG whose header claims 1544 x 65026
    // pixels. The image crate's limits let it through; decoding took seconds and 900 MB.
    let dir = tempfile::tempdir().unwrap();
    grey(dir.path(), "1.png", 3, 3, 0);
    std::fs::write(
        dir.path().join("2.jpg"),
        include_bytes!("fixtures/fuzz-jpeg-claiming-1544x65026.jpg"),
    )
    .unwrap();
    for size in [
        None,
        Some(frames::Size {
            height: 3,
            width: 3,
        }),
    ] {
        let options = LoadOptions {
            size,
            ..LoadOptions::default()
        };
        let err = load_dir(dir.path(), &options).unwrap_err().to_string();
        assert!(
            err.contains("2.jpg") && err.contains("1544x65026") && err.contains("decoder's limits"),
            "{err}"
        );
        // Refused by the check of the header against MAX_FRAME_PIXELS, before any decoding
        // (which took 2.3 s in release): the decoder's own limits say something else.
        assert!(
            err.contains(&format!("{} pixels, 8K video", frames::MAX_FRAME_PIXELS)),
            "{err}"
        );
    }
}

/// A folder of folders is a set of videos: windows are cut within each, never across two,
/// and the last ones (a sixth by default, at least one) are held out whole.
#[test]
fn folder_of_videos_cuts_windows_within_videos_and_holds_out_whole_videos() {
    let dir = tempfile::tempdir().unwrap();
    // Seven videos of 5, 6, ... frames; every frame of video v has grey level 10*v + t.
    for v in 0..7u8 {
        let video = dir.path().join(format!("drive_{v}"));
        std::fs::create_dir(&video).unwrap();
        for t in 0..5 + v {
            grey(&video, &format!("{t:03}.png"), 4, 3, 10 * v + t);
        }
    }
    let windows = WindowSpec::new(3, Some(2)).unwrap();
    let data = Dataset::load(dir.path(), &LoadOptions::default(), windows, None).unwrap();
    assert_eq!(data.videos.len(), 7);
    assert_eq!(data.holdout, frames::Holdout::Videos { train: 6, test: 1 });
    assert_eq!(data.frame_count(), (5..12).sum::<usize>());
    let first_value = |w: &candle_core::Tensor| -> Vec<u8> {
        let v: Vec<f32> = w.flatten_all().unwrap().to_vec1().unwrap();
        v.chunks(12).map(|f| (f[0] * 255.0).round() as u8).collect()
    };
    // Video v of 5+v frames holds (5+v-3)/2+1 windows; every window's frames are
    // consecutive frames of one video.
    let train = data.train_windows().unwrap();
    assert_eq!(
        train.len(),
        (0..6).map(|v: usize| (5 + v - 3) / 2 + 1).sum::<usize>()
    );
    for w in &train {
        let levels = first_value(w);
        assert_eq!(
            levels[0] / 10,
            levels[2] / 10,
            "a window across videos: {levels:?}"
        );
        assert_eq!(levels[2], levels[0] + 2, "{levels:?}");
    }
    // The test windows are the last video's, all of them.
    let test = data.test_windows().unwrap();
    assert_eq!(test.len(), (11 - 3) / 2 + 1);
    assert!(test.iter().all(|w| first_value(w)[0] / 10 == 6));

    // --test-videos chooses how many; asking for all of them, or --train-frames, is refused.
    let options = LoadOptions {
        test_videos: Some(3),
        ..LoadOptions::default()
    };
    let data = Dataset::load(dir.path(), &options, windows, None).unwrap();
    assert_eq!(data.holdout, frames::Holdout::Videos { train: 4, test: 3 });
    let all = LoadOptions {
        test_videos: Some(7),
        ..LoadOptions::default()
    };
    let err = Dataset::load(dir.path(), &all, windows, None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("7 videos, 7 held out"), "{err}");
    let err = Dataset::load(dir.path(), &LoadOptions::default(), windows, Some(3))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("--train-frames") && err.contains("7 videos"),
        "{err}"
    );
    // A folder of frames takes no --test-videos.
    let single = tempfile::tempdir().unwrap();
    for t in 0..8 {
        grey(single.path(), &format!("{t}.png"), 4, 3, t);
    }
    let err = Dataset::load(single.path(), &options, windows, None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("--test-videos"), "{err}");
}

#[test]
fn videos_of_different_sizes_or_too_short_are_named() {
    let dir = tempfile::tempdir().unwrap();
    for (v, (w, frames)) in [(4u32, 6u8), (4, 6), (5, 6)].iter().enumerate() {
        let video = dir.path().join(format!("v{v}"));
        std::fs::create_dir(&video).unwrap();
        for t in 0..*frames {
            grey(&video, &format!("{t}.png"), *w, 3, t);
        }
    }
    let windows = WindowSpec::new(3, None).unwrap();
    let err = Dataset::load(dir.path(), &LoadOptions::default(), windows, None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("v2") && err.contains("v0") && err.contains("--size"),
        "{err}"
    );
    // Resized to one size they load; windows longer than the test video are refused.
    let sized = LoadOptions {
        size: Some(Size {
            height: 3,
            width: 4,
        }),
        ..LoadOptions::default()
    };
    Dataset::load(dir.path(), &sized, windows, None).unwrap();
    let long = WindowSpec::new(7, None).unwrap();
    let err = Dataset::load(dir.path(), &sized, long, None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no window of 7 frames") && err.contains("shortest has 6"),
        "{err}"
    );
}
