//! Steps taken by several processes together (`Optimizer::step_in`), with the processes as
//! threads: a model cut into pieces by a `Partition` (sharded state) steps exactly as one
//! process stepping the whole model does, bit for bit, norm clipping included; a refusal
//! anywhere is a refusal everywhere, and nothing changes.

use rmsprop::{
    CHUNK, Error, NonFinitePolicy, NormScope, Optimizer, OptimizerConfig, Partition, Result, RmsProp, Rounding,
    StepOutcome, TensorSpec, World,
};
use std::sync::{Arc, Barrier, Mutex};

/// Processes as threads: `all_sum` adds every thread's vector in rank order.
struct Threads {
    rank: usize,
    size: usize,
    slots: Arc<Mutex<Vec<Vec<f64>>>>,
    barrier: Arc<Barrier>,
    /// The `all_sum` call (counted from 1) at which this process fails, if any.
    fail_at: Option<usize>,
    calls: Mutex<usize>,
}

impl World for Threads {
    fn rank(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.size
    }
    fn all_sum(&self, v: &mut [f64]) -> Result<()> {
        let call = {
            let mut c = self.calls.lock().unwrap();
            *c += 1;
            *c
        };
        self.slots.lock().unwrap()[self.rank] = v.to_vec();
        self.barrier.wait();
        let failed = self.fail_at == Some(call);
        let sum = {
            let slots = self.slots.lock().unwrap();
            (0..v.len()).map(|i| slots.iter().map(|s| s[i]).sum()).collect::<Vec<f64>>()
        };
        self.barrier.wait();
        if failed {
            return Err(Error::World(format!("process {} lost its connection", self.rank)));
        }
        v.copy_from_slice(&sum);
        Ok(())
    }
}

fn worlds(size: usize) -> Vec<Threads> {
    let slots = Arc::new(Mutex::new(vec![Vec::new(); size]));
    let barrier = Arc::new(Barrier::new(size));
    (0..size)
        .map(|rank| Threads {
            rank,
            size,
            slots: slots.clone(),
            barrier: barrier.clone(),
            fail_at: None,
            calls: Mutex::new(0),
        })
        .collect()
}

fn model() -> Vec<TensorSpec> {
    vec![
        TensorSpec::new("w1", &[3, CHUNK + 5]),
        TensorSpec::new("b1", &[7]),
        TensorSpec::new("w2", &[2 * CHUNK]),
        TensorSpec::new("b2", &[1]),
    ]
}

/// Step `s`'s gradient of tensor `t`: mixed signs and magnitudes.
fn grad(t: usize, n: usize, s: usize) -> Vec<f32> {
    (0..n).map(|i| ((i * 7919 + t * 131 + s * 17) % 1000) as f32 / 100.0 - 5.0).collect()
}

fn init(t: usize, n: usize) -> Vec<f32> {
    (0..n).map(|i| ((i + t) as f32 / 20.0).sin()).collect()
}

fn configs() -> Vec<OptimizerConfig> {
    let plain = RmsProp::default();
    let mut centred = RmsProp::default().with_clip_norm(50.0, NormScope::Global);
    centred.centered = true;
    centred.momentum = 0.9;
    let per_tensor = RmsProp::default().with_clip_norm(30.0, NormScope::PerTensor).with_rounding(Rounding::Xla);
    let global_xla = RmsProp::default().with_clip_norm(40.0, NormScope::Global).with_rounding(Rounding::Xla);
    vec![plain.into(), centred.into(), per_tensor.into(), global_xla.into()]
}

