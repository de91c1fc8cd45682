//! Re-cutting checkpoints, without MPI: shards written for 2 processes load on 3 and on 1
//! (and a single-process checkpoint on 2) with the very state a run that never stopped
//! has, so the next step is bit-identical; a damaged or mismatched checkpoint is an error
//! that changes nothing.

use rmsprop::{CHUNK, Optimizer, Partition, RmsProp, Solo, StateStorage, TensorSpec};
use rmsprop_mpi::checkpoint::{Manifest, consolidate, state_for};
use std::path::{Path, PathBuf};

fn model() -> Vec<TensorSpec> {
    vec![TensorSpec::new("w", &[3, CHUNK + 9]), TensorSpec::new("b", &[5]), TensorSpec::new("v", &[2 * CHUNK + 1])]
}

fn config() -> RmsProp {
    RmsProp { centered: true, momentum: 0.9, ..Default::default() }
}

fn config_in(storage: StateStorage) -> RmsProp {
    config().with_state_storage(storage)
}

fn grad(t: usize, n: usize, s: usize) -> Vec<f32> {
    (0..n).map(|i| ((i * 7919 + t * 131 + s * 17) % 1000) as f32 / 100.0 - 5.0).collect()
}

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("rmsprop-reshard-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The whole model's parameters after `steps` steps of one optimizer, and that optimizer.
fn whole(steps: usize) -> (Vec<Vec<f32>>, Optimizer<f32>) {
    whole_in(steps, StateStorage::F32)
}

fn whole_in(steps: usize, storage: StateStorage) -> (Vec<Vec<f32>>, Optimizer<f32>) {
    let tensors = model();
    let mut opt = Optimizer::<f32>::new(config_in(storage), &tensors).unwrap();
    let mut x: Vec<Vec<f32>> = tensors.iter().map(|t| vec![0.5; t.len()]).collect();
    for s in 0..steps {
        let g: Vec<Vec<f32>> = tensors.iter().enumerate().map(|(t, spec)| grad(t, spec.len(), s)).collect();
        opt.step(&mut x, &g).unwrap();
    }
    (x, opt)
}

/// Writes what `ranks` processes of a sharded run hold after `steps` steps into `dir`:
/// each shard stepped alone (no norm clipping, so it needs no other process).
fn write_shards(dir: &Path, ranks: usize, steps: usize) {
    write_shards_in(dir, ranks, steps, StateStorage::F32)
}

fn write_shards_in(dir: &Path, ranks: usize, steps: usize, storage: StateStorage) {
    let tensors = model();
    let partition = Partition::balanced(&tensors, ranks).unwrap();
    let manifest = Manifest::new(&tensors, Some(&partition), steps as u64);
    for r in 0..ranks {
        let pieces = partition.pieces(r);
        let mut opt = Optimizer::<f32>::sharded(config_in(storage), &tensors, &partition, r).unwrap();
        let mut x: Vec<Vec<f32>> = pieces.iter().map(|p| vec![0.5; p.len()]).collect();
        for s in 0..steps {
            let g: Vec<Vec<f32>> = tensors
                .iter()
                .enumerate()
                .zip(&pieces)
                .map(|((t, spec), p)| grad(t, spec.len(), s)[p.clone()].to_vec())
                .collect();
            opt.step_in(&Solo, &mut x, &g).unwrap();
        }
        opt.save(&dir.join(&manifest.files[r])).unwrap();
    }
    manifest.write(dir).unwrap();
}

fn states(opt: &Optimizer<f32>) -> Vec<Vec<u32>> {
    let names = ["square_avg", "grad_avg", "momentum_buffer"];
    opt.tensors()
        .flat_map(|t| names.iter().map(move |n| opt.state(&t.name, n).unwrap().iter().map(|v| v.to_bits()).collect()))
        .collect()
}

#[test]
fn shards_of_two_load_on_three_and_on_one_with_the_state_of_a_run_that_never_stopped() {
    let tensors = model();
    let d = dir("two");
    write_shards(&d, 2, 3);
    let (_, reference) = whole(3);
    // on one process: the joined state, and the consolidated file
    let mut one = Optimizer::<f32>::new(config(), &tensors).unwrap();
    one.load_bytes(&state_for(&d, &tensors, None).unwrap(), &d).unwrap();
    assert_eq!(states(&one), states(&reference));
    assert_eq!(one.step_count(), 3);
    let file = d.join("whole.safetensors");
    consolidate(&d, &file).unwrap();
    let mut from_file = Optimizer::<f32>::new(config(), &tensors).unwrap();
    from_file.load(&file).unwrap();
    assert_eq!(states(&from_file), states(&reference));
    // consolidating twice gives the same bytes
    let again = d.join("again.safetensors");
    consolidate(&d, &again).unwrap();
    assert_eq!(std::fs::read(&file).unwrap(), std::fs::read(&again).unwrap());
    // on three processes: each holds the reference's pieces
    let three = Partition::balanced(&tensors, 3).unwrap();
    for r in 0..3 {
        let pieces = three.pieces(r);
        let mut opt = Optimizer::<f32>::sharded(config(), &tensors, &three, r).unwrap();
        opt.load_bytes(&state_for(&d, &tensors, Some(&pieces)).unwrap(), &d).unwrap();
        for (t, p) in pieces.iter().enumerate() {
            for n in ["square_avg", "grad_avg", "momentum_buffer"] {
                let want = &reference.state(&tensors[t].name, n).unwrap()[p.clone()];
                assert_eq!(opt.state(&tensors[t].name, n).unwrap(), want, "process {r}, {} {n}", tensors[t].name);
            }
        }
        // and a shard's state loads into no other process's optimizer
        let other = Optimizer::<f32>::sharded(config(), &tensors, &three, (r + 1) % 3).unwrap();
        let mut other_copy = other.clone();
        assert!(other_copy.load_bytes(&state_for(&d, &tensors, Some(&pieces)).unwrap(), &d).is_err());
        assert_eq!(states_of_shard(&other_copy), states_of_shard(&other));
    }
    // the next step of the resumed whole optimizer is the never-stopped one's, bit for bit
    let (mut x, mut never) = whole(3);
    let mut y = x.clone();
    let g: Vec<Vec<f32>> = tensors.iter().enumerate().map(|(t, spec)| grad(t, spec.len(), 3)).collect();
    never.step(&mut x, &g).unwrap();
    one.step(&mut y, &g).unwrap();
    assert!(x.iter().flatten().zip(y.iter().flatten()).all(|(a, b)| a.to_bits() == b.to_bits()));
}

fn states_of_shard(opt: &Optimizer<f32>) -> Vec<Option<Vec<f32>>> {
    opt.tensors().map(|t| opt.state(&t.name, "square_avg").map(std::borrow::Cow::into_owned)).collect()
}

#[test]
fn a_single_process_checkpoint_loads_on_two_processes() {
    let tensors = model();
    let d = dir("single");
    let (_, reference) = whole(2);
    let file = d.join("opt.safetensors");
    reference.save(&file).unwrap();
    let two = Partition::balanced(&tensors, 2).unwrap();
    for r in 0..2 {
        let pieces = two.pieces(r);
        let mut opt = Optimizer::<f32>::sharded(config(), &tensors, &two, r).unwrap();
        opt.load_bytes(&state_for(&file, &tensors, Some(&pieces)).unwrap(), &file).unwrap();
        for (t, p) in pieces.iter().enumerate() {
            assert_eq!(
                opt.state(&tensors[t].name, "square_avg").unwrap(),
                &reference.state(&tensors[t].name, "square_avg").unwrap()[p.clone()]
            );
        }
        assert_eq!(opt.step_count(), 2);
    }
}

#[test]
fn damaged_or_mismatched_checkpoints_are_errors() {
    let tensors = model();
    let d = dir("damaged");
    write_shards(&d, 2, 1);
    // another model
    let other = vec![TensorSpec::new("w", &[4])];
    assert!(state_for(&d, &other, None).is_err());
    // pieces that are not of these tensors
    assert!(state_for(&d, &tensors, Some(&vec![0..1; 1])).is_err());
    assert!(state_for(&d, &tensors, Some(&[0..1, 0..9, 0..1])).is_err());
    // a missing shard
    std::fs::rename(d.join("shard-1-of-2.safetensors"), d.join("moved")).unwrap();
    assert!(state_for(&d, &tensors, None).is_err());
    std::fs::rename(d.join("moved"), d.join("shard-1-of-2.safetensors")).unwrap();
    // a shard of another step
    let d3 = dir("other-step");
    write_shards(&d3, 2, 2);
    std::fs::copy(d3.join("shard-1-of-2.safetensors"), d.join("shard-1-of-2.safetensors")).unwrap();
    let e = state_for(&d, &tensors, None).unwrap_err();
    assert!(e.to_string().contains("step 2 in the file, 1 in the folder's manifest.json"), "{e}");
    write_shards(&d, 2, 1);
    // a manifest whose step is not its files' (every file agrees with the others)
    let mut m = Manifest::read(&d).unwrap();
    m.step = 5;
    m.write(&d).unwrap();
    let e = state_for(&d, &tensors, None).unwrap_err();
    assert!(e.to_string().contains("step 1 in the file, 5 in the folder's manifest.json"), "{e}");
    m.step = 1;
    m.write(&d).unwrap();
    state_for(&d, &tensors, None).unwrap();
    // one flipped bit in a shard's state
    let shard = d.join("shard-0-of-2.safetensors");
    let mut bytes = std::fs::read(&shard).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x10;
    std::fs::write(&shard, &bytes).unwrap();
    let e = state_for(&d, &tensors, None).unwrap_err();
    assert!(e.to_string().contains("checksum mismatch"), "{e}");
    write_shards(&d, 2, 1);
    // a manifest whose pieces leave a gap, or that points out of its folder
    let mut m = Manifest::read(&d3).unwrap();
    m.pieces[1][2].start += 1;
    m.write(&d3).unwrap();
    assert!(Manifest::read(&d3).is_err());
    let mut m = Manifest::new(&tensors, None, 1);
    m.files[0] = "../elsewhere".into();
    m.write(&d3).unwrap();
    assert!(Manifest::read(&d3).is_err());
    // no manifest at all
    std::fs::remove_file(d3.join("manifest.json")).unwrap();
    assert!(state_for(&d3, &tensors, None).is_err());
}

/// Packed state re-cuts too: 8-bit codes by element, their scales by block (pieces start on
/// chunks), bfloat16 by element; each process of another count holds exactly the pieces of
/// a run that never stopped, and the joined file is that run's state.
#[test]
fn packed_shards_re_cut_with_their_codes_and_scales() {
    let tensors = model();
    for storage in [StateStorage::Bf16, StateStorage::Int8] {
        let d = dir(&format!("packed-{storage}"));
        write_shards_in(&d, 2, 3, storage);
        let (_, reference) = whole_in(3, storage);
        let mut one = Optimizer::<f32>::new(config_in(storage), &tensors).unwrap();
        one.load_bytes(&state_for(&d, &tensors, None).unwrap(), &d).unwrap();
        assert_eq!(states(&one), states(&reference), "{storage}");
        let three = Partition::balanced(&tensors, 3).unwrap();
        for r in 0..3 {
            let pieces = three.pieces(r);
            let mut opt = Optimizer::<f32>::sharded(config_in(storage), &tensors, &three, r).unwrap();
            opt.load_bytes(&state_for(&d, &tensors, Some(&pieces)).unwrap(), &d).unwrap();
            for (t, p) in pieces.iter().enumerate() {
                for n in ["square_avg", "grad_avg", "momentum_buffer"] {
                    let want = &reference.state(&tensors[t].name, n).unwrap()[p.clone()];
                    assert_eq!(opt.state(&tensors[t].name, n).unwrap(), want, "{storage} process {r} {n}");
                }
            }
        }
    }
}
