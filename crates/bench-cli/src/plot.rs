//! Learning-curve figures from training CSVs (`epoch,train_loss,test_loss,...`).
//!
//! One figure, panels side by side: train loss and test loss per epoch, plus one optional
//! extra column, with one line per run. PNG or SVG by the output's extension.

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{anyhow, bail, ensure, Context, Result};
use image::codecs::png::PngEncoder;
use image::{ExtendedColorType, ImageEncoder};
use plotters::coord::ranged1d::{Ranged, ValueFormatter};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;

/// Height of the figure, and width of each panel, in pixels (PNG) or user units (SVG).
const PANEL_WIDTH: u32 = 600;
const FIGURE_HEIGHT: u32 = 450;

const LOSS_AXIS: &str = "loss (sum over 25 steps of per-step MSE)";

/// Log y only pays off when the values span more than this factor.
const LOG_SPAN: f64 = 20.0;

/// Tableau-10: distinct on white and for most colour-vision deficiencies.
const COLOURS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// Draws the learning curves of the runs in `csvs` into `out`.
///
/// Panels, left to right: `train_loss` and `test_loss` per epoch (log y when every value
/// is positive and they span more than a factor of 20), then, when `metric` is given,
/// that CSV column per epoch (linear y). One coloured line with point markers per run,
/// labelled by the CSV's file stem, or `parent/stem` where stems collide.
///
/// The format follows `out`'s extension, `png` (600x450 px per panel) or `svg`. The figure
/// is rendered in memory, written to a temporary file beside `out` and renamed onto it, so
/// `out` is either the old file or the complete new one.
///
/// # Errors
/// Naming the file concerned: no CSVs, an unreadable or malformed CSV (with its line),
/// a CSV with no rows, a missing column (listing the columns there are), an unsupported
/// extension, or a failure to render or write the figure.
pub fn plot(csvs: &[PathBuf], out: &Path, metric: Option<&str>) -> Result<()> {
    let format = OutputFormat::of(out)?;
    if csvs.is_empty() {
        bail!("no CSV files to plot into {}", out.display());
    }
    let labels = run_labels(csvs);
    let runs = csvs
        .iter()
        .zip(labels)
        .map(|(path, label)| Run::read(path, label, metric))
        .collect::<Result<Vec<_>>>()?;

    let mut panels = vec![
        Panel::new("train_loss", LOSS_AXIS, &runs, |run| &run.train_loss, true),
        Panel::new("test_loss", LOSS_AXIS, &runs, |run| &run.test_loss, true),
    ];
    if let Some(metric) = metric {
        panels.push(Panel::new(metric, metric, &runs, |run| &run.metric, false));
    }
    let epochs = padded_range(runs.iter().flat_map(|run| run.epoch.iter().copied()), false);
    let size = (PANEL_WIDTH * panels.len() as u32, FIGURE_HEIGHT);

    register_font()?;
    let bytes = render(format, size, &runs, &panels, &epochs)
        .with_context(|| format!("cannot render the plot {}", out.display()))?;
    harness::files::write_bytes_atomic(out, &bytes)
        .with_context(|| format!("cannot write the plot {}", out.display()))
}

