//! Learning-rate schedules: the learning rate of step `t` (1-based) from the base rate.

use std::fmt;
use std::sync::Arc;

/// A learning-rate schedule. The optimizer asks it for the rate of each step `t`
/// (1-based, the step about to be taken), given the group's base rate `lr`.
/// The formulas are PyTorch's `lr_scheduler` ones with epoch `e = t - 1`.
///
/// ```
/// use rmsprop::Schedule;
/// let s = Schedule::Step { step_size: 10, gamma: 0.5 };
/// assert_eq!(s.lr(0.1, 1), 0.1);
/// assert_eq!(s.lr(0.1, 11), 0.05);
/// let w = Schedule::LinearWarmup { warmup_steps: 4, after: Box::new(Schedule::Constant) };
/// assert_eq!(w.lr(1.0, 1), 0.25);
/// let c = Schedule::custom(|t, lr| lr / t as f64);
/// assert_eq!(c.lr(1.0, 4), 0.25);
/// ```
#[derive(Clone, Default)]
pub enum Schedule {
    /// `lr` (the default).
    #[default]
    Constant,
    /// `lr * gamma^floor(e / step_size)` (PyTorch `StepLR`).
    Step {
        /// Steps between decays (> 0).
        step_size: u64,
        /// Factor per decay.
        gamma: f64,
    },
    /// `lr * gamma^e` (PyTorch `ExponentialLR`).
    Exponential {
        /// Factor per step.
        gamma: f64,
    },
    /// `eta_min + (lr - eta_min) (1 + cos(π e / t_max)) / 2`, then `eta_min` from `e >= t_max`
    /// (PyTorch `CosineAnnealingLR` closed form, without restarts).
    Cosine {
        /// Steps of one half period (> 0).
        t_max: u64,
        /// Final rate.
        eta_min: f64,
    },
    /// `lr * t / warmup_steps` for `t <= warmup_steps`, then `after` counted from the end
    /// of the warm-up.
    LinearWarmup {
        /// Length of the warm-up (> 0).
        warmup_steps: u64,
        /// The schedule after it.
        after: Box<Schedule>,
    },
    /// Any function of `(t, lr)`.
    Custom(Arc<dyn Fn(u64, f64) -> f64 + Send + Sync>),
}

impl Schedule {
    /// A schedule from a closure `(t, lr) -> lr_t`.
    pub fn custom(f: impl Fn(u64, f64) -> f64 + Send + Sync + 'static) -> Self {
        Schedule::Custom(Arc::new(f))
    }

    /// The learning rate of step `t` (1-based).
    pub fn lr(&self, lr: f64, t: u64) -> f64 {
        let e = t.saturating_sub(1);
        match self {
            Schedule::Constant => lr,
            Schedule::Step { step_size, gamma } => lr * gamma.powf((e / (*step_size).max(1)) as f64),
            Schedule::Exponential { gamma } => lr * gamma.powf(e as f64),
            Schedule::Cosine { t_max, eta_min } => {
                if e >= *t_max {
                    *eta_min
                } else {
                    let phase = std::f64::consts::PI * e as f64 / (*t_max).max(1) as f64;
                    eta_min + (lr - eta_min) * (1.0 + phase.cos()) / 2.0
                }
            }
            Schedule::LinearWarmup { warmup_steps, after } => {
                if t <= *warmup_steps {
                    lr * t as f64 / *warmup_steps as f64
                } else {
                    after.lr(lr, t - warmup_steps)
                }
            }
            Schedule::Custom(f) => f(t, lr),
        }
    }
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Schedule::Constant => write!(f, "Constant"),
            Schedule::Step { step_size, gamma } => {
                write!(f, "Step {{ step_size: {step_size}, gamma: {gamma} }}")
            }
            Schedule::Exponential { gamma } => write!(f, "Exponential {{ gamma: {gamma} }}"),
            Schedule::Cosine { t_max, eta_min } => {
                write!(f, "Cosine {{ t_max: {t_max}, eta_min: {eta_min} }}")
            }
            Schedule::LinearWarmup { warmup_steps, after } => {
                write!(f, "LinearWarmup {{ warmup_steps: {warmup_steps}, after: {after:?} }}")
            }
            Schedule::Custom(_) => write!(f, "Custom(..)"),
        }
    }
}
