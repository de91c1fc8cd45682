//! Measuring the optimizer step against the memory system: a bandwidth probe that moves
//! the same bytes as RMSProp's step without its arithmetic (read x, g, s; write s, x),
//! and our step for several variants, sizes, layouts and thread counts. Numbers are
//! ratios measured in one run; the machine is shared and noisy.

use rayon::prelude::*;
use rmsprop::{Buffer, MomentumStyle, NonFinitePolicy, Optimizer, OptimizerConfig, RmsProp, StateStorage, TensorSpec};
use serde::Serialize;
use std::time::Instant;

/// A variant of the update to measure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Variant {
    /// The chapter's RMSProp (D2L flavour): 20 bytes per f32 element.
    Plain,
    /// The same with the opt-in reciprocal-square-root estimate (`fast_rsqrt`).
    PlainRsqrt,
    /// Plain under the default [`NonFinitePolicy::Error`]: the gradient is scanned before
    /// anything is written, one more read of `g`: 24 bytes per element. (The others
    /// propagate non-finite values, as the frameworks do.)
    PlainChecked,
    /// Centred: 28 bytes per element.
    Centered,
    /// Centred under [`NonFinitePolicy::Error`]: unclamped, `ŝ - m̂²` can round below 0,
    /// which no formula rules out, so each step's denominators are first formed by a
    /// read-only probe (32 bytes per element counted: the step's and the gradient scan's;
    /// the probe reads 12 more).
    CenteredChecked,
    /// PyTorch-style momentum (η outside the buffer): 28 bytes per element.
    Momentum,
    /// PyTorch's Adam (two moments): 28 bytes per element.
    Adam,
}

impl Variant {
    /// Every variant.
    pub const ALL: [Variant; 7] = [
        Variant::Plain,
        Variant::PlainRsqrt,
        Variant::PlainChecked,
        Variant::Centered,
        Variant::CenteredChecked,
        Variant::Momentum,
        Variant::Adam,
    ];

    /// The name used in tables and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Variant::Plain => "plain",
            Variant::PlainRsqrt => "plain_rsqrt",
            Variant::PlainChecked => "plain_checked",
            Variant::Centered => "centered",
            Variant::CenteredChecked => "centered_checked",
            Variant::Momentum => "momentum",
            Variant::Adam => "adam",
        }
    }

    /// The configuration measured.
    pub fn config(self) -> OptimizerConfig {
        match self {
            Variant::Plain | Variant::PlainChecked => RmsProp::default().into(),
            Variant::PlainRsqrt => RmsProp::default().with_fast_rsqrt(true).into(),
            Variant::Centered | Variant::CenteredChecked => RmsProp::default().with_centered(true).into(),
            Variant::Momentum => RmsProp::default().with_momentum(0.9, MomentumStyle::LrOutsideBuffer).into(),
            Variant::Adam => rmsprop::Flavor::PyTorch.config("adam").expect("PyTorch has Adam"),
        }
    }

    /// What a non-finite gradient or result does: checked only in the `*_checked` variants.
    pub fn policy(self) -> NonFinitePolicy {
        match self {
            Variant::PlainChecked | Variant::CenteredChecked => NonFinitePolicy::Error,
            _ => NonFinitePolicy::Propagate,
        }
    }

    /// Bytes moved per `f32` element by a step that keeps `state_bytes` bytes of state for
    /// `n` elements: x read and written, g read (and scanned first under the check), the
    /// state read and written. 20 for plain RMSProp with `f32` state, 16 with bfloat16,
    /// 14.03 with 8 bits.
    ///
    /// ```
    /// use rmsprop_lab::bench::Variant;
    /// assert_eq!(Variant::Plain.bytes_per_element(4000, 1000), 20.0);
    /// assert_eq!(Variant::CenteredChecked.bytes_per_element(8000, 1000), 32.0);
    /// ```
    pub fn bytes_per_element(self, state_bytes: usize, n: usize) -> f64 {
        let scan = if self.policy() == NonFinitePolicy::Error { 4.0 } else { 0.0 };
        12.0 + scan + 2.0 * state_bytes as f64 / n as f64
    }
}

/// Bytes a state value takes in `storage` (8 bits: the code and its share of a scale).
pub fn value_bytes(storage: StateStorage) -> f64 {
    match storage {
        StateStorage::F32 => 4.0,
        StateStorage::Bf16 => 2.0,
        StateStorage::Int8 => 1.0 + 4.0 / rmsprop::quant::BLOCK as f64,
    }
}

