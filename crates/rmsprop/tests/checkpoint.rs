//! Checkpoints: bit-identical resume, atomic writes, and a clear refusal of every
//! corrupt or mismatched file.

use rmsprop::checkpoint::{CHECKSUM_KEY, checksum};
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
    assert_eq!(meta["format_version"], "2");
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
    // the edit is what is tested, not the checksum: sealed again as a save seals it
    if meta.contains_key(CHECKSUM_KEY) {
        let dtypes: Vec<String> = tensors.iter().map(|t| format!("{:?}", t.1)).collect();
        let arrays: Vec<(&str, &str, &[usize], &[u8])> =
            tensors.iter().zip(&dtypes).map(|(t, d)| (t.0.as_str(), d.as_str(), &t.2[..], &t.3[..])).collect();
        let sum = checksum(&arrays, &meta);
        meta.insert(CHECKSUM_KEY.into(), sum);
    }
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
    refused(&path, "written for float64 parameters with float64 state, this optimizer has float32 parameters");
    // metadata that lies about the arrays: the arrays' own dtype is checked too
    rewrite(&path, |_, m| {
        m.insert("dtype".into(), "float32".into());
        m.insert("param_dtype".into(), "float32".into());
    });
    refused(&path, "has dtype F64, expected F32");
}

/// A bf16 optimizer keeps f32 state like an f32 one, but it is not the same optimizer.
#[test]
fn half_precision_parameters_do_not_load_an_f32_checkpoint() {
    let path = saved("bf16");
    let mut opt = Optimizer::<half::bf16>::new(config(), &[("w", &[5, 1][..]), ("b", &[1][..])]).unwrap();
    let e = opt.load(&path).unwrap_err().to_string();
    assert!(e.contains("written for float32 parameters with float32 state, this optimizer has bfloat16"), "{e}");
}

#[test]
fn wrong_version() {
    let path = saved("version");
    rewrite(&path, |_, m| {
        m.insert("format_version".into(), "3".into());
    });
    refused(&path, "format version Some(\"3\"), this build reads versions 2 and 1");
}

/// A file of the first format version (no checksum) still loads; one of the current
/// version without its checksum does not.
#[test]
fn version_1_loads_without_a_checksum_and_version_2_needs_one() {
    let path = saved("v1");
    let mut want = optimizer();
    want.load(&path).unwrap();
    rewrite(&path, |_, m| {
        m.remove(CHECKSUM_KEY);
        m.insert("format_version".into(), "1".into());
    });
    let mut opt = optimizer();
    opt.load(&path).unwrap();
    assert_eq!(opt.state("w", "grad_avg"), want.state("w", "grad_avg"));
    rewrite(&path, |_, m| {
        m.insert("format_version".into(), "2".into());
    });
    refused(&path, "missing metadata \"checksum\"");
}

/// Every single flipped bit of a checkpoint — in its arrays, its metadata, its header — is
/// refused (before: 574 of 11,072 flips loaded other state silently), and nothing changes.
#[test]
fn every_flipped_bit_is_refused() {
    let path = saved("flips");
    let bytes = std::fs::read(&path).unwrap();
    let mut opt = optimizer();
    let mut p = vec![vec![0.1f32; 5], vec![0.0]];
    opt.step(&mut p, &grads(3)).unwrap();
    let state = |o: &Optimizer<f32>| {
        let mut v: Vec<u32> = Vec::new();
        for t in ["w", "b"] {
            for k in ["square_avg", "grad_avg", "momentum_buffer"] {
                v.extend(o.state(t, k).unwrap().iter().map(|x| x.to_bits()));
            }
        }
        (v, o.step_count(), o.skipped_steps())
    };
    let before = state(&opt);
    let mut refusals = 0;
    for bit in 0..bytes.len() * 8 {
        let mut flipped = bytes.clone();
        flipped[bit / 8] ^= 1 << (bit % 8);
        let e = opt.load_bytes(&flipped, "flipped".as_ref());
        assert!(e.is_err(), "bit {bit} of {}: a damaged file loaded", bytes.len() * 8);
        assert_eq!(state(&opt), before, "bit {bit}: a refused load changed the state");
        refusals += e.unwrap_err().to_string().contains("checksum mismatch") as usize;
    }
    // every flip in the arrays (behind the 8-byte length and the header) parses, and is
    // caught by the checksum
    let data = bytes.len() - 8 - u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    assert!(refusals >= data * 8, "{refusals} checksum refusals, {} bits of array data", data * 8);
}

