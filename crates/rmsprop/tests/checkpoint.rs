//! Checkpoints: bit-identical resume, atomic writes, and a clear refusal of every
//! corrupt or mismatched file.

mod support;

use rmsprop::checkpoint::{CHECKSUM_KEY, checksum};
use rmsprop::quant::{self, DynamicCode};
use rmsprop::{MomentumStyle, Optimizer, RmsProp, StateStorage};
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

/// A centred RMSProp with momentum keeping `storage` over a tensor of 8-bit size and a
/// small one (kept in f32 under `Int8`).
fn packed(storage: StateStorage) -> Optimizer<f32> {
    Optimizer::new(config().with_state_storage(storage), &[("w", &[64, 80][..]), ("b", &[10][..])]).unwrap()
}

fn packed_grads(t: usize) -> Vec<Vec<f32>> {
    vec![
        (0..5120).map(|i| ((t * 5120 + i) as f32 * 0.37).sin() * 10f32.powi(i as i32 % 5 - 2)).collect(),
        vec![(t as f32).cos(); 10],
    ]
}

const SLOTS: [&str; 3] = ["square_avg", "grad_avg", "momentum_buffer"];

fn bits(opt: &Optimizer<f32>) -> Vec<u32> {
    let mut all = Vec::new();
    for t in ["w", "b"] {
        for s in SLOTS {
            all.extend(opt.state(t, s).unwrap().iter().map(|v| v.to_bits()));
        }
    }
    all
}

/// Saved and loaded into the same storage, packed state is the same bits (codes and scales
/// as they were), and the run continues as if never stopped; the file holds the codes as
/// `U8` with their `.absmax`, bfloat16 as `BF16`, and says its block size and code version.
#[test]
fn packed_state_resumes_bit_identically() {
    for storage in [StateStorage::Bf16, StateStorage::Int8] {
        let path = tmp(&format!("packed-{storage}"));
        let (mut a, mut b) = (packed(storage), packed(storage));
        let mut pa = vec![vec![0.5f32; 5120], vec![0.0; 10]];
        for t in 0..3 {
            a.step(&mut pa, &packed_grads(t)).unwrap();
        }
        a.save(&path).unwrap();
        b.load(&path).unwrap();
        assert_eq!(bits(&a), bits(&b), "{storage}");
        let mut pb = pa.clone();
        for t in 3..6 {
            a.step(&mut pa, &packed_grads(t)).unwrap();
            b.step(&mut pb, &packed_grads(t)).unwrap();
        }
        assert_eq!(pa, pb, "{storage}");
        assert_eq!(bits(&a), bits(&b), "{storage}");
        let bytes = std::fs::read(&path).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let meta = rmsprop::checkpoint::metadata(&path).unwrap();
        match storage {
            StateStorage::Int8 => {
                assert_eq!(st.tensor("w.square_avg").unwrap().dtype(), Dtype::U8);
                assert_eq!(st.tensor("w.grad_avg.absmax").unwrap().shape(), [5120 / 256]);
                assert_eq!(st.tensor("b.square_avg").unwrap().dtype(), Dtype::F32);
                assert_eq!((meta["state_block"].as_str(), meta["state_code_version"].as_str()), ("256", "1"));
            }
            _ => assert_eq!(st.tensor("w.square_avg").unwrap().dtype(), Dtype::BF16),
        }
    }
}

/// A checkpoint of one storage loads into another by decoding and encoding again: into
/// `f32` exactly the decoded values, into bfloat16 or 8 bits what that storage keeps of
/// them (the quantiser's definition, `support::kept`) — the stated error.
#[test]
fn packed_state_converts_between_storages() {
    let all = [StateStorage::F32, StateStorage::Bf16, StateStorage::Int8];
    for from in all {
        let path = tmp(&format!("convert-{from}"));
        let mut a = packed(from);
        let mut p = vec![vec![0.5f32; 5120], vec![0.0; 10]];
        for t in 0..3 {
            a.step(&mut p, &packed_grads(t)).unwrap();
        }
        a.save(&path).unwrap();
        for to in all {
            let mut b = packed(to);
            b.load(&path).unwrap();
            for t in ["w", "b"] {
                for s in SLOTS {
                    let theirs = a.state(t, s).unwrap();
                    let expected = support::kept(&theirs, b.state_storage(t).unwrap(), s == "square_avg");
                    let ours = b.state(t, s).unwrap();
                    let same = ours.iter().zip(&expected).all(|(x, y)| x.to_bits() == y.to_bits());
                    assert!(same, "{from} -> {to}: {t}.{s}");
                }
            }
            assert_eq!(b.step_count(), 3);
        }
    }
}

