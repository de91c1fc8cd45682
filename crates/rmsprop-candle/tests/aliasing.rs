//! One storage reached twice: tied weights train (each storage stepped once, with candle's
//! summed gradient), a gradient that is a variable is refused before any lock, and two
//! trainers over the same variables, or a trainer and a thread computing with them, never
//! wait on each other. Every case runs under a watchdog: a step that never returns fails
//! the test instead of hanging it (before, each of these steps deadlocked).

use candle_core::backprop::GradStore;
use candle_core::{Device, Tensor, Var};
use candle_nn::VarMap;
use rmsprop::Flavor;
use rmsprop_candle::{Error, Trainer};
use std::sync::mpsc;
use std::time::Duration;

/// Runs `f` on another thread; fails if it has not returned within a minute.
fn watchdog<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(v) => v,
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("{what}: no answer within 60 s (a deadlock)"),
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("{what}: the thread panicked"),
    }
}

/// The gradients of `Σ sum(v)` (ones): each variable's storage read alone, one lock at a
/// time.
fn store(vars: &[&Var]) -> GradStore {
    let sums: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().sum_all().unwrap()).collect();
    let total = sums.iter().skip(1).fold(sums[0].clone(), |acc, s| (acc + s).unwrap());
    total.backward().unwrap()
}

fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

fn var(values: &[f32]) -> Var {
    Var::new(values, &Device::Cpu).unwrap()
}

/// `candle_nn::Optimizer::new(vec![v.clone(), v.clone()])`: one parameter, stepped once,
/// exactly as a trainer given it once.
#[test]
fn the_same_var_twice_is_one_parameter() {
    let ((twice, names), once) = watchdog("the same Var twice", || {
        let (a, b) = (var(&[1.0, -2.0, 3.0]), var(&[1.0, -2.0, 3.0]));
        let mut twice =
            <Trainer as candle_nn::Optimizer>::new(vec![a.clone(), a.clone()], Flavor::PyTorch.rmsprop().into())
                .unwrap();
        let mut once =
            <Trainer as candle_nn::Optimizer>::new(vec![b.clone()], Flavor::PyTorch.rmsprop().into()).unwrap();
        for _ in 0..3 {
            twice.backward_step(&a.as_tensor().sqr().unwrap().sum_all().unwrap()).unwrap();
            once.backward_step(&b.as_tensor().sqr().unwrap().sum_all().unwrap()).unwrap();
        }
        let names: Vec<String> = twice.names().iter().map(|s| s.to_string()).collect();
        ((values(a.as_tensor()), names), values(b.as_tensor()))
    });
    assert_eq!(names, ["0"]);
    assert_eq!(twice, once, "stepped once per step");
}

/// Tied weights: one matrix used as the embedding and as the output layer, held by a
/// VarMap under both names. The step uses candle's gradient of the matrix (the sum of both
/// uses) once, as a trainer of the matrix alone does, and the state is saved under the
/// first name.
#[test]
fn tied_weights_in_a_varmap_train() {
    let (tied, alone, aliases) = watchdog("tied weights", || {
        let e0 = [0.5f32, -0.25, 0.75, 0.1, -0.6, 0.3];
        let forward = |e: &Var| {
            // x one-hot rows picked from E (2 x 3), then projected back through Eᵀ
            let onehot = Tensor::new(&[[1.0f32, 0.0], [0.0, 1.0], [1.0, 1.0]], &Device::Cpu).unwrap();
            let embedded = onehot.matmul(e.as_tensor()).unwrap(); // 3 x 3
            let logits = embedded.matmul(&e.as_tensor().t().unwrap()).unwrap(); // 3 x 2
            logits.sqr().unwrap().sum_all().unwrap()
        };
        let e = Var::from_tensor(&Tensor::new(&e0, &Device::Cpu).unwrap().reshape((2, 3)).unwrap()).unwrap();
        let varmap = VarMap::new();
        {
            let mut data = varmap.data().lock().unwrap();
            data.insert("embed.weight".into(), e.clone());
            data.insert("out.weight".into(), e.clone());
        }
        let mut tied = Trainer::new(&varmap, Flavor::PyTorch.rmsprop().with_lr(0.05)).unwrap();
        let f = Var::from_tensor(&Tensor::new(&e0, &Device::Cpu).unwrap().reshape((2, 3)).unwrap()).unwrap();
        let mut alone =
            Trainer::from_named([("embed.weight".into(), f.clone())], Flavor::PyTorch.rmsprop().with_lr(0.05)).unwrap();
        for _ in 0..4 {
            tied.backward_step(&forward(&e)).unwrap();
            alone.backward_step(&forward(&f)).unwrap();
        }
        assert_eq!(tied.names(), ["embed.weight"]);
        assert_eq!(tied.state("embed.weight", "square_avg"), alone.state("embed.weight", "square_avg"));
        (values(e.as_tensor()), values(f.as_tensor()), tied.aliases().to_vec())
    });
    assert_eq!(tied, alone);
    assert_ne!(tied, [0.5f32, -0.25, 0.75, 0.1, -0.6, 0.3], "it trained");
    assert_eq!(aliases, [("out.weight".to_string(), "embed.weight".to_string())]);
}