/// The file at the path, or at the end of its links, is replaced only when it is a
/// regular file: a device, a FIFO or a folder is refused and stays what it was; a link
/// to a file that does not exist yet creates that file and stays a link.
#[cfg(unix)]
#[test]
fn save_replaces_only_regular_files() {
    use std::os::unix::fs::{FileTypeExt, symlink};
    let path = tmp("targets");
    let dir = path.parent().unwrap().to_path_buf();
    let opt = optimizer();
    let refused = |target: &Path, says: &str| {
        let e = opt.save(target).unwrap_err().to_string();
        assert!(e.contains(says), "{}: {e}", target.display());
        assert!(e.contains("only a regular file is replaced"), "{e}");
    };
    // a device: writing "checkpoint" over /dev/null must not turn it into a file
    refused(Path::new("/dev/null"), "/dev/null is a character device, not a regular file");
    assert!(std::fs::metadata("/dev/null").unwrap().file_type().is_char_device());
    let fifo = dir.join("fifo");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    refused(&fifo, "is a FIFO, not a regular file");
    assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo());
    let folder = dir.join("folder");
    std::fs::create_dir_all(&folder).unwrap();
    refused(&folder, "is a folder, not a regular file");
    // links are followed to their end: to a device, refused; to nothing yet, created
    let to_device = dir.join("to-device");
    symlink("/dev/null", &to_device).unwrap();
    refused(&to_device, "/dev/null is a character device");
    let dangling = dir.join("dangling");
    symlink("new.safetensors", &dangling).unwrap();
    opt.save(&dangling).unwrap();
    assert!(std::fs::symlink_metadata(&dangling).unwrap().file_type().is_symlink(), "the link was replaced");
    assert!(std::fs::metadata(dir.join("new.safetensors")).unwrap().is_file());
    optimizer().load(&dangling).unwrap();
    // a loop of links is an error, not a hang
    let (a, b) = (dir.join("loop-a"), dir.join("loop-b"));
    symlink(&b, &a).unwrap();
    symlink(&a, &b).unwrap();
    assert!(opt.save(&a).unwrap_err().to_string().contains("symbolic links in a row"));
    // a FIFO is not read either: loading one with no writer is an error, not a wait
    let e = optimizer().load(&fifo).unwrap_err().to_string();
    assert!(e.contains("is a FIFO, not a regular file"), "{e}");
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

#[test]
fn another_optimizer_or_tensor_set_is_named() {
    let path = tmp("adam");
    let mut adam = Optimizer::<f32>::new(rmsprop::Adam::default(), &[("w", &[5, 1][..]), ("b", &[1][..])]).unwrap();
    adam.step(&mut [vec![0.1f32; 5], vec![0.0]], &grads(0)).unwrap();
    adam.save(&path).unwrap();
    refused(&path, "written for adam, this optimizer is rmsprop");
    let path = tmp("tensors");
    let mut other = Optimizer::<f32>::new(config(), &[("v", &[5, 1][..]), ("b", &[2][..])]).unwrap();
    other.step(&mut [vec![0.1f32; 5], vec![0.0; 2]], &[vec![1.0; 5], vec![1.0; 2]]).unwrap();
    other.save(&path).unwrap();
    refused(&path, "written for tensors v[5, 1], b[2], this optimizer has w[5, 1], b[1]");
}