/// The encoded figure, rendered in memory so that a failure leaves no file behind.
/// Forecasts' summaries (training's `<model>.summary.json` or `eval --json` files): `metric`
/// (mse, ssim or bce) of the k-th predicted frame against k, one line per file, and copying
/// the last frame (from the first file) dashed.
pub fn plot_horizon(files: &[PathBuf], out: &Path, metric: Option<&str>) -> Result<()> {
    let format = OutputFormat::of(out)?;
    let metric = metric.unwrap_or("mse");
    if !["mse", "ssim", "bce"].contains(&metric) {
        bail!("--metric {metric}: per frame ahead there are mse, ssim and bce");
    }
    if files.is_empty() {
        bail!("no summaries to plot into {}", out.display());
    }
    let labels = run_labels(files);
    let mut runs = Vec::new();
    let mut copy_last = None;
    for (path, label) in files.iter().zip(labels) {
        let (values, copy) = horizon_lists(path, metric)?;
        let ahead: Vec<f64> = (1..=values.len()).map(|k| k as f64).collect();
        if copy_last.is_none() {
            copy_last = Some(Run {
                label: "copy last frame".into(),
                epoch: ahead.clone(),
                train_loss: copy,
                test_loss: Vec::new(),
                metric: Vec::new(),
            });
        }
        runs.push(Run {
            label: label.trim_end_matches(".summary").to_string(),
            epoch: ahead,
            train_loss: values,
            test_loss: Vec::new(),
            metric: Vec::new(),
        });
    }
    runs.extend(copy_last);
    let title = match metric {
        "mse" => "MSE per pixel, per frame ahead",
        "ssim" => "SSIM per frame ahead",
        _ => "cross-entropy per frame, per frame ahead",
    };
    let mut panel = Panel::new(title, metric, &runs, |run| &run.train_loss, false);
    panel.x_label = "frames ahead";
    let ahead = padded_range(runs.iter().flat_map(|run| run.epoch.iter().copied()), false);
    register_font()?;
    let bytes = render(
        format,
        (PANEL_WIDTH + 200, FIGURE_HEIGHT),
        &runs,
        &[panel],
        &ahead,
    )
    .with_context(|| format!("cannot render the plot {}", out.display()))?;
    harness::files::write_bytes_atomic(out, &bytes)
        .with_context(|| format!("cannot write the plot {}", out.display()))
}

/// A forecast's `metric` per frame ahead in one summary or `eval --json` file: the model's
/// and copying the last frame's.
fn horizon_lists(path: &Path, metric: &str) -> Result<(Vec<f64>, Vec<f64>)> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{}: not JSON", path.display()))?;
    // Today's files keep the lists under `test.per_frame_ahead` with unit-named keys;
    // summaries written before that under `forecast.test` (eval's under `test`).
    let (test, copy, key) = match (json.get("forecast"), json.get("test")) {
        (_, Some(test)) if test.get("per_frame_ahead").is_some() => (
            &test["per_frame_ahead"],
            &json["copy_last_frame"]["per_frame_ahead"],
            per_frame_key(metric),
        ),
        (Some(f), _) if f.get("test").is_some() => (&f["test"], &f["copy_last_frame"], metric),
        (_, Some(test)) if test.get("mse").is_some() => (test, &json["copy_last_frame"], metric),
        _ => bail!(
            "{}: not a forecast's figures (a summary of a run with --context and --horizon, \
             or eval --context ... --json)",
            path.display()
        ),
    };
    let list = |v: &serde_json::Value| -> Result<Vec<f64>> {
        v[key]
            .as_array()
            .filter(|a| !a.is_empty())
            .ok_or_else(|| anyhow!("{}: no per-frame `{key}`", path.display()))?
            .iter()
            .map(|x| figure(x).ok_or_else(|| anyhow!("{}: `{key}` holds {x}", path.display())))
            .collect()
    };
    Ok((list(test)?, list(copy)?))
}

/// The key of `--metric`'s list under `per_frame_ahead`.
fn per_frame_key(metric: &str) -> &'static str {
    match metric {
        "mse" => "mse_per_pixel",
        "ssim" => "ssim",
        _ => "bce_per_frame",
    }
}

/// A figure as the summaries write it: a number, or `NaN`/`inf`/`-inf` as a string.
fn figure(x: &serde_json::Value) -> Option<f64> {
    match x.as_str() {
        Some("NaN") => Some(f64::NAN),
        Some("inf") => Some(f64::INFINITY),
        Some("-inf") => Some(f64::NEG_INFINITY),
        Some(_) => None,
        None => x.as_f64(),
    }
}

