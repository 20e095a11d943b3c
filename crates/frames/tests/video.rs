//! Video files decoded through ffmpeg against the same frames written as PNGs by ffmpeg
//! (`ffmpeg -i clip -pix_fmt rgb24 %d.png`), which load through the image path: the
//! values must agree, with and without resizing and in both colour modes, and `--every` and
//! `--max-frames` keep the frames they say. The videos are made here from ffmpeg's test
//! sources. Without ffmpeg the tests say so and pass, unless `BENCH_CLI_REQUIRE_FFMPEG` is
//! set (CI sets it, after installing ffmpeg).

use std::path::Path;
use std::process::Command;

use frames::{load_dir, video, ColorMode, LoadOptions, Size};

/// Whether ffmpeg is here; panics where it must be and is not.
pub fn have_ffmpeg() -> bool {
    let found = Command::new("ffmpeg").arg("-version").output().is_ok()
        && Command::new("ffprobe").arg("-version").output().is_ok();
    if !found {
        assert!(
            std::env::var_os("BENCH_CLI_REQUIRE_FFMPEG").is_none(),
            "ffmpeg and ffprobe are required here (BENCH_CLI_REQUIRE_FFMPEG is set)"
        );
        eprintln!("ffmpeg not installed: the video tests are skipped");
    }
    found
}

/// Runs ffmpeg with `args`, quietly, and checks that it succeeded.
fn ffmpeg(args: &[&str]) {
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-y"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ffmpeg {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `frames` test-source frames 96x72 at 10 fps, encoded with `codec` into `path`.
fn make_video(path: &Path, frames: usize, codec: &[&str]) {
    let count = frames.to_string();
    let mut args = vec![
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=96x72:rate=10",
        "-frames:v",
        count.as_str(),
    ];
    args.extend_from_slice(codec);
    args.push(path.to_str().unwrap());
    ffmpeg(&args);
}

/// The frames of `video` written as PNGs into a new folder `dir`.
fn as_pngs(video: &Path, dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let pattern = dir.join("%d.png");
    ffmpeg(&[
        "-i",
        video.to_str().unwrap(),
        "-pix_fmt",
        "rgb24",
        pattern.to_str().unwrap(),
    ]);
}

fn values(frames: &frames::Frames) -> Vec<f32> {
    frames.data.flatten_all().unwrap().to_vec1().unwrap()
}

#[test]
fn a_video_decodes_to_the_frames_ffmpeg_writes_as_pngs() {
    if !have_ffmpeg() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for (name, codec) in [
        ("clip.mkv", &["-c:v", "ffv1"][..]),
        ("clip.mp4", &["-c:v", "libx264", "-pix_fmt", "yuv420p"][..]),
        ("clip.avi", &["-c:v", "mpeg4"][..]),
        (
            "clip.webm",
            &["-c:v", "libvpx-vp9", "-deadline", "realtime"][..],
        ),
        ("clip.mov", &["-c:v", "png"][..]),
        ("clip.gif", &[][..]),
    ] {
        let path = dir.path().join(name);
        make_video(&path, 12, codec);
        let pngs = dir.path().join(format!("{name}-png"));
        as_pngs(&path, &pngs);
        for options in [
            LoadOptions::default(),
            LoadOptions {
                color: ColorMode::Rgb,
                ..Default::default()
            },
            LoadOptions {
                size: Some(Size {
                    height: 30,
                    width: 41,
                }),
                ..Default::default()
            },
        ] {
            let (count, w, h) = video::probe(&path, &options).unwrap();
            assert_eq!((count, w, h), (12, 96, 72), "{name}");
            let ours = video::load(&path, &options).unwrap();
            let theirs = load_dir(&pngs, &options).unwrap();
            assert_eq!(ours.data.dims(), theirs.data.dims(), "{name} {options:?}");
            assert_eq!(values(&ours), values(&theirs), "{name} {options:?}");
        }
    }
}

#[test]
fn every_and_max_frames_keep_the_frames_they_say() {
    if !have_ffmpeg() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("clip.mkv");
    make_video(&path, 20, &["-c:v", "ffv1"]);
    let all = video::load(&path, &LoadOptions::default()).unwrap();
    let options = LoadOptions {
        every: Some(3),
        max_frames: Some(5),
        ..Default::default()
    };
    assert_eq!(video::probe(&path, &options).unwrap().0, 5);
    let kept = video::load(&path, &options).unwrap();
    assert_eq!(kept.len(), 5);
    for (k, source) in [0, 3, 6, 9, 12].into_iter().enumerate() {
        let a = kept
            .data
            .get(k)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let b = all
            .data
            .get(source)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(a, b, "kept frame {k} is source frame {source}");
    }
    let every = LoadOptions {
        every: Some(3),
        ..Default::default()
    };
    assert_eq!(video::probe(&path, &every).unwrap().0, 7);
    assert_eq!(video::load(&path, &every).unwrap().len(), 7);
}

#[test]
fn damaged_files_and_files_without_frames_are_refused_by_name() {
    if !have_ffmpeg() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("clip.mkv");
    make_video(&clip, 40, &["-c:v", "ffv1"]);
    let bytes = std::fs::read(&clip).unwrap();
    let cut = dir.path().join("cut.mkv");
    std::fs::write(&cut, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let text = dir.path().join("notes.mp4");
    std::fs::write(&text, "not a video\n").unwrap();
    let audio = dir.path().join("sound.mkv");
    ffmpeg(&["-f", "lavfi", "-i", "sine=d=1", audio.to_str().unwrap()]);
    let empty = dir.path().join("empty.avi");
    std::fs::write(&empty, b"").unwrap();
    for (path, says) in [
        (&cut, "cut short or damaged"),
        (&text, "not a video"),
        (&audio, "no video stream"),
        (&empty, "not a video"),
        (&dir.path().join("missing.mp4"), "no such file"),
    ] {
        let err = video::load(path, &LoadOptions::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(&path.display().to_string()) && err.contains(says),
            "{}: {err}",
            path.display()
        );
    }
}
