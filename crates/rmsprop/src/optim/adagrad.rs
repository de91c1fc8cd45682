//! Adagrad (Duchi, Hazan & Singer 2011), the chapter's first comparison.
//!
//! D2L §12.7: `s <- s + g²`, `x <- x - η / sqrt(s + ε) ⊙ g`.

use super::guard::{Bounds, Inputs, Reach};
use super::{Ctx, EpsPlacement, Rule, Slot};
use crate::by_name::{Field, PLACEMENTS, STEP_FORMS, field};
#[cfg(test)]
use crate::common::Rounding;
use crate::common::{
    Common, StepForm, WeightDecayMode, check_nonneg, common_access, common_setters,
};
use crate::error::Result;
use crate::flavor::Flavor;
use crate::float::{Float, Param};
use crate::kernel::{
    Arith, EpsAt, Form, Loop, MAX_SLOTS, Planned, Prep, WeightOps, select, with_arith, with_form, with_prep,
};
use serde::{Deserialize, Serialize};
use std::marker::PhantomData;

/// Adagrad. `Default` is the chapter's (D2L §12.7): η 0.1, ε 1e-6 inside the root.
///
/// ```text
/// g  = preprocess(g)
/// η_t = η / (1 + (t-1) lr_decay)                (PyTorch lr_decay)
/// s  = s + g²                                    (s starts at initial_accumulator)
/// x -= η_t g / (inside ? sqrt(s + ε) : sqrt(s) + ε)
/// decoupled decay: x -= η_t wd x                 (MXNet AdaGrad's wd)
/// ```
/// Rounded as written, or as a framework rounds it ([`Rounding`](crate::Rounding); each
/// preset carries its framework's).
///
/// # Examples
/// The chapter's Adagrad at η 0.4 crawls where RMSProp converges:
/// ```
/// use rmsprop::{Adagrad, Optimizer};
/// let mut opt = Optimizer::<f64>::new(Adagrad::default().with_lr(0.4), &[("x", &[2][..])]).unwrap();
/// let mut x = vec![vec![-5.0, -2.0]];
/// for _ in 0..20 {
///     let g = vec![vec![0.2 * x[0][0], 4.0 * x[0][1]]];
///     opt.step(&mut x, &g).unwrap();
/// }
/// assert_eq!(format!("x1 {:.6}, x2 {:.6}", x[0][0], x[0][1]), "x1 -2.382563, x2 -0.158591");
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Adagrad {
    /// Learning rate, weight decay, gradient preprocessing, precision.
    pub common: Common,
    /// ε.
    pub eps: f64,
    /// ε inside (D2L, MXNet) or outside (PyTorch) the root.
    pub eps_placement: EpsPlacement,
    /// Initial value of the sum (PyTorch `initial_accumulator_value`).
    pub initial_accumulator: f64,
    /// Learning-rate decay per step (PyTorch `lr_decay`).
    pub lr_decay: f64,
    /// The rounding order of `η g / d`.
    pub step_form: StepForm,
}

impl Default for Adagrad {
    fn default() -> Self {
        Adagrad {
            common: Common::new(0.1),
            eps: 1e-6,
            eps_placement: EpsPlacement::InsideSqrt,
            initial_accumulator: 0.0,
            lr_decay: 0.0,
            step_form: StepForm::ScaledRate,
        }
    }
}

common_setters!(Adagrad);

impl Adagrad {
    /// Sets ε and its placement.
    pub fn with_eps(mut self, eps: f64, placement: EpsPlacement) -> Self {
        self.eps = eps;
        self.eps_placement = placement;
        self
    }
    /// Sets the initial accumulator value.
    pub fn with_initial_accumulator(mut self, v: f64) -> Self {
        self.initial_accumulator = v;
        self
    }
    /// Sets PyTorch's `lr_decay`.
    pub fn with_lr_decay(mut self, v: f64) -> Self {
        self.lr_decay = v;
        self
    }
}

