//! Load a folder of video frames and cut it into training windows.
//!
//! This crate knows nothing of models. It turns a directory of images into a tensor of
//! frames in `[0, 1]`, splits it into a training and a test part, and cuts each part into
//! windows (short sequences) that a next-frame model trains on.
//!
//! Dimension legend used throughout: `T` frames in time, `C` channels (1 for luma, 3 for
//! RGB), `H x W` frame height and width, `L` window length.
//!
//! The seed's data (152 KITTI frames, 65x65 grey) gives 126 training frames cut into 5
//! windows of 26 with stride 25 (neighbouring windows share one frame), and 26 test frames,
//! one window:
//!
//! ```
//! use frames::{Split, WindowSpec};
//! let spec = WindowSpec::seed();
//! let split = Split::new(152, None, &spec).unwrap();
//! assert_eq!((split.train, split.test), (126, 26));
//! assert_eq!(spec.starts(split.train), vec![0, 25, 50, 75, 100]);
//! assert_eq!(spec.starts(split.test), vec![0]);
//! ```

use std::cmp::Ordering;
use std::fmt;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use image::DynamicImage;

pub mod moving_mnist;
pub mod npy;
pub mod video;

/// Everything that can go wrong turning a folder into frames and windows. Every variant
/// that concerns a file or folder carries its path.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: cannot read the frames folder: {error}")]
    ReadDir {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path}: not a directory")]
    NotADirectory { path: PathBuf },
    #[error(
        "{path}: no image files (png, jpg, jpeg, bmp) in this folder, nor folders of them, \
         nor video files"
    )]
    NoImages { path: PathBuf },
    #[error("{path}: cannot decode image: {reason}")]
    Decode { path: PathBuf, reason: String },
    #[error(
        "{path}: frame is {got_w}x{got_h} but {first} is {want_w}x{want_h}; \
         frames must share one size (pass --size to resize them all)"
    )]
    MixedSizes {
        path: PathBuf,
        first: PathBuf,
        got_w: u32,
        got_h: u32,
        want_w: u32,
        want_h: u32,
    },
    #[error("{0}")]
    Split(String),
    #[error("invalid size {0:?}: expected N (square) or HxW, e.g. 65 or 64x80, each at least 1")]
    BadSize(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("{path}: {reason}")]
    Npy { path: PathBuf, reason: String },
    #[error("{path}: {reason}")]
    Video { path: PathBuf, reason: String },
    #[error(transparent)]
    Tensor(#[from] candle_core::Error),
}

pub type Result<T> = std::result::Result<T, Error>;

/// Extensions (lower case) of the files treated as frames; anything else in the folder is
/// skipped, so a README or a script can sit beside the images.
pub const IMAGE_EXTENSIONS: [&str; 4] = ["png", "jpg", "jpeg", "bmp"];

/// A frame size, height by width, in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size {
    pub height: u32,
    pub width: u32,
}

impl Size {
    /// Parses `65` (square) or `64x80` (height x width).
    pub fn parse(text: &str) -> Result<Size> {
        let bad = || Error::BadSize(text.to_string());
        let number = |s: &str| {
            s.trim()
                .parse::<u32>()
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(bad)
        };
        let size = match text.split_once(['x', 'X']) {
            Some((h, w)) => Size {
                height: number(h)?,
                width: number(w)?,
            },
            None => {
                let side = number(text)?;
                Size {
                    height: side,
                    width: side,
                }
            }
        };
        let pixels = u64::from(size.height) * u64::from(size.width);
        if pixels > MAX_FRAME_PIXELS {
            return Err(Error::TooLarge(format!(
                "{text}: frames of {size} are {pixels} pixels, more than the {MAX_FRAME_PIXELS} \
                 (8K video) a frame may have"
            )));
        }
        Ok(size)
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}", self.height, self.width)
    }
}

/// How pixels become channel values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ColorMode {
    /// One channel: luma `0.299 R + 0.587 G + 0.114 B` (ITU-R BT.601, as PIL's `convert("L")`
    /// and OpenCV's `COLOR_RGB2GRAY`, which is how KITTI frames are usually made grey).
    #[default]
    Luma,
    /// Three channels, R, G, B.
    Rgb,
}

impl ColorMode {
    pub fn channels(self) -> usize {
        match self {
            ColorMode::Luma => 1,
            ColorMode::Rgb => 3,
        }
    }
}

