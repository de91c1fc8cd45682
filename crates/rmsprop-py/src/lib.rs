//! `rmsprop._core`: the engine behind `rmsprop.torch`. One core [`Optimizer`] per torch
//! parameter, so each keeps its own step count and is skipped when it has no gradient,
//! as `torch.optim` does; parameters and gradients are read and written where torch keeps
//! them (the Python side passes their addresses after checking dtype, device, layout).

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyFloat, PyInt, PyString};
use rmsprop::by_name::{self, Value};
use rmsprop::{NonFinitePolicy, Optimizer, OptimizerConfig, Parallelism, StepOutcome};
use std::collections::HashMap;

/// A parameter's element type, as torch names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dtype {
    F32,
    F64,
    Bf16,
    F16,
}

impl Dtype {
    fn parse(name: &str) -> PyResult<Dtype> {
        match name {
            "torch.float32" => Ok(Dtype::F32),
            "torch.float64" => Ok(Dtype::F64),
            "torch.bfloat16" => Ok(Dtype::Bf16),
            "torch.float16" => Ok(Dtype::F16),
            other => Err(PyTypeError::new_err(format!(
                "{other} parameters are not supported: float32, float64, bfloat16 or float16"
            ))),
        }
    }
}

/// One parameter's optimizer, in the parameter's type.
enum Core {
    F32(Optimizer<f32>),
    F64(Optimizer<f64>),
    Bf16(Optimizer<half::bf16>),
    F16(Optimizer<half::f16>),
}

/// Runs `$e` with `$o` bound to the optimizer and `$p` to its parameter type.
macro_rules! with_core {
    ($core:expr, $o:ident, $p:ident => $e:expr) => {
        match $core {
            Core::F32($o) => {
                #[allow(unused)]
                type $p = f32;
                $e
            }
            Core::F64($o) => {
                #[allow(unused)]
                type $p = f64;
                $e
            }
            Core::Bf16($o) => {
                #[allow(unused)]
                type $p = half::bf16;
                $e
            }
            Core::F16($o) => {
                #[allow(unused)]
                type $p = half::f16;
                $e
            }
        }
    };
}

/// A parameter the engine steps.
struct Param {
    core: Core,
    dtype: Dtype,
    numel: usize,
    /// Its parameter group.
    group: usize,
    /// The group's configuration generation this optimizer was last given.
    generation: u64,
}

/// A parameter group's configuration and the hyperparameters it was made from.
struct Group {
    hyper: Vec<(String, Value)>,
    config: OptimizerConfig,
    generation: u64,
}

fn value_error(e: rmsprop::Error) -> PyErr {
    PyValueError::new_err(e.to_string())
}

/// A Python number, bool or string as a hyperparameter value.
/// An error of parameter `key`'s core optimizer in torch's words: that optimizer's one
/// tensor, `"p"`, is the parameter, its slots the parameter's state.
fn param_error(key: u64, e: rmsprop::Error) -> PyErr {
    let text = match e {
        rmsprop::Error::NonFiniteResult { step, index, quantity, .. } => {
            let what = if quantity == "the parameter" { String::new() } else { format!("{quantity} of ") };
            format!(
                "step {step} would make {what}parameter {key} non-finite at element {index} (a value beyond the \
                 arithmetic type's range, or 0 / 0); nothing was updated"
            )
        }
        rmsprop::Error::InvalidState { what, reason } => {
            let slot = what.strip_prefix("p.").unwrap_or(&what);
            format!("state {slot} of parameter {key}: {reason}; nothing was changed")
        }
        e => format!("parameter {key}: {e}"),
    };
    PyValueError::new_err(text)
}

fn value(key: &str, v: &Bound<'_, PyAny>) -> PyResult<Value> {
    if v.is_instance_of::<PyBool>() {
        Ok(Value::Bool(v.extract()?))
    } else if v.is_instance_of::<PyInt>() || v.is_instance_of::<PyFloat>() {
        Ok(Value::Num(v.extract()?))
    } else if v.is_instance_of::<PyString>() {
        Ok(Value::Str(v.extract()?))
    } else if let Ok(x) = v.call_method0("item") {
        // a 0-d tensor (a scheduler may write `lr` as one)
        value(key, &x)
    } else {
        Err(PyTypeError::new_err(format!("hyperparameter {key}: expected a number, a bool or a string, got {v}")))
    }
}

/// A parameter to step: its key, group, the addresses of its data and gradient, its
/// element count and dtype.
type Item = (u64, usize, usize, usize, usize, String);

