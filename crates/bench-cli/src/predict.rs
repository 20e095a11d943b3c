//! `bench-cli predict`: pictures of a trained model's predictions on the test split.

use anyhow::{bail, Context, Result};
use candle_core::{DType, Tensor};
use harness::SequenceModel;
use image::{Rgb, RgbImage, Rgba, RgbaImage};

use crate::args::PredictArgs;

/// Grey level of the lines between cells.
const SEPARATOR: u8 = 128;
/// Absolute errors are drawn times this, so 0.5 is white.
const ERROR_GAIN: f32 = 2.0;

pub fn run(mut args: PredictArgs, matches: &clap::ArgMatches) -> Result<()> {
    let extension = args
        .output
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    if !matches!(extension.as_deref(), Some("png") | Some("gif")) {
        bail!(
            "-o {}: the output must end in .png or .gif",
            args.output.display()
        );
    }
    if args.scale == 0 || args.scale > 64 {
        bail!("--scale {}: use 1 to 64", args.scale);
    }
    crate::config::readable_file("--checkpoint", &args.checkpoint)?;
    args.checkpoint = crate::config::best_weights(&args.checkpoint, args.last);
    crate::config::recorded_data(&mut args.data, &args.checkpoint, matches, false)?;
    let args = &args;
    // The file says which model it holds; a --model given is checked against it when the
    // model loads. A file without a record (PyTorch's) is refused there, by name.
    let recorded = harness::resume::recorded_model(&args.checkpoint)?.map(|(kind, _)| kind);
    let Some(kind) = args.model.clone().or(recorded) else {
        bail!(
            "--checkpoint {}: no record of the model it holds (a file saved by PyTorch?); \
             predict takes files written by training",
            args.checkpoint.display()
        );
    };
    crate::models::with_model(&kind, Draw(args)).unwrap_or_else(|| {
        bail!(
            "--checkpoint {}: a model of kind `{kind}`, which this bench-cli does not know",
            args.checkpoint.display()
        )
    })
}

/// Drawing, once the model's type is known.
struct Draw<'a>(&'a PredictArgs);

impl crate::models::WithModel for Draw<'_> {
    type Output = Result<()>;

    fn run<M: SequenceModel>(self) -> Result<()> {
        draw::<M>(self.0)
    }
}

fn draw<M: SequenceModel>(args: &PredictArgs) -> Result<()> {
    let device = crate::config::device(args.device)?;
    let data = crate::fit::load_data(&args.data, None)?;
    let frame = data.frame_shape();
    let (model, _) = harness::predict::load_model::<M>(&args.checkpoint, frame, &device)?;
    let windows = data.test_windows()?;
    let Some(window) = windows.get(args.window) else {
        bail!(
            "--window {}: the test split has {} window(s)",
            args.window,
            windows.len()
        );
    };
    let window = window.to_device(&device)?; // [L, C, H, W]
    let len = window.dim(0)?;

    // Rows of frames, each frame [C, H, W] on the CPU.
    let (rows, labels, truth, predicted) = match args.horizon {
        None => {
            let steps = args.frames.clamp(1, len - 1);
            let predictions = harness::predict(&model, &window)?.detach(); // [L-1, C, H, W]
            let inputs = window.narrow(0, 0, steps)?;
            let truth = window.narrow(0, 1, steps)?;
            let predicted = predictions.narrow(0, 0, steps)?;
            let error = (&predicted.clamp(0f32, 1f32)? - &truth)?.abs()?;
            (
                vec![inputs, truth.clone(), predicted.clone(), error],
                ["input", "truth", "prediction", "|error| x2"].as_slice(),
                truth,
                predicted,
            )
        }
        Some(horizon) => {
            if horizon == 0 || horizon >= len {
                bail!(
                    "--horizon {horizon}: use 1 to {} (the window has {len} frames)",
                    len - 1
                );
            }
            let context = window.narrow(0, 0, len - horizon)?;
            let predicted = harness::predict::rollout(&model, &context, horizon)?;
            let truth = window.narrow(0, len - horizon, horizon)?;
            let error = (&predicted.clamp(0f32, 1f32)? - &truth)?.abs()?;
            (
                vec![truth.clone(), predicted.clone(), error],
                ["truth", "rollout", "|error| x2"].as_slice(),
                truth,
                predicted,
            )
        }
    };
    let bytes = if args
        .output
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gif"))
    {
        gif(&truth, &predicted, args.scale)?
    } else {
        grid(&rows, labels, args.scale)?
    };
    harness::files::write_bytes_atomic(&args.output, &bytes)?;
    println!("wrote {}", args.output.display());
    Ok(())
}

/// One frame's pixels as RGB values in [0, 1].
type Pixels = Vec<[f32; 3]>;

/// Values of a `[N, C, H, W]` tensor as N frames of RGB pixels, clipped to [0, 1]: three
/// channels as they are, one (or any other count: its first) as grey; the last row of a
/// grid (the error) is scaled by [`ERROR_GAIN`]. Also says whether the frames are grey.
fn frames_of(t: &Tensor, gain: f32) -> Result<(Vec<Pixels>, usize, usize, bool)> {
    let (n, c, h, w) = t.dims4()?;
    let colour = c == 3;
    let values: Vec<f32> = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
    let level = |v: f32| (v * gain).clamp(0.0, 1.0);
    let plane = h * w;
    let frames = values
        .chunks_exact(c * plane)
        .map(|f| {
            (0..plane)
                .map(|i| match colour {
                    true => [level(f[i]), level(f[plane + i]), level(f[2 * plane + i])],
                    false => [level(f[i]); 3],
                })
                .collect()
        })
        .collect::<Vec<Pixels>>();
    debug_assert_eq!(frames.len(), n);
    Ok((frames, h, w, !colour))
}