/// How to read a folder.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoadOptions {
    /// Resize every frame to this size (bilinear, with the filter widened when shrinking so
    /// it averages like an area filter). `None`: all frames must already share one size.
    pub size: Option<Size>,
    /// Luma (default) or RGB.
    pub color: ColorMode,
    /// A folder of videos: how many (the last, in name order) are held out for testing.
    /// `None`: a sixth, at least one.
    pub test_videos: Option<usize>,
    /// A four-dimensional `.npy` file's axes.
    pub npy_layout: npy::Layout4,
    /// Video files: keep every Nth frame (`None`: every frame).
    pub every: Option<usize>,
    /// Video files: at most this many frames of each (after `every`).
    pub max_frames: Option<usize>,
}

/// One video: the frames of a folder, in natural name order, or generated ones.
#[derive(Debug, Clone)]
pub struct Frames {
    /// `[T, C, H, W]`, f32 in `[0, 1]`, on the CPU.
    pub data: Tensor,
    /// The file each frame came from, in the same order (empty for generated frames).
    pub paths: Vec<PathBuf>,
    /// The folder's name, or the generated sequence's.
    pub name: String,
}

impl Frames {
    pub fn len(&self) -> usize {
        self.data.dims()[0]
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Frame size (height, width).
    pub fn size(&self) -> Size {
        let (_, _, h, w) = self.data.dims4().expect("frames are [T, C, H, W]");
        Size {
            height: h as u32,
            width: w as u32,
        }
    }

    pub fn channels(&self) -> usize {
        self.data.dims()[1]
    }
}

/// Compares file names the way a person orders frames: runs of digits compare as numbers,
/// so `frame_2.png` comes before `frame_10.png`; other text compares as text.
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    loop {
        match (a.first(), b.first()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) if x.is_ascii_digit() && y.is_ascii_digit() => {
                let (da, ra) = split_digits(a);
                let (db, rb) = split_digits(b);
                // Compare the numbers without parsing (names may hold more digits than u64):
                // strip leading zeros, then longer is larger, then digit by digit. Equal
                // values with different zero padding fall back to the padding.
                let (ta, tb) = (trim_zeros(da), trim_zeros(db));
                let by_value = ta.len().cmp(&tb.len()).then_with(|| ta.cmp(tb));
                let ord = by_value.then_with(|| da.len().cmp(&db.len()));
                if ord != Ordering::Equal {
                    return ord;
                }
                (a, b) = (ra, rb);
            }
            (Some(x), Some(y)) => {
                if x != y {
                    return x.cmp(y);
                }
                (a, b) = (&a[1..], &b[1..]);
            }
        }
    }
}

fn split_digits(s: &[u8]) -> (&[u8], &[u8]) {
    let n = s.iter().take_while(|c| c.is_ascii_digit()).count();
    s.split_at(n)
}

fn trim_zeros(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|&&c| c == b'0').count();
    &s[n..]
}

/// The image files of `dir` (by extension, case-insensitive), in natural name order.
pub fn list_images(dir: &Path) -> Result<Vec<PathBuf>> {
    let read_err = |error| Error::ReadDir {
        path: dir.to_path_buf(),
        error,
    };
    let meta = std::fs::metadata(dir).map_err(read_err)?;
    if !meta.is_dir() {
        return Err(Error::NotADirectory {
            path: dir.to_path_buf(),
        });
    }
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read_err)? {
        let path = entry.map_err(read_err)?.path();
        let is_image = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()));
        // Not `is_file`: a broken link or a file we may not read, named like a frame, is a
        // missing frame and must fail naming itself rather than vanish from the sequence.
        if is_image && !path.is_dir() {
            paths.push(path);
        }
    }
    if paths.is_empty() {
        return Err(Error::NoImages {
            path: dir.to_path_buf(),
        });
    }
    paths.sort_by(|a, b| natural_cmp(&file_name(a), &file_name(b)));
    Ok(paths)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The most pixels a frame may have: 8K video (7680 x 4320) fits. The image crate's own
/// limits (512 MB of decoded pixels) let through a 530-byte JPEG whose header claims
/// 1544 x 65026 pixels (found by fuzzing): loading it took 2.3 s and 900 MB, for a frame no
/// model here could train on.
pub const MAX_FRAME_PIXELS: u64 = 1 << 25;

