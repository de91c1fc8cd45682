//! The RMSProp chapter of *Dive into Deep Learning* (§12.8, MXNet edition) as a library:
//! the airfoil data, the linear-regression model and its training loop, the 2-D
//! objectives, the exercise sweep, figures and the HTML report. The `rmsprop` command
//! parses arguments and prints what this computes.

#![warn(missing_docs)]

pub mod bench;
pub mod chapter;
pub mod data;
pub mod divergence;
pub mod effective;
mod error;
pub mod explorer;
pub mod hyper;
#[cfg(feature = "candle")]
pub mod mlp;
pub mod plot;
pub mod report;
pub mod sweep;
pub mod trace2d;
pub mod train;

pub use error::LabError;
