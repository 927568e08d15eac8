//! Shared by the worker tests: the worker process on the simulators ([`process`]) and
//! the failure drills' traffic ([`drill`]).

mod drill;
mod process;

pub use drill::*;
pub use process::*;