/// Decodes one image file. A header that claims more than [`MAX_FRAME_PIXELS`], or more than
/// the decoder's own limits, is refused before anything is allocated.
pub fn decode(path: &Path) -> Result<DynamicImage> {
    let decode_err = |reason: String| Error::Decode {
        path: path.to_path_buf(),
        reason,
    };
    let reader = || {
        image::ImageReader::open(path)
            .map_err(|e| decode_err(e.to_string()))?
            .with_guessed_format()
            .map_err(|e| decode_err(e.to_string()))
    };
    // The header alone first; a header the decoder cannot read is reported by `decode`.
    let dimensions = reader()?.into_dimensions().ok();
    let too_large = |limit: &dyn std::fmt::Display| {
        let claimed = dimensions
            .map(|(w, h)| format!("it claims {w}x{h} pixels, "))
            .unwrap_or_default();
        decode_err(format!(
            "{claimed}more than the decoder's limits allow ({limit}); frames this large are \
             not supported"
        ))
    };
    if let Some((w, h)) = dimensions {
        if u64::from(w) * u64::from(h) > MAX_FRAME_PIXELS {
            return Err(too_large(&format!("{MAX_FRAME_PIXELS} pixels, 8K video")));
        }
    }
    reader()?.decode().map_err(|e| match e {
        image::ImageError::Limits(limit) => too_large(&limit),
        e => decode_err(e.to_string()),
    })
}

/// Channel values of one image, row-major, `[C, H, W]` flattened, in `[0, 1]`.
///
/// Luma uses BT.601 weights on the stored (gamma-encoded) values, as PIL and OpenCV do;
/// an image that is already grey is taken as it is.
pub fn pixels(image: &DynamicImage, color: ColorMode) -> Vec<f32> {
    let is_grey = matches!(
        image,
        DynamicImage::ImageLuma8(_)
            | DynamicImage::ImageLumaA8(_)
            | DynamicImage::ImageLuma16(_)
            | DynamicImage::ImageLumaA16(_)
    );
    match color {
        ColorMode::Luma if is_grey => image.to_luma32f().into_raw(),
        ColorMode::Luma => image
            .to_rgb32f()
            .pixels()
            .map(|p| luma(p.0[0], p.0[1], p.0[2]))
            .collect(),
        ColorMode::Rgb => {
            let rgb = image.to_rgb32f();
            let plane = (rgb.width() * rgb.height()) as usize;
            let mut out = vec![0f32; 3 * plane];
            for (i, p) in rgb.pixels().enumerate() {
                for c in 0..3 {
                    out[c * plane + i] = p.0[c];
                }
            }
            out
        }
    }
}

/// BT.601 luma of gamma-encoded R, G, B in `[0, 1]`; a grey pixel's is its value exactly
/// (the weights' sum in f32 would move it by a rounding), so that a grey video decoded as
/// RGB loads as its grey frames do.
pub fn luma(r: f32, g: f32, b: f32) -> f32 {
    if r == g && g == b {
        return r;
    }
    0.299 * r + 0.587 * g + 0.114 * b
}

/// What loading `dir` would give, read from the file names and the first frame's header
/// alone: the number of frames and their shape `[C, H, W]` (after `options.size`), before
/// any is decoded. A folder of videos counts the frames of all of them.
pub fn probe(dir: &Path, options: &LoadOptions) -> Result<(usize, [usize; 3])> {
    if npy::is_npy(dir) {
        let videos = npy::read_header(dir)?.videos(dir, options.npy_layout)?;
        let [c, h, w] = videos.frame;
        let channels = match options.color {
            ColorMode::Luma => 1,
            ColorMode::Rgb => c,
        };
        return Ok((videos.count.saturating_mul(videos.frames), [channels, h, w]));
    }
    if video::is_video(dir) {
        let (count, w, h) = video::probe(dir, options)?;
        return Ok((count, shape_of(options, w, h)));
    }
    if let Some((train, test)) = split_layout(dir) {
        let (train, shape) = probe(&train, options)?;
        let (test, _) = probe(&test, options)?;
        return Ok((train + test, shape));
    }
    let (count, first) = match list_images(dir) {
        Ok(paths) => {
            only_for_videos(dir, options)?;
            (paths.len(), paths[0].clone())
        }
        Err(Error::NoImages { .. }) => {
            let mut count = 0;
            let mut first = None;
            for source in list_videos(dir)? {
                if video::is_video(&source) {
                    let (n, w, h) = video::probe(&source, options)?;
                    count += n;
                    first.get_or_insert((source, Some((w, h))));
                    continue;
                }
                only_for_videos(&source, options)?;
                let paths = list_images(&source)?;
                count += paths.len();
                first.get_or_insert_with(|| (paths[0].clone(), None));
            }
            let first = first.expect("list_videos returns at least one video");
            if let (_, Some((w, h))) = first {
                return Ok((count, shape_of(options, w, h)));
            }
            (count, first.0)
        }
        Err(e) => return Err(e),
    };
    let size = match options.size {
        Some(size) => size,
        None => {
            let (w, h) = image::ImageReader::open(&first)
                .and_then(|r| r.with_guessed_format())
                .map_err(|e| Error::Decode {
                    path: first.clone(),
                    reason: e.to_string(),
                })?
                .into_dimensions()
                .map_err(|e| Error::Decode {
                    path: first.clone(),
                    reason: e.to_string(),
                })?;
            Size {
                height: h,
                width: w,
            }
        }
    };
    Ok((
        count,
        [
            options.color.channels(),
            size.height as usize,
            size.width as usize,
        ],
    ))
}

