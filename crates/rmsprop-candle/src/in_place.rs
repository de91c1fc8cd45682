//! Mutable access to candle's CPU storages without copies: one in-place custom op per
//! variable, each nested inside the previous one's, so that the innermost call sees every
//! variable's storage (each under its write lock) and every gradient's (read lock) at once,
//! and the core's fused step runs on them directly.
//!
//! The locks are taken in one global order, that of the storages' addresses (candle's own
//! order for the locks of one in-place op), whatever order the variables are registered
//! in: two trainers over the same variables, or a trainer and candle's in-place ops, never
//! wait on each other in a circle. The trainer steps each storage once (tied weights are
//! one variable to it) and refuses a gradient that is a variable's own storage before
//! taking any lock.

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

/// A variable's elements (or its gradient's) in an open storage: a pointer and a length,
/// valid only while the storage's lock is held (inside [`with_storages`]'s body), so that
/// the lists of them can be kept between steps without holding any borrow.
pub(crate) struct Open<P> {
    ptr: *mut P,
    len: usize,
}

impl<P> AsRef<[P]> for Open<P> {
    fn as_ref(&self) -> &[P] {
        // SAFETY: an `Open` is only read inside the body of `with_storages`, while the
        // lock of the storage it points into is held (see `descend`).
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl<P> AsMut<[P]> for Open<P> {
    fn as_mut(&mut self) -> &mut [P] {
        // SAFETY: as `as_ref`; only parameters are opened mutably (under their write lock),
        // the trainer's variables have distinct storages (tied ones are stepped once, see
        // `Trainer::from_groups`), and no gradient aliases a variable (its own: refused by
        // `inplace_op2`; another's: refused by `Trainer::step` before any lock), so the
        // slices are disjoint.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

/// The open parameters and gradients of one step, kept between steps so that a step
/// allocates nothing once they have grown to the model's size.
pub(crate) struct Opened<P> {
    xs: Vec<Open<P>>,
    gs: Vec<Open<P>>,
}

impl<P> Default for Opened<P> {
    fn default() -> Self {
        Opened { xs: Vec::new(), gs: Vec::new() }
    }
}

impl<P> std::fmt::Debug for Opened<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Opened")
    }
}

// SAFETY: the pointers are only dereferenced inside `with_storages`, on its caller's thread;
// between steps they are stale and never read (each step clears them first).
unsafe impl<P: Send> Send for Opened<P> {}
unsafe impl<P: Sync> Sync for Opened<P> {}

/// What runs once every storage is open: the parameters (mutably) and the gradients.
pub(crate) type Body<'a, P> = dyn FnMut(&mut [Open<P>], &[Open<P>]) + 'a;

/// Runs `body` on the elements of every variable of `vars` and its gradient in `grads`
/// (each present: the caller checked), in place.
///
/// Errors: a storage of another type than `P`, a gradient of another shape than its
/// variable, a variable that is not contiguous (a `Var` always is).
/// `order` lists the variables' indices in the order their locks are taken; the body sees
/// them in the order of `vars`.
pub(crate) fn with_storages<P: Element>(
    vars: &[(String, Var)],
    order: &[usize],
    grads: &GradStore,
    opened: &mut Opened<P>,
    body: &mut Body<'_, P>,
) -> candle_core::Result<()> {
    let closed = || Open { ptr: std::ptr::null_mut(), len: 0 };
    opened.xs.clear();
    opened.gs.clear();
    opened.xs.resize_with(vars.len(), closed);
    opened.gs.resize_with(vars.len(), closed);
    let open = RefCell::new(std::mem::take(opened));
    let body = RefCell::new(body);
    let result = descend(vars, order, grads, &open, &body);
    *opened = open.into_inner();
    // stale from here on: never read before the next step clears them
    result
}

fn descend<P: Element>(
    vars: &[(String, Var)],
    order: &[usize],
    grads: &GradStore,
    open: &RefCell<Opened<P>>,
    body: &RefCell<&mut Body<'_, P>>,
) -> candle_core::Result<()> {
    match order.split_first() {
        Some((&index, rest)) => {
            let (name, x) = &vars[index];
            let g = grads.get(x).ok_or_else(|| candle_core::Error::Msg(format!("no gradient for {name:?}")))?;
            if g.dims() != x.dims() {
                let msg = format!("the gradient of {name:?} has shape {:?}, the variable {:?}", g.dims(), x.dims());
                return Err(candle_core::Error::Msg(msg));
            }
            // the one copying path: a strided gradient (a transposed or broadcast tensor put in
            // the store by hand) is made contiguous; backward's own gradients always are
            let copy;
            let g = if g.is_contiguous() {
                g
            } else {
                copy = g.contiguous()?;
                &copy
            };
            x.inplace_op2(g, &Level { vars, index, rest, grads, open, body })
        }
        None => {
            // every enclosing `inplace_op2` call is still on the stack: every lock is held,
            // and every slot is open (`order` lists each variable once)
            let mut open = open.borrow_mut();
            let Opened { xs, gs } = &mut *open;
            (body.borrow_mut())(xs, gs);
            Ok(())
        }
    }
}

/// One level of the nesting: opens its variable's storage and descends.
struct Level<'a, 'b, 'c, P: Element> {
    vars: &'a [(String, Var)],
    /// The variable this level opens.
    index: usize,
    /// The variables still to open, in lock order.
    rest: &'a [usize],
    grads: &'a GradStore,
    open: &'a RefCell<Opened<P>>,
    body: &'a RefCell<&'b mut Body<'c, P>>,
}

impl<P: Element> InplaceOp2 for Level<'_, '_, '_, P> {
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
        {
            let mut open = self.open.borrow_mut();
            open.xs[self.index] = Open { ptr: x.as_mut_ptr(), len: x.len() };
            open.gs[self.index] = Open { ptr: g.as_ptr().cast_mut(), len: g.len() };
        }
        descend(self.vars, self.rest, self.grads, self.open, self.body)
    }
}