/// How the elements are split into tensors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    /// One tensor of `n` elements.
    Single,
    /// 100 tensors of mixed sizes summing to about `n` (a model-like set).
    Model,
}

/// Tensor sizes of a layout with about `n` elements in all.
pub fn sizes(layout: Layout, n: usize) -> Vec<usize> {
    match layout {
        Layout::Single => vec![n],
        Layout::Model => {
            // weights of mixed magnitudes (biases, small and large matrices), scaled to n
            let w: Vec<f64> = (0..100).map(|i| [1.0, 30.0, 300.0, 3000.0][i % 4] * (1.0 + (i % 7) as f64)).collect();
            let total: f64 = w.iter().sum();
            w.iter().map(|x| ((x / total) * n as f64).round().max(1.0) as usize).collect()
        }
    }
}

/// One measurement.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// A [`Variant`]'s name, or `probe`.
    pub variant: String,
    /// How the variant keeps its state (`f32`, `bf16`, `int8`); none for the probe.
    pub state_storage: Option<StateStorage>,
    /// Bytes of optimizer state held (0 for the probe).
    pub state_bytes: usize,
    /// `single` or `model`.
    pub layout: String,
    /// Elements in all.
    pub n: usize,
    /// Threads used.
    pub threads: usize,
    /// Huge-page-advised buffers.
    pub huge_pages: bool,
    /// Best time of one step over the rounds.
    pub seconds_per_step: f64,
    /// Elements per second, at the best time.
    pub elements_per_s: f64,
    /// Bytes moved per second, 1e9, at the best time.
    pub gb_per_s: f64,
    /// The probe's best bandwidth with the same threads and size (the faster of
    /// ordinary and huge pages).
    pub probe_gb_per_s: f64,
    /// Our bandwidth over the probe's, in each round against the faster probe of that
    /// same round, the median over the rounds: the machine's bandwidth drifts (other
    /// tenants), and a ratio of numbers taken minutes apart would measure the drift.
    pub ratio_to_probe: f64,
    /// The same variant's time with `f32` state over this one's, the median over the
    /// rounds (each round's two times taken minutes apart at most); where `f32` state was
    /// measured too.
    pub ratio_to_f32_state: Option<f64>,
    /// Rounds measured.
    pub rounds: usize,
}

/// Calls of `f` that last at least `min_batch` seconds together (after one warm-up
/// call: page faults, caches).
fn calibrate(f: &mut dyn FnMut(), min_batch: f64) -> usize {
    f();
    let mut reps = 1usize;
    loop {
        let t = Instant::now();
        for _ in 0..reps {
            f();
        }
        if t.elapsed().as_secs_f64() >= min_batch || reps > 1 << 24 {
            return reps;
        }
        reps *= 2;
    }
}

/// Seconds per call of `f` in one batch of `reps` calls.
fn batch(f: &mut dyn FnMut(), reps: usize) -> f64 {
    let t = Instant::now();
    for _ in 0..reps {
        f();
    }
    t.elapsed().as_secs_f64() / reps as f64
}

/// Times `f` and returns the best seconds per call: batches of calls lasting at least
/// `min_batch` seconds, the best of `batches`.
pub fn best_time(mut f: impl FnMut(), batches: usize, min_batch: f64) -> f64 {
    let reps = calibrate(&mut f, min_batch);
    (0..batches).map(|_| batch(&mut f, reps)).fold(f64::INFINITY, f64::min)
}