/// `dir/train` and `dir/test`, where `dir` is laid out as a split (as KITTI, Caltech,
/// UCF101 and OpenSTL's datasets are): each a folder of frames (one video), or a folder of
/// videos (folders of frames, or video files).
pub fn split_layout(dir: &Path) -> Option<(PathBuf, PathBuf)> {
    let (train, test) = (dir.join("train"), dir.join("test"));
    (train.is_dir() && test.is_dir()).then_some((train, test))
}

/// The videos of one side of a split layout, each named `<side>/<name>`.
fn load_side(side: &Path, label: &str, options: &LoadOptions) -> Result<Vec<Frames>> {
    let mut videos = match list_images(side) {
        Ok(_) => vec![load_video(side, options)?],
        Err(Error::NoImages { .. }) => list_videos(side)?
            .iter()
            .map(|v| load_video(v, options))
            .collect::<Result<Vec<_>>>()?,
        Err(e) => return Err(e),
    };
    for video in &mut videos {
        video.name = format!("{label}/{}", video.name);
    }
    Ok(videos)
}

/// `[C, H, W]` of frames `w x h` as `options` load them.
fn shape_of(options: &LoadOptions, w: u32, h: u32) -> [usize; 3] {
    let size = options.size.unwrap_or(Size {
        height: h,
        width: w,
    });
    [
        options.color.channels(),
        size.height as usize,
        size.width as usize,
    ]
}

/// Refuses `--every` and `--max-frames` for a folder of images: they thin video files.
fn only_for_videos(dir: &Path, options: &LoadOptions) -> Result<()> {
    for (flag, given) in [
        ("--every", options.every.is_some()),
        ("--max-frames", options.max_frames.is_some()),
    ] {
        if given {
            return Err(Error::Split(format!(
                "{}: {flag} applies to video files; this is a folder of images",
                dir.display()
            )));
        }
    }
    Ok(())
}

/// One video: a video file, or a folder of its frames.
pub fn load_video(path: &Path, options: &LoadOptions) -> Result<Frames> {
    match video::is_video(path) {
        true => video::load(path, options),
        false => {
            only_for_videos(path, options)?;
            load_dir(path, options)
        }
    }
}

/// `image` at `size` (bilinear, with the filter widened when shrinking so that it averages
/// like an area filter), or as it is.
pub fn resized(image: DynamicImage, size: Option<Size>) -> DynamicImage {
    match size {
        Some(size) if (image.height(), image.width()) != (size.height, size.width) => image
            .resize_exact(
                size.width,
                size.height,
                image::imageops::FilterType::Triangle,
            ),
        _ => image,
    }
}

/// Loads every image of `dir` as one tensor `[T, C, H, W]` in natural name order.
pub fn load_dir(dir: &Path, options: &LoadOptions) -> Result<Frames> {
    let paths = list_images(dir)?;
    let mut values = Vec::new();
    let mut first: Option<(PathBuf, u32, u32)> = None;
    for path in &paths {
        let image = resized(decode(path)?, options.size);
        let (w, h) = (image.width(), image.height());
        match &first {
            None => first = Some((path.clone(), w, h)),
            Some((first_path, fw, fh)) if (*fw, *fh) != (w, h) => {
                return Err(Error::MixedSizes {
                    path: path.clone(),
                    first: first_path.clone(),
                    got_w: w,
                    got_h: h,
                    want_w: *fw,
                    want_h: *fh,
                })
            }
            Some(_) => {}
        }
        let frame = pixels(&image, options.color);
        // Room for all frames at once: grown by doubling instead, the last copy would hold
        // up to three times the frames.
        values.reserve_exact(frame.len() * paths.len() - values.len());
        values.extend(frame);
    }
    let (_, w, h) = first.expect("list_images returns at least one file");
    let shape = (
        paths.len(),
        options.color.channels(),
        h as usize,
        w as usize,
    );
    let data = Tensor::from_vec(values, shape, &Device::Cpu)?;
    Ok(Frames {
        data,
        paths,
        name: file_name(dir),
    })
}

