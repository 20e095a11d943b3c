//! Seeded initialisation and safetensors checkpoints.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use harness::checkpoint::Checkpoint;
use harness::params::{init_parameters, load_parameters, save_parameters};
use harness::ParamSpec;

fn specs() -> Vec<ParamSpec> {
    vec![
        ParamSpec::weight("lstm.weight_ih_l0", &[400, 250], 250),
        ParamSpec::bias("lstm.bias_ih_l0", &[400]),
        ParamSpec::weight("out.weight", &[3, 4], 4),
    ]
}

fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

#[test]
fn one_seed_gives_one_initialisation() {
    let a = init_parameters(&specs(), 7, DType::F32, &Device::Cpu).unwrap();
    let b = init_parameters(&specs(), 7, DType::F32, &Device::Cpu).unwrap();
    let c = init_parameters(&specs(), 8, DType::F32, &Device::Cpu).unwrap();
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(values(x.as_tensor()), values(y.as_tensor()));
    }
    assert_ne!(values(a[0].as_tensor()), values(c[0].as_tensor()));
    // f64 draws are the same numbers before the cast.
    let d = init_parameters(&specs(), 7, DType::F64, &Device::Cpu).unwrap();
    let d32: Vec<f32> = values(&d[2].as_tensor().to_dtype(DType::F32).unwrap());
    assert_eq!(d32, values(a[2].as_tensor()));
}

#[test]
fn weights_follow_normal_with_std_sqrt_one_over_fan_in_and_biases_are_zero() {
    let vars = init_parameters(&specs(), 0, DType::F32, &Device::Cpu).unwrap();
    let w = values(vars[0].as_tensor());
    let n = w.len() as f64;
    let mean = w.iter().map(|&x| x as f64).sum::<f64>() / n;
    let var = w.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
    let want = 1.0 / 250.0;
    // 100k draws: the sample variance is within 1.5% of the truth far beyond 5 sigma.
    assert!(mean.abs() < 5.0 * (want / n).sqrt(), "mean {mean}");
    assert!((var / want - 1.0).abs() < 0.015, "var {var} vs {want}");
    assert!(values(vars[1].as_tensor()).iter().all(|&x| x == 0.0));
}

#[test]
fn save_then_load_is_exact_and_keeps_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    let vars = init_parameters(&specs(), 3, DType::F32, &Device::Cpu).unwrap();
    let mut meta = HashMap::new();
    meta.insert("model".to_string(), "test".to_string());
    save_parameters(&path, &specs(), &vars, meta).unwrap();
    let loaded = load_parameters(&path, &specs(), DType::F32, &Device::Cpu).unwrap();
    for (a, b) in vars.iter().zip(&loaded) {
        assert_eq!(values(a.as_tensor()), values(b.as_tensor()));
    }
    let ck = Checkpoint::read(&path).unwrap();
    assert_eq!(ck.metadata.get("model").map(String::as_str), Some("test"));
    // No temporary file is left beside it.
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(names.len(), 1);
}

#[test]
fn missing_extra_and_misshapen_tensors_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    let vars = init_parameters(&specs(), 3, DType::F32, &Device::Cpu).unwrap();
    save_parameters(&path, &specs(), &vars, HashMap::new()).unwrap();

    let mut other = specs();
    other[2] = ParamSpec::weight("out.weight", &[3, 5], 5);
    let err = load_parameters(&path, &other, DType::F32, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("out.weight") && err.contains("[3, 4]") && err.contains("[3, 5]"),
        "{err}"
    );
    assert!(err.contains("m.safetensors"), "{err}");

    let mut other = specs();
    other.push(ParamSpec::bias("out.bias", &[3]));
    let err = load_parameters(&path, &other, DType::F32, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`out.bias`") && err.contains("missing"),
        "{err}"
    );

    let err = load_parameters(&path, &specs()[..2], DType::F32, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("unexpected") && err.contains("out.weight"),
        "{err}"
    );
}

#[test]
fn files_that_are_not_safetensors_say_so() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.safetensors");
    std::fs::write(&path, b"this is not a checkpoint").unwrap();
    let err = load_parameters(&path, &specs(), DType::F32, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("bad.safetensors") && err.contains("safetensors"),
        "{err}"
    );

    let good = dir.path().join("good.safetensors");
    let vars = init_parameters(&specs(), 3, DType::F32, &Device::Cpu).unwrap();
    save_parameters(&good, &specs(), &vars, HashMap::new()).unwrap();
    let bytes = std::fs::read(&good).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 100]).unwrap();
    let err = load_parameters(&path, &specs(), DType::F32, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(err.contains("bad.safetensors"), "{err}");

    let missing = dir.path().join("nope.safetensors");
    let err = load_parameters(&missing, &specs(), DType::F32, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(err.contains("nope.safetensors"), "{err}");
}