impl Rule for Adagrad {
    type Scalars<T: Float> = Scalars<T>;
    const FIELDS: &'static [Field<Self>] = &[
        field!(num eps: "eps", "epsilon"),
        field!(choice eps_placement in PLACEMENTS; "eps_placement"),
        field!(num initial_accumulator: "initial_accumulator", "initial_accumulator_value"),
        field!(num lr_decay: "lr_decay"),
        field!(choice step_form in STEP_FORMS; "step_form"),
    ];
    common_access!();

    fn preset(flavor: Flavor, _: &str) -> Option<Self> {
        let d = Adagrad::default();
        match flavor {
            Flavor::D2l => Some(d),
            Flavor::PyTorch => Some(Adagrad {
                step_form: StepForm::ScaledProduct,
                ..d.with_lr(0.01).with_eps(1e-10, EpsPlacement::OutsideSqrt)
            }),
            Flavor::Mxnet => Some(
                Adagrad { step_form: StepForm::ScaledGradient, ..d }
                    .with_lr(0.01)
                    .with_eps(1e-7, EpsPlacement::InsideSqrt)
                    .with_weight_decay(0.0, WeightDecayMode::Decoupled),
            ),
            _ => None,
        }
    }

    fn validate(&self) -> Result<()> {
        const N: &str = "adagrad";
        self.common.validate(N)?;
        check_nonneg(N, "eps", self.eps)?;
        check_nonneg(N, "initial_accumulator", self.initial_accumulator)?;
        check_nonneg(N, "lr_decay", self.lr_decay)
    }

    fn slots(&self) -> Vec<Slot> {
        vec![Slot::squares("sum", self.initial_accumulator, true)]
    }

    /// Bounds on what one step can reach (see [`guard`](super::guard)): the formula of the
    /// type's doc, carried through on magnitudes.
    fn reach<T: Float>(&self, inputs: &Inputs) -> Option<Reach> {
        let b = Bounds::new::<T>(&self.common, inputs);
        let g = b.grad()?;
        let s = b.sum(&[(1.0, b.state(0)), (1.0, b.ok(g * g)?)])?;
        b.sum(&[(1.0, s), (1.0, b.hp(self.eps))])?;
        let floor = b.denominator_floor(self.eps, self.eps_placement == EpsPlacement::InsideSqrt);
        // the decayed rate η / (1 + (t-1) lr_decay) is at most η
        let lr = b.lr();
        b.ok(lr * g)?;
        b.div(lr.max(1.0), floor)?;
        let step = b.sum(&[(lr, b.div(g, floor)?)])?;
        b.reach([s, 0.0, 0.0], step)
    }

    /// The step of one group: its scalars, formed once per step, and its loop.
    fn kernel<P: Param>(&self, ctx: &Ctx<P::Acc>) -> Planned<Scalars<P::Acc>, P> {
        let c = &self.common;
        let from = <P::Acc as Float>::from_f64;
        let lr = c.hp(ctx.lr) / (1.0 + (ctx.t - 1) as f64 * self.lr_decay);
        let inside = self.eps_placement == EpsPlacement::InsideSqrt;
        let k = Scalars { lr: from(lr), eps: EpsAt::new(from(c.hp(self.eps)), inside), w: c.weight_ops(lr) };
        // XLA's rounding differs from the written one here only in norm clipping; MXNet's
        // only in averages of squares, which Adagrad has none of
        with_prep!(ctx.prep.is_identity(), k.w.any(), PREP, EXTRA => with_form!(self.step_form, O => {
            with_arith!(c.rounding, xla: PREP, mxnet: false, A => Planned::new::<Fused<A, O, PREP, EXTRA>>(k, ctx.prep))
        }))
    }
}