/// Width of the column of row labels, in pixels.
const LABELS: u32 = 120;

/// A grid PNG: one row per tensor, one column per step, frames scaled up by nearest
/// neighbour, one-pixel separators, each row's label on its left.
fn grid(rows: &[Tensor], labels: &[&str], scale: u32) -> Result<Vec<u8>> {
    let last = rows.len() - 1;
    let mut all = Vec::new();
    let (mut h, mut w, mut grey) = (0, 0, true);
    for (r, t) in rows.iter().enumerate() {
        let gain = if r == last { ERROR_GAIN } else { 1.0 };
        let (frames, fh, fw, is_grey) = frames_of(t, gain)?;
        (h, w, grey) = (fh, fw, is_grey);
        all.push(frames);
    }
    let cols = all[0].len() as u32;
    let (cell_w, cell_h) = (w as u32 * scale + 1, h as u32 * scale + 1);
    let mut img = RgbImage::from_pixel(
        LABELS + cols * cell_w + 1,
        all.len() as u32 * cell_h + 1,
        Rgb([255; 3]),
    );
    for (r, frames) in all.iter().enumerate() {
        for (c, frame) in frames.iter().enumerate() {
            let (x0, y0) = (LABELS + c as u32 * cell_w + 1, r as u32 * cell_h + 1);
            // The separators around the cell.
            for x in x0 - 1..x0 + cell_w {
                img.put_pixel(x, y0 - 1, Rgb([SEPARATOR; 3]));
                img.put_pixel(x, y0 + cell_h - 1, Rgb([SEPARATOR; 3]));
            }
            for y in y0 - 1..y0 + cell_h {
                img.put_pixel(x0 - 1, y, Rgb([SEPARATOR; 3]));
                img.put_pixel(x0 + cell_w - 1, y, Rgb([SEPARATOR; 3]));
            }
            blit(&mut img, frame, w, scale, x0, y0);
        }
    }
    label_rows(&mut img, labels, cell_h)?;
    encode_png(img, grey)
}

/// Writes each row's label, black on white, in the left margin (the plots' embedded font).
fn label_rows(img: &mut RgbImage, labels: &[&str], cell_h: u32) -> Result<()> {
    use plotters::prelude::*;
    crate::plot::register_font()?;
    let (width, height) = img.dimensions();
    {
        let root = BitMapBackend::with_buffer(img, (width, height)).into_drawing_area();
        let size = (cell_h as f64 * 0.22).clamp(11.0, 18.0);
        let style = TextStyle::from(("sans-serif", size).into_font())
            .color(&BLACK)
            .pos(plotters::style::text_anchor::Pos::new(
                plotters::style::text_anchor::HPos::Left,
                plotters::style::text_anchor::VPos::Center,
            ));
        for (r, label) in labels.iter().enumerate() {
            let y = (r as u32 * cell_h + cell_h / 2) as i32;
            root.draw_text(label, &style, (6, y))
                .map_err(|e| anyhow::anyhow!("cannot draw the row labels: {e}"))?;
        }
        root.present()
            .map_err(|e| anyhow::anyhow!("cannot draw the row labels: {e}"))?;
    }
    Ok(())
}

fn blit(img: &mut RgbImage, frame: &[[f32; 3]], width: usize, scale: u32, x0: u32, y0: u32) {
    for (i, v) in frame.iter().enumerate() {
        let (fx, fy) = ((i % width) as u32, (i / width) as u32);
        let colour = Rgb(v.map(|c| (c * 255.0).round() as u8));
        for dy in 0..scale {
            for dx in 0..scale {
                img.put_pixel(x0 + fx * scale + dx, y0 + fy * scale + dy, colour);
            }
        }
    }
}

/// PNG bytes: 8-bit grey when every frame drawn is grey, else RGB.
fn encode_png(img: RgbImage, grey: bool) -> Result<Vec<u8>> {
    let img = match grey {
        true => image::DynamicImage::ImageRgb8(img).into_luma8().into(),
        false => image::DynamicImage::ImageRgb8(img),
    };
    let mut bytes = std::io::Cursor::new(Vec::new());
    img.write_to(&mut bytes, image::ImageFormat::Png)
        .context("cannot encode the PNG")?;
    Ok(bytes.into_inner())
}

/// An animated GIF: each step shows the true frame left and the prediction right.
fn gif(truth: &Tensor, predicted: &Tensor, scale: u32) -> Result<Vec<u8>> {
    let (truth, h, w, _) = frames_of(truth, 1.0)?;
    let (predicted, _, _, _) = frames_of(predicted, 1.0)?;
    let (fw, fh) = (w as u32 * scale, h as u32 * scale);
    let mut bytes = Vec::new();
    {
        let mut encoder = image::codecs::gif::GifEncoder::new_with_speed(&mut bytes, 10);
        encoder
            .set_repeat(image::codecs::gif::Repeat::Infinite)
            .context("cannot write the GIF")?;
        for (t, p) in truth.iter().zip(&predicted) {
            let mut rgb = RgbImage::from_pixel(2 * fw + 3, fh + 2, Rgb([SEPARATOR; 3]));
            blit(&mut rgb, t, w, scale, 1, 1);
            blit(&mut rgb, p, w, scale, fw + 2, 1);
            let rgba = RgbaImage::from_fn(rgb.width(), rgb.height(), |x, y| {
                let [r, g, b] = rgb.get_pixel(x, y).0;
                Rgba([r, g, b, 255])
            });
            let frame =
                image::Frame::from_parts(rgba, 0, 0, image::Delay::from_numer_denom_ms(250, 1));
            encoder
                .encode_frame(frame)
                .context("cannot write the GIF")?;
        }
    }
    Ok(bytes)
}
