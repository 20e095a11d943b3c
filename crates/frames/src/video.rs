//! Video files (`.mp4`, `.avi`, `.mkv`, `.mov`, `.webm`, `.gif`, ...) as frames, decoded by
//! the `ffmpeg` program over a pipe: no Rust crate decodes these containers and codecs
//! without FFmpeg's C libraries (which `ffmpeg-next` binds, needing them and their headers
//! to build), and the program is what every user of these formats already has. `ffprobe`
//! counts the frames and reads the size first, before anything is decoded, so the memory
//! estimate and the refusal of impossible sizes work as for images.
//!
//! Frames come out of the pipe as 8-bit RGB and go through the same resizing and luma as
//! image files ([`crate::pixels`]), so a video and its frames written as PNGs load the same.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;

use image::{DynamicImage, RgbImage};

use crate::{pixels, resized, Error, Frames, LoadOptions, Result, MAX_FRAME_PIXELS};

/// Extensions (lower case) of the files read as videos.
pub const VIDEO_EXTENSIONS: [&str; 10] = [
    "mp4", "avi", "mkv", "mov", "webm", "gif", "mpg", "mpeg", "ogv", "m4v",
];

/// Whether `path` names a video file by its extension (it need not exist).
pub fn is_video(path: &Path) -> bool {
    !path.is_dir()
        && path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| VIDEO_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// What to install where a program is missing.
const INSTALL: &str = "install FFmpeg to read video files (Debian/Ubuntu: apt-get install \
    ffmpeg; macOS: brew install ffmpeg)";

fn video_err(path: &Path, reason: impl Into<String>) -> Error {
    Error::Video {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Runs `program` with `args`, its output captured, or says what to install.
fn run(program: &str, path: &Path, args: &[&std::ffi::OsStr]) -> Result<std::process::Output> {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                video_err(path, format!("{program} not found: {INSTALL}"))
            }
            _ => video_err(path, format!("cannot run {program}: {e}")),
        })
}

/// The last line a program wrote on stderr, for an error message.
fn last_line(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let line = text.lines().rev().find(|l| !l.trim().is_empty());
    line.unwrap_or("no message").trim().to_string()
}

/// A video's frame count (frames `--every` and `--max-frames` keep) and size (width,
/// height), from `ffprobe`'s packet count and stream header: nothing is decoded.
pub fn probe(path: &Path, options: &LoadOptions) -> Result<(usize, u32, u32)> {
    if std::fs::metadata(path).is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound) {
        return Err(video_err(path, "no such file"));
    }
    let args: Vec<&std::ffi::OsStr> = [
        "-v",
        "warning",
        "-select_streams",
        "v:0",
        "-count_packets",
        "-show_entries",
        "stream=width,height,nb_read_packets",
        "-of",
        "csv=p=0",
    ]
    .iter()
    .map(std::ffi::OsStr::new)
    .chain([path.as_os_str()])
    .collect();
    let out = run("ffprobe", path, &args)?;
    if !out.status.success() {
        return Err(video_err(
            path,
            format!("not a video ffprobe can read: {}", last_line(&out.stderr)),
        ));
    }
    // Reading every packet finds a file cut short, which decodes without an error but
    // with fewer frames than it holds; other warnings (a keyframe flag missing in an old
    // Ogg file) leave frames that decode, and are let through.
    let warnings = String::from_utf8_lossy(&out.stderr).to_ascii_lowercase();
    if let Some(line) = warnings
        .lines()
        .find(|l| l.contains("ended prematurely") || l.contains("truncat"))
    {
        return Err(video_err(
            path,
            format!("cut short or damaged (ffprobe: {})", line.trim()),
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let fields: Vec<u64> = text
        .trim()
        .split(',')
        .map(|f| f.trim().parse().unwrap_or(0))
        .collect();
    let (width, height, packets) = match fields.as_slice() {
        [w, h, n, ..] => (*w, *h, *n),
        _ => return Err(video_err(path, "no video stream in this file")),
    };
    if width == 0 || height == 0 || packets == 0 {
        return Err(video_err(path, "no video frames in this file"));
    }
    if width * height > MAX_FRAME_PIXELS {
        return Err(video_err(
            path,
            format!("its frames are {width}x{height}, more than 8K video; not supported"),
        ));
    }
    Ok((kept(packets as usize, options), width as u32, height as u32))
}

/// Frames of `total` that `--every` and `--max-frames` keep.
fn kept(total: usize, options: &LoadOptions) -> usize {
    let every = options.every.unwrap_or(1).max(1);
    let count = total.div_ceil(every);
    options.max_frames.map_or(count, |m| count.min(m))
}

/// Decoders running now, so that a signal handler can end them with the process.
static DECODERS: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// Ends every decoder still running (SIGKILL): for a signal handler about to exit.
pub fn kill_decoders() {
    if let Ok(pids) = DECODERS.lock() {
        for &pid in pids.iter() {
            // SAFETY: kill(2) with a pid this process spawned and has not reaped.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGKILL);
            }
        }
    }
}

/// A running decoder, ended and reaped when dropped.
struct Decoder(Child);

impl Drop for Decoder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        if let Ok(mut pids) = DECODERS.lock() {
            pids.retain(|&p| p != self.0.id());
        }
    }
}

