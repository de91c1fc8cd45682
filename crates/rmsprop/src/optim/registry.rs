//! The family in one table. Each optimizer is a [`Rule`] in a file of its own (its
//! configuration, presets, named hyperparameters, update and tests); one line of
//! [`registry!`] per optimizer generates [`OptimizerConfig`], its names, its serde tag,
//! its dispatch and the planned kernel of a step. A new optimizer is one new file and one
//! line here.

use super::guard::{Inputs, Reach};
use super::{Ctx, OptimizerConfig, Slot, flavors_of};
use crate::by_name::{Field, Value};
use crate::common::Common;
use crate::error::{Error, Result};
use crate::flavor::Flavor;
use crate::float::{Float, Param};
use crate::kernel::Planned;

/// What an optimizer of the family is to the rest of the crate.
pub(crate) trait Rule: Clone + Default + Into<OptimizerConfig> + Sized + 'static {
    /// The per-step scalars its loop reads, in the arithmetic type.
    type Scalars<T: Float>: Copy;
    /// The hyperparameters with names (see [`by_name`](crate::by_name)), in the order a
    /// configuration is described.
    const FIELDS: &'static [Field<Self>];
    /// Other names it goes by, as presets (`adamw`).
    const ALSO: &'static [&'static str] = &[];

    /// The shared hyperparameters.
    fn common(&self) -> &Common;
    /// The shared hyperparameters, mutably.
    fn common_mut(&mut self) -> &mut Common;
    /// Checks every hyperparameter; the error names the first bad one.
    fn validate(&self) -> Result<()>;
    /// The state tensors it keeps per parameter tensor, in its loop's order.
    fn slots(&self) -> Vec<Slot>;
    /// Bounds on what one step can reach (see [`guard`](super::guard)).
    fn reach<T: Float>(&self, inputs: &Inputs) -> Option<Reach>;
    /// The step's loop for this configuration and its scalars, planned once per group.
    fn kernel<P: Param>(&self, ctx: &Ctx<P::Acc>) -> Planned<Self::Scalars<P::Acc>, P>;
    /// `flavor`'s defaults for `name` (its family name or one of [`Self::ALSO`]), as
    /// written ([`Flavor::config`] adds the flavour's rounding); `None` where the framework
    /// has no such optimizer or this crate does not reproduce it.
    fn preset(flavor: Flavor, name: &str) -> Option<Self>;
    /// True when [`kernel`](Self::kernel) does not read the step number, so one plan
    /// serves every step with the same learning rate.
    fn steady(&self) -> bool {
        false
    }
    /// The name of this configuration when not the family's (`adamw`).
    fn variant_name(&self) -> Option<&'static str> {
        None
    }
}

impl OptimizerConfig {
    /// The state tensors this configuration keeps per parameter tensor, by PyTorch name.
    pub fn state_names(&self) -> Vec<&'static str> {
        self.slots().into_iter().filter(|s| s.used).map(|s| s.name).collect()
    }

    /// Every name a hyperparameter of this optimizer is read by (besides the shared ones).
    pub(crate) fn field_names(&self) -> Vec<&'static str> {
        self.each_field(|fields| fields.iter().flat_map(|names| names.iter().copied()).collect())
    }
}

/// Sets the field of `fields` called `k` on `c`; false if none is.
pub(super) fn set_in<C>(fields: &[Field<C>], c: &mut C, k: &str, v: &Value) -> Result<bool> {
    match fields.iter().find(|f| f.names.contains(&k)) {
        Some(f) => (f.set)(c, k, v).map(|()| true),
        None => Ok(false),
    }
}

/// Every described field of `c`, under its first name.
pub(super) fn describe<C>(fields: &[Field<C>], c: &C) -> Vec<(&'static str, Value)> {
    fields.iter().filter_map(|f| f.get.map(|get| (f.names[0], get(c)))).collect()
}

#[cold]
pub(super) fn no_preset(flavor: Flavor, name: &str) -> Error {
    Error::UnknownName {
        kind: "preset",
        name: format!("{}.{name}", flavor.name()),
        known: format!("{name}: {}", flavors_of(name).join(", ")),
    }
}