/// Window length and stride.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowSpec {
    /// Frames per window, `L`. A window gives `L - 1` (input, target) steps.
    pub len: usize,
    /// Frames between the starts of neighbouring windows.
    pub stride: usize,
}

impl WindowSpec {
    /// The seed's windows: 26 frames, stride 25, so neighbours share one frame.
    pub fn seed() -> WindowSpec {
        WindowSpec::new(26, None).expect("26 is a valid window length")
    }

    /// A window of `len` frames; the stride defaults to `len - 1` (the seed's rule: each
    /// window starts on the frame the previous one ended with).
    pub fn new(len: usize, stride: Option<usize>) -> Result<WindowSpec> {
        if len < 2 {
            return Err(Error::Split(format!(
                "--seq-len {len}: a window needs at least 2 frames (one input, one target)"
            )));
        }
        let stride = stride.unwrap_or(len - 1);
        if stride == 0 {
            return Err(Error::Split(
                "--stride 0: the stride must be at least 1".into(),
            ));
        }
        Ok(WindowSpec { len, stride })
    }

    /// Start indices of the windows that fit in `frames` frames; frames left over after the
    /// last whole window are not used.
    pub fn starts(&self, frames: usize) -> Vec<usize> {
        if frames < self.len {
            return Vec::new();
        }
        (0..=(frames - self.len) / self.stride)
            .map(|j| j * self.stride)
            .collect()
    }

    /// Number of windows in `frames` frames.
    pub fn count(&self, frames: usize) -> usize {
        self.starts(frames).len()
    }
}

/// How many leading frames train; the rest are held out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Split {
    pub train: usize,
    pub test: usize,
}

impl Split {
    /// Splits `total` frames. With `train_frames` given it is used as is. Without it the
    /// default is `min(floor(5/6 * total), total - L)`: five sixths train (the seed's 126 of
    /// 152), but never fewer than one window's worth of test frames. Both parts must hold
    /// at least one window.
    pub fn new(total: usize, train_frames: Option<usize>, windows: &WindowSpec) -> Result<Split> {
        let l = windows.len;
        let train = match train_frames {
            Some(n) if n >= total => {
                return Err(Error::Split(format!(
                    "--train-frames {n}: the folder has only {total} frames, so no test frames \
                     would be left; use at most {}",
                    total.saturating_sub(l)
                )))
            }
            Some(n) => n,
            None => (total * 5 / 6).min(total.saturating_sub(l)),
        };
        let test = total - train;
        if train < l {
            return Err(Error::Split(format!(
                "the training split has {train} frames but one window needs {l} \
                 (--seq-len {l}); {total} frames in all, at least {} needed for one \
                 training and one test window",
                2 * l
            )));
        }
        if test < l {
            return Err(Error::Split(format!(
                "the test split has {test} frames but one window needs {l} (--seq-len {l}); \
                 lower --train-frames or --seq-len"
            )));
        }
        Ok(Split { train, test })
    }
}

/// Which frames are held out for testing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holdout {
    /// One video: its last frames (the seed's split).
    Frames(Split),
    /// Many videos: the last `test` of them, whole; windows never cross two videos.
    Videos { train: usize, test: usize },
}

/// Videos cut into training and test windows.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// What the frames came from, as it was named: a folder, or `moving-mnist`.
    pub source: String,
    /// One video for a folder of frames; one per subfolder (or generated sequence).
    pub videos: Vec<Frames>,
    pub holdout: Holdout,
    pub windows: WindowSpec,
    /// The last frames (one video) or videos (several) of the training part, held out to
    /// validate on ([`Dataset::with_validation`]); 0: none.
    pub validation: usize,
}

