//! `bench-cli export`: a trained model as an ONNX graph of its one-step function
//! ([`lstm_core::onnx::one_step`]).

use anyhow::{bail, Result};
use candle_core::Device;
use harness::SequenceModel;

use crate::args::ExportArgs;

pub fn run(args: &ExportArgs) -> Result<()> {
    if args.output.extension().and_then(|e| e.to_str()) != Some("onnx") {
        bail!("-o {}: the output must end in .onnx", args.output.display());
    }
    crate::config::readable_file("--checkpoint", &args.checkpoint)?;
    let checkpoint = crate::config::best_weights(&args.checkpoint, args.last);
    let recorded = harness::resume::recorded_model(&checkpoint)?.map(|(kind, _)| kind);
    let frame = harness::resume::recorded_frame(&checkpoint)?;
    let (Some(kind), Some(frame)) = (recorded, frame) else {
        bail!(
            "--checkpoint {}: no record of the model and frame size it holds (a file saved by \
             PyTorch?); export takes files written by training",
            checkpoint.display()
        );
    };
    let job = Export {
        checkpoint: &checkpoint,
        frame,
        output: &args.output,
    };
    crate::models::with_model(&kind, job).unwrap_or_else(|| {
        bail!(
            "--checkpoint {}: a model of kind `{kind}`, which this bench-cli does not know",
            checkpoint.display()
        )
    })
}

/// The export, once the model's type is known.
struct Export<'a> {
    checkpoint: &'a std::path::Path,
    frame: [usize; 3],
    output: &'a std::path::Path,
}

impl crate::models::WithModel for Export<'_> {
    type Output = Result<()>;

    fn run<M: SequenceModel>(self) -> Result<()> {
        let (model, config) =
            harness::predict::load_model::<M>(self.checkpoint, self.frame, &Device::Cpu)?;
        let Some(gates) = model.onnx() else {
            bail!(
                "--checkpoint {}: the {} model has no ONNX export (its step is not the LSTM \
                 stack the exporter writes)",
                self.checkpoint.display(),
                M::KIND
            );
        };
        let specs = M::parameter_specs(&config, self.frame)?;
        let named: Vec<(String, candle_core::Tensor)> = specs
            .iter()
            .map(|s| s.name.clone())
            .zip(model.parameters().into_iter().cloned())
            .collect();
        let bytes = lstm_core::onnx::one_step(&model, gates, &named).map_err(|e| {
            anyhow::anyhow!(
                "--checkpoint {}: cannot export the {} model: {e}",
                self.checkpoint.display(),
                M::KIND
            )
        })?;
        harness::files::write_atomic(self.output, |tmp| std::fs::write(tmp, &bytes))?;
        let layers = model.stack().layers();
        let [c, h, w] = self.frame;
        println!(
            "wrote {} ({:.1} MB): one step of the {} model; inputs frame [batch, {c}, {h}, {w}] \
             and h0, c0 .. h{last}, c{last}; outputs prediction and h0_out, c0_out .. \
             h{last}_out, c{last}_out (states start at zero)",
            self.output.display(),
            bytes.len() as f64 / 1e6,
            M::KIND,
            last = layers - 1
        );
        Ok(())
    }
}