/// Generates, from one line per optimizer (`"name" => Variant(module::Type)`), in the
/// module it is invoked in (`optim`): the optimizer's module and its re-export, the enum of
/// configurations with its serde tag, its dispatch, the conversions into it, the names and
/// the planned kernel of a step.
macro_rules! registry {
    ($($name:literal => $variant:ident($module:ident::$ty:ident)),* $(,)?) => {
        $(
            pub mod $module;
            pub use $module::$ty;
        )*

        /// Every optimizer's configuration type, for the crate root to re-export.
        pub mod family {
            pub use super::{$($ty),*};
        }

        /// One optimizer of the family with its hyperparameters.
        ///
        /// ```
        /// use rmsprop::{OptimizerConfig, RmsProp};
        /// let c: OptimizerConfig = RmsProp::default().into();
        /// assert_eq!(c.name(), "rmsprop");
        /// ```
        /// New optimizers join the family: match with a `_` arm.
        #[derive(Clone, Debug, PartialEq, ::serde::Serialize, ::serde::Deserialize)]
        #[serde(tag = "optimizer")]
        #[non_exhaustive]
        pub enum OptimizerConfig {
            $(
                #[doc = concat!("[`", stringify!($ty), "`]")]
                #[serde(rename = $name)]
                $variant($ty),
            )*
        }

        $(
            impl From<$ty> for OptimizerConfig {
                fn from(c: $ty) -> Self {
                    OptimizerConfig::$variant(c)
                }
            }
        )*

        /// Every optimizer's family name, in the registry's order.
        #[cfg(test)]
        const FAMILIES: &[&str] = &[$($name),*];

        impl OptimizerConfig {
            /// The family name (`rmsprop`, `adagrad`, `sgd`, `adam`, `adadelta`, `yogi`), or
            /// the variant's (`adamw` for Adam with decoupled decay).
            pub fn name(&self) -> &'static str {
                match self {
                    $(OptimizerConfig::$variant(c) => c.variant_name().unwrap_or($name),)*
                }
            }

            /// The shared hyperparameters.
            pub fn common(&self) -> &$crate::Common {
                match self {
                    $(OptimizerConfig::$variant(c) => $crate::optim::Rule::common(c),)*
                }
            }

            /// The shared hyperparameters, mutably (e.g. to change the learning rate).
            pub fn common_mut(&mut self) -> &mut $crate::Common {
                match self {
                    $(OptimizerConfig::$variant(c) => $crate::optim::Rule::common_mut(c),)*
                }
            }

            /// Checks every hyperparameter; the error names the first bad one.
            pub fn validate(&self) -> $crate::Result<()> {
                match self {
                    $(OptimizerConfig::$variant(c) => $crate::optim::Rule::validate(c),)*
                }
            }

            pub(crate) fn slots(&self) -> Vec<$crate::optim::Slot> {
                match self {
                    $(OptimizerConfig::$variant(c) => $crate::optim::Rule::slots(c),)*
                }
            }

            /// Bounds on what a step of this group can reach (see `optim::guard`);
            /// `None` when they cannot exclude a non-finite result.
            pub(crate) fn reach<T: $crate::Float>(
                &self,
                inputs: &$crate::optim::guard::Inputs,
            ) -> Option<$crate::optim::guard::Reach> {
                match self {
                    $(OptimizerConfig::$variant(c) => $crate::optim::Rule::reach::<T>(c, inputs),)*
                }
            }

            /// True when the kernel planned for one step serves every later step with the
            /// same learning rate: no norm clipping (the norm changes) and nothing read
            /// from the step number.
            pub(crate) fn steady(&self) -> bool {
                self.common().clip_norm.is_none()
                    && match self {
                        $(OptimizerConfig::$variant(c) => $crate::optim::Rule::steady(c),)*
                    }
            }

            /// What a group runs at this step: its loop and scalars, planned once.
            pub(crate) fn kernel<P: $crate::Param>(&self, ctx: $crate::optim::Ctx<P::Acc>) -> Kernel<P> {
                match self {
                    $(OptimizerConfig::$variant(c) => Kernel::$variant($crate::optim::Rule::kernel(c, &ctx)),)*
                }
            }

            /// The named hyperparameters of this configuration's optimizer.
            pub(crate) fn each_field<R>(&self, f: impl FnOnce(&[&'static [&'static str]]) -> R) -> R {
                match self {
                    $(OptimizerConfig::$variant(_) => {
                        f(&<$ty as $crate::optim::Rule>::FIELDS.iter().map(|x| x.names).collect::<Vec<_>>())
                    })*
                }
            }

            /// Sets the named hyperparameter `k`; false if this optimizer has none by that name.
            pub(crate) fn set_field(&mut self, k: &str, v: &$crate::by_name::Value) -> $crate::Result<bool> {
                match self {
                    $(OptimizerConfig::$variant(c) => registry::set_in(<$ty as $crate::optim::Rule>::FIELDS, c, k, v),)*
                }
            }

            /// Every named hyperparameter with its value, under its first name.
            pub(crate) fn fields(&self) -> Vec<(&'static str, $crate::by_name::Value)> {
                match self {
                    $(OptimizerConfig::$variant(c) => registry::describe(<$ty as $crate::optim::Rule>::FIELDS, c),)*
                }
            }

            /// `flavor`'s preset of the optimizer called `name`, as written.
            pub(crate) fn preset(flavor: $crate::Flavor, name: &str) -> $crate::Result<Self> {
                $(
                    if name == $name || <$ty as $crate::optim::Rule>::ALSO.contains(&name) {
                        return <$ty as $crate::optim::Rule>::preset(flavor, name)
                            .map(Into::into)
                            .ok_or_else(|| registry::no_preset(flavor, name));
                    }
                )*
                Err($crate::Error::UnknownName { kind: "optimizer", name: name.into(), known: names().join(", ") })
            }
        }

        /// Every name an optimizer goes by: the families and their other names.
        pub(crate) fn names() -> Vec<&'static str> {
            let mut names = Vec::new();
            $(
                names.push($name);
                names.extend_from_slice(<$ty as $crate::optim::Rule>::ALSO);
            )*
            names
        }

        /// The flavours with a preset of `name`.
        pub(crate) fn flavors_of(name: &str) -> Vec<&'static str> {
            let has = |f: $crate::Flavor| -> bool {
                $(
                    if name == $name || <$ty as $crate::optim::Rule>::ALSO.contains(&name) {
                        return <$ty as $crate::optim::Rule>::preset(f, name).is_some();
                    }
                )*
                false
            };
            $crate::Flavor::ALL.iter().filter(|f| has(**f)).map(|f| f.name()).collect()
        }

        $crate::optim::registry::planner_for!(f32, f64, half::bf16, half::f16);

        /// What a step runs on one tensor's chunks, planned once per group (per tensor
        /// under per-tensor norm clipping, whose preprocessing differs from tensor to
        /// tensor).
        #[derive(Clone, Copy)]
        pub(crate) enum Kernel<P: $crate::Param> {
            $($variant($crate::kernel::Planned<<$ty as $crate::optim::Rule>::Scalars<P::Acc>, P>),)*
        }

        impl<P: $crate::Param> Kernel<P> {
            /// The step on arrays `a`.
            ///
            /// # Safety
            /// As [`Arrays::slices`]($crate::kernel::Arrays::slices).
            #[inline(always)]
            pub(crate) unsafe fn run_on(&self, a: $crate::kernel::Arrays<P::Acc, P>) {
                match self {
                    // SAFETY: the caller's.
                    $(Kernel::$variant(k) => unsafe { k.run_arrays(a) },)*
                }
            }

            /// The smallest denominator of the step on arrays `a`, by the loop's read-only
            /// pass ([`Probe`]($crate::kernel::Probe)); `None` when it has none.
            ///
            /// # Safety
            /// As [`Arrays::slices`]($crate::kernel::Arrays::slices); nothing is written.
            #[inline(always)]
            pub(crate) unsafe fn probe_on(&self, a: $crate::kernel::Arrays<P::Acc, P>) -> Option<f64> {
                match self {
                    // SAFETY: the caller's.
                    $(Kernel::$variant(k) => unsafe { k.probe_arrays(a) },)*
                }
            }

            /// Whether the loop has a read-only pass ([`probe_on`](Self::probe_on)).
            pub(crate) fn probes(&self) -> bool {
                match self {
                    $(Kernel::$variant(k) => k.probes(),)*
                }
            }
        }
    };
}