/// A gradient that is another variable's tensor (or the variable's own) is refused before
/// any lock is taken, and nothing changes.
#[test]
fn a_gradient_that_is_a_variable_is_refused() {
    let (e1, e2, a_after, b_after) = watchdog("a gradient on a variable's storage", || {
        let (a, b) = (var(&[1.0, 2.0]), var(&[3.0, 4.0]));
        let named = [("a".to_string(), a.clone()), ("b".to_string(), b.clone())];
        let mut trainer = Trainer::from_named(named, Flavor::PyTorch.rmsprop()).unwrap();
        let mut grads = store(&[&a, &b]);
        grads.insert(a.as_tensor(), b.as_tensor().clone());
        grads.insert(b.as_tensor(), Tensor::new(&[0.5f32, 0.5], &Device::Cpu).unwrap());
        let e1 = trainer.step(&grads).unwrap_err();
        // a view of a variable is its storage too
        grads.insert(a.as_tensor(), b.as_tensor().narrow(0, 0, 2).unwrap());
        let e2 = trainer.step(&grads).unwrap_err();
        (e1, e2, values(a.as_tensor()), values(b.as_tensor()))
    });
    assert!(matches!(&e1, Error::GradientIsAVariable { name, other } if name == "a" && other == "b"), "{e1}");
    assert!(e1.to_string().contains("the gradient of \"a\" is the storage of variable \"b\""), "{e1}");
    assert!(matches!(e2, Error::GradientIsAVariable { .. }), "{e2}");
    assert_eq!((a_after, b_after), (vec![1.0, 2.0], vec![3.0, 4.0]));
}

/// `Var::from_tensor` of a variable is that variable (a tie); one variable in two groups
/// of different configurations is refused when the trainer is built.
#[test]
fn one_variable_under_two_names_is_tied_and_across_groups_refused() {
    let a = var(&[1.0, 2.0, 3.0, 4.0]);
    let again = Var::from_tensor(a.as_tensor()).unwrap();
    let named = [("a".to_string(), a.clone()), ("again".to_string(), again)];
    let t = Trainer::from_named(named, Flavor::PyTorch.rmsprop()).unwrap();
    assert_eq!((t.names(), t.aliases()), (vec!["a"], &[("again".to_string(), "a".to_string())][..]));
    // one name for two variables (one of them also under another name) is refused
    let b = var(&[5.0, 6.0]);
    let named = [("p1".to_string(), a.clone()), ("p0".to_string(), a.clone()), ("p0".to_string(), b)];
    let e = Trainer::from_named(named, Flavor::PyTorch.rmsprop()).unwrap_err();
    assert!(matches!(e, Error::Optimizer(rmsprop::Error::DuplicateTensor(ref n)) if n == "p0"), "{e}");
    let varmap = VarMap::new();
    {
        let mut data = varmap.data().lock().unwrap();
        data.insert("embed.weight".into(), a.clone());
        data.insert("out.weight".into(), a.clone());
    }
    let base = Flavor::PyTorch.rmsprop();
    let e = Trainer::grouped(&varmap, base.clone(), [("out.*", base.with_lr(1e-3))]).unwrap_err();
    assert!(matches!(e, Error::TiedAcrossGroups { .. }), "{e}");
    assert!(e.to_string().contains("put it in one group"), "{e}");
}

/// Two trainers over the same variables registered in opposite orders, stepping at the
/// same time from two threads: each holds one variable's lock at a time, so both finish.
#[test]
fn two_trainers_in_opposite_orders_both_finish() {
    let steps = watchdog("two trainers in opposite orders", || {
        let vars: Vec<Var> = (0..6).map(|i| var(&[i as f32 + 1.0; 64])).collect();
        let forward: Vec<(String, Var)> = vars.iter().enumerate().map(|(i, v)| (format!("v{i}"), v.clone())).collect();
        let backward: Vec<(String, Var)> = forward.iter().rev().cloned().collect();
        let run = |named: Vec<(String, Var)>| {
            let vars: Vec<Var> = named.iter().map(|(_, v)| v.clone()).collect();
            std::thread::spawn(move || {
                let mut t = Trainer::from_named(named, Flavor::PyTorch.rmsprop().with_lr(1e-4)).unwrap();
                for _ in 0..300 {
                    let refs: Vec<&Var> = vars.iter().collect();
                    t.step(&store(&refs)).unwrap();
                }
                t.step_count()
            })
        };
        let (a, b) = (run(forward), run(backward));
        (a.join().unwrap(), b.join().unwrap())
    });
    assert_eq!(steps, (300, 300));
}

/// Other threads computing with the variables (`b + a`, which holds both read locks, in
/// the order it names them: here against the trainer's order, `v3` then `v0`, `v2` then
/// `v1`) while the trainer steps them: neither waits for the other in a circle (a trainer
/// holding `v0`'s write lock while it takes `v3`'s would). Two readers, not more: with
/// more busy threads than this machine's two cores, each lock handed to the trainer waits
/// for a time slice and the test measures the scheduler (41 s with four, 0.15 s with two).
#[test]
fn another_thread_reading_the_variables_during_steps_does_not_deadlock() {
    let steps = watchdog("b + a in a loop beside the steps", || {
        let vars: Vec<Var> = (0..4).map(|i| var(&[i as f32 + 1.0; 256])).collect();
        let named: Vec<(String, Var)> = vars.iter().enumerate().map(|(i, v)| (format!("v{i}"), v.clone())).collect();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let readers: Vec<_> = [(0usize, 3usize), (1, 2)]
            .into_iter()
            .map(|(i, j)| {
                let (a, b, stop) = (vars[i].clone(), vars[j].clone(), stop.clone());
                std::thread::spawn(move || {
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let _ = (b.as_tensor() + a.as_tensor()).unwrap();
                    }
                })
            })
            .collect();
        let mut t = Trainer::from_named(named, Flavor::PyTorch.rmsprop().with_lr(1e-4)).unwrap();
        let refs: Vec<&Var> = vars.iter().collect();
        for _ in 0..500 {
            t.step(&store(&refs)).unwrap();
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        readers.into_iter().for_each(|r| r.join().unwrap());
        t.step_count()
    });
    assert_eq!(steps, 500);
}