/// Every process's pieces after `steps` steps, run on threads.
fn sharded_run(config: &OptimizerConfig, ranks: usize, steps: usize) -> Vec<Vec<Vec<f32>>> {
    let tensors = model();
    let partition = Partition::balanced(&tensors, ranks).unwrap();
    std::thread::scope(|scope| {
        let handles: Vec<_> = worlds(ranks)
            .into_iter()
            .map(|world| {
                let (tensors, partition) = (&tensors, &partition);
                scope.spawn(move || {
                    let r = world.rank();
                    let pieces = partition.pieces(r);
                    let mut opt = Optimizer::<f32>::sharded(config.clone(), tensors, partition, r).unwrap();
                    let mut x: Vec<Vec<f32>> = tensors
                        .iter()
                        .enumerate()
                        .zip(&pieces)
                        .map(|((t, s), p)| init(t, s.len())[p.clone()].to_vec())
                        .collect();
                    for s in 0..steps {
                        let g: Vec<Vec<f32>> = tensors
                            .iter()
                            .enumerate()
                            .zip(&pieces)
                            .map(|((t, spec), p)| grad(t, spec.len(), s)[p.clone()].to_vec())
                            .collect();
                        assert_eq!(opt.step_in(&world, &mut x, &g).unwrap(), StepOutcome::Applied);
                    }
                    x
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

#[test]
fn sharded_steps_are_the_pieces_of_the_whole_step_bit_for_bit() {
    let tensors = model();
    let steps = 4;
    for config in configs() {
        let mut whole = Optimizer::<f32>::new(config.clone(), &tensors).unwrap();
        let mut x: Vec<Vec<f32>> = tensors.iter().enumerate().map(|(t, s)| init(t, s.len())).collect();
        for s in 0..steps {
            let g: Vec<Vec<f32>> = tensors.iter().enumerate().map(|(t, spec)| grad(t, spec.len(), s)).collect();
            whole.step(&mut x, &g).unwrap();
        }
        for ranks in [1, 2, 3, 5] {
            let partition = Partition::balanced(&tensors, ranks).unwrap();
            let shards = sharded_run(&config, ranks, steps);
            for (r, pieces) in shards.iter().enumerate() {
                for (t, p) in partition.pieces(r).into_iter().enumerate() {
                    let (got, want) = (&pieces[t], &x[t][p.clone()]);
                    assert!(
                        got.iter().zip(want).all(|(a, b)| a.to_bits() == b.to_bits()),
                        "{} on {ranks} processes: process {r}, tensor {t}, piece {p:?}",
                        config.name()
                    );
                }
            }
        }
    }
}

#[test]
fn whole_models_stepped_together_step_as_one_process() {
    // data-parallel: every process holds the whole model and the same averaged gradient
    let tensors = model();
    for config in configs() {
        let mut alone = Optimizer::<f32>::new(config.clone(), &tensors).unwrap();
        let mut x: Vec<Vec<f32>> = tensors.iter().enumerate().map(|(t, s)| init(t, s.len())).collect();
        let grads = |s| tensors.iter().enumerate().map(|(t, spec)| grad(t, spec.len(), s)).collect::<Vec<_>>();
        for s in 0..3 {
            alone.step(&mut x, &grads(s)).unwrap();
        }
        let together: Vec<Vec<Vec<f32>>> = std::thread::scope(|scope| {
            let handles: Vec<_> = worlds(3)
                .into_iter()
                .map(|world| {
                    let (tensors, config) = (&tensors, &config);
                    scope.spawn(move || {
                        let mut opt = Optimizer::<f32>::new(config.clone(), tensors).unwrap();
                        let mut x: Vec<Vec<f32>> = tensors.iter().enumerate().map(|(t, s)| init(t, s.len())).collect();
                        for s in 0..3 {
                            opt.step_in(&world, &mut x, &grads(s)).unwrap();
                        }
                        x
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for y in together {
            assert!(
                y.iter().flatten().zip(x.iter().flatten()).all(|(a, b)| a.to_bits() == b.to_bits()),
                "{}",
                config.name()
            );
        }
    }
}

/// What each of three processes' second step returned when one of them got `bad_value`
/// in tensor `w1` (every exchange failing at call `fail_world_at`, if given), and whether
/// its parameters and state stayed as they were.
fn one_bad_process(
    policy: NonFinitePolicy,
    bad_value: f32,
    fail_world_at: Option<usize>,
) -> Vec<(Result<StepOutcome>, bool)> {
    let tensors = model();
    let ranks = 3;
    let partition = Partition::balanced(&tensors, ranks).unwrap();
    // the last of the processes holding a piece of `w1`, which the partition splits
    let holder = (0..ranks).rev().find(|&r| !partition.pieces(r)[0].is_empty()).unwrap();
    std::thread::scope(|scope| {
        let handles: Vec<_> = worlds(ranks)
            .into_iter()
            .map(|mut world| {
                let (tensors, partition) = (&tensors, &partition);
                scope.spawn(move || {
                    let r = world.rank();
                    world.fail_at = fail_world_at;
                    let pieces = partition.pieces(r);
                    let mut opt = Optimizer::<f32>::sharded(RmsProp::default(), tensors, partition, r)
                        .unwrap()
                        .with_nonfinite_policy(policy);
                    let mut x: Vec<Vec<f32>> = pieces.iter().map(|p| vec![1.0; p.len()]).collect();
                    let g: Vec<Vec<f32>> = pieces.iter().map(|p| vec![0.5; p.len()]).collect();
                    opt.step_in(&world, &mut x, &g).unwrap();
                    let before = (
                        x.clone(),
                        (0..tensors.len())
                            .map(|t| opt.state(&tensors[t].name, "square_avg").unwrap().to_vec())
                            .collect::<Vec<_>>(),
                    );
                    let mut g = g;
                    if r == holder {
                        g[0][0] = bad_value;
                    }
                    let out = opt.step_in(&world, &mut x, &g);
                    let after = (
                        x,
                        (0..tensors.len())
                            .map(|t| opt.state(&tensors[t].name, "square_avg").unwrap().to_vec())
                            .collect::<Vec<_>>(),
                    );
                    let unchanged = format!("{before:?}") == format!("{after:?}");
                    if out.is_err() || out.as_ref().is_ok_and(|o| *o == StepOutcome::Skipped) {
                        assert_eq!(opt.step_count(), 1);
                    }
                    (out, unchanged)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

#[test]
fn a_nonfinite_gradient_on_one_process_is_refused_by_all() {
    let outcomes = one_bad_process(NonFinitePolicy::Error, f32::NAN, None);
    let partition = Partition::balanced(&model(), 3).unwrap();
    let first_of_w1 = (0..3).rev().map(|r| partition.pieces(r)[0].clone()).find(|p| !p.is_empty()).unwrap().start;
    assert!(first_of_w1 > 0);
    let mut own = 0;
    for (out, unchanged) in &outcomes {
        assert!(unchanged, "{out:?}");
        match out {
            Err(Error::NonFiniteGradient { tensor, index, .. }) => {
                // the element of the whole tensor, not of the piece
                assert_eq!((tensor.as_str(), *index), ("w1", first_of_w1));
                own += 1;
            }
            Err(e @ Error::RefusedElsewhere { step: 2, processes: 1, .. }) => {
                assert!(e.to_string().contains("non-finite gradient"), "{e}")
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(own, 1);
    for (out, unchanged) in one_bad_process(NonFinitePolicy::Skip, f32::INFINITY, None) {
        assert!(unchanged && matches!(out, Ok(StepOutcome::Skipped)), "{out:?}");
    }
}

#[test]
fn a_nonfinite_result_on_one_process_is_refused_by_all() {
    // 1e20² overflows f32 in the average of squares of one process only
    let outcomes = one_bad_process(NonFinitePolicy::Error, 1e20, None);
    assert_eq!(outcomes.iter().filter(|(o, _)| matches!(o, Err(Error::NonFiniteResult { .. }))).count(), 1);
    for (out, unchanged) in &outcomes {
        assert!(unchanged, "{out:?}");
        assert!(matches!(out, Err(Error::NonFiniteResult { .. } | Error::RefusedElsewhere { .. })), "{out:?}");
    }
    for (out, unchanged) in one_bad_process(NonFinitePolicy::Skip, 1e20, None) {
        assert!(unchanged && matches!(out, Ok(StepOutcome::Skipped)), "{out:?}");
    }
}

#[test]
fn a_failed_exchange_changes_nothing() {
    // the exchanges of the second step (after the first step's two), as every process
    // sees a broken connection
    for call in [3, 4] {
        for (out, unchanged) in one_bad_process(NonFinitePolicy::Error, 0.25, Some(call)) {
            assert!(matches!(out, Err(Error::World(_))) && unchanged, "{out:?}");
        }
    }
}

#[test]
fn an_invalid_input_on_one_process_is_refused_by_all() {
    let tensors = model();
    let partition = Partition::balanced(&tensors, 2).unwrap();
    let outcomes: Vec<Result<StepOutcome>> = std::thread::scope(|scope| {
        let handles: Vec<_> = worlds(2)
            .into_iter()
            .map(|world| {
                let (tensors, partition) = (&tensors, &partition);
                scope.spawn(move || {
                    let r = world.rank();
                    let mut opt = Optimizer::<f32>::sharded(RmsProp::default(), tensors, partition, r).unwrap();
                    let mut x: Vec<Vec<f32>> = partition.pieces(r).iter().map(|p| vec![1.0; p.len()]).collect();
                    let mut g: Vec<Vec<f32>> = partition.pieces(r).iter().map(|p| vec![0.5; p.len()]).collect();
                    if r == 1 {
                        g[1].push(0.0); // one element too many
                    }
                    opt.step_in(&world, &mut x, &g)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(
        matches!(outcomes[0], Err(Error::RefusedElsewhere { reason: "an invalid input", .. })),
        "{:?}",
        outcomes[0]
    );
    assert!(matches!(outcomes[1], Err(Error::LengthMismatch { .. })), "{:?}", outcomes[1]);
}

#[test]
fn a_partition_that_does_not_fit_is_an_error() {
    let tensors = model();
    let partition = Partition::balanced(&tensors, 2).unwrap();
    assert!(Optimizer::<f32>::sharded(RmsProp::default(), &tensors, &partition, 2).is_err());
    assert!(Optimizer::<f32>::sharded(RmsProp::default(), &tensors[1..], &partition, 0).is_err());
    let mut opt = Optimizer::<f32>::sharded(RmsProp::default(), &tensors, &partition, 0).unwrap();
    assert!(opt.add_group(RmsProp::default(), &[("extra", &[2][..])]).is_err());
}