/// Decodes the video at `path` into frames `[T, C, H, W]` (`options.size`, `color`,
/// `every`, `max_frames` applied). A file that is not a video, is cut short or holds no
/// frame is refused naming it.
pub fn load(path: &Path, options: &LoadOptions) -> Result<Frames> {
    let (expected, width, height) = probe(path, options)?;
    let mut decoder = spawn_decoder(path, options, width, height)?;
    let mut stderr = decoder.0.stderr.take().expect("piped");
    let errors = std::thread::spawn(move || {
        let mut text = Vec::new();
        let _ = stderr.read_to_end(&mut text);
        text
    });
    let mut stdout = decoder.0.stdout.take().expect("piped");
    let frame_bytes = width as usize * height as usize * 3;
    let mut buffer = vec![0u8; frame_bytes];
    let mut values: Vec<f32> = Vec::new();
    let mut paths = Vec::new();
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let name = name.unwrap_or_default();
    loop {
        match read_frame(&mut stdout, &mut buffer) {
            Ok(true) => {}
            Ok(false) => break,
            Err(Some(got)) => {
                return Err(video_err(
                    path,
                    format!("cut short: the last frame has {got} of its {frame_bytes} bytes"),
                ))
            }
            Err(None) => return Err(video_err(path, "cannot read the decoder's output")),
        }
        let image = RgbImage::from_raw(width, height, buffer.clone()).expect("sized above");
        let image = resized(DynamicImage::ImageRgb8(image), options.size);
        let frame = pixels(&image, options.color);
        if values.is_empty() {
            values.reserve_exact(frame.len() * expected.max(1));
        }
        values.extend(frame);
        paths.push(PathBuf::from(format!("{name}#{}", paths.len())));
    }
    let status = decoder
        .0
        .wait()
        .map_err(|e| video_err(path, e.to_string()))?;
    let stderr = errors.join().unwrap_or_default();
    if !status.success() {
        return Err(video_err(
            path,
            format!("ffmpeg cannot decode it: {}", last_line(&stderr)),
        ));
    }
    if paths.is_empty() {
        return Err(video_err(path, "no video frames in this file"));
    }
    let (h, w) = match options.size {
        Some(size) => (size.height as usize, size.width as usize),
        None => (height as usize, width as usize),
    };
    let shape = (paths.len(), options.color.channels(), h, w);
    let data = candle_core::Tensor::from_vec(values, shape, &candle_core::Device::Cpu)?;
    Ok(Frames { data, paths, name })
}

/// Starts ffmpeg decoding `path` to raw RGB frames of `width x height` on its stdout,
/// registered so that a signal handler can end it ([`kill_decoders`]).
fn spawn_decoder(path: &Path, options: &LoadOptions, width: u32, height: u32) -> Result<Decoder> {
    let every = options.every.unwrap_or(1).max(1);
    let mut command = Command::new("ffmpeg");
    command
        .args(["-nostdin", "-v", "error", "-i"])
        .arg(path)
        .args(["-map", "0:v:0"]);
    // The probed size, enforced: a stream whose decoded frames differ from its header (an
    // Ogg Theora file's coded size) still comes out as the frames the probe promised.
    let mut filters = vec![format!("scale={width}:{height}")];
    if every > 1 {
        filters.insert(0, format!("select=not(mod(n\\,{every}))"));
    }
    command.args(["-vf", &filters.join(",")]);
    command.args(["-fps_mode", "passthrough"]);
    if let Some(max) = options.max_frames {
        command.args(["-frames:v", &max.to_string()]);
    }
    command
        .args(["-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = command.spawn().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => video_err(path, format!("ffmpeg not found: {INSTALL}")),
        _ => video_err(path, format!("cannot run ffmpeg: {e}")),
    })?;
    if let Ok(mut pids) = DECODERS.lock() {
        pids.push(child.id());
    }
    Ok(Decoder(child))
}

/// Fills `buffer` with the next frame: `Ok(true)`, or `Ok(false)` at the end of the stream;
/// `Err(Some(n))` where the stream ends `n` bytes into a frame, `Err(None)` on a read error.
fn read_frame(
    stream: &mut impl Read,
    buffer: &mut [u8],
) -> std::result::Result<bool, Option<usize>> {
    let mut filled = 0;
    while filled < buffer.len() {
        match stream.read(&mut buffer[filled..]) {
            Ok(0) if filled == 0 => return Ok(false),
            Ok(0) => return Err(Some(filled)),
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return Err(None),
        }
    }
    Ok(true)
}