fn render(
    format: OutputFormat,
    (width, height): (u32, u32),
    runs: &[Run],
    panels: &[Panel],
    epochs: &Range<f64>,
) -> Result<Vec<u8>> {
    match format {
        OutputFormat::Png => {
            let mut rgb = vec![0; width as usize * height as usize * 3];
            let root = BitMapBackend::with_buffer(&mut rgb, (width, height)).into_drawing_area();
            draw(root, runs, panels, epochs)?;
            // Encoded with the crate's own `image` rather than plotters' `bitmap_encoder`,
            // which would add a second, older `image` (0.24) to the build.
            let mut png = Vec::new();
            PngEncoder::new(&mut png).write_image(&rgb, width, height, ExtendedColorType::Rgb8)?;
            Ok(png)
        }
        OutputFormat::Svg => {
            let mut svg = String::new();
            let root = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
            draw(root, runs, panels, epochs)?;
            Ok(svg.into_bytes())
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum OutputFormat {
    Png,
    Svg,
}

impl OutputFormat {
    fn of(out: &Path) -> Result<Self> {
        match out
            .extension()
            .and_then(|ext| ext.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("png") => Ok(Self::Png),
            Some("svg") => Ok(Self::Svg),
            _ => bail!(
                "cannot plot to {}: the output file name must end in .png or .svg",
                out.display()
            ),
        }
    }
}

/// Makes the bundled font the "sans-serif" family that plotters' text uses, so rendering
/// needs no system fonts. Registers once per process, however many plots are drawn.
pub(crate) fn register_font() -> Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let registered = *REGISTERED.get_or_init(|| {
        plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            include_bytes!("../assets/DejaVuSans.ttf"),
        )
        .is_ok()
    });
    // The font is compiled in, so only a corrupted build could get here.
    ensure!(
        registered,
        "the bundled font DejaVuSans.ttf is not a valid font"
    );
    Ok(())
}

/// One CSV: the columns the figure needs.
struct Run {
    label: String,
    epoch: Vec<f64>,
    train_loss: Vec<f64>,
    test_loss: Vec<f64>,
    /// Empty without a metric.
    metric: Vec<f64>,
}

impl Run {
    fn read(path: &Path, label: String, metric: Option<&str>) -> Result<Self> {
        let mut reader = csv::ReaderBuilder::new()
            .trim(csv::Trim::All)
            .from_path(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let headers = reader
            .headers()
            .with_context(|| format!("cannot read the header line of {}", path.display()))?
            .clone();
        if headers.iter().all(str::is_empty) {
            bail!(
                "{} is empty: expected a header line and rows",
                path.display()
            );
        }
        let column = |name: &str| {
            headers.iter().position(|h| h == name).ok_or_else(|| {
                anyhow!(
                    "{} has no column `{name}`; its columns are: {}",
                    path.display(),
                    headers.iter().collect::<Vec<_>>().join(", ")
                )
            })
        };
        let wanted = [
            Some(column("epoch")?),
            Some(column("train_loss")?),
            Some(column("test_loss")?),
            metric.map(column).transpose()?,
        ];
        let names = ["epoch", "train_loss", "test_loss", metric.unwrap_or("")];

        let mut values: [Vec<f64>; 4] = Default::default();
        for record in reader.records() {
            let record = record.with_context(|| format!("cannot parse {}", path.display()))?;
            let line = record.position().map_or(0, |p| p.line());
            for ((index, name), column) in wanted.iter().zip(names).zip(&mut values) {
                let Some(index) = *index else { continue };
                let field = record.get(index).unwrap_or("");
                // NaN and inf parse, and are kept: a diverged epoch is data, not an error
                // (non-finite points are left out when drawing).
                let value: f64 = field.parse().map_err(|_| {
                    anyhow!(
                        "{} line {line}: column `{name}` holds {field:?}, not a number",
                        path.display()
                    )
                })?;
                column.push(value);
            }
        }
        if values[0].is_empty() {
            bail!("{} has a header but no rows", path.display());
        }
        let [epoch, train_loss, test_loss, metric] = values;
        Ok(Self {
            label,
            epoch,
            train_loss,
            test_loss,
            metric,
        })
    }

    /// (epoch, value) pairs that can be drawn on the panel's axis.
    fn points<'a>(&'a self, ys: &'a [f64], log: bool) -> impl Iterator<Item = (f64, f64)> + 'a {
        self.epoch
            .iter()
            .copied()
            .zip(ys.iter().copied())
            .filter(move |&(x, y)| x.is_finite() && y.is_finite() && (!log || y > 0.0))
    }
}

/// File stems, widened to `parent/stem` where stems collide, and to the whole path where
/// even that collides.
fn run_labels(csvs: &[PathBuf]) -> Vec<String> {
    fn stem(path: &Path) -> String {
        path.file_stem().map_or_else(
            || path.display().to_string(),
            |s| s.to_string_lossy().into_owned(),
        )
    }
    fn with_parent(path: &Path) -> String {
        // `canonicalize` gives a name to "." and to bare file names' folder.
        let parent = path
            .canonicalize()
            .ok()
            .and_then(|p| p.parent().and_then(|d| d.file_name()).map(|d| d.to_owned()))
            .or_else(|| {
                path.parent()
                    .and_then(|d| d.file_name())
                    .map(|d| d.to_owned())
            });
        match parent {
            Some(parent) => format!("{}/{}", parent.to_string_lossy(), stem(path)),
            None => stem(path),
        }
    }
    fn widen(labels: &mut [String], csvs: &[PathBuf], wider: impl Fn(&Path) -> String) {
        let mut counts = HashMap::<String, usize>::new();
        for label in labels.iter() {
            *counts.entry(label.clone()).or_default() += 1;
        }
        for (label, path) in labels.iter_mut().zip(csvs) {
            if counts[label.as_str()] > 1 {
                *label = wider(path);
            }
        }
    }
    let mut labels: Vec<String> = csvs.iter().map(|p| stem(p)).collect();
    widen(&mut labels, csvs, with_parent);
    widen(&mut labels, csvs, |p| p.display().to_string());
    labels
}

/// One chart of the figure: which column, and how its y axis is scaled.
struct Panel<'a> {
    title: &'a str,
    x_label: &'a str,
    y_label: &'a str,
    column: fn(&Run) -> &Vec<f64>,
    log: bool,
    y_range: Range<f64>,
}

impl<'a> Panel<'a> {
    fn new(
        title: &'a str,
        y_label: &'a str,
        runs: &[Run],
        column: fn(&Run) -> &Vec<f64>,
        allow_log: bool,
    ) -> Self {
        let values = || {
            runs.iter()
                .flat_map(move |run| run.points(column(run), false).map(|(_, y)| y))
        };
        let (min, max) = values().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), y| {
            (lo.min(y), hi.max(y))
        });
        let log = allow_log && min > 0.0 && max / min > LOG_SPAN;
        Self {
            title,
            x_label: "epoch",
            y_label,
            column,
            log,
            y_range: padded_range(values(), log),
        }
    }
}