/// 8-bit state written with another block size is converted (decoded with the file's
/// blocks, encoded with ours); another code table version, a scale that is negative or
/// not finite, or scales of the wrong count are refused, and nothing changes.
#[test]
fn packed_state_of_another_layout_is_converted_or_refused() {
    let path = tmp("blocks");
    let mut a = packed(StateStorage::Int8);
    let mut p = vec![vec![0.5f32; 5120], vec![0.0; 10]];
    a.step(&mut p, &packed_grads(0)).unwrap();
    a.save(&path).unwrap();
    // the same values in blocks of 64, as a build with another block size would write them
    let values: Vec<Vec<f32>> = SLOTS.iter().map(|s| a.state("w", s).unwrap().into_owned()).collect();
    rewrite(&path, |tensors, meta| {
        for (slot, v) in SLOTS.iter().zip(&values) {
            let code = if *slot == "square_avg" { DynamicCode::unsigned() } else { DynamicCode::signed() };
            let mut codes = vec![0u8; v.len()];
            let scales: Vec<f32> =
                v.chunks(64).zip(codes.chunks_mut(64)).map(|(b, c)| quant::quantize(code, b, c).unwrap()).collect();
            for t in tensors.iter_mut() {
                if t.0 == format!("w.{slot}") {
                    t.3 = codes.clone();
                } else if t.0 == format!("w.{slot}.absmax") {
                    (t.2, t.3) = (vec![scales.len()], scales.iter().flat_map(|s| s.to_le_bytes()).collect());
                }
            }
        }
        meta.insert("state_block".into(), "64".into());
    });
    let mut b = packed(StateStorage::Int8);
    b.load(&path).unwrap();
    for (slot, v) in SLOTS.iter().zip(&values) {
        let code = if *slot == "square_avg" { DynamicCode::unsigned() } else { DynamicCode::signed() };
        let mut in_64 = vec![0f32; v.len()];
        for (b, out) in v.chunks(64).zip(in_64.chunks_mut(64)) {
            let mut c = vec![0u8; b.len()];
            let s = quant::quantize(code, b, &mut c).unwrap();
            quant::dequantize(code, &c, s, out).unwrap();
        }
        let expected = support::kept(&in_64, StateStorage::Int8, *slot == "square_avg");
        assert_eq!(b.state("w", slot).unwrap().into_owned(), expected, "{slot}");
    }
    let refused_packed = |path: &Path, says: &str| {
        let mut opt = packed(StateStorage::Int8);
        let mut p = vec![vec![0.5f32; 5120], vec![0.0; 10]];
        opt.step(&mut p, &packed_grads(1)).unwrap();
        let before = bits(&opt);
        let e = opt.load(path).unwrap_err().to_string();
        assert!(e.contains(says), "{e:?} does not say {says:?}");
        assert_eq!(bits(&opt), before);
    };
    a.save(&path).unwrap();
    rewrite(&path, |_, meta| {
        meta.insert("state_code_version".into(), "2".into());
    });
    refused_packed(&path, "code table version Some(\"2\"); this build knows version 1");
    for (bad, says) in [(-1.0f32, "is -1: a scale is a finite magnitude"), (f32::NAN, "is NaN")] {
        a.save(&path).unwrap();
        rewrite(&path, |tensors, _| {
            let t = tensors.iter_mut().find(|t| t.0 == "w.grad_avg.absmax").unwrap();
            t.3[4..8].copy_from_slice(&bad.to_le_bytes());
        });
        refused_packed(&path, says);
    }
    a.save(&path).unwrap();
    rewrite(&path, |tensors, _| {
        let t = tensors.iter_mut().find(|t| t.0 == "w.square_avg.absmax").unwrap();
        (t.2, t.3) = (vec![3], t.3[..12].to_vec());
    });
    refused_packed(&path, "expected F32[20] (a scale per block of 256)");
}
