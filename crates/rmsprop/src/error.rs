//! The one error type of the crate.

use std::path::PathBuf;

/// Everything that can go wrong, each saying what was wrong, what was expected, and where.
///
/// A step that returns an error has changed nothing: parameters and state are
/// bit-identical to what they were before the call.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A hyperparameter has a value outside its domain.
    #[error("invalid hyperparameter {optimizer}.{name} = {value}: expected {expected}")]
    InvalidHyperparameter {
        /// Optimizer family (`"rmsprop"`, ...).
        optimizer: &'static str,
        /// Hyperparameter name.
        name: &'static str,
        /// The value given.
        value: String,
        /// What would have been accepted.
        expected: &'static str,
    },
    /// Two hyperparameters that cannot go together (e.g. Nesterov without momentum).
    #[error("invalid {optimizer} configuration: {reason}")]
    InvalidCombination {
        /// Optimizer family.
        optimizer: &'static str,
        /// What is wrong, in words.
        reason: String,
    },
    /// A name given to the by-name constructor that the optimizer does not have.
    #[error("unknown hyperparameter {name:?} for {optimizer}{}: expected one of {known}", did_you_mean(name, known))]
    UnknownHyperparameter {
        /// Optimizer family.
        optimizer: String,
        /// The unknown name.
        name: String,
        /// The accepted names, comma-separated.
        known: String,
    },
    /// An optimizer or flavour name that does not exist.
    #[error("unknown {kind} {name:?}{}: expected one of {known}", did_you_mean(name, known))]
    UnknownName {
        /// `"optimizer"`, `"flavor"`, ...
        kind: &'static str,
        /// The unknown name.
        name: String,
        /// The accepted names, comma-separated.
        known: String,
    },
    /// A by-name hyperparameter of the wrong type (a string where a number was expected, ...).
    #[error("hyperparameter {name:?} has the wrong type: expected {expected}, got {got}")]
    WrongType {
        /// Hyperparameter name.
        name: String,
        /// Expected type.
        expected: &'static str,
        /// What was given.
        got: String,
    },
    /// A gradient or parameter slice whose length is not that of its tensor.
    #[error("{what} of tensor {tensor:?} has {got} elements, expected {expected} (shape {shape:?})")]
    LengthMismatch {
        /// `"gradient"` or `"parameter"`.
        what: &'static str,
        /// Tensor name.
        tensor: String,
        /// Expected element count.
        expected: usize,
        /// Given element count.
        got: usize,
        /// The tensor's shape.
        shape: Vec<usize>,
    },
    /// The number of parameter or gradient slices differs from the number of tensors.
    #[error("step got {got} {what} tensors, expected {expected} ({names})")]
    TensorCountMismatch {
        /// `"gradient"` or `"parameter"`.
        what: &'static str,
        /// Expected count.
        expected: usize,
        /// Given count.
        got: usize,
        /// The tensor names in order.
        names: String,
    },
    /// A tensor whose element count overflows, or whose state cannot be allocated.
    #[error("tensor {tensor:?} of shape {shape:?}: {reason}")]
    TooLarge {
        /// Tensor name.
        tensor: String,
        /// Its shape.
        shape: Vec<usize>,
        /// What does not fit.
        reason: String,
    },
    /// A parameter group index past the last group.
    #[error("no parameter group {index}: the optimizer has {groups} (0 to {last})", last = groups.saturating_sub(1))]
    NoGroup {
        /// The index asked for.
        index: usize,
        /// How many groups there are.
        groups: usize,
    },
    /// A learning-rate schedule that gives a rate outside `[0, ∞)`.
    #[error(
        "the schedule gives group {group} a learning rate of {lr} at step {step}: expected a finite number >= 0; \
         nothing was updated"
    )]
    InvalidSchedule {
        /// The group.
        group: usize,
        /// The step (1-based).
        step: u64,
        /// The rate it gave.
        lr: f64,
    },
    /// A tensor name registered twice.
    #[error("tensor name {0:?} is used twice")]
    DuplicateTensor(String),
    /// A gradient holds NaN or an infinity (with [`NonFinitePolicy::Error`](crate::NonFinitePolicy)).
    #[error("non-finite gradient in tensor {tensor:?} at element {index}: {value}; nothing was updated")]
    NonFiniteGradient {
        /// Tensor name.
        tensor: String,
        /// Flat index of the first bad element.
        index: usize,
        /// Its value, printed.
        value: String,
    },
    /// A step would have made a parameter or a state value NaN or infinite from finite
    /// inputs (with [`NonFinitePolicy::Error`](crate::NonFinitePolicy)): an overflow of the
    /// arithmetic type, or a denominator of 0.
    #[error(
        "step {step} would make {quantity} of tensor {tensor:?} non-finite at element {index} (a value beyond the \
         arithmetic type's range, or 0 / 0); nothing was updated"
    )]
    NonFiniteResult {
        /// The step (1-based) that was refused.
        step: u64,
        /// Tensor name.
        tensor: String,
        /// Flat index of the first bad element.
        index: usize,
        /// `"the parameter"` or the state's name (`"square_avg"`, ...).
        quantity: String,
    },
    /// Another process of a [`World`](crate::World) found a reason to refuse the step, so
    /// this one refused it too.
    #[error("step {step} refused: {processes} other process(es) found {reason}; nothing was updated")]
    RefusedElsewhere {
        /// The step that was refused (1-based).
        step: u64,
        /// How many processes found it.
        processes: usize,
        /// `"an invalid input"`, `"a non-finite gradient"` or `"a non-finite result"`.
        reason: &'static str,
    },
    /// The processes of a [`World`](crate::World) could not exchange what a step needs (a
    /// process is gone); nothing was updated on this one.
    #[error("the processes could not agree on a step: {0}")]
    World(String),
    /// A checkpoint that cannot be read or does not fit this optimizer.
    #[error("checkpoint {path}: {reason}")]
    Checkpoint {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// State given to [`Optimizer::set_state`](crate::Optimizer::set_state) that does not
    /// fit the optimizer; nothing was changed.
    #[error("state {what}: {reason}; nothing was changed")]
    InvalidState {
        /// The tensor and slot (`"w.square_avg"`), or what else is wrong.
        what: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A tensor that [`Tensors::with`](crate::Tensors::with) could not open for a step.
    #[error("tensor {tensor:?} could not be opened for the step: {reason}")]
    Access {
        /// The tensor.
        tensor: String,
        /// Why, in the words of whoever holds it.
        reason: String,
    },
    /// An I/O error, with the file it concerns.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error (in the message, so not also a `source`: said once).
        error: std::io::Error,
    },
    /// A golden-vector file that cannot be read.
    #[error("golden file {path}: {reason}")]
    Golden {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// ` (did you mean "rmsprop"?)` where one of the comma-separated `known` names is within a
/// few edits of `name` (optimal string alignment: a swap of two letters is one edit; case
/// ignored); every name at the least distance is offered (`gamma3`: `"gamma", "gamma1" or
/// "gamma2"`). A name with a prefix (`pytorch.rmsprp`) is compared by its last part and
/// suggested with its prefix. Empty where nothing is close.
fn did_you_mean(name: &str, known: &str) -> String {
    let (prefix, last) = match name.rsplit_once('.') {
        Some((p, l)) if !known.contains('.') => (format!("{p}."), l),
        _ => (String::new(), name),
    };
    let last = last.to_ascii_lowercase();
    let close: Vec<(usize, &str)> = known
        .split(", ")
        .map(|k| (strsim::osa_distance(&last, &k.to_ascii_lowercase()), k))
        .filter(|(d, k)| *d > 0 && *d <= (k.len() / 3).max(1))
        .collect();
    let Some(least) = close.iter().map(|(d, _)| *d).min() else { return String::new() };
    let mut best: Vec<String> =
        close.iter().filter(|(d, _)| *d == least).map(|(_, k)| format!("{:?}", format!("{prefix}{k}"))).collect();
    best.dedup();
    let last = best.pop().unwrap_or_default();
    match best.is_empty() {
        true => format!(" (did you mean {last}?)"),
        false => format!(" (did you mean {} or {last}?)", best.join(", ")),
    }
}
