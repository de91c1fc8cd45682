//! Measuring the optimizer step against the memory system: a bandwidth probe that moves
//! the same bytes as RMSProp's step without its arithmetic (read x, g, s; write s, x),
//! and our step for several variants, sizes, layouts and thread counts. Numbers are
//! ratios measured in one run; the machine is shared and noisy.

use rayon::prelude::*;
use rmsprop::{Buffer, MomentumStyle, NonFinitePolicy, Optimizer, OptimizerConfig, RmsProp, TensorSpec};
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
    /// Centred: 28 bytes per element.
    Centered,
    /// PyTorch-style momentum (η outside the buffer): 28 bytes per element.
    Momentum,
}

impl Variant {
    /// Every variant.
    pub const ALL: [Variant; 4] = [Variant::Plain, Variant::PlainRsqrt, Variant::Centered, Variant::Momentum];

    /// The name used in tables and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Variant::Plain => "plain",
            Variant::PlainRsqrt => "plain_rsqrt",
            Variant::Centered => "centered",
            Variant::Momentum => "momentum",
        }
    }

    /// The configuration measured.
    pub fn config(self) -> OptimizerConfig {
        match self {
            Variant::Plain => RmsProp::default().into(),
            Variant::PlainRsqrt => RmsProp::default().with_fast_rsqrt(true).into(),
            Variant::Centered => RmsProp::default().with_centered(true).into(),
            Variant::Momentum => RmsProp::default().with_momentum(0.9, MomentumStyle::LrOutsideBuffer).into(),
        }
    }

    /// Bytes moved per `f32` element: x read+write, g read, each state array read+write.
    pub fn bytes_per_element(self) -> usize {
        match self {
            Variant::Plain | Variant::PlainRsqrt => 20,
            Variant::Centered | Variant::Momentum => 28,
        }
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
    /// `plain`, `centered`, `momentum`, or `probe`.
    pub variant: String,
    /// `single` or `model`.
    pub layout: String,
    /// Elements in all.
    pub n: usize,
    /// Threads used.
    pub threads: usize,
    /// Huge-page-advised buffers.
    pub huge_pages: bool,
    /// Best time of one step.
    pub seconds_per_step: f64,
    /// Elements per second.
    pub elements_per_s: f64,
    /// Bytes moved per second, 1e9.
    pub gb_per_s: f64,
    /// The probe's bandwidth with the same threads, size and pages.
    pub probe_gb_per_s: f64,
    /// `gb_per_s / probe_gb_per_s`.
    pub ratio_to_probe: f64,
}

/// Times `f` and returns the best seconds per call: batches of calls lasting at least
/// `min_batch` seconds, the best of `batches`.
pub fn best_time(mut f: impl FnMut(), batches: usize, min_batch: f64) -> f64 {
    f(); // warm up: page faults, caches
    let mut reps = 1usize;
    loop {
        let t = Instant::now();
        for _ in 0..reps {
            f();
        }
        if t.elapsed().as_secs_f64() >= min_batch || reps > 1 << 24 {
            break;
        }
        reps *= 2;
    }
    (0..batches)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..reps {
                f();
            }
            t.elapsed().as_secs_f64() / reps as f64
        })
        .fold(f64::INFINITY, f64::min)
}

/// An array of `n` `f32`: huge-page advised ([`Buffer`]) or an ordinary `Vec`.
pub enum Array {
    /// [`Buffer`].
    Huge(Buffer<f32>),
    /// `Vec`.
    Plain(Vec<f32>),
}

impl Array {
    /// `n` copies of `v`.
    pub fn new(n: usize, v: f32, huge: bool) -> Array {
        if huge { Array::Huge(Buffer::filled(n, v)) } else { Array::Plain(vec![v; n]) }
    }
    fn slice_mut(&mut self) -> &mut [f32] {
        match self {
            Array::Huge(b) => b,
            Array::Plain(v) => v,
        }
    }
}

/// The probe: per element read `x`, `g`, `s`, write `s = g`, `x = x + s_old` — the
/// bytes of RMSProp's plain step, none of its square roots and divisions — in chunks of
/// [`rmsprop::CHUNK`], on the current rayon pool.
pub fn probe(n: usize, huge: bool, batches: usize, min_batch: f64) -> f64 {
    let (mut x, g, mut s) = (Array::new(n, 1.0, huge), Array::new(n, 0.5, huge), Array::new(n, 0.25, huge));
    let mut g = g;
    let (x, g, s) = (x.slice_mut(), &*g.slice_mut(), s.slice_mut());
    let c = rmsprop::CHUNK;
    best_time(
        || {
            let body = |((x, g), s): ((&mut [f32], &[f32]), &mut [f32])| {
                for ((x, g), s) in x.iter_mut().zip(g).zip(s.iter_mut()) {
                    let old = *s;
                    *s = *g;
                    *x += old;
                }
            };
            if n >= rmsprop::PARALLEL_THRESHOLD {
                x.par_chunks_mut(c).zip(g.par_chunks(c)).zip(s.par_chunks_mut(c)).for_each(body);
            } else {
                x.chunks_mut(c).zip(g.chunks(c)).zip(s.chunks_mut(c)).for_each(body);
            }
        },
        batches,
        min_batch,
    )
}

/// Best seconds per step of `variant` over `layout` with `n` elements in all (f32,
/// non-finite gradients propagate, as in the frameworks: no separate check pass).
pub fn step_time(variant: Variant, layout: Layout, n: usize, huge: bool, batches: usize, min_batch: f64) -> f64 {
    let sizes = sizes(layout, n);
    let specs: Vec<TensorSpec> =
        sizes.iter().enumerate().map(|(i, &k)| TensorSpec::new(format!("p{i}"), &[k])).collect();
    let mut opt = Optimizer::<f32>::new(variant.config(), &specs)
        .expect("valid configuration")
        .with_nonfinite_policy(NonFinitePolicy::Propagate);
    // parameters and gradients as views into one flat array each, as frameworks with
    // flat parameter storage keep them (the optimizer's state is laid out the same way)
    let total = sizes.iter().sum();
    let (mut x, mut g) = (Array::new(total, 1.0, huge), Array::new(total, 1e-3, huge));
    let xs = split(x.slice_mut(), &sizes);
    let mut xs = xs;
    let gs: Vec<&[f32]> = split(g.slice_mut(), &sizes).into_iter().map(|s| &*s).collect();
    best_time(
        || {
            opt.step(&mut xs, &gs).expect("step");
        },
        batches,
        min_batch,
    )
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