/// State values that no optimizer can produce are refused, naming the array and element.
#[test]
fn impossible_state_values_are_refused() {
    let set = |name: &'static str, i: usize, v: f32| {
        move |t: &mut Vec<(String, Dtype, Vec<usize>, Vec<u8>)>, _: &mut HashMap<String, String>| {
            let x = t.iter_mut().find(|x| x.0 == name).unwrap();
            x.3[4 * i..4 * i + 4].copy_from_slice(&v.to_le_bytes());
        }
    };
    for (name, i, v, says) in [
        ("w.square_avg", 0, f32::NAN, "tensor \"w.square_avg\" element 0 is NaN: state must be finite"),
        ("w.square_avg", 1, -1.0, "tensor \"w.square_avg\" element 1 is -1: a sum of squares is never negative"),
        ("b.square_avg", 0, f32::INFINITY, "tensor \"b.square_avg\" element 0 is inf: state must be finite"),
        ("w.momentum_buffer", 4, f32::NEG_INFINITY, "element 4 is -inf: state must be finite"),
    ] {
        let path = saved("values");
        rewrite(&path, set(name, i, v));
        refused(&path, says);
    }
    // a negative momentum or mean gradient is ordinary
    let path = saved("negative-momentum");
    rewrite(&path, set("w.grad_avg", 0, -3.0));
    optimizer().load(&path).unwrap();
}

#[test]
fn inconsistent_counters_are_refused() {
    for (key, value, says) in [
        ("step", "999", "metadata step Some(\"999\") disagrees with tensor \"step\" = 1"),
        ("skipped_steps", "abc", "metadata skipped_steps = \"abc\", expected a whole number from 0 to 2^63 - 1"),
        ("skipped_steps", "18446744073709551615", "metadata skipped_steps = \"18446744073709551615\""),
        ("step", "-1", "metadata step = \"-1\""),
    ] {
        let path = saved("counters");
        rewrite(&path, |_, m| {
            m.insert(key.into(), value.into());
        });
        refused(&path, says);
    }
    let path = saved("no-skipped");
    rewrite(&path, |_, m| {
        m.remove("skipped_steps");
    });
    refused(&path, "missing metadata \"skipped_steps\"");
}

#[test]
fn the_same_state_saves_to_the_same_bytes() {
    let (a, b) = (tmp("bytes-a"), tmp("bytes-b"));
    let mut opt = optimizer();
    opt.step(&mut [vec![0.1f32; 5], vec![0.0]], &grads(0)).unwrap();
    opt.save(&a).unwrap();
    for _ in 0..5 {
        opt.save(&b).unwrap();
        assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    }
    let mut back = optimizer();
    back.load(&b).unwrap();
    assert_eq!(back.state("w", "grad_avg"), opt.state("w", "grad_avg"));
}

/// Saves from several threads to one path never collide on their temporary file, and the
/// file left is one whole checkpoint.
#[test]
fn concurrent_saves_to_one_path_all_succeed() {
    let path = tmp("concurrent");
    let mut opt = optimizer();
    opt.step(&mut [vec![0.1f32; 5], vec![0.0]], &grads(0)).unwrap();
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                for _ in 0..20 {
                    opt.save(&path).unwrap();
                }
            });
        }
    });
    optimizer().load(&path).unwrap();
    assert_eq!(std::fs::read_dir(path.parent().unwrap()).unwrap().count(), 1, "temporary files left");
}

#[cfg(unix)]
#[test]
fn saving_through_a_symlink_keeps_the_link() {
    let path = tmp("symlink");
    let dir = path.parent().unwrap();
    let real = dir.join("real.safetensors");
    let link = dir.join("link.safetensors");
    let _ = std::fs::remove_file(&link);
    let mut opt = optimizer();
    opt.step(&mut [vec![0.1f32; 5], vec![0.0]], &grads(0)).unwrap();
    opt.save(&real).unwrap();
    std::os::unix::fs::symlink(&real, &link).unwrap();
    opt.step(&mut [vec![0.1f32; 5], vec![0.0]], &grads(1)).unwrap();
    opt.save(&link).unwrap();
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink(), "the link was replaced");
    let mut back = optimizer();
    back.load(&real).unwrap();
    assert_eq!(back.step_count(), 2, "the save went to the link's target");
}
