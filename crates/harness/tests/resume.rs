//! Training checkpoints at the library level: Adam's state survives a save and a load bit
//! for bit, damaged files are refused, a non-finite update is reported, and only our own
//! leftover temporaries are cleared.

use candle_core::{DType, Device, Tensor, Var};
use harness::adam::{Adam, AdamConfig, AdamForm};
use harness::files::remove_stale_temporaries;
use harness::params::init_parameters;
use harness::resume::{self, DataFingerprint, Progress, TrainingState};
use harness::ParamSpec;
use harness::TrainSettings;
use rand::{Rng, SeedableRng};

fn specs() -> Vec<ParamSpec> {
    vec![
        ParamSpec::weight("cell.weight", &[40, 30], 30),
        ParamSpec::bias("cell.bias", &[40]),
    ]
}

fn random_grads(specs: &[ParamSpec], rng: &mut impl Rng) -> Vec<Tensor> {
    specs
        .iter()
        .map(|s| {
            let values: Vec<f32> = (0..s.numel())
                .map(|_| rng.random_range(-1.0..1.0))
                .collect();
            Tensor::from_vec(values, s.shape.as_slice(), &Device::Cpu).unwrap()
        })
        .collect()
}

fn bits(vars: &[Var]) -> Vec<Vec<u32>> {
    vars.iter()
        .map(|v| {
            let values: Vec<f32> = v.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
            values.into_iter().map(f32::to_bits).collect()
        })
        .collect()
}

fn state(adam_step: u64) -> TrainingState {
    TrainingState {
        format: resume::FORMAT,
        model: "test".into(),
        model_config: serde_json::json!({}),
        data: DataFingerprint {
            frames: 0,
            channels: 1,
            height: 1,
            width: 1,
            train_frames: 0,
            seq_len: 2,
            stride: 1,
            values_fnv1a: String::new(),
            videos: None,
            validation: 0,
        },
        training: TrainSettings {
            epochs: 1,
            ..TrainSettings::default()
        },
        progress: Progress {
            epochs_done: 1,
            windows_done: 0,
            // Not a round number: must come back exactly.
            loss_sum: 0.1 + 0.2,
            seconds: 0.0,
            rng_word_pos: 123456789012345678901234567890,
            rows: Vec::new(),
            best_epoch: None,
        },
        adam_step,
        launch: serde_json::Value::Null,
    }
}

