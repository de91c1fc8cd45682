//! Checkpoints: bit-identical resume, atomic writes, and a clear refusal of every
//! corrupt or mismatched file.

use rmsprop::{MomentumStyle, Optimizer, RmsProp};
use safetensors::tensor::{Dtype, TensorView};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rmsprop-ckpt-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("opt.safetensors")
}

fn config() -> RmsProp {
    RmsProp::default().with_centered(true).with_momentum(0.9, MomentumStyle::LrOutsideBuffer)
}

fn optimizer() -> Optimizer<f32> {
    Optimizer::new(config(), &[("w", &[5, 1][..]), ("b", &[1][..])]).unwrap()
}

fn grads(t: usize) -> Vec<Vec<f32>> {
    vec![(0..5).map(|i| ((t * 7 + i) as f32).sin()).collect(), vec![(t as f32).cos()]]
}

#[test]
fn save_load_continue_is_bit_identical() {
    let path = tmp("resume");
    let mut straight = optimizer();
    let mut p = vec![vec![0.1f32; 5], vec![0.0]];
    for t in 0..10 {
        straight.step(&mut p, &grads(t)).unwrap();
    }
    let mut first = optimizer();
    let mut q = vec![vec![0.1f32; 5], vec![0.0]];
    for t in 0..4 {
        first.step(&mut q, &grads(t)).unwrap();
    }
    first.save(&path).unwrap();
    let mut resumed = optimizer();
    resumed.load(&path).unwrap();
    assert_eq!(resumed.step_count(), 4);
    for t in 4..10 {
        resumed.step(&mut q, &grads(t)).unwrap();
    }
    let bits = |v: &[Vec<f32>]| v.iter().flatten().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&p), bits(&q));
    for name in ["square_avg", "grad_avg", "momentum_buffer"] {
        assert_eq!(straight.state("w", name), resumed.state("w", name), "{name}");
    }
    let meta = rmsprop::checkpoint::metadata(&path).unwrap();
    assert_eq!(meta["format_version"], "1");
    assert_eq!(meta["dtype"], "float32");
    assert!(meta["hyperparameters"].contains("\"decay\":0.9"), "{}", meta["hyperparameters"]);
    // no temporary file is left behind
    let leftovers: Vec<_> = std::fs::read_dir(path.parent().unwrap()).unwrap().collect();
    assert_eq!(leftovers.len(), 1);
}

fn saved(name: &str) -> PathBuf {
    let path = tmp(name);
    let mut opt = optimizer();
    let mut p = vec![vec![0.1f32; 5], vec![0.0]];
    opt.step(&mut p, &grads(0)).unwrap();
    opt.save(&path).unwrap();
    path
}

/// Loads `path` into a fresh optimizer that has taken one step, checks the error
/// message and that the optimizer is unchanged.
fn refused(path: &Path, expected: &str) {
    let mut opt = optimizer();
    let mut p = vec![vec![0.1f32; 5], vec![0.0]];
    opt.step(&mut p, &grads(3)).unwrap();
    let before = opt.state("w", "square_avg").unwrap().to_vec();
    let e = opt.load(path).unwrap_err().to_string();
    assert!(e.contains(expected), "error {e:?} does not say {expected:?}");
    assert!(e.contains(&path.display().to_string()), "error {e:?} does not name the file");
    assert_eq!(opt.state("w", "square_avg").unwrap(), &before[..]);
    assert_eq!(opt.step_count(), 1);
}

/// Rewrites a checkpoint with `edit` applied to its tensors and metadata.
fn rewrite(
    path: &Path,
    edit: impl FnOnce(&mut Vec<(String, Dtype, Vec<usize>, Vec<u8>)>, &mut HashMap<String, String>),
) {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let mut meta = meta.metadata().clone().unwrap();
    let mut tensors: Vec<_> =
        st.tensors().into_iter().map(|(n, v)| (n, v.dtype(), v.shape().to_vec(), v.data().to_vec())).collect();
    edit(&mut tensors, &mut meta);
    let views: Vec<_> =
        tensors.iter().map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap())).collect();
    std::fs::write(path, safetensors::serialize(views, Some(meta)).unwrap()).unwrap();
}

#[test]
fn truncated_file() {
    let path = saved("truncated");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 7]).unwrap();
    refused(&path, "not a safetensors file");
    std::fs::write(&path, &bytes[..5]).unwrap();
    refused(&path, "not a safetensors file");
}

#[test]
fn wrong_shape() {
    let path = saved("shape");
    rewrite(&path, |t, _| {
        let w = t.iter_mut().find(|x| x.0 == "w.square_avg").unwrap();
        w.2 = vec![5];
    });
    refused(&path, "tensor \"w.square_avg\" has shape [5], expected [5, 1]");
}

#[test]
fn wrong_dtype() {
    let path = tmp("dtype");
    let mut opt = Optimizer::<f64>::new(config(), &[("w", &[5, 1][..]), ("b", &[1][..])]).unwrap();
    let mut p = vec![vec![0.1f64; 5], vec![0.0]];
    opt.step(&mut p, &[vec![1.0; 5], vec![1.0]]).unwrap();
    opt.save(&path).unwrap();
    refused(&path, "has dtype F64, expected F32");
}

#[test]
fn wrong_version() {
    let path = saved("version");
    rewrite(&path, |_, m| {
        m.insert("format_version".into(), "2".into());
    });
    refused(&path, "format version Some(\"2\"), this build reads version 1");
}

#[test]
fn missing_tensor() {
    let path = saved("missing");
    rewrite(&path, |t, _| t.retain(|x| x.0 != "b.momentum_buffer"));
    refused(&path, "missing tensor \"b.momentum_buffer\"");
    let path = saved("missing-step");
    rewrite(&path, |t, _| t.retain(|x| x.0 != "step"));
    refused(&path, "missing tensor \"step\"");
}

#[test]
fn different_optimizer_layout() {
    let path = tmp("layout");
    let mut plain = Optimizer::<f32>::new(RmsProp::default(), &[("w", &[5, 1][..]), ("b", &[1][..])]).unwrap();
    let mut p = vec![vec![0.1f32; 5], vec![0.0]];
    plain.step(&mut p, &grads(0)).unwrap();
    plain.save(&path).unwrap();
    refused(&path, "missing tensor \"w.grad_avg\"");

    // the other way round: more state in the file than the optimizer keeps
    let path = saved("extra");
    let mut opt = Optimizer::<f32>::new(RmsProp::default(), &[("w", &[5, 1][..]), ("b", &[1][..])]).unwrap();
    let e = opt.load(&path).unwrap_err().to_string();
    assert!(e.contains("unexpected tensor"), "{e}");
}

#[test]
fn not_our_file() {
    let path = saved("foreign");
    rewrite(&path, |_, m| {
        m.remove("format");
    });
    refused(&path, "format None");
}
