//! The fused loops against the general one, written out per element.

use super::*;
use crate::optim::Ctx;

/// The fused loops give exactly the general loop's bits, for every variant: centring,
/// momentum either way, ε placement, step form, preprocessing, and each of the rarer
/// options (bias correction, clamped variance, Nesterov, decoupled decay, weight
/// clipping), alone and all together, in f32 and f64.
#[test]
fn fused_equals_general_bit_for_bit() {
    fn check<T: Float + Param<Acc = T>>(bits: impl Fn(&[T]) -> Vec<u64>) {
        let n = 1000;
        let g: Vec<T> = (0..n)
            .map(|i| {
                let v = ((i * 7919 % 1000) as f64 / 100.0 - 5.0) * if i % 3 == 0 { 1e-3 } else { 1.0 };
                T::from_f64(if i % 97 == 0 { 0.0 } else { v })
            })
            .collect();
        let x0: Vec<T> = (0..n).map(|i| T::from_f64((i as f64 / 50.0).sin() * 3.0)).collect();
        let extras: [fn(RmsProp) -> RmsProp; 7] = [
            |r| r,
            |r| r.with_bias_correction(true),
            |r| r.with_clamp_variance(true),
            |r| {
                let on = r.momentum > 0.0;
                r.with_nesterov(on)
            },
            |r| r.with_weight_decay(0.1, crate::WeightDecayMode::Decoupled),
            |r| r.with_clip_weights(2.0),
            |r| {
                let on = r.momentum > 0.0;
                r.with_bias_correction(true)
                    .with_clamp_variance(true)
                    .with_nesterov(on)
                    .with_weight_decay(0.1, crate::WeightDecayMode::Decoupled)
                    .with_clip_weights(2.0)
            },
        ];
        for centered in [false, true] {
            for momentum in [0.0, 0.9] {
                for style in [MomentumStyle::LrOutsideBuffer, MomentumStyle::LrInsideBuffer] {
                    for place in [EpsPlacement::InsideSqrt, EpsPlacement::OutsideSqrt] {
                        for form in [
                            StepForm::ScaledGradient,
                            StepForm::ScaledRate,
                            StepForm::ScaledProduct,
                            StepForm::ScaledReciprocal,
                        ] {
                            // decay 0.3: PyTorch's `lerp_` weight 0.7 takes its other branch
                            for (rescale, rounding, decay) in [
                                (1.0, Rounding::AsWritten, 0.9),
                                (0.5, Rounding::AsWritten, 0.9),
                                (1.0, Rounding::Torch, 0.9),
                                (0.5, Rounding::Torch, 0.3),
                                (1.0, Rounding::Xla, 0.9),
                                (0.5, Rounding::Mxnet, 0.9),
                            ] {
                                for (extra, average) in extras.into_iter().flat_map(|e| {
                                    [(e, super::AverageForm::Weighted), (e, super::AverageForm::Increment)]
                                }) {
                                    let r = extra(
                                        RmsProp::default()
                                            .with_average_form(average)
                                            .with_centered(centered)
                                            .with_momentum(momentum, style)
                                            .with_eps(1e-6, place)
                                            .with_step_form(form)
                                            .with_rescale_grad(rescale)
                                            .with_rounding(rounding)
                                            .with_decay(decay),
                                    );
                                    let (mut xa, mut xb) = (x0.clone(), x0.clone());
                                    let init = |v: f64| vec![T::from_f64(v); n];
                                    let mut sa = [init(0.1), init(0.01), init(0.2)];
                                    let mut sb = sa.clone();
                                    for t in 1..=3 {
                                        let ctx = Ctx { t, lr: 0.01, prep: r.common.prep::<T>(None) };
                                        let [s, m, b] = &mut sa;
                                        r.kernel::<T>(&ctx).run(&mut xa, &g, &mut [&mut s[..], &mut m[..], &mut b[..]]);
                                        let [s, m, b] = &mut sb;
                                        r.update_general(&ctx, &mut xb, &g, s, m, b);
                                    }
                                    assert_eq!(bits(&xa), bits(&xb), "{r:?}");
                                    for k in 0..3 {
                                        assert_eq!(bits(&sa[k]), bits(&sb[k]), "{r:?} slot {k}");
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    check::<f32>(|v| v.iter().map(|x| x.to_bits() as u64).collect());
    check::<f64>(|v| v.iter().map(|x| x.to_bits()).collect());
}

/// The probe of a centred step without `clamp_variance` gives the smallest denominator
/// the step divides by (0 where a variance rounded below 0 makes it NaN), read from the
/// general loop, and writes nothing: every rounding, ε placement, preprocessing and the
/// options that change the averages, in f32 and f64; a clamped or uncentred step has none.
#[test]
fn the_probe_gives_the_steps_smallest_denominator() {
    fn check<T: Float + Param<Acc = T>>() {
        let n = 300; // a block of the probe and a ragged one
        let g: Vec<T> = (0..n).map(|i| T::from_f64(if i % 97 == 0 { 0.0 } else { ((i * 7919 % 1000) as f64 - 500.0) / 100.0 })).collect();
        let x: Vec<T> = (0..n).map(|i| T::from_f64((i as f64 / 50.0).sin() * 3.0)).collect();
        let options: [fn(RmsProp) -> RmsProp; 4] = [
            |r| r,
            |r| r.with_bias_correction(true),
            |r| r.with_average_form(super::AverageForm::Increment),
            |r| r.with_weight_decay(0.1, crate::WeightDecayMode::Coupled).with_rescale_grad(0.5),
        ];
        for rounding in [Rounding::AsWritten, Rounding::Torch, Rounding::Xla, Rounding::Mxnet] {
            for place in [EpsPlacement::InsideSqrt, EpsPlacement::OutsideSqrt] {
                for option in options {
                    // the averages' state: s above m² everywhere, then below it (a negative
                    // variance: NaN under the root), then s = m² = 0 with ε = 0 (0 / 0)
                    for (s0, m0, eps) in [(0.1, 0.01, 1e-6), (0.01, 0.5, 1e-6), (0.0, 0.0, 0.0)] {
                        let r = option(RmsProp::default().with_centered(true).with_rounding(rounding).with_eps(eps, place));
                        let ctx = Ctx { t: 2, lr: 0.01, prep: r.common.prep::<T>(None) };
                        let (s, m, b) = (vec![T::from_f64(s0); n], vec![T::from_f64(m0); n], vec![T::ZERO; n]);
                        let mut x_p = x.clone();
                        let mut probed = [s.clone(), m.clone(), b.clone()];
                        let [ps, pm, pb] = &mut probed;
                        let floor = r.kernel::<T>(&ctx).probe(&mut x_p, &g, &mut [&mut ps[..], &mut pm[..], &mut pb[..]]);
                        let (mut x_g, mut s_g, mut m_g, mut b_g) = (x.clone(), s.clone(), m.clone(), b.clone());
                        let least = r.update_general(&ctx, &mut x_g, &g, &mut s_g, &mut m_g, &mut b_g);
                        assert_eq!(floor.map(f64::to_bits), Some(least.to_bits()), "{r:?} from s {s0}, m {m0}");
                        assert!(x_p == x && probed == [s, m, b], "the probe wrote");
                        if (s0, m0) == (0.01, 0.5) {
                            assert_eq!(least, 0.0, "{r:?}: a negative variance");
                        }
                        let unprobed = [r.clone().with_clamp_variance(true), r.with_centered(false)];
                        for r in unprobed {
                            let [ps, pm, pb] = &mut probed;
                            assert_eq!(r.kernel::<T>(&ctx).probe(&mut x_p, &g, &mut [&mut ps[..], &mut pm[..], &mut pb[..]]), None);
                        }
                    }
                }
            }
        }
    }
    check::<f32>();
    check::<f64>();
}

/// The estimate is used where it applies, and the parameters stay within one ulp.
#[test]
fn fast_rsqrt_is_close_to_exact() {
    #[cfg(target_arch = "x86_64")]
    let vector = std::arch::is_x86_feature_detected!("avx512f") || std::arch::is_x86_feature_detected!("avx2");
    #[cfg(not(target_arch = "x86_64"))]
    let vector = false;
    if !vector {
        return; // the exact loop runs instead; nothing to compare
    }
    let n = 4096;
    let g: Vec<f32> = (0..n).map(|i| (i * 7919 % 1000) as f32 / 100.0 - 5.0).collect();
    let run = |fast: bool| {
        let r = RmsProp::default().with_fast_rsqrt(fast);
        let ctx = Ctx { t: 1, lr: 0.01, prep: r.common.prep::<f32>(None) };
        let mut x = vec![1.0f32; n];
        let mut st = [vec![0.0f32; n], vec![], vec![]];
        let [s, m, b] = &mut st;
        r.kernel::<f32>(&ctx).run(&mut x, &g, &mut [&mut s[..], &mut m[..], &mut b[..]]);
        x
    };
    let (exact, fast) = (run(false), run(true));
    assert!(exact.iter().zip(&fast).any(|(a, b)| a != b), "the estimate was not used");
    for (a, b) in exact.iter().zip(&fast) {
        assert!((a - b).abs() <= f32::EPSILON * a.abs(), "{a} vs {b}: more than one ulp apart");
    }
}

/// TF1's averages move by their increment with or without the estimate: the estimate
/// replaces only the root, so the state is the exact loop's, bit for bit.
#[test]
fn fast_rsqrt_keeps_the_increment_form() {
    let n = 4096;
    let g: Vec<f32> = (0..n).map(|i| (i * 7919 % 1000) as f32 / 100.0 - 5.0).collect();
    let state = |r: RmsProp| {
        let ctx = Ctx { t: 1, lr: 0.01, prep: r.common.prep::<f32>(None) };
        let mut x = vec![1.0f32; n];
        let mut st = [vec![1.0f32; n], vec![], vec![]];
        let [s, m, b] = &mut st;
        r.kernel::<f32>(&ctx).run(&mut x, &g, &mut [&mut s[..], &mut m[..], &mut b[..]]);
        st[0].iter().map(|v| v.to_bits()).collect::<Vec<_>>()
    };
    let tf1 = Flavor::Tf1.rmsprop();
    let exact = state(tf1.clone());
    assert_ne!(exact, state(tf1.clone().with_average_form(AverageForm::Weighted)), "the forms round alike here");
    assert_eq!(state(tf1.with_fast_rsqrt(true)), exact);
}

impl RmsProp {
    /// The loop with every option checked per element: the reference the fused loops
    /// reproduce bit for bit.
    fn update_general<T: Float, P: Param<Acc = T>>(
        &self,
        ctx: &Ctx<T>,
        x: &mut [P],
        g: &[P],
        s: &mut [T],
        m: &mut [T],
        b: &mut [T],
    ) -> f64 {
        use crate::kernel::clip;
        let mut least = f64::INFINITY;
        let c = &self.common;
        let decay = c.hp(self.decay);
        let (gamma, one_minus_gamma) = (T::from_f64(decay), T::from_f64(1.0 - decay));
        let (eps, lr, mu) = (T::from_f64(c.hp(self.eps)), T::from_f64(c.hp(ctx.lr)), T::from_f64(c.hp(self.momentum)));
        let bc = T::from_f64(if self.bias_correction { 1.0 - c.rounding.power(decay, ctx.t) } else { 1.0 });
        // XLA (optax) multiplies by the correction's reciprocal
        let unbias = |v: T| if c.rounding == Rounding::Xla { v * (T::ONE / bc) } else { v / bc };
        let inside = self.eps_placement == EpsPlacement::InsideSqrt;
        let momentum = self.uses_momentum().then_some(self.momentum_style);
        let clip_w = c.clip_weights_t::<T>();
        let torch = c.rounding == Rounding::Torch;
        // MXNet's centred `rmspropalex_update`: `(1 - γ1) * g * g`, `lr * g / sqrt(…)`
        let alex = c.rounding == Rounding::Mxnet && self.centered;
        for i in 0..x.len() {
            let x0 = x[i].load();
            let gi = ctx.prep.grad_as(c.rounding, g[i].load(), x0);
            // PyTorch: `s.mul_(γ).addcmul_(g, g, value=1-γ)`, `m.lerp_(g, 1-γ)`,
            // `s.addcmul(m, m, value=-1)`, each with one fused multiply-add
            let increment = self.average_form == super::AverageForm::Increment;
            // TensorFlow / timm: `s += (1-γ)(g² - s)`, `m += (1-γ)(g - m)` (timm: `add_` with
            // `alpha`, one fused multiply-add)
            s[i] = if increment && torch {
                one_minus_gamma.mul_add(gi * gi - s[i], s[i])
            } else if increment {
                s[i] + (gi * gi - s[i]) * one_minus_gamma
            } else if torch {
                (one_minus_gamma * gi).mul_add(gi, gamma * s[i])
            } else if alex {
                gamma * s[i] + one_minus_gamma * gi * gi
            } else {
                gamma * s[i] + one_minus_gamma * (gi * gi)
            };
            let mut v = if self.bias_correction { unbias(s[i]) } else { s[i] };
            if self.centered {
                m[i] = match (torch, one_minus_gamma.to_f64() < 0.5) {
                    _ if increment && torch => one_minus_gamma.mul_add(gi - m[i], m[i]),
                    _ if increment => m[i] + (gi - m[i]) * one_minus_gamma,
                    (true, true) => one_minus_gamma.mul_add(gi - m[i], m[i]),
                    (true, false) => (one_minus_gamma - T::ONE).mul_add(gi - m[i], gi),
                    (false, _) => gamma * m[i] + one_minus_gamma * gi,
                };
                let mh = if self.bias_correction { unbias(m[i]) } else { m[i] };
                v = if torch { (-mh).mul_add(mh, v) } else { v - mh * mh };
                if self.clamp_variance {
                    v = v.max(T::ZERO);
                }
            }
            let den = if inside { (v + eps).sqrt() } else { v.sqrt() + eps };
            least = least.min(if den.to_f64() >= 0.0 { den.to_f64() } else { 0.0 });
            let xi = c.decoupled_decay(c.hp(ctx.lr), x0);
            let xi = match momentum {
                None if alex => xi - lr * gi / den,
                None => xi - self.step_form.apply(lr, gi, den),
                Some(MomentumStyle::LrOutsideBuffer) => {
                    let u = gi / den;
                    b[i] = mu * b[i] + u;
                    let d = if self.nesterov { u + mu * b[i] } else { b[i] };
                    // PyTorch: `x.add_(b, alpha=-lr)`
                    if torch { d.mul_add(-lr, xi) } else { xi - lr * d }
                }
                Some(MomentumStyle::LrInsideBuffer) => {
                    let step = if alex { lr * gi / den } else { self.step_form.apply(lr, gi, den) };
                    b[i] = mu * b[i] + step;
                    xi - if self.nesterov { step + mu * b[i] } else { b[i] }
                }
            };
            x[i] = P::store(clip(xi, clip_w));
        }
        least
    }
}