#[test]
fn a_saved_checkpoint_continues_adam_bit_for_bit() {
    let specs = specs();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let config = AdamConfig {
        form: AdamForm::Torch,
        ..AdamConfig::default()
    };
    let vars = init_parameters(&specs, 3, DType::F32, &Device::Cpu).unwrap();
    let mut adam = Adam::new(config, &vars).unwrap();
    for _ in 0..3 {
        adam.update(&vars, &random_grads(&specs, &mut rng)).unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.resume.safetensors");
    resume::save(&path, &specs, &vars, &adam, &state(adam.step)).unwrap();

    let loaded = resume::load(&path).unwrap();
    assert_eq!(loaded.state.adam_step, 3);
    assert_eq!(loaded.state.progress.loss_sum, 0.1 + 0.2);
    assert_eq!(
        loaded.state.progress.rng_word_pos,
        123456789012345678901234567890
    );
    assert_eq!(resume::peek(&path).unwrap().adam_step, 3);
    let mut file = loaded.checkpoint;
    let mut moments = Vec::new();
    let mut restored_vars = Vec::new();
    for spec in &specs {
        let (m, v) = harness::keys::moment_names(&spec.name);
        let mut take = |name: &str| file.take(name, &spec.shape).unwrap();
        moments.push((take(&m).into_f32().unwrap(), take(&v).into_f32().unwrap()));
        let values = take(&spec.name).into_f32().unwrap();
        restored_vars.push(Var::from_vec(values, spec.shape.as_slice(), &Device::Cpu).unwrap());
    }
    file.nothing_left().unwrap();
    let mut restored = Adam::new(config, &restored_vars).unwrap();
    restored.restore(3, moments).unwrap();
    assert_eq!(bits(&vars), bits(&restored_vars));

    // The same next updates from both: identical, and the moments did matter (a fresh
    // Adam from the same weights goes elsewhere).
    let mut fresh = Adam::new(config, &restored_vars).unwrap();
    let fresh_vars: Vec<Var> = restored_vars
        .iter()
        .map(|v| Var::from_tensor(&v.as_tensor().copy().unwrap()).unwrap())
        .collect();
    for _ in 0..2 {
        let grads = random_grads(&specs, &mut rng);
        adam.update(&vars, &grads).unwrap();
        restored.update(&restored_vars, &grads).unwrap();
        fresh.update(&fresh_vars, &grads).unwrap();
    }
    assert_eq!(bits(&vars), bits(&restored_vars));
    assert_ne!(bits(&vars), bits(&fresh_vars));
}

#[test]
fn truncated_padded_and_foreign_files_are_refused_naming_the_file() {
    let specs = specs();
    let vars = init_parameters(&specs, 3, DType::F32, &Device::Cpu).unwrap();
    let adam = Adam::new(AdamConfig::default(), &vars).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.resume.safetensors");
    resume::save(&path, &specs, &vars, &adam, &state(0)).unwrap();
    let good = std::fs::read(&path).unwrap();

    let cases: [(&str, Vec<u8>, &str); 5] = [
        ("truncated", good[..good.len() - 1].to_vec(), "truncated"),
        (
            "padded",
            [good.as_slice(), &[0]].concat(),
            "truncated or damaged",
        ),
        (
            "header only",
            good[..good.len() / 3].to_vec(),
            "safetensors",
        ),
        ("empty", Vec::new(), "shorter than its 8-byte header length"),
        (
            "text",
            b"{\"not\": \"a checkpoint\"}".to_vec(),
            "not a safetensors file",
        ),
    ];
    for (what, bytes, expected) in cases {
        std::fs::write(&path, &bytes).unwrap();
        let err = match resume::load(&path) {
            Ok(_) => panic!("{what}: loaded"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains("t.resume.safetensors"), "{what}: {err}");
        assert!(err.contains(expected), "{what}: {err}");
    }
    // A weights file (no training state) is recognised as such.
    let weights = dir.path().join("w.safetensors");
    harness::params::save_parameters(&weights, &specs, &vars, Default::default()).unwrap();
    let err = resume::load(&weights).err().unwrap().to_string();
    assert!(err.contains("not a training checkpoint"), "{err}");
}

#[test]
fn adam_reports_the_first_parameter_whose_update_is_not_finite() {
    for dtype in [DType::F32, DType::F64] {
        let specs = specs();
        let vars = init_parameters(&specs, 3, dtype, &Device::Cpu).unwrap();
        let mut adam = Adam::new(AdamConfig::default(), &vars).unwrap();
        let finite: Vec<Tensor> = vars.iter().map(|v| v.ones_like().unwrap()).collect();
        assert_eq!(adam.update(&vars, &finite).unwrap(), None, "{dtype:?}");
        for bad in [f64::NAN, f64::INFINITY] {
            let mut grads = finite.clone();
            grads[1] = (&grads[1] * bad).unwrap();
            assert_eq!(
                adam.update(&vars, &grads).unwrap(),
                Some(1),
                "{dtype:?} {bad}"
            );
        }
    }
}

#[test]
fn only_our_own_leftover_temporaries_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let ours = dir.path().join(".conv.csv.aB3xYz.tmp");
    std::fs::create_dir(&ours).unwrap();
    std::fs::write(ours.join("conv.csv"), "half a row").unwrap();
    let others = [
        dir.path().join(".linear.csv.aB3xYz.tmp"),
        dir.path().join(".conv.csv.notes"),
    ];
    for other in &others {
        std::fs::create_dir(other).unwrap();
    }
    let file_named_like_ours = dir.path().join(".conv.csv.x.tmp");
    std::fs::write(&file_named_like_ours, "a user's file").unwrap();
    assert_eq!(
        remove_stale_temporaries(dir.path(), &["conv.csv"]).unwrap(),
        1
    );
    assert!(!ours.exists());
    assert!(others.iter().all(|p| p.exists()) && file_named_like_ours.exists());
    // A folder that is not there yet has nothing to clear.
    assert_eq!(
        remove_stale_temporaries(&dir.path().join("new"), &["conv.csv"]).unwrap(),
        0
    );
}

#[test]
fn differences_name_each_changed_setting() {
    let there = serde_json::json!({"adam": {"lr": 0.001, "form": "chainer"}, "seed": 0});
    let here = serde_json::json!({"adam": {"lr": 0.01, "form": "chainer"}, "seed": 0, "x": 1});
    assert_eq!(
        resume::differences(&there, &here),
        ["adam.lr (0.001 there, 0.01 here)", "x (null there, 1 here)"]
    );
    assert!(resume::differences(&there, &there).is_empty());
}