impl Adagrad {
    /// The loop with every option checked per element: the reference of the fused loop.
    #[cfg(test)]
    fn update_general<T: Float, P: Param<Acc = T>>(&self, ctx: &Ctx<T>, x: &mut [P], g: &[P], s: &mut [T]) {
        use crate::kernel::clip;
        let c = &self.common;
        let lr = T::from_f64(c.hp(ctx.lr) / (1.0 + (ctx.t - 1) as f64 * self.lr_decay));
        let eps = T::from_f64(c.hp(self.eps));
        let inside = self.eps_placement == EpsPlacement::InsideSqrt;
        let wd = c.decoupled_wd::<T>();
        let clip_w = c.clip_weights_t::<T>();
        for i in 0..x.len() {
            let x0 = x[i].load();
            let gi = ctx.prep.grad_as(c.rounding, g[i].load(), x0);
            // PyTorch: `s.addcmul_(g, g, value=1)`, one fused multiply-add
            s[i] = if c.rounding == Rounding::Torch { gi.mul_add(gi, s[i]) } else { s[i] + gi * gi };
            let den = if inside { (s[i] + eps).sqrt() } else { s[i].sqrt() + eps };
            let xi = match wd {
                // MXNet: x + (g/d + x*wd) * (-lr)
                Some(wd) => x0 - lr * (gi / den + x0 * wd),
                None => x0 - self.step_form.apply(lr, gi, den),
            };
            x[i] = P::store(clip(xi, clip_w));
        }
    }
}

/// The step's scalars in `T`.
#[derive(Clone, Copy)]
pub(crate) struct Scalars<T> {
    lr: T,
    eps: EpsAt<T>,
    w: WeightOps<T>,
}

/// The update (see the type's doc): the arithmetic `A`, the step form `O`, the
/// preprocessing and the rarer options (decoupled decay, weight clipping; loop-invariant
/// selects) are type parameters; ε's place is a choice of scalars.
struct Fused<A, O, const PREP: bool, const EXTRA: bool>(PhantomData<(A, O)>);

impl<P: Param, A: Arith, O: Form, const PREP: bool, const EXTRA: bool> Loop<P> for Fused<A, O, PREP, EXTRA> {
    type Scalars = Scalars<P::Acc>;

    #[inline(always)]
    fn run(k: &Scalars<P::Acc>, prep: &Prep<P::Acc>, x: &mut [P], g: &[P], [s, _, _]: [&mut [P::Acc]; MAX_SLOTS]) {
        let n = x.len();
        let (g, s) = (&g[..n], &mut s[..n]);
        // locals: nothing the loop stores to can alias them
        let (Scalars { lr, eps, w }, prep) = (*k, *prep);
        for i in 0..n {
            let x0 = x[i].load();
            let gi = if PREP { prep.grad::<A>(g[i].load(), x0) } else { g[i].load() };
            s[i] = A::add_sq(s[i], gi);
            let den = eps.root(s[i]);
            let plain = x0 - O::scaled(lr, gi, den);
            // MXNet's decoupled decay: x + (g/d + x*wd) * (-lr)
            let xi = if EXTRA { select(w.decoupled, x0 - lr * (gi / den + x0 * w.wd), plain) } else { plain };
            x[i] = P::store(if EXTRA { w.clip(xi) } else { xi });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optim::bit_tests::{bits, commons, inputs};

    /// The fused loop gives exactly the general loop's bits for every variant.
    #[test]
    fn fused_equals_general_bit_for_bit() {
        let n = 300;
        let (g, x0) = inputs::<f32>(n);
        for place in [EpsPlacement::InsideSqrt, EpsPlacement::OutsideSqrt] {
            for form in
                [StepForm::ScaledGradient, StepForm::ScaledRate, StepForm::ScaledProduct, StepForm::ScaledReciprocal]
            {
                for common in commons(&Adagrad::default().common) {
                    let o = Adagrad { common, step_form: form, ..Adagrad::default().with_eps(1e-6, place) };
                    let (mut xa, mut xb, mut sa, mut sb) = (x0.clone(), x0.clone(), vec![0.1f32; n], vec![0.1f32; n]);
                    for t in 1..=3 {
                        let ctx = Ctx { t, lr: 0.1, prep: o.common.prep::<f32>(None) };
                        o.kernel::<f32>(&ctx).run(&mut xa, &g, &mut [&mut sa[..]]);
                        o.update_general(&ctx, &mut xb, &g, &mut sb);
                    }
                    assert_eq!((bits(&xa), bits(&sa)), (bits(&xb), bits(&sb)), "{o:?}");
                }
            }
        }
    }
}
