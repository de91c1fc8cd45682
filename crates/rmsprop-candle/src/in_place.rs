//! Mutable access to candle's CPU storages without copies: one in-place custom op per
//! variable, each nested inside the previous one's, so that the innermost call sees every
//! variable's storage (each under its write lock) and every gradient's (read lock) at once,
//! and the core's fused step runs on them directly.

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
        // distinct variables have distinct storages, and no gradient aliases its variable
        // (`inplace_op2` refuses one that does), so the slices are disjoint.
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
pub(crate) fn with_storages<P: Element>(
    vars: &[(String, Var)],
    grads: &GradStore,
    opened: &mut Opened<P>,
    body: &mut Body<'_, P>,
) -> candle_core::Result<()> {
    opened.xs.clear();
    opened.gs.clear();
    let open = RefCell::new(std::mem::take(opened));
    let body = RefCell::new(body);
    let result = descend(vars, grads, &open, &body);
    *opened = open.into_inner();
    // stale from here on: never read before the next step clears them
    result
}

fn descend<P: Element>(
    vars: &[(String, Var)],
    grads: &GradStore,
    open: &RefCell<Opened<P>>,
    body: &RefCell<&mut Body<'_, P>>,
) -> candle_core::Result<()> {
    match vars.split_first() {
        Some(((name, x), rest)) => {
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
            x.inplace_op2(g, &Level { rest, grads, open, body })
        }
        None => {
            // every enclosing `inplace_op2` call is still on the stack: every lock is held
            let mut open = open.borrow_mut();
            let Opened { xs, gs } = &mut *open;
            (body.borrow_mut())(xs, gs);
            Ok(())
        }
    }
}

/// One level of the nesting: opens its variable's storage and descends.
struct Level<'a, 'b, 'c, P: Element> {
    rest: &'a [(String, Var)],
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
            open.xs.push(Open { ptr: x.as_mut_ptr(), len: x.len() });
            open.gs.push(Open { ptr: g.as_ptr().cast_mut(), len: g.len() });
        }
        descend(self.rest, self.grads, self.open, self.body)
    }
}