/// Times every contender in `rounds` rounds, one batch of each per round in turn, so
/// all of them meet the same machine: `result[c][r]` is contender `c`'s seconds per
/// call in round `r`.
pub fn interleaved(contenders: &mut [Box<dyn FnMut() + '_>], rounds: usize, min_batch: f64) -> Vec<Vec<f64>> {
    let reps: Vec<usize> = contenders.iter_mut().map(|f| calibrate(f.as_mut(), min_batch)).collect();
    let mut secs = vec![Vec::with_capacity(rounds); contenders.len()];
    for _ in 0..rounds {
        for ((f, &reps), secs) in contenders.iter_mut().zip(&reps).zip(&mut secs) {
            secs.push(batch(f.as_mut(), reps));
        }
    }
    secs
}

/// An array of `n` `f32`: huge-page advised ([`Buffer`]) or an ordinary `Vec`.
pub enum Array {
    /// [`Buffer`].
    Huge(Buffer<f32>),
    /// `Vec`.
    Plain(Vec<f32>),
}

impl Array {
    /// `n` copies of `v`, or `None` when the process cannot have that memory (a size
    /// from the command line must not abort the program).
    ///
    /// ```
    /// assert!(rmsprop_lab::bench::Array::new(1 << 60, 0.0, false).is_none());
    /// assert!(rmsprop_lab::bench::Array::new(1 << 60, 0.0, true).is_none());
    /// ```
    pub fn new(n: usize, v: f32, huge: bool) -> Option<Array> {
        if huge {
            return Buffer::try_filled(n, v).map(Array::Huge);
        }
        let mut plain = Vec::new();
        plain.try_reserve_exact(n).ok()?;
        plain.resize(n, v);
        Some(Array::Plain(plain))
    }
    fn slice_mut(&mut self) -> &mut [f32] {
        match self {
            Array::Huge(b) => b,
            Array::Plain(v) => v,
        }
    }
}

/// The probe's pass: per element read `x`, `g`, `s`, write `s = g`, `x = x + s_old` —
/// the bytes of RMSProp's plain step, none of its square roots and divisions — in chunks
/// of [`rmsprop::CHUNK`], on the current rayon pool above the optimizer's threshold.
fn probe_pass(x: &mut [f32], g: &[f32], s: &mut [f32]) {
    let c = rmsprop::CHUNK;
    let body = |((x, g), s): ((&mut [f32], &[f32]), &mut [f32])| {
        for ((x, g), s) in x.iter_mut().zip(g).zip(s.iter_mut()) {
            let old = *s;
            *s = *g;
            *x += old;
        }
    };
    if x.len() >= rmsprop::PARALLEL_THRESHOLD {
        x.par_chunks_mut(c).zip(g.par_chunks(c)).zip(s.par_chunks_mut(c)).for_each(body);
    } else {
        x.chunks_mut(c).zip(g.chunks(c)).zip(s.chunks_mut(c)).for_each(body);
    }
}

/// The memory [`measure`] holds at once for `n` elements: the probes' six arrays, and per
/// variant its parameters, gradients and state (4 bytes each).
///
/// ```
/// use rmsprop::StateStorage;
/// use rmsprop_lab::bench::{memory_needed, Variant};
/// assert_eq!(memory_needed(1000, &[Variant::Plain], &[StateStorage::F32]), 24_000 + 12_000);
/// assert_eq!(memory_needed(1000, &[Variant::Plain], &[StateStorage::F32, StateStorage::Bf16]), 24_000 + 12_000 + 10_000);
/// ```
pub fn memory_needed(n: usize, variants: &[Variant], storages: &[StateStorage]) -> u64 {
    let state = |v: &Variant| v.config().state_names().len() as f64;
    let per_setup = |v: &Variant, s: StateStorage| 8.0 + state(v) * value_bytes(s);
    let per_element: f64 =
        24.0 + variants.iter().flat_map(|v| storages.iter().map(move |&s| per_setup(v, s))).sum::<f64>();
    (per_element * n as f64).ceil() as u64
}

/// The memory this process can still have, in bytes, where the system says: the least of
/// the machine's available memory (`MemAvailable` of `/proc/meminfo`), what the process's
/// address-space limit (`ulimit -v`, RLIMIT_AS) leaves beside what it has mapped, and what
/// its cgroup's `memory.max` leaves beside the group's use.
pub fn memory_available() -> Option<u64> {
    let read = |path: &str| std::fs::read_to_string(path).ok();
    let field = |text: &str, key: &str| -> Option<u64> {
        let line = text.lines().find(|l| l.starts_with(key))?;
        line[key.len()..].split_whitespace().next()?.parse().ok()
    };
    let machine = read("/proc/meminfo").and_then(|m| field(&m, "MemAvailable:")).map(|kib| kib.saturating_mul(1024));
    // `Max address space  <soft> <hard> bytes`, the soft limit in force
    let address_space = read("/proc/self/limits").and_then(|l| field(&l, "Max address space")).and_then(|limit| {
        let mapped = read("/proc/self/status").and_then(|s| field(&s, "VmSize:"))?.saturating_mul(1024);
        Some(limit.saturating_sub(mapped))
    });
    // cgroup v2: `0::/the/group` names the folder of its `memory.max` (`max`: no limit)
    let cgroup = read("/proc/self/cgroup").and_then(|c| {
        let group = c.lines().find_map(|l| l.strip_prefix("0::"))?.trim().to_string();
        let dir = format!("/sys/fs/cgroup{group}");
        let max: u64 = read(&format!("{dir}/memory.max"))?.trim().parse().ok()?;
        let used: u64 = read(&format!("{dir}/memory.current"))?.trim().parse().ok()?;
        Some(max.saturating_sub(used))
    });
    [machine, address_space, cgroup].into_iter().flatten().min()
}

/// Measures `variants` over `layout` with about `n` elements on the current rayon pool
/// (`threads` is recorded in the rows), each with its state kept in each of `storages`:
/// the probe on ordinary and on huge pages and each variant's step (f32, parameters,
/// gradients and state on huge pages, non-finite gradients propagated as in the frameworks
/// except in the `*_checked` variants), all set up first and then timed in `rounds`
/// interleaved rounds. Probe rows are returned for the single layout only.
pub fn measure(
    layout: Layout,
    n: usize,
    variants: &[Variant],
    storages: &[StateStorage],
    threads: usize,
    rounds: usize,
    min_batch: f64,
) -> Result<Vec<Row>, rmsprop::Error> {
    let sizes = sizes(layout, n);
    let elements: usize = sizes.iter().sum();
    // every array is allocated fallibly: a size the process cannot hold is an error
    let array = |n: usize, v: f32, huge: bool| {
        Array::new(n, v, huge).ok_or_else(|| rmsprop::Error::TooLarge {
            tensor: "a benchmark array".into(),
            shape: vec![n],
            reason: format!("this process cannot allocate its {} MB", (n as u64).saturating_mul(4) / 1_000_000),
        })
    };
    let mut probes = Vec::new();
    for huge in [false, true] {
        probes.push([array(n, 1.0, huge)?, array(n, 0.5, huge)?, array(n, 0.25, huge)?]);
    }
    let mut setups: Vec<(Variant, StateStorage, Optimizer<f32>, Array, Array)> = Vec::new();
    for &v in variants {
        for &storage in storages {
            let specs: Vec<TensorSpec> =
                sizes.iter().enumerate().map(|(i, &k)| TensorSpec::new(format!("p{i}"), &[k])).collect();
            let mut config = v.config();
            config.common_mut().state_storage = storage;
            let opt = Optimizer::<f32>::new(config, &specs)?.with_nonfinite_policy(v.policy());
            setups.push((v, storage, opt, array(elements, 1.0, true)?, array(elements, 1e-3, true)?));
        }
    }
    let state_bytes: Vec<usize> = setups.iter().map(|s| s.2.state_bytes()).collect();
    let mut contenders: Vec<Box<dyn FnMut() + '_>> = Vec::new();
    for [x, g, s] in &mut probes {
        let (x, g, s) = (x.slice_mut(), &*g.slice_mut(), s.slice_mut());
        contenders.push(Box::new(move || probe_pass(x, g, s)));
    }
    let labels: Vec<(Variant, StateStorage)> = setups.iter().map(|s| (s.0, s.1)).collect();
    for (_, _, opt, x, g) in &mut setups {
        // parameters and gradients as views into one flat array each, as frameworks with
        // flat parameter storage keep them (the optimizer's state is laid out the same way)
        let mut xs = split(x.slice_mut(), &sizes);
        let gs: Vec<&[f32]> = split(g.slice_mut(), &sizes).into_iter().map(|s| &*s).collect();
        contenders.push(Box::new(move || {
            opt.step(&mut xs, &gs).expect("step");
        }));
    }
    let secs = interleaved(&mut contenders, rounds, min_batch);
    drop(contenders);
    let best = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
    let probe_bw = |r: usize| 20.0 * n as f64 / secs[0][r].min(secs[1][r]) / 1e9;
    let probe_best = 20.0 * n as f64 / best(&secs[0]).min(best(&secs[1])) / 1e9;
    let layout_name = match layout {
        Layout::Single => "single",
        Layout::Model => "model",
    };
    let mut rows = Vec::new();
    let row = |variant: &str,
               storage: Option<StateStorage>,
               state_bytes: usize,
               huge_pages: bool,
               k: usize,
               n: usize,
               bytes: f64,
               f32_state: Option<usize>| {
        let s = best(&secs[k]);
        let bw = |t: f64| bytes * n as f64 / t / 1e9;
        let ratio_to_f32_state = f32_state.map(|f| median(secs[f].iter().zip(&secs[k]).map(|(f, t)| f / t).collect()));
        Row {
            variant: variant.into(),
            state_storage: storage,
            state_bytes,
            layout: layout_name.into(),
            n,
            threads,
            huge_pages,
            seconds_per_step: s,
            elements_per_s: n as f64 / s,
            gb_per_s: bw(s),
            probe_gb_per_s: probe_best,
            ratio_to_probe: median(secs[k].iter().enumerate().map(|(r, &t)| bw(t) / probe_bw(r)).collect()),
            ratio_to_f32_state,
            rounds,
        }
    };
    if layout == Layout::Single {
        for (k, huge) in [false, true].into_iter().enumerate() {
            rows.push(row("probe", None, 0, huge, k, n, 20.0, None));
        }
    }
    for (i, &(v, storage)) in labels.iter().enumerate() {
        let f32_state = labels.iter().position(|&l| l == (v, StateStorage::F32)).filter(|&f| f != i).map(|f| 2 + f);
        let bytes = v.bytes_per_element(state_bytes[i], elements);
        rows.push(row(v.name(), Some(storage), state_bytes[i], true, 2 + i, elements, bytes, f32_state));
    }
    Ok(rows)
}

/// The median (mean of the middle two for an even count).
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let k = v.len() / 2;
    if v.len() % 2 == 1 { v[k] } else { (v[k - 1] + v[k]) / 2.0 }
}