pub(super) use registry;

/// Implements [`Planner`](super::Planner) for each element type, as a function of its
/// own: its loops are then compiled here, once, and a crate that steps an optimizer calls
/// them rather than compiling them again.
macro_rules! planner_for {
    ($($p:ty),*) => {
        $(
            // The types are the crate's own: no other crate can name `Planner` to call it.
            #[allow(private_interfaces)]
            impl $crate::optim::Planner for $p {
                fn plan(config: &OptimizerConfig, ctx: $crate::optim::Ctx<<$p as $crate::Param>::Acc>) -> Kernel<$p> {
                    config.kernel(ctx)
                }
            }
        )*
    };
}
pub(super) use planner_for;

#[cfg(test)]
mod tests {
    use super::super::{FAMILIES, flavors_of, names};
    use super::*;

    /// Every name and alias gives a preset for at least one flavour, and the serde tag of a
    /// configuration is its family name.
    #[test]
    fn every_name_has_a_preset_and_a_tag() {
        for name in names() {
            assert!(!flavors_of(name).is_empty(), "{name} has no preset");
        }
        for name in FAMILIES {
            let flavor = Flavor::ALL.iter().copied().find(|f| OptimizerConfig::preset(*f, name).is_ok()).unwrap();
            let c = OptimizerConfig::preset(flavor, name).unwrap();
            let json = serde_json::to_value(&c).unwrap();
            assert_eq!(json["optimizer"], *name);
            assert_eq!(serde_json::from_value::<OptimizerConfig>(json).unwrap(), c);
        }
    }
}
