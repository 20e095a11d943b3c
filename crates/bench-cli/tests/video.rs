//! Video files through the command line: the committed `data/street.mkv` (`data/`'s frames,
//! losslessly encoded) gives `eval` the figures `data/` gives; a folder of video files is a
//! folder of videos; without ffmpeg, one clear error naming what to install; a signal while
//! a video decodes ends the run and its decoder at once. Skipped without ffmpeg unless
//! `BENCH_CLI_REQUIRE_FFMPEG` is set (CI sets it).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::{bench_cli_env, fails, ok, repo_root, s, ChildGuard, Lines};

fn have_ffmpeg() -> bool {
    let found = Command::new("ffmpeg").arg("-version").output().is_ok();
    if !found {
        assert!(
            std::env::var_os("BENCH_CLI_REQUIRE_FFMPEG").is_none(),
            "ffmpeg is required here (BENCH_CLI_REQUIRE_FFMPEG is set)"
        );
        eprintln!("ffmpeg not installed: the video tests are skipped");
    }
    found
}

/// Test-source frames `size` at 10 fps into `path` (ffv1: lossless).
fn make_video(path: &Path, size: &str, frames: usize) {
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!("testsrc=size={size}:rate=10"))
        .args(["-frames:v", &frames.to_string(), "-c:v", "ffv1"])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_street_video_evaluates_as_its_frames_do() {
    if !have_ffmpeg() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = repo_root();
    let weights = root.join("results/reference/video/conv.safetensors");
    let figures = |data: &Path, name: &str| -> serde_json::Value {
        let json = dir.path().join(name);
        ok(&[
            "eval",
            "--checkpoint",
            s(&weights),
            "--data",
            s(data),
            "--json",
            s(&json),
        ]);
        let all: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        serde_json::json!([all["test"], all["copy_last_frame"]])
    };
    let video = figures(&root.join("data/street.mkv"), "video.json");
    let frames = figures(&root.join("data"), "frames.json");
    assert_eq!(video, frames);
}

#[test]
fn a_folder_of_video_files_is_a_folder_of_videos() {
    if !have_ffmpeg() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let videos = dir.path().join("videos");
    std::fs::create_dir(&videos).unwrap();
    for (k, name) in ["a.mkv", "b.mkv", "c.mkv"].iter().enumerate() {
        make_video(&videos.join(name), "32x24", 12 + k);
    }
    let shown = ok(&["frames", "--data", s(&videos), "--seq-len", "6"]);
    assert!(
        shown.stdout.contains("3 video(s), 39 frames, 24x32"),
        "{}",
        shown.stdout
    );
    let out = dir.path().join("out");
    let run = ok(&[
        "--model",
        "conv",
        "--data",
        s(&videos),
        "--seq-len",
        "6",
        "--every",
        "2",
        "--epochs",
        "1",
        "--quiet",
        "--out",
        s(&out),
    ]);
    assert!(run.stdout.contains("3 videos"), "{}", run.stdout);
    assert!(out.join("conv.csv").exists());
    // --every thins video files only.
    let err = fails(&["frames", "--every", "2"]);
    assert!(err.contains("--every applies to video files"), "{err}");
}

#[test]
fn without_ffmpeg_the_error_says_what_to_install() {
    let root = repo_root();
    let err = bench_cli_env(
        &["frames", "--data", s(&root.join("data/street.mkv"))],
        &[("PATH", "/nonexistent")],
    );
    assert_ne!(err.code, 0);
    assert!(
        err.stderr
            .contains("street.mkv: ffprobe not found: install FFmpeg")
            && err.stderr.contains("apt-get install ffmpeg"),
        "{}",
        err.stderr
    );
}

/// Process ids of the children of `parent` (from /proc).
fn children(parent: u32) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // The parent is the second field after the command name's closing parenthesis.
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        if after.split(' ').nth(1) == Some(&parent.to_string()) {
            found.push(pid);
        }
    }
    found
}

#[test]
fn a_signal_while_a_video_decodes_ends_the_run_and_the_decoder() {
    if !have_ffmpeg() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let video = dir.path().join("long.mkv");
    make_video(&video, "640x480", 400);
    let out = dir.path().join("out");
    let (mut cmd, _workdir) = common::command();
    let mut child = ChildGuard::spawn(
        cmd.args(["--model", "conv", "--data", s(&video), "--out", s(&out)])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
    )
    .unwrap();
    let mut stderr = Lines::new(child.stderr.take().unwrap());
    stderr.until("loading 400 frames", Duration::from_secs(60));
    // The decoder starts once the probe is done.
    let deadline = Instant::now() + Duration::from_secs(30);
    let decoders = loop {
        let found = children(child.id());
        if !found.is_empty() || Instant::now() > deadline {
            break found;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(!decoders.is_empty(), "no decoder seen:\n{}", stderr.seen);
    child.signal(libc::SIGTERM);
    let status = child
        .wait_timeout(Duration::from_secs(60))
        .unwrap_or_else(|| panic!("still running 60 s after SIGTERM:\n{}", stderr.seen));
    assert_eq!(
        status.code(),
        Some(130),
        "{}",
        stderr.rest(Duration::from_secs(5))
    );
    // The decoder is gone too (killed, then reaped by init) within seconds.
    let gone = Instant::now() + Duration::from_secs(20);
    while decoders
        .iter()
        .any(|p| Path::new(&format!("/proc/{p}")).exists())
    {
        assert!(Instant::now() < gone, "decoder {decoders:?} still running");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!out.exists(), "{} was made", out.display());
}
