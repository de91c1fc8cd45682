//! The element types the optimizers run in: `f32` and `f64`.

use std::fmt::Debug;
use std::ops::{Add, Div, Mul, Neg, Sub};

/// The dtype of a tensor, as named in checkpoints and golden files.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dtype {
    /// IEEE-754 binary32.
    F32,
    /// IEEE-754 binary64.
    F64,
}

impl Dtype {
    /// The name frameworks use for it (`"float32"`, `"float64"`).
    ///
    /// ```
    /// assert_eq!(rmsprop::Dtype::F32.name(), "float32");
    /// ```
    pub fn name(self) -> &'static str {
        self.name_const()
    }

    pub(crate) const fn name_const(self) -> &'static str {
        match self {
            Dtype::F32 => "float32",
            Dtype::F64 => "float64",
        }
    }
}

/// A floating-point element type. All optimizer state and arithmetic happen in it,
/// as in the frameworks (a `float32` parameter has `float32` state).
///
/// Hyperparameters are `f64` and are rounded to `T` once per step, after any scalar
/// derived from them (`1 - decay`, `1 - beta^t`, ...) has been formed in `f64`, which is
/// what PyTorch, optax and Keras do with Python floats.
///
/// ```
/// use rmsprop::Float;
/// assert_eq!(<f32 as Float>::from_f64(0.1), 0.1f32);
/// assert_eq!(4.0f64.sqrt(), 2.0);
/// ```
pub trait Float:
    Copy
    + Debug
    + Default
    + PartialOrd
    + Send
    + Sync
    + 'static
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
{
    /// The dtype tag of this type.
    const DTYPE: Dtype;
    /// 0.
    const ZERO: Self;
    /// 1.
    const ONE: Self;
    /// Nearest value of this type (round to nearest even).
    fn from_f64(v: f64) -> Self;
    /// Exact widening to `f64`.
    fn to_f64(self) -> f64;
    /// Correctly rounded square root.
    fn sqrt(self) -> Self;
    /// `self * a + b` with one rounding (a fused multiply-add; a hardware instruction where
    /// the loop is compiled with FMA, the exact software `fma` elsewhere: the same bits).
    fn mul_add(self, a: Self, b: Self) -> Self;
    /// Neither infinite nor NaN.
    fn is_finite(self) -> bool;
    /// Larger of the two (IEEE `maxNum`).
    fn max(self, other: Self) -> Self;
    /// Smaller of the two (IEEE `minNum`).
    fn min(self, other: Self) -> Self;
    /// Little-endian bytes, for checkpoints.
    fn write_le(self, out: &mut Vec<u8>);
    /// Reads one value from little-endian bytes of length `size_of::<Self>()`.
    fn read_le(bytes: &[u8]) -> Self;
}

macro_rules! impl_float {
    ($t:ty, $dtype:expr) => {
        impl Float for $t {
            const DTYPE: Dtype = $dtype;
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            #[inline(always)]
            fn from_f64(v: f64) -> Self {
                v as $t
            }
            #[inline(always)]
            fn to_f64(self) -> f64 {
                self as f64
            }
            #[inline(always)]
            fn sqrt(self) -> Self {
                <$t>::sqrt(self)
            }
            #[inline(always)]
            fn mul_add(self, a: Self, b: Self) -> Self {
                <$t>::mul_add(self, a, b)
            }
            #[inline(always)]
            fn is_finite(self) -> bool {
                <$t>::is_finite(self)
            }
            #[inline(always)]
            fn max(self, other: Self) -> Self {
                <$t>::max(self, other)
            }
            #[inline(always)]
            fn min(self, other: Self) -> Self {
                <$t>::min(self, other)
            }
            fn write_le(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
            fn read_le(bytes: &[u8]) -> Self {
                let mut a = [0u8; std::mem::size_of::<$t>()];
                a.copy_from_slice(bytes);
                <$t>::from_le_bytes(a)
            }
        }
    };
}

impl_float!(f32, Dtype::F32);
impl_float!(f64, Dtype::F64);

/// A parameter element type: stored as itself, computed in [`Param::Acc`]. `f32` and
/// `f64` compute in themselves; the half-precision types `half::bf16` and `half::f16`
/// compute, and keep their optimizer state, in `f32` — half-precision state is where
/// users meet NaN (a squared gradient of 1e-4 underflows in `f16`), so it is never used.
///
/// ```
/// use rmsprop::Param;
/// let h = half::bf16::from_f32(1.5);
/// assert_eq!(h.load(), 1.5f32);
/// assert_eq!(<half::bf16 as Param>::store(1.5f32), h);
/// ```
///
/// The trait is sealed: the optimizers' loops for these four types are compiled once, in
/// this crate, rather than again in every crate that steps an optimizer.
pub trait Param: Copy + Debug + Default + Send + Sync + 'static + crate::optim::Planner {
    /// The type arithmetic and optimizer state use.
    type Acc: Float;
    /// The name frameworks use (`"bfloat16"`, `"float16"`, ...).
    const NAME: &'static str;
    /// Widens to the arithmetic type (exact).
    fn load(self) -> Self::Acc;
    /// Rounds to nearest (ties to even) from the arithmetic type.
    fn store(v: Self::Acc) -> Self;
    /// Half the gap between the two largest finite values: a finite value moved by less
    /// than this stays finite once rounded (2^103 for `f32`, 16 for `float16`).
    const HALF_GAP_AT_MAX: f64;
}

macro_rules! impl_param_self {
    ($t:ty) => {
        impl Param for $t {
            type Acc = $t;
            const NAME: &'static str = <$t as Float>::DTYPE.name_const();
            const HALF_GAP_AT_MAX: f64 = (<$t>::MAX as f64) * (<$t>::EPSILON as f64) / 4.0;
            #[inline(always)]
            fn load(self) -> $t {
                self
            }
            #[inline(always)]
            fn store(v: $t) -> $t {
                v
            }
        }
    };
}
impl_param_self!(f32);
impl_param_self!(f64);

macro_rules! impl_param_half {
    ($t:ty, $name:expr) => {
        impl Param for $t {
            type Acc = f32;
            const NAME: &'static str = $name;
            const HALF_GAP_AT_MAX: f64 = <$t>::MAX.to_f64_const() * <$t>::EPSILON.to_f64_const() / 4.0;
            #[inline(always)]
            fn load(self) -> f32 {
                self.to_f32()
            }
            #[inline(always)]
            fn store(v: f32) -> $t {
                <$t>::from_f32(v)
            }
        }
    };
}
impl_param_half!(half::bf16, "bfloat16");
impl_param_half!(half::f16, "float16");