impl Dataset {
    /// Loads `dir`: a folder of frames (one video, split by frames: `train_frames`, or the
    /// default of [`Split::new`]), or a folder of folders of frames (one video each, in
    /// natural name order, the last `options.test_videos` held out). Errors name the folder
    /// and what is missing.
    pub fn load(
        dir: &Path,
        options: &LoadOptions,
        windows: WindowSpec,
        train_frames: Option<usize>,
    ) -> Result<Dataset> {
        let source = dir.display().to_string();
        if npy::is_npy(dir) {
            return Self::load_npy(dir, options, windows, train_frames);
        }
        if video::is_video(dir) {
            return Self::one_video(
                source,
                video::load(dir, options)?,
                options,
                windows,
                train_frames,
            );
        }
        if let Some((train, test)) = split_layout(dir) {
            for (flag, given) in [
                ("--train-frames", train_frames.is_some()),
                ("--test-videos", options.test_videos.is_some()),
            ] {
                if given {
                    return Err(Error::Split(format!(
                        "{source}: {flag}: this folder's split is its train/ and test/ folders"
                    )));
                }
            }
            let mut videos = load_side(&train, "train", options)?;
            let test = load_side(&test, "test", options)?;
            let count = test.len();
            videos.extend(test);
            return Self::of_videos(source, videos, windows, Some(count));
        }
        match list_images(dir) {
            Err(Error::NoImages { .. }) => {
                let folders = list_videos(dir)?;
                if train_frames.is_some() {
                    return Err(Error::Split(format!(
                        "{source}: --train-frames splits the frames of one video; this is a \
                         folder of {} videos, held out whole (--test-videos)",
                        folders.len()
                    )));
                }
                let videos = folders
                    .iter()
                    .map(|f| load_video(f, options))
                    .collect::<Result<Vec<_>>>()?;
                Self::of_videos(source, videos, windows, options.test_videos)
            }
            Err(e) => Err(e),
            Ok(_) => {
                only_for_videos(dir, options)?;
                Self::one_video(
                    source,
                    load_dir(dir, options)?,
                    options,
                    windows,
                    train_frames,
                )
            }
        }
    }

    /// One video, split by frames: `train_frames`, or the default of [`Split::new`].
    fn one_video(
        source: String,
        frames: Frames,
        options: &LoadOptions,
        windows: WindowSpec,
        train_frames: Option<usize>,
    ) -> Result<Dataset> {
        if options.test_videos.is_some() {
            return Err(Error::Split(format!(
                "{source}: --test-videos holds out whole videos; this is one video, split by \
                 --train-frames"
            )));
        }
        let split = Split::new(frames.len(), train_frames, &windows)
            .map_err(|e| Error::Split(format!("{source}: {e}")))?;
        Ok(Dataset {
            source,
            videos: vec![frames],
            holdout: Holdout::Frames(split),
            windows,
            validation: 0,
        })
    }

    /// The sequences of a `.npy` file, one video each, the last `options.test_videos` (a
    /// sixth, at least one) held out whole.
    fn load_npy(
        path: &Path,
        options: &LoadOptions,
        windows: WindowSpec,
        train_frames: Option<usize>,
    ) -> Result<Dataset> {
        let refuse = |flag: &str| {
            Err(Error::Split(format!(
                "{}: {flag} applies to image folders; a .npy file's frames are used at their \
                 size and its sequences are held out whole (--test-videos)",
                path.display()
            )))
        };
        if options.size.is_some() {
            return refuse("--size");
        }
        if train_frames.is_some() {
            return refuse("--train-frames");
        }
        if options.every.is_some() || options.max_frames.is_some() {
            return refuse("--every or --max-frames");
        }
        let videos = npy::load(path, options.npy_layout, options.color)?;
        Self::of_videos(
            path.display().to_string(),
            videos,
            windows,
            options.test_videos,
        )
    }

    /// Several videos of one size, the last `test` (default: a sixth, at least one) held out.
    pub fn of_videos(
        source: String,
        videos: Vec<Frames>,
        windows: WindowSpec,
        test: Option<usize>,
    ) -> Result<Dataset> {
        let count = videos.len();
        let test = test.unwrap_or((count / 6).max(1));
        if test == 0 || test >= count {
            return Err(Error::Split(format!(
                "{source}: {count} videos, {test} held out for testing: at least one must train \
                 and one test"
            )));
        }
        let first = &videos[0];
        for video in &videos[1..] {
            if video.data.dims()[1..] != first.data.dims()[1..] {
                return Err(Error::Split(format!(
                    "{source}: video {} is {} with {} channel(s) but {} is {} with {}; videos \
                     must share one size (pass --size to resize them all)",
                    video.name,
                    video.size(),
                    video.channels(),
                    first.name,
                    first.size(),
                    first.channels()
                )));
            }
        }
        let data = Dataset {
            source,
            videos,
            holdout: Holdout::Videos {
                train: count - test,
                test,
            },
            windows,
            validation: 0,
        };
        for (part, list) in [
            ("training", data.train_windows()?),
            ("test", data.test_windows()?),
        ] {
            if list.is_empty() {
                return Err(Error::Split(format!(
                    "{}: the {part} videos hold no window of {} frames (--seq-len); the \
                     shortest has {}",
                    data.source,
                    data.windows.len,
                    data.videos.iter().map(Frames::len).min().unwrap_or(0)
                )));
            }
        }
        Ok(data)
    }

