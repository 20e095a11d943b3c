//! The committed reference results hold what today's code computes: `eval` on the committed
//! real-video checkpoints gives the figures committed beside them (the README's real-video
//! table quotes those files), and copying the last frame gives numpy's figures.

mod common;

use common::{ok, repo_root, s};

/// The committed real-video models (folders of `results/reference/`).
const MODELS: [&str; 2] = ["video", "video-sigmoid"];

/// The `eval` runs behind the README's real-video table, and the `--json` file each was
/// committed as in every model's folder.
const EVALS: [(&[&str], &str); 4] = [
    (&[], "eval-data.json"),
    (
        &["--context", "21", "--horizon", "5"],
        "eval-data-21-5.json",
    ),
    (&["--data", "data/tree"], "eval-tree.json"),
    (
        &["--data", "data/tree", "--context", "21", "--horizon", "5"],
        "eval-tree-21-5.json",
    ),
];

fn read_json(path: &std::path::Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn eval_of_the_committed_video_models_gives_the_committed_figures() {
    let out = tempfile::tempdir().unwrap();
    for model in MODELS {
        let checkpoint = format!("results/reference/{model}/conv.safetensors");
        for (eval_args, name) in EVALS {
            let json = out.path().join(format!("{model}-{name}"));
            let mut args = vec!["eval", "--checkpoint", &checkpoint];
            args.extend_from_slice(eval_args);
            args.extend_from_slice(&["--json", s(&json)]);
            ok(&args);
            let committed_path = format!("results/reference/{model}/{name}");
            let (ours, committed) = (
                read_json(&json),
                read_json(&repo_root().join(&committed_path)),
            );
            for block in ["test", "copy_last_frame"] {
                common::assert_figures_close(
                    &ours[block],
                    &committed[block],
                    &format!("{committed_path} {block}"),
                );
            }
            assert_eq!(
                ours["model_config"], committed["model_config"],
                "{committed_path}"
            );
            assert_eq!(ours["forecast"], committed["forecast"], "{committed_path}");
        }
    }
}

#[test]
fn copy_last_on_data_is_numpys_one_step_and_five_ahead() {
    let out = tempfile::tempdir().unwrap();
    for (args, case) in [
        (&[][..], "one_step"),
        (&["--context", "21", "--horizon", "5"][..], "forecast_21_5"),
    ] {
        let json = out.path().join(format!("{case}.json"));
        let mut all = vec![
            "eval",
            "--checkpoint",
            "results/reference/video/conv.safetensors",
        ];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--json", s(&json)]);
        ok(&all);
        common::assert_figures_match_numpy(&read_json(&json)["copy_last_frame"], case);
    }
}

/// The Moving MNIST summaries were written before the figures had unit-named keys; `plot
/// --horizon` still reads them (they are the README's plots), and draws what they hold.
#[test]
fn plot_reads_the_summaries_written_before_the_unit_named_keys() {
    let out = tempfile::tempdir().unwrap();
    for metric in ["mse", "ssim", "bce"] {
        let png = out.path().join(format!("{metric}.png"));
        ok(&[
            "plot",
            "--horizon",
            "results/reference/mmnist/conv.summary.json",
            "results/reference/mmnist/linear.summary.json",
            "--metric",
            metric,
            "-o",
            s(&png),
        ]);
        let image = image::open(&png).unwrap().to_rgb8();
        // Three lines (two models, copy-last) in colour on a white background.
        let coloured = image
            .pixels()
            .filter(|p| {
                let [r, g, b] = p.0;
                r.max(g).max(b) - r.min(g).min(b) > 60
            })
            .count();
        assert!(coloured > 500, "{metric}: {coloured} coloured pixels");
    }
}
