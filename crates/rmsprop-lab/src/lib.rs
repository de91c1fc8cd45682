//! The RMSProp chapter of *Dive into Deep Learning* (§12.8, MXNet edition) as a library:
//! the airfoil data, the linear-regression model and its training loop, the 2-D
//! objectives. The `rmsprop` command prints and plots what this computes.

#![warn(missing_docs)]

pub mod data;
pub mod plot;
pub mod sweep;
pub mod trace2d;
pub mod train;
