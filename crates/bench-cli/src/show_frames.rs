//! `bench-cli frames`: what would be trained on.

use anyhow::Result;

use crate::args::FramesArgs;
use crate::fit;

/// `bench-cli frames`: what would be trained on.
pub fn run(args: &FramesArgs) -> Result<()> {
    let data = fit::load_data(&args.data, None)?;
    println!(
        "{}: {} video(s), {} frames, {}, {} channel(s)",
        data.source,
        data.videos.len(),
        data.frame_count(),
        data.size(),
        data.channels()
    );
    print_split(&data)?;
    // The same copy-last figure training reports (one step ahead, on the test windows).
    let test_windows = data
        .test_windows()?
        .into_iter()
        .map(|w| w.to_dtype(candle_core::DType::F32))
        .collect::<candle_core::Result<Vec<_>>>()?;
    println!(
        "copy-last-frame MSE per pixel on the test windows: {:.8}",
        harness::evaluate::copy_last(&test_windows, None)?
            .metrics
            .mse
    );
    if let Some(dir) = &args.export {
        data.export(dir)?;
        match frames::npy::is_npy(dir) {
            true => println!(
                "wrote {} sequences as one uint8 array to {}",
                data.videos.len(),
                dir.display()
            ),
            false => println!(
                "wrote {} folders of PNG frames into {}",
                data.videos.len(),
                dir.display()
            ),
        }
    }
    Ok(())
}

/// The split `data` makes: which frames or videos train and test, their windows, and the
/// validation split if any.
fn print_split(data: &frames::Dataset) -> Result<()> {
    let (train_windows, test_windows) = (data.train_windows()?.len(), data.test_windows()?.len());
    match data.holdout {
        frames::Holdout::Frames(split) => {
            let video = &data.videos[0];
            let name = |i: usize| {
                video.paths[i]
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            };
            println!(
                "split: train {} frames ({} .. {}), test {} frames ({} .. {})",
                split.train,
                name(0),
                name(split.train - 1),
                split.test,
                name(split.train),
                name(video.len() - 1)
            );
        }
        frames::Holdout::Videos { train, test } => {
            let names = |range: std::ops::Range<usize>| {
                let v = &data.videos[range];
                match v {
                    [one] => one.name.clone(),
                    [first, .., last] => format!("{} .. {}", first.name, last.name),
                    [] => String::new(),
                }
            };
            println!(
                "split: train {train} videos ({}), test {test} videos ({}), held out whole",
                names(0..train),
                names(train..train + test)
            );
        }
    }
    println!(
        "windows of {} frames, stride {}: train {train_windows}, test {test_windows}",
        data.windows.len, data.windows.stride,
    );
    if data.validation > 0 {
        let unit = match data.holdout {
            frames::Holdout::Frames(_) => "frames",
            frames::Holdout::Videos { .. } => "videos",
        };
        println!(
            "validation (--validation): the last {} training {unit} -> {} windows, not trained on",
            data.validation,
            data.validation_windows()?.len()
        );
    }
    Ok(())
}