/// A parameter's state to load: its key, group, element count, dtype, step count and
/// `(name, address)` of each state tensor.
type StateEntry = (u64, usize, usize, String, u64, Vec<(String, usize)>);

/// The optimizer state of `torch.optim`-style parameters, stepped in place.
#[pyclass(module = "rmsprop._core")]
struct Engine {
    optimizer: String,
    policy: NonFinitePolicy,
    groups: Vec<Group>,
    params: HashMap<u64, Param>,
    pool: Option<(usize, rayon::ThreadPool)>,
    skipped: u64,
}

impl Engine {
    fn group(&self, i: usize) -> PyResult<&Group> {
        self.groups.get(i).ok_or_else(|| PyValueError::new_err(format!("no parameter group {i}: configure it first")))
    }

    fn new_param(&self, group: usize, numel: usize, dtype: Dtype) -> PyResult<Param> {
        let g = self.group(group)?;
        fn make<P: rmsprop::Param>(
            config: &OptimizerConfig,
            numel: usize,
            policy: NonFinitePolicy,
        ) -> PyResult<Optimizer<P>> {
            let o = Optimizer::new(config.clone(), &[("p", &[numel][..])]).map_err(value_error)?;
            Ok(o.with_nonfinite_policy(policy).with_parallelism(Parallelism::Auto))
        }
        let (c, policy) = (&g.config, self.policy);
        let core = match dtype {
            Dtype::F32 => Core::F32(make(c, numel, policy)?),
            Dtype::F64 => Core::F64(make(c, numel, policy)?),
            Dtype::Bf16 => Core::Bf16(make(c, numel, policy)?),
            Dtype::F16 => Core::F16(make(c, numel, policy)?),
        };
        Ok(Param { core, dtype, numel, group, generation: g.generation })
    }

    fn pool(&mut self, threads: usize) -> PyResult<&rayon::ThreadPool> {
        let threads = threads.max(1);
        if self.pool.as_ref().is_none_or(|(n, _)| *n != threads) {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .map_err(|e| PyValueError::new_err(format!("cannot start {threads} threads: {e}")))?;
            self.pool = Some((threads, pool));
        }
        Ok(&self.pool.as_ref().expect("set above").1)
    }
}

/// One parameter's values, step count and state before a step, to put back if a later
/// parameter refuses the step.
struct Saved<P: rmsprop::Param> {
    x: (*mut P, Vec<P>),
    step: u64,
    state: Vec<(&'static str, Vec<P::Acc>)>,
}

// SAFETY: the pointer is the parameter's, which the step holds for its whole duration; it
// is written only by the thread that runs the step.
unsafe impl<P: rmsprop::Param> Send for Saved<P> {}

impl<P: rmsprop::Param> Saved<P> {
    fn take(o: &Optimizer<P>, x: &mut [P]) -> Self {
        let names = o.group(0).map(|c| c.state_names()).unwrap_or_default();
        let state = names.into_iter().filter_map(|n| Some((n, o.state("p", n)?.to_vec()))).collect();
        Saved { x: (x.as_mut_ptr(), x.to_vec()), step: o.step_count(), state }
    }

