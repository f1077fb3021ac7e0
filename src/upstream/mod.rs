//! Upstream backends: who they are and the live state the data plane reads through atomics.

mod state;

pub use state::{BackendState, InFlightGuard};
