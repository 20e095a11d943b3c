//! `bench-cli export`: every model and option the exporter writes runs in ONNX Runtime (the
//! `onnxruntime` Python package, through `bench/onnx_check.py`) over the test windows and
//! predicts what `bench-cli eval --save-predictions` predicted, to 1e-5 of the largest
//! prediction; what it cannot write is refused by name. Skipped without the package unless
//! `BENCH_CLI_REQUIRE_PYTHON_TOOLS` is set (CI installs it and sets it).

use std::process::Command;

mod common;

use common::{fails, ok, repo_root, s};

fn have_onnxruntime() -> bool {
    let found = Command::new("python3")
        .args(["-c", "import onnxruntime, numpy"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var_os("BENCH_CLI_REQUIRE_PYTHON_TOOLS").is_none(),
            "the onnxruntime Python package is required here"
        );
        eprintln!("python3 -m pip install onnxruntime: the ONNX tests are skipped");
    }
    found
}

#[test]
fn exported_models_predict_in_onnx_runtime_what_bench_cli_predicts() {
    if !have_onnxruntime() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, &[&str]); 6] = [
        ("seed conv", &["--model", "conv"]),
        (
            "conv: layers, peepholes, patches, sigmoid head",
            &[
                "--model",
                "conv",
                "--hidden-channels",
                "4,3",
                "--kernel",
                "3,5",
                "--peephole",
                "--patch",
                "5",
                "--head",
                "conv1x1-sigmoid",
            ],
        ),
        (
            "conv: residual head",
            &[
                "--model",
                "conv",
                "--hidden-channels",
                "3",
                "--head",
                "residual",
            ],
        ),
        (
            "conv: RGB, 1x1 head",
            &[
                "--model",
                "conv",
                "--color",
                "rgb",
                "--size",
                "24x20",
                "--hidden-channels",
                "5",
                "--head",
                "conv1x1",
            ],
        ),
        (
            "linear: two layers",
            &["--model", "linear", "--size", "12", "--hidden", "20,10"],
        ),
        (
            "linear: sigmoid output",
            &[
                "--model", "linear", "--size", "12", "--hidden", "16", "--output", "sigmoid",
            ],
        ),
    ];
    for (k, (name, model)) in cases.iter().enumerate() {
        let out = dir.path().join(format!("run{k}"));
        let mut args = vec![
            "--seq-len",
            "6",
            "--epochs",
            "1",
            "--validation",
            "off",
            "--quiet",
        ];
        args.extend_from_slice(model);
        args.extend(["--out", s(&out)]);
        ok(&args);
        let kind = model[1];
        let weights = out.join(format!("{kind}.safetensors"));
        let saved = dir.path().join(format!("preds{k}"));
        ok(&[
            "eval",
            "--checkpoint",
            s(&weights),
            "--save-predictions",
            s(&saved),
        ]);
        let onnx = dir.path().join(format!("model{k}.onnx"));
        let export = ok(&["export", "--checkpoint", s(&weights), "-o", s(&onnx)]);
        assert!(
            export.stdout.contains("one step of the"),
            "{}",
            export.stdout
        );
        let check = Command::new("python3")
            .arg(repo_root().join("bench/onnx_check.py"))
            .args([&onnx, &saved])
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&check.stdout);
        println!("{name}: {said}");
        assert!(
            check.status.success(),
            "{name}: {said}{}",
            String::from_utf8_lossy(&check.stderr)
        );
    }
}

#[test]
fn what_cannot_export_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let predrnn = dir.path().join("predrnn");
    ok(&[
        "--model",
        "predrnn",
        "--size",
        "8",
        "--seq-len",
        "4",
        "--epochs",
        "1",
        "--validation",
        "off",
        "--quiet",
        "--out",
        s(&predrnn),
    ]);
    let onnx = dir.path().join("p.onnx");
    let err = fails(&[
        "export",
        "--checkpoint",
        s(&predrnn.join("predrnn.safetensors")),
        "-o",
        s(&onnx),
    ]);
    assert!(
        err.contains("the predrnn model has no ONNX export"),
        "{err}"
    );
    let forecaster = dir.path().join("ef");
    ok(&[
        "--model",
        "conv",
        "--size",
        "8",
        "--context",
        "2",
        "--horizon",
        "2",
        "--hidden-channels",
        "2",
        "--head",
        "conv1x1",
        "--encoder-forecaster",
        "--epochs",
        "1",
        "--validation",
        "off",
        "--quiet",
        "--out",
        s(&forecaster),
    ]);
    let err = fails(&[
        "export",
        "--checkpoint",
        s(&forecaster.join("conv.safetensors")),
        "-o",
        s(&onnx),
    ]);
    assert!(
        err.contains("only a plain stack of layers exports"),
        "{err}"
    );
    assert!(!onnx.exists());
    let err = fails(&[
        "export",
        "--checkpoint",
        s(&forecaster.join("conv.safetensors")),
        "-o",
        "x.txt",
    ]);
    assert!(
        err.contains("-o x.txt: the output must end in .onnx"),
        "{err}"
    );
}