    /// Moving MNIST sequences generated in memory ([`moving_mnist::MovingMnist`]): the
    /// training sequences, then the test ones, held out whole.
    pub fn moving_mnist(spec: &moving_mnist::MovingMnist, windows: WindowSpec) -> Result<Dataset> {
        let (mut videos, test) = spec.generate()?;
        let count = test.len();
        videos.extend(test);
        Self::of_videos("moving-mnist".into(), videos, windows, Some(count))
    }

    /// This dataset with its training videos replaced by `train` (a folder of videos, or
    /// sequences: Moving MNIST drawn afresh for an epoch), the test videos and the windows
    /// kept.
    pub fn with_train_videos(&self, train: Vec<Frames>) -> Result<Dataset> {
        let Holdout::Videos { test, .. } = self.holdout else {
            return Err(Error::Split(format!(
                "{}: one video split by frames has no training videos to replace",
                self.source
            )));
        };
        let count = train.len();
        let mut videos = train;
        videos.extend(self.videos[self.videos.len() - test..].iter().cloned());
        Ok(Dataset {
            source: self.source.clone(),
            videos,
            holdout: Holdout::Videos { train: count, test },
            windows: self.windows,
            validation: self.validation,
        })
    }

    /// `[C, H, W]` of every frame.
    pub fn frame_shape(&self) -> [usize; 3] {
        let dims = self.videos[0].data.dims();
        [dims[1], dims[2], dims[3]]
    }

    /// Frame size (height, width).
    pub fn size(&self) -> Size {
        self.videos[0].size()
    }

    pub fn channels(&self) -> usize {
        self.videos[0].channels()
    }

    /// Frames in all videos.
    pub fn frame_count(&self) -> usize {
        self.videos.iter().map(Frames::len).sum()
    }

    /// The training videos, and the frame range of each that trains.
    fn train_parts(&self) -> Vec<(&Frames, usize, usize)> {
        let kept = self.validation;
        match self.holdout {
            Holdout::Frames(split) => vec![(&self.videos[0], 0, split.train - kept)],
            Holdout::Videos { train, .. } => self.videos[..train - kept]
                .iter()
                .map(|v| (v, 0, v.len()))
                .collect(),
        }
    }

    fn validation_parts(&self) -> Vec<(&Frames, usize, usize)> {
        let kept = self.validation;
        match (self.holdout, kept) {
            (_, 0) => Vec::new(),
            (Holdout::Frames(split), _) => vec![(&self.videos[0], split.train - kept, kept)],
            (Holdout::Videos { train, .. }, _) => self.videos[train - kept..train]
                .iter()
                .map(|v| (v, 0, v.len()))
                .collect(),
        }
    }

    /// Validation windows, in order, each `[L, C, H, W]`: none without a validation split.
    pub fn validation_windows(&self) -> Result<Vec<Tensor>> {
        self.windows_of(&self.validation_parts())
    }

    /// Frames (one video) or videos (several) the training part has.
    fn training_part(&self) -> usize {
        match self.holdout {
            Holdout::Frames(split) => split.train,
            Holdout::Videos { train, .. } => train,
        }
    }

    /// A validation split the size `auto` picks: the last sixth of the training part, where
    /// it holds at least one window and leaves at least five (a sixth of the seed's 126
    /// training frames is 21, less than a window of 26: the seed has none); 0 otherwise.
    pub fn auto_validation(&self) -> usize {
        let n = self.training_part() / 6;
        match self.clone().with_validation(n) {
            Ok(d) if n > 0 && d.train_windows().map_or(0, |w| w.len()) >= 5 => n,
            _ => 0,
        }
    }

    /// This dataset with the last `n` frames (one video) or videos (several) of its
    /// training part held out for validation. Both parts must keep a window.
    pub fn with_validation(mut self, n: usize) -> Result<Dataset> {
        let (part, unit) = match self.holdout {
            Holdout::Frames(_) => (self.training_part(), "frames"),
            Holdout::Videos { .. } => (self.training_part(), "videos"),
        };
        if n == 0 {
            self.validation = 0;
            return Ok(self);
        }
        self.validation = n.min(part);
        let (train, validation) = (self.train_windows()?.len(), self.validation_windows());
        let validation = validation.map_or(0, |w| w.len());
        if n >= part || train == 0 || validation == 0 {
            return Err(Error::Split(format!(
                "{}: --validation {n}: of the {part} training {unit}, the last {n} would leave \
                 {train} training and {validation} validation windows of {} frames; both need \
                 one",
                self.source, self.windows.len
            )));
        }
        Ok(self)
    }