/// `buf` cut into consecutive slices of `sizes`.
fn split<'a>(mut buf: &'a mut [f32], sizes: &[usize]) -> Vec<&'a mut [f32]> {
    sizes
        .iter()
        .map(|&k| {
            let (head, tail) = std::mem::take(&mut buf).split_at_mut(k);
            buf = tail;
            head
        })
        .collect()
}

/// Runs `f` on a rayon pool of `threads` threads.
pub fn with_threads<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
    rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("thread pool").install(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    /// Each round times one batch of every contender, in turn: the calls after
    /// calibration run A's batch, then B's, then A's again.
    #[test]
    fn rounds_alternate_the_contenders() {
        let log = RefCell::new(Vec::new());
        let mut contenders: Vec<Box<dyn FnMut() + '_>> =
            vec![Box::new(|| log.borrow_mut().push('a')), Box::new(|| log.borrow_mut().push('b'))];
        // a batch of at least 1 s would need millions of calls; 0 s means one call per batch
        let secs = interleaved(&mut contenders, 3, 0.0);
        drop(contenders);
        assert_eq!(secs.len(), 2);
        assert!(secs.iter().all(|s| s.len() == 3 && s.iter().all(|&t| t >= 0.0)));
        let log: String = log.into_inner().into_iter().collect();
        // calibration: a warm-up call and one timed call each, then three rounds
        assert_eq!(log, "aabbababab");
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), 2.5);
    }

    /// A size no process can hold is an error from `measure`, not an abort.
    #[test]
    fn an_allocation_the_process_cannot_make_is_an_error() {
        let e = measure(Layout::Single, 1 << 58, &[Variant::Plain], &[StateStorage::F32], 1, 1, 0.0)
            .unwrap_err()
            .to_string();
        assert!(e.contains("this process cannot allocate"), "{e}");
    }

    /// Every variant and both probes get a row, with the rounds asked for.
    #[test]
    fn measure_returns_a_row_per_contender() {
        let rows = measure(Layout::Single, 1000, &Variant::ALL, &[StateStorage::F32], 1, 2, 0.0).unwrap();
        let names: Vec<&str> = rows.iter().map(|r| r.variant.as_str()).collect();
        let all = [
            "probe",
            "probe",
            "plain",
            "plain_rsqrt",
            "plain_checked",
            "centered",
            "centered_checked",
            "momentum",
            "adam",
        ];
        assert_eq!(names, all);
        assert!(rows.iter().all(|r| r.rounds == 2 && r.ratio_to_probe > 0.0 && r.ratio_to_probe.is_finite()));
        assert!(rows.iter().all(|r| r.ratio_to_f32_state.is_none()), "no other storage measured");
        // each storage of each variant, its ratio to the f32 state's step, its bytes
        let all = [StateStorage::F32, StateStorage::Bf16, StateStorage::Int8];
        let rows = measure(Layout::Single, 5000, &[Variant::Centered], &all, 1, 1, 0.0).unwrap();
        let kept: Vec<_> =
            rows.iter().map(|r| (r.state_storage, r.state_bytes, r.ratio_to_f32_state.is_some())).collect();
        assert_eq!(
            kept,
            [
                (None, 0, false),
                (None, 0, false),
                (Some(StateStorage::F32), 40_000, false),
                (Some(StateStorage::Bf16), 20_000, true),
                (Some(StateStorage::Int8), 2 * (5000 + 20 * 4), true),
            ]
        );
        let model = measure(Layout::Model, 5000, &[Variant::Plain], &[StateStorage::F32], 1, 1, 0.0).unwrap();
        assert_eq!(model.len(), 1, "no probe rows for the model layout");
        assert_eq!(model[0].n, sizes(Layout::Model, 5000).iter().sum::<usize>());
    }
}