    fn restore(self, o: &mut Optimizer<P>) {
        let (ptr, values) = self.x;
        // SAFETY: `ptr` addresses the `values.len()` elements `take` copied, still held by
        // the step under way (see `Engine::step`).
        unsafe { std::ptr::copy_nonoverlapping(values.as_ptr(), ptr, values.len()) };
        let entries: Vec<(&str, &str, &[P::Acc])> = self.state.iter().map(|(n, v)| ("p", *n, &v[..])).collect();
        o.set_state(self.step, &entries).expect("the state it had");
    }
}

/// [`Saved`] in the parameter's type.
enum AnySaved {
    F32(Saved<f32>),
    F64(Saved<f64>),
    Bf16(Saved<half::bf16>),
    F16(Saved<half::f16>),
}

macro_rules! any_saved {
    ($($t:ty => $v:ident),*) => {
        $(impl From<Saved<$t>> for AnySaved {
            fn from(s: Saved<$t>) -> AnySaved {
                AnySaved::$v(s)
            }
        })*
        impl AnySaved {
            fn restore(self, core: &mut Core) {
                match (self, core) {
                    $((AnySaved::$v(s), Core::$v(o)) => s.restore(o),)*
                    _ => unreachable!("a parameter keeps its type"),
                }
            }
        }
    };
}
any_saved!(f32 => F32, f64 => F64, half::bf16 => Bf16, half::f16 => F16);

/// Whether two byte ranges `[a, a + n)` and `[b, b + m)` share a byte.
fn overlap((a, n): (usize, usize), (b, m): (usize, usize)) -> bool {
    n > 0 && m > 0 && a < b.saturating_add(m) && b < a.saturating_add(n)
}

fn size_of_dtype(d: Dtype) -> usize {
    match d {
        Dtype::F32 => 4,
        Dtype::F64 => 8,
        Dtype::Bf16 | Dtype::F16 => 2,
    }
}

#[pymethods]
impl Engine {
    /// An engine for `optimizer` (`"pytorch.rmsprop"`, `"timm.rmsprop"`, ...) under the
    /// non-finite policy `"error"`, `"skip"` or `"propagate"`.
    #[new]
    fn new(optimizer: &str, nonfinite: &str) -> PyResult<Self> {
        by_name::config(optimizer, std::iter::empty::<(&str, f64)>()).map_err(value_error)?;
        let policy = match nonfinite {
            "error" => NonFinitePolicy::Error,
            "skip" => NonFinitePolicy::Skip,
            "propagate" => NonFinitePolicy::Propagate,
            other => {
                return Err(PyValueError::new_err(format!(
                    "nonfinite = {other:?}: expected \"error\", \"skip\" or \"propagate\""
                )));
            }
        };
        Ok(Engine {
            optimizer: optimizer.into(),
            policy,
            groups: Vec::new(),
            params: HashMap::new(),
            pool: None,
            skipped: 0,
        })
    }