    fn test_parts(&self) -> Vec<(&Frames, usize, usize)> {
        match self.holdout {
            Holdout::Frames(split) => vec![(&self.videos[0], split.train, split.test)],
            Holdout::Videos { train, .. } => self.videos[train..]
                .iter()
                .map(|v| (v, 0, v.len()))
                .collect(),
        }
    }

    /// Training windows, in order, each `[L, C, H, W]`.
    pub fn train_windows(&self) -> Result<Vec<Tensor>> {
        self.windows_of(&self.train_parts())
    }

    /// Test windows, in order, each `[L, C, H, W]`.
    pub fn test_windows(&self) -> Result<Vec<Tensor>> {
        self.windows_of(&self.test_parts())
    }

    fn windows_of(&self, parts: &[(&Frames, usize, usize)]) -> Result<Vec<Tensor>> {
        let mut out = Vec::new();
        for (video, offset, frames) in parts {
            for s in self.windows.starts(*frames) {
                out.push(video.data.narrow(0, offset + s, self.windows.len)?);
            }
        }
        Ok(out)
    }

    /// Writes the split as a split layout ([`split_layout`]) of PNG frames (8-bit grey or
    /// RGB): every training video under `dir/train/<name>/000.png`, ..., every test video
    /// under `dir/test/<name>/`; one video split by frames becomes one training and one
    /// test video, the frames of each part. Loading the export gives the same split. A
    /// `dir` ending in `.npy` gets one uint8 array of every video instead ([`npy::write`]).
    pub fn export(&self, dir: &Path) -> Result<()> {
        if npy::is_npy(dir) {
            return npy::write(dir, &self.videos);
        }
        let base = |v: &Frames| v.name.rsplit('/').next().unwrap_or_default().to_string();
        let parts: Vec<(&str, String, Tensor)> = match self.holdout {
            Holdout::Frames(split) => {
                let video = &self.videos[0];
                vec![
                    ("train", base(video), video.data.narrow(0, 0, split.train)?),
                    (
                        "test",
                        base(video),
                        video.data.narrow(0, split.train, split.test)?,
                    ),
                ]
            }
            Holdout::Videos { train, test } => self.videos[..train + test]
                .iter()
                .enumerate()
                .map(|(k, v)| {
                    let side = if k < train { "train" } else { "test" };
                    (side, base(v), v.data.clone())
                })
                .collect(),
        };
        for (side, name, data) in parts {
            let folder = dir.join(side).join(name);
            std::fs::create_dir_all(&folder).map_err(|error| Error::ReadDir {
                path: folder.clone(),
                error,
            })?;
            let video = Frames {
                data,
                paths: Vec::new(),
                name: String::new(),
            };
            let (t, c, h, w) = video.data.dims4()?;
            let values = video.data.flatten_all()?.to_vec1::<f32>()?;
            let plane = h * w;
            for k in 0..t {
                let frame = &values[k * c * plane..(k + 1) * c * plane];
                let byte = |v: f32| (v.clamp(0.0, 1.0) * 255.0).round() as u8;
                let path = folder.join(format!("{k:03}.png"));
                let saved = if c == 1 {
                    image::GrayImage::from_raw(
                        w as u32,
                        h as u32,
                        frame.iter().map(|&v| byte(v)).collect(),
                    )
                    .expect("a [H, W] frame")
                    .save(&path)
                } else {
                    let rgb: Vec<u8> = (0..plane)
                        .flat_map(|i| (0..3).map(move |ch| (ch, i)))
                        .map(|(ch, i)| byte(frame[ch * plane + i]))
                        .collect();
                    image::RgbImage::from_raw(w as u32, h as u32, rgb)
                        .expect("a [3, H, W] frame")
                        .save(&path)
                };
                saved.map_err(|e| Error::Decode {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
            }
        }
        Ok(())
    }
}

/// The subfolders of `dir` (each a video's frames) and its video files, in natural name
/// order: a folder of videos.
pub fn list_videos(dir: &Path) -> Result<Vec<PathBuf>> {
    let read_err = |error| Error::ReadDir {
        path: dir.to_path_buf(),
        error,
    };
    let mut folders = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read_err)? {
        let path = entry.map_err(read_err)?.path();
        if path.is_dir() || video::is_video(&path) {
            folders.push(path);
        }
    }
    if folders.is_empty() {
        return Err(Error::NoImages {
            path: dir.to_path_buf(),
        });
    }
    folders.sort_by(|a, b| natural_cmp(&file_name(a), &file_name(b)));
    Ok(folders)
}
