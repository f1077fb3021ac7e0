//! Upstream backends: who they are and the live state the data plane reads through atomics.

pub mod admission;
mod clock;
mod connect_log;
pub mod endpoint;
pub mod pool;
mod retry_budget;
mod state;
mod status;
pub mod sticky;
pub mod sticky_keys;

pub use crate::error::Failure;
pub use crate::events::{State, timestamp};
pub use clock::nanos_now;
pub use connect_log::ConnectFailureLog;
pub use retry_budget::RetryBudget;
pub use state::{BackendKey, BackendState, Exclusion, InFlightGuard, Mark, OutlierReport};
pub use status::{BackendStatus, Drain, MAX_DRAIN_DEADLINE};