/// The values' range widened by 5% (in log space on a log axis) so that no point sits on
/// the frame, and never empty, which plotters cannot map.
fn padded_range(values: impl Iterator<Item = f64>, log: bool) -> Range<f64> {
    let (mut lo, mut hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if lo > hi {
        return 0.0..1.0;
    }
    if log {
        let pad = (hi / lo).powf(0.05);
        return lo / pad..hi * pad;
    }
    if lo == hi {
        let pad = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
        lo -= pad;
        hi += pad;
    } else {
        let pad = (hi - lo) * 0.05;
        lo -= pad;
        hi += pad;
    }
    lo..hi
}

fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    runs: &[Run],
    panels: &[Panel],
    epochs: &Range<f64>,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)?;
    let areas = root.split_evenly((1, panels.len()));
    for (index, (area, panel)) in areas.iter().zip(panels).enumerate() {
        let x = RangedCoordf64::from(epochs.clone());
        // The legend goes on the first panel only: every panel has the same runs.
        let legend = index == 0;
        if panel.log {
            let y = LogCoord::from(panel.y_range.clone().log_scale());
            draw_panel(area, runs, panel, x, y, legend)?;
        } else {
            let y = RangedCoordf64::from(panel.y_range.clone());
            draw_panel(area, runs, panel, x, y, legend)?;
        }
    }
    root.present()?;
    Ok(())
}