    /// Sets group `index`'s hyperparameters (under any framework's spelling); an unknown
    /// or invalid one raises `ValueError` and leaves the group as it was.
    fn configure(&mut self, index: usize, hyper: Vec<(String, Bound<'_, PyAny>)>) -> PyResult<()> {
        let hyper = hyper.iter().map(|(k, v)| Ok((k.clone(), value(k, v)?))).collect::<PyResult<Vec<_>>>()?;
        if self.groups.get(index).is_some_and(|g| g.hyper == hyper) {
            return Ok(());
        }
        if index > self.groups.len() {
            return Err(PyValueError::new_err(format!("group {index} configured before group {}", self.groups.len())));
        }
        let config = by_name::config(&self.optimizer, hyper.iter().map(|(k, v)| (k.as_str(), v.clone())))
            .and_then(|c| c.validate().map(|()| c))
            .map_err(value_error)?;
        if let Some(g) = self.groups.get(index)
            && g.config.state_names() != config.state_names()
            && self.params.values().any(|p| p.group == index)
        {
            let (was, now) = (g.config.state_names().join(", "), config.state_names().join(", "));
            return Err(PyValueError::new_err(format!(
                "this change would make the group keep other state ({was} → {now}); build a new optimizer for it"
            )));
        }
        let generation = self.groups.get(index).map_or(1, |g| g.generation + 1);
        let group = Group { hyper, config, generation };
        if index == self.groups.len() {
            self.groups.push(group);
        } else {
            self.groups[index] = group;
        }
        Ok(())
    }

    /// Steps every parameter of `items` in place, `threads` threads at most. Returns
    /// `False` when the step was skipped (policy `"skip"`, a non-finite gradient).
    ///
    /// The Python side has checked each tensor: a contiguous CPU tensor of the dtype named,
    /// `numel` elements at `x` and at `g`, alive for the call.
    fn step(&mut self, py: Python<'_>, items: Vec<Item>, threads: usize) -> PyResult<bool> {
        // each dtype read once, then as the enum
        let items = items
            .into_iter()
            .map(|(key, group, x, g, numel, dtype)| Ok((key, group, x, g, numel, Dtype::parse(&dtype)?)))
            .collect::<PyResult<Vec<_>>>()?;
        // everything that can be refused is refused before anything is written
        let mut ranges = Vec::with_capacity(items.len());
        for &(key, group, x, g, numel, dtype) in &items {
            let bytes = numel.checked_mul(size_of_dtype(dtype)).ok_or_else(|| PyValueError::new_err("absurd size"))?;
            if x == 0 || g == 0 {
                return Err(PyValueError::new_err(format!("parameter {key}: a null address")));
            }
            if overlap((x, bytes), (g, bytes)) {
                return Err(PyValueError::new_err(format!(
                    "parameter {key}: its gradient shares memory with it; the update would read what it writes"
                )));
            }
            ranges.push((x, bytes, key));
            self.group(group)?;
            if let Some(p) = self.params.get(&key)
                && (p.dtype != dtype || p.numel != numel)
            {
                return Err(PyValueError::new_err(format!(
                    "parameter {key} was {:?} × {} and is now {dtype:?} × {numel}: its state no longer fits",
                    p.dtype, p.numel
                )));
            }
        }
        ranges.sort_unstable();
        if let Some(w) = ranges.windows(2).find(|w| overlap((w[0].0, w[0].1), (w[1].0, w[1].1))) {
            return Err(PyValueError::new_err(format!(
                "parameters {} and {} share memory: one would be stepped twice",
                w[0].2, w[1].2
            )));
        }
        // policies "error" and "skip" hold for the whole step, as for one optimizer
        if self.policy != NonFinitePolicy::Propagate {
            for &(key, _, _, g, numel, dtype) in &items {
                // SAFETY: the Python side checked `g` addresses `numel` elements of `dtype`
                // in a live contiguous tensor; it is only read here.
                let bad = unsafe {
                    match dtype {
                        Dtype::F32 => {
                            std::slice::from_raw_parts(g as *const f32, numel).iter().position(|v| !v.is_finite())
                        }
                        Dtype::F64 => {
                            std::slice::from_raw_parts(g as *const f64, numel).iter().position(|v| !v.is_finite())
                        }
                        Dtype::Bf16 => std::slice::from_raw_parts(g as *const half::bf16, numel)
                            .iter()
                            .position(|v| !v.is_finite()),
                        Dtype::F16 => {
                            std::slice::from_raw_parts(g as *const half::f16, numel).iter().position(|v| !v.is_finite())
                        }
                    }
                };
                if let Some(i) = bad {
                    if self.policy == NonFinitePolicy::Skip {
                        self.skipped += 1;
                        return Ok(false);
                    }
                    return Err(PyValueError::new_err(format!(
                        "non-finite gradient of parameter {key} at element {i}; nothing was updated"
                    )));
                }
            }
        }
        for &(key, group, _, _, numel, dtype) in &items {
            let generation = self.groups[group].generation;
            match self.params.get_mut(&key) {
                None => {
                    let p = self.new_param(group, numel, dtype)?;
                    self.params.insert(key, p);
                }
                Some(p) if p.generation != generation => {
                    let config = self.groups[group].config.clone();
                    with_core!(&mut p.core, o, _P => *o.group_mut(0).map_err(value_error)? = config);
                    p.generation = generation;
                }
                Some(_) => {}
            }
        }
        // a thread pool only where a step will use it: waking its threads costs tens of
        // microseconds, more than a small model's whole step
        let large = items.iter().any(|it| it.4 >= rmsprop::PARALLEL_THRESHOLD);
        let parallel = threads > 1 && large;
        let mode = if parallel { Parallelism::Auto } else { Parallelism::Serial };
        for it in &items {
            let p = self.params.get_mut(&it.0).expect("made above");
            with_core!(&mut p.core, o, _P => o.set_parallelism(mode));
        }
        if parallel {
            self.pool(threads)?;
        }
        let (pool, params) = (self.pool.as_ref().map(|p| &p.1), &mut self.params);
        // under "error" and "skip" the step is all or nothing across parameters, as one
        // optimizer's is: each parameter's values and state are kept until every one stepped
        let guarded = self.policy != NonFinitePolicy::Propagate;
        let run = || -> Result<bool, (u64, rmsprop::Error)> {
            let mut kept: Vec<(u64, AnySaved)> = Vec::new();
            let undo = |params: &mut HashMap<u64, Param>, kept: Vec<(u64, AnySaved)>| {
                for (key, saved) in kept.into_iter().rev() {
                    saved.restore(&mut params.get_mut(&key).expect("stepped").core);
                }
            };
            for &(key, _, x, g, numel, _) in &items {
                let p = params.get_mut(&key).expect("made above");
                let outcome = with_core!(&mut p.core, o, P => {
                    // SAFETY: the Python side checked that `x` and `g` address `numel`
                    // elements of `P` in live contiguous CPU tensors, held for the call;
                    // they overlap neither each other nor another parameter (checked above).
                    let (x, g) = unsafe {
                        (std::slice::from_raw_parts_mut(x as *mut P, numel), std::slice::from_raw_parts(g as *const P, numel))
                    };
                    if guarded {
                        kept.push((key, AnySaved::from(Saved::take(o, x))));
                    }
                    o.step(&mut [x], &[g])
                });
                match outcome {
                    Ok(StepOutcome::Applied) => {}
                    Ok(StepOutcome::Skipped) => {
                        undo(params, kept);
                        return Ok(false);
                    }
                    Err(e) => {
                        undo(params, kept);
                        return Err((key, e));
                    }
                }
            }
            Ok(true)
        };
        let result = match (parallel, pool) {
            (true, Some(pool)) => py.detach(|| pool.install(run)),
            _ => py.detach(run),
        };
        let applied = result.map_err(|(key, e)| param_error(key, e))?;
        if !applied {
            self.skipped += 1;
        }
        Ok(applied)
    }

    /// Steps skipped under policy `"skip"`.
    #[getter]
    fn skipped_steps(&self) -> u64 {
        self.skipped
    }

    /// Bytes of optimizer state held over every parameter, as kept (see
    /// `rmsprop::Optimizer::state_bytes`: 8-bit codes and their scales, bfloat16 values).
    fn state_bytes(&self) -> usize {
        self.params.values().map(|p| with_core!(&p.core, o, _P => o.state_bytes())).sum()
    }

    /// Parameter `key`'s step count and the names of its state, or `None` before its first
    /// step.
    fn state_of(&self, key: u64) -> Option<(u64, Vec<&'static str>)> {
        let p = self.params.get(&key)?;
        Some(with_core!(&p.core, o, _P => (o.step_count(), o.group(0).map(|c| c.state_names()).unwrap_or_default())))
    }

    /// Copies state `name` of parameter `key` to `out` (`numel` elements of the state's
    /// type: float64 for float64 parameters, float32 otherwise).
    fn read_state(&self, key: u64, name: &str, out: usize, numel: usize) -> PyResult<()> {
        let p = self.params.get(&key).ok_or_else(|| PyValueError::new_err(format!("parameter {key} has no state")))?;
        if numel != p.numel || out == 0 {
            return Err(PyValueError::new_err(format!("state of {} elements read into {numel}", p.numel)));
        }
        with_core!(&p.core, o, P => {
            type A = <P as rmsprop::Param>::Acc;
            let s = o.state("p", name).ok_or_else(|| PyValueError::new_err(format!("parameter {key} has no state {name:?}")))?;
            // SAFETY: the Python side allocated `out` as `numel` contiguous elements of the
            // state's type and holds it for the call; it does not overlap our arena.
            unsafe { std::ptr::copy_nonoverlapping(s.as_ptr(), out as *mut A, numel) };
        });
        Ok(())
    }

    /// Replaces the state of every parameter by `entries`, read from a `state_dict`:
    /// `(key, group, numel, dtype, step, [(name, address)])`, each address `numel`
    /// contiguous elements of the state's type (float64 for float64 parameters, float32
    /// otherwise). A parameter not in `entries` starts afresh, as in torch. Checked whole:
    /// on any error nothing changes.
    fn load(&mut self, entries: Vec<StateEntry>) -> PyResult<()> {
        let mut params = HashMap::with_capacity(entries.len());
        for (key, group, numel, dtype, step, slots) in entries {
            let mut p = self.new_param(group, numel, Dtype::parse(&dtype)?)?;
            if slots.iter().any(|e| e.1 == 0) {
                return Err(PyValueError::new_err(format!("parameter {key}: a null address")));
            }
            with_core!(&mut p.core, o, P => {
                type A = <P as rmsprop::Param>::Acc;
                // SAFETY: the Python side made each address `numel` contiguous elements of
                // the state's type, alive for the call; they are only read.
                let views: Vec<(&str, &str, &[A])> = slots
                    .iter()
                    .map(|(name, ptr)| ("p", name.as_str(), unsafe { std::slice::from_raw_parts(*ptr as *const A, numel) }))
                    .collect();
                o.set_state(step, &views).map_err(|e| param_error(key, e))?;
            });
            if params.insert(key, p).is_some() {
                return Err(PyValueError::new_err(format!("parameter {key}: two states")));
            }
        }
        self.params = params;
        Ok(())
    }
}

/// The numeric hyperparameters of `optimizer`'s preset, under this crate's names.
#[pyfunction]
fn preset(optimizer: &str) -> PyResult<Vec<(&'static str, f64)>> {
    let config = by_name::config(optimizer, std::iter::empty::<(&str, f64)>()).map_err(value_error)?;
    let numbers = by_name::hyperparameters(&config).into_iter();
    Ok(numbers.filter_map(|(k, v)| if let Value::Num(x) = v { Some((k, x)) } else { None }).collect())
}

/// The engine behind `rmsprop.torch`.
#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Engine>()?;
    m.add_function(wrap_pyfunction!(preset, m)?)?;
    m.add("OPTIMIZERS", by_name::optimizers())?;
    Ok(())
}
