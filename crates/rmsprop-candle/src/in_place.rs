//! Mutable access to candle's CPU storages without copies: one in-place custom op per
//! variable, each nested inside the previous one's, so that the innermost call sees every
//! variable's storage (each under its write lock) and every gradient's (read lock) at once,
//! and the core's fused step runs on them directly.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, DType, InplaceOp2, Layout, Tensor};
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

/// One variable's parameter and gradient elements, as pointers kept while its locks are held.
type Pointers<P> = (*mut P, *const P, usize);

/// What runs once every storage is open: the parameters (mutably) and the gradients.
pub(crate) type Body<'a, P> = dyn FnMut(&mut [&mut [P]], &[&[P]]) + 'a;

/// Runs `body` on the elements of every `(variable, gradient)` pair, in place.
///
/// Errors: a storage of another type than `P`, a layout that is not contiguous.
pub(crate) fn with_storages<P: Element>(
    pairs: &[(&Tensor, &Tensor)],
    scratch: &mut Vec<Pointers<P>>,
    body: &mut Body<'_, P>,
) -> candle_core::Result<()> {
    scratch.clear();
    let pointers = RefCell::new(std::mem::take(scratch));
    let body = RefCell::new(body);
    let result = descend(pairs, &pointers, &body);
    *scratch = pointers.into_inner();
    result
}

fn descend<P: Element>(
    pairs: &[(&Tensor, &Tensor)],
    pointers: &RefCell<Vec<Pointers<P>>>,
    body: &RefCell<&mut Body<'_, P>>,
) -> candle_core::Result<()> {
    match pairs.split_first() {
        Some(((x, g), rest)) => x.inplace_op2(g, &Level { rest, pointers, body }),
        None => {
            let pointers = pointers.borrow();
            // SAFETY: each pointer was taken from a storage whose lock is held by an
            // enclosing `inplace_op2` call still on the stack (write locks for the
            // parameters, read locks for the gradients), for its `n` contiguous elements;
            // distinct variables have distinct storages, so the mutable slices are disjoint
            // and alias no gradient (`Level::cpu_fwd` refuses a gradient aliasing its variable).
            let mut xs: Vec<&mut [P]> =
                pointers.iter().map(|&(x, _, n)| unsafe { std::slice::from_raw_parts_mut(x, n) }).collect();
            let gs: Vec<&[P]> = pointers.iter().map(|&(_, g, n)| unsafe { std::slice::from_raw_parts(g, n) }).collect();
            (body.borrow_mut())(&mut xs, &gs);
            Ok(())
        }
    }
}

/// One level of the nesting: opens its variable's storage and descends.
struct Level<'a, 'b, 'c, P: Element> {
    rest: &'a [(&'a Tensor, &'a Tensor)],
    pointers: &'a RefCell<Vec<Pointers<P>>>,
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
        self.pointers.borrow_mut().push((x.as_mut_ptr(), g.as_ptr(), x.len()));
        descend(self.rest, self.pointers, self.body)
    }
}