fn draw_panel<DB, Y>(
    area: &DrawingArea<DB, Shift>,
    runs: &[Run],
    panel: &Panel,
    x: RangedCoordf64,
    y: Y,
    legend: bool,
) -> Result<()>
where
    DB: DrawingBackend,
    DB::ErrorType: 'static,
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let mut chart = ChartBuilder::on(area)
        .caption(panel.title, ("sans-serif", 24))
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(80)
        .build_cartesian_2d(x, y)?;
    let x_labels = (chart.x_range().end - chart.x_range().start)
        .ceil()
        .clamp(2.0, 10.0);
    chart
        .configure_mesh()
        .x_desc(panel.x_label)
        .y_desc(panel.y_label)
        .x_labels(x_labels as usize)
        .y_labels(8)
        .x_label_formatter(&|v| tick_label(*v))
        .y_label_formatter(&|v| tick_label(*v))
        .label_style(("sans-serif", 16))
        .axis_desc_style(("sans-serif", 17))
        .light_line_style(WHITE.mix(0.0))
        .bold_line_style(BLACK.mix(0.12))
        .draw()?;

    for (index, run) in runs.iter().enumerate() {
        let colour = COLOURS[index % COLOURS.len()];
        let points: Vec<(f64, f64)> = run.points((panel.column)(run), panel.log).collect();
        chart
            .draw_series(LineSeries::new(points, colour.stroke_width(2)).point_size(3))?
            .label(run.label.as_str())
            .legend(move |(x, y)| {
                EmptyElement::at((x, y))
                    + PathElement::new([(0, 0), (20, 0)], colour.stroke_width(2))
                    + Circle::new((10, 0), 3, colour.filled())
            });
    }
    if legend {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .label_font(("sans-serif", 17))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.4))
            .draw()?;
    }
    Ok(())
}

