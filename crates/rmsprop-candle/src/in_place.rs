//! Mutable access to candle's CPU storages without copies, one variable at a time: the
//! core's step opens each variable through an in-place custom op on it and its gradient
//! (candle takes the variable's write lock and the gradient's read lock, in its own order)
//! and runs on the storages directly ([`rmsprop::Optimizer::step_each`]).
//!
//! No lock is held while another is taken, so a step never waits in a circle with another
//! thread — one computing `b + a` on two of the variables, which holds both their read
//! locks, or a second trainer over the same variables. The trainer steps each storage once
//! (tied weights are one variable to it) and refuses a gradient that is a variable's own
//! storage before opening anything.

use candle_core::backend::BackendStorage;
use candle_core::backprop::GradStore;
use candle_core::{CpuStorage, DType, InplaceOp2, Layout, Var};
use std::cell::RefCell;

/// A parameter element type candle stores and the core steps: `f32`, `f64`, `bf16`, `f16`.
pub trait Element: rmsprop::Param {
    /// candle's name of the type.
    const DTYPE: DType;
    /// The storage's values, if it holds this type.
    fn values(s: &CpuStorage) -> Option<&[Self]>;
    /// The same, mutably.
    fn values_mut(s: &mut CpuStorage) -> Option<&mut [Self]>;
}

macro_rules! element {
    ($t:ty, $dtype:ident) => {
        impl Element for $t {
            const DTYPE: DType = DType::$dtype;
            fn values(s: &CpuStorage) -> Option<&[Self]> {
                match s {
                    CpuStorage::$dtype(v) => Some(v),
                    _ => None,
                }
            }
            fn values_mut(s: &mut CpuStorage) -> Option<&mut [Self]> {
                match s {
                    CpuStorage::$dtype(v) => Some(v),
                    _ => None,
                }
            }
        }
    };
}
element!(f32, F32);
element!(f64, F64);
element!(half::bf16, BF16);
element!(half::f16, F16);

/// The trainer's variables and a step's gradients, opened one at a time for the core's
/// step. A candle error on opening one is kept (the core hears only that it failed).
pub(crate) struct Opener<'a> {
    pub vars: &'a [(String, Var)],
    pub grads: &'a GradStore,
    pub failed: Option<candle_core::Error>,
}

impl<P: Element> rmsprop::Tensors<P> for Opener<'_> {
    fn with(&mut self, i: usize, f: &mut dyn FnMut(&mut [P], &[P])) -> rmsprop::Result<()> {
        let (name, x) = &self.vars[i];
        open(x, name, self.grads, f).map_err(|e| {
            let reason = e.to_string();
            self.failed = Some(e);
            rmsprop::Error::Access { tensor: name.clone(), reason }
        })
    }
}

/// Runs `f` on the elements of `x` and of its gradient in `grads`, in place.
///
/// Errors: no gradient, a gradient of another shape than its variable, a storage of
/// another type than `P`, a variable that is not contiguous (a `Var` always is).
fn open<P: Element>(
    x: &Var,
    name: &str,
    grads: &GradStore,
    f: &mut dyn FnMut(&mut [P], &[P]),
) -> candle_core::Result<()> {
    let g = grads.get(x).ok_or_else(|| candle_core::Error::Msg(format!("no gradient for {name:?}")))?;
    if g.dims() != x.dims() {
        let msg = format!("the gradient of {name:?} has shape {:?}, the variable {:?}", g.dims(), x.dims());
        return Err(candle_core::Error::Msg(msg));
    }
    // the one copying path: a strided gradient (a transposed or broadcast tensor put in the
    // store by hand) is made contiguous; backward's own gradients always are
    let copy;
    let g = if g.is_contiguous() {
        g
    } else {
        copy = g.contiguous()?;
        &copy
    };
    x.inplace_op2(g, &Open { f: RefCell::new(f) })
}

/// What a step does with one variable's elements and its gradient's.
type Body<'a, 'b, P> = &'a mut (dyn FnMut(&mut [P], &[P]) + 'b);

/// The in-place op that hands one variable's and its gradient's elements to `f`.
struct Open<'a, 'b, P> {
    f: RefCell<Body<'a, 'b, P>>,
}

impl<P: Element> InplaceOp2 for Open<'_, '_, P> {
    fn name(&self) -> &'static str {
        "rmsprop-step"
    }

    fn cpu_fwd(&self, s1: &mut CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> candle_core::Result<()> {
        let range = |l: &Layout, what: &str| {
            l.contiguous_offsets().ok_or_else(|| candle_core::Error::Msg(format!("the {what} is not contiguous")))
        };
        let ((x0, x1), (g0, g1)) = (range(l1, "parameter")?, range(l2, "gradient")?);
        let dtype = |s: &CpuStorage| s.dtype();
        let wrong = |what: &str, s: &CpuStorage| {
            candle_core::Error::Msg(format!("the {what} is {:?}, the optimizer steps {:?}", dtype(s), P::DTYPE))
        };
        let g = P::values(s2).ok_or_else(|| wrong("gradient", s2))?.get(g0..g1);
        let g = g.ok_or_else(|| candle_core::Error::Msg("the gradient's layout is outside its storage".into()))?;
        let x = match P::values_mut(s1) {
            Some(x) => x.get_mut(x0..x1),
            None => return Err(wrong("parameter", s1)),
        };
        let x = x.ok_or_else(|| candle_core::Error::Msg("the parameter's layout is outside its storage".into()))?;
        if x.len() != g.len() {
            return Err(candle_core::Error::Msg(format!(
                "the gradient has {} elements, the parameter {}",
                g.len(),
                x.len()
            )));
        }
        // the variable's storage under its write lock, the gradient's under its read lock
        // (a gradient on the variable's own storage is refused by `inplace_op2`, on
        // another variable's by `Trainer::step`): the slices are disjoint
        (self.f.borrow_mut())(x, g);
        Ok(())
    }
}