/// Short tick labels: integers as such, small and huge values in exponent form.
fn tick_label(v: f64) -> String {
    let a = v.abs();
    if v == v.round() && a < 1e6 {
        format!("{v:.0}")
    } else if a != 0.0 && !(1e-3..1e5).contains(&a) {
        format!("{v:.1e}").replace(".0e", "e")
    } else {
        // Up to four significant digits, without trailing zeros.
        let decimals = (3 - a.log10().floor() as i32).clamp(0, 6) as usize;
        let s = format!("{v:.decimals$}");
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_owned()
        } else {
            s
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str =
        "epoch,train_loss,test_loss,seconds,frames_per_second,test_mse,test_mae,test_psnr,test_ssim";

    /// Loss falling by 100x over 8 epochs, so that the loss panels go log scale.
    fn write_run(dir: &Path, name: &str, scale: f64) -> PathBuf {
        let mut text = format!("{HEADER}\n");
        for epoch in 1..=8 {
            let e = epoch as f64;
            let train = scale * 10f64.powf(-(e - 1.0) / 3.5);
            let test = train * 1.2;
            let psnr = 20.0 + 2.0 * e * scale.recip();
            text += &format!(
                "{epoch},{train},{test},1.5,1000,{:.5},{:.5},{psnr},{:.3}\n",
                test / 25.0,
                test / 10.0,
                0.5 + e / 20.0
            );
        }
        let path = dir.join(format!("{name}.csv"));
        std::fs::write(&path, text).unwrap();
        path
    }

    fn two_runs(dir: &Path) -> Vec<PathBuf> {
        vec![write_run(dir, "linear", 2.0), write_run(dir, "conv", 1.0)]
    }

    fn error_text(result: Result<()>) -> String {
        format!("{:#}", result.expect_err("expected an error"))
    }

    /// Contents of the SVG's `<text>` elements, which plotters puts on lines of their own.
    fn svg_texts(svg: &str) -> Vec<&str> {
        svg.split("<text")
            .skip(1)
            .filter_map(|t| t.split_once('>')?.1.split_once("</text>"))
            .map(|(text, _)| text.trim())
            .collect()
    }

    fn is_line_colour(p: &image::Rgb<u8>, colour: RGBColor) -> bool {
        let RGBColor(r, g, b) = colour;
        [r, g, b].iter().zip(p.0).all(|(&c, p)| c.abs_diff(p) < 8)
    }

    #[test]
    fn png_has_the_expected_size_lines_and_text() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("curves.png");
        plot(&two_runs(dir.path()), &out, None).unwrap();
        let img = image::open(&out).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), (1200, 450));

        for colour in &COLOURS[..2] {
            let n = img.pixels().filter(|p| is_line_colour(p, *colour)).count();
            assert!(n > 50, "only {n} pixels of {colour:?}");
        }
        // Text is antialiased black: dark grey pixels must exist in the axis-label strip
        // left of the first plot and in the caption strip above it.
        let dark = |x0: u32, x1: u32, y0: u32, y1: u32| {
            (x0..x1)
                .flat_map(|x| (y0..y1).map(move |y| (x, y)))
                .filter(|&(x, y)| img.get_pixel(x, y).0.iter().all(|&c| c < 100))
                .count()
        };
        assert!(dark(0, 80, 50, 400) > 100, "no y-axis text");
        assert!(dark(200, 400, 0, 40) > 30, "no caption");
        // No leftover temporaries next to the output.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 3, "{names:?}");
    }

    #[test]
    fn metric_adds_a_third_panel() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("curves.png");
        plot(&two_runs(dir.path()), &out, Some("test_psnr")).unwrap();
        let img = image::open(&out).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), (1800, 450));
        let right_panel_lines = img
            .enumerate_pixels()
            .filter(|(x, _, p)| *x >= 1200 && is_line_colour(p, COLOURS[0]))
            .count();
        assert!(right_panel_lines > 50, "{right_panel_lines}");
    }

    #[test]
    fn svg_names_the_runs_and_panels() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("curves.SVG");
        plot(&two_runs(dir.path()), &out, Some("test_ssim")).unwrap();
        let svg = std::fs::read_to_string(&out).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..100]);
        let texts = svg_texts(&svg);
        for text in [
            "linear",
            "conv",
            "train_loss",
            "test_loss",
            "test_ssim",
            "epoch",
            LOSS_AXIS,
        ] {
            assert!(texts.contains(&text), "no text {text} in {texts:?}");
        }
    }

    #[test]
    fn colliding_stems_get_their_folder() {
        let dir = tempfile::tempdir().unwrap();
        for sub in ["a", "b"] {
            std::fs::create_dir(dir.path().join(sub)).unwrap();
        }
        let csvs = vec![
            write_run(&dir.path().join("a"), "conv", 1.0),
            write_run(&dir.path().join("b"), "conv", 2.0),
            write_run(dir.path(), "linear", 1.0),
        ];
        assert_eq!(run_labels(&csvs), ["a/conv", "b/conv", "linear"]);
        let out = dir.path().join("curves.svg");
        plot(&csvs, &out, None).unwrap();
        let svg = std::fs::read_to_string(&out).unwrap();
        let texts = svg_texts(&svg);
        assert!(
            texts.contains(&"a/conv") && texts.contains(&"b/conv"),
            "{texts:?}"
        );
    }

    #[test]
    fn old_csvs_without_metrics_plot_losses() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("old.csv");
        std::fs::write(
            &csv,
            "epoch,train_loss,test_loss,seconds,frames_per_second\n1,2.0,2.5,1,10\n2,1.5,2.0,1,10\n",
        )
        .unwrap();
        let out = dir.path().join("old.png");
        plot(&[csv], &out, None).unwrap();
        // Two panels (the losses), no metric panel, each with the run's line drawn.
        let img = image::open(&out).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), (1200, 450));
        for panel in [0..600, 600..1200] {
            let n = img
                .enumerate_pixels()
                .filter(|(x, _, p)| panel.contains(x) && is_line_colour(p, COLOURS[0]))
                .count();
            assert!(n > 50, "only {n} line pixels in {panel:?}");
        }
    }

    #[test]
    fn unknown_metric_names_file_column_and_choices() {
        let dir = tempfile::tempdir().unwrap();
        let csvs = two_runs(dir.path());
        let out = dir.path().join("curves.png");
        let message = error_text(plot(&csvs, &out, Some("test_lpips")));
        assert!(message.contains("linear.csv"), "{message}");
        assert!(message.contains("test_lpips"), "{message}");
        assert!(message.contains("test_psnr, test_ssim"), "{message}");
        assert!(!out.exists());
    }

    #[test]
    fn bad_extension_names_the_output() {
        let dir = tempfile::tempdir().unwrap();
        let csvs = two_runs(dir.path());
        for name in ["curves.pdf", "curves"] {
            let message = error_text(plot(&csvs, &dir.path().join(name), None));
            assert!(message.contains(name), "{message}");
            assert!(message.contains(".png or .svg"), "{message}");
        }
    }

    #[test]
    fn unwritable_output_is_named_and_old_file_kept() {
        let dir = tempfile::tempdir().unwrap();
        let csvs = two_runs(dir.path());
        let out = dir.path().join("no_such_folder").join("curves.png");
        let message = error_text(plot(&csvs, &out, None));
        assert!(message.contains("curves.png"), "{message}");

        // A failed plot leaves an existing output alone and no temporaries behind.
        let out = dir.path().join("curves.svg");
        std::fs::write(&out, "old").unwrap();
        error_text(plot(&csvs, &out, Some("test_lpips")));
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "old");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 3);
    }

    #[test]
    fn missing_csv_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nowhere.csv");
        let message = error_text(plot(&[missing], &dir.path().join("x.png"), None));
        assert!(message.contains("nowhere.csv"), "{message}");
    }

    #[test]
    fn malformed_csvs_are_named_with_their_line() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("x.png");
        let cases = [
            ("empty", "", "empty"),
            ("header_only", HEADER, "no rows"),
            (
                "text",
                "epoch,train_loss,test_loss\n1,0.5,0.6\n2,abc,0.4\n",
                "line 3",
            ),
            (
                "ragged",
                "epoch,train_loss,test_loss\n1,0.5,0.6\n2,0.4\n",
                "cannot parse",
            ),
            ("no_test_loss", "epoch,train_loss\n1,0.5\n", "test_loss"),
        ];
        for (name, text, expected) in cases {
            let csv = dir.path().join(format!("{name}.csv"));
            std::fs::write(&csv, text).unwrap();
            let message = error_text(plot(&[csv], &out, None));
            assert!(message.contains(&format!("{name}.csv")), "{message}");
            assert!(message.contains(expected), "{name}: {message}");
        }
        assert!(!out.exists());
    }

    #[test]
    fn non_finite_values_are_skipped_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("diverged.csv");
        std::fs::write(&csv, "epoch,train_loss,test_loss\n1,0.5,0.6\n2,NaN,inf\n").unwrap();
        let out = dir.path().join("x.svg");
        plot(&[csv], &out, None).unwrap();
        // The run is still drawn and named, from its one finite row.
        let svg = std::fs::read_to_string(&out).unwrap();
        assert!(svg_texts(&svg).contains(&"diverged"), "{svg}");
        assert!(!svg.contains("NaN"), "{svg}");
    }

    #[test]
    fn tick_labels_are_short() {
        assert_eq!(tick_label(3.0), "3");
        assert_eq!(tick_label(0.25), "0.25");
        assert_eq!(tick_label(0.123456), "0.1235");
        assert_eq!(tick_label(12.5), "12.5");
        assert_eq!(tick_label(0.0001), "1e-4");
        assert_eq!(tick_label(2.5e-5), "2.5e-5");
    }
}
