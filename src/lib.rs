//! Switchyard: a load-balancing HTTP reverse proxy.
//!
//! The data plane (`server`, `proxy`) reads an immutable [`snapshot::Snapshot`] through
//! `arc-swap` and per-backend atomics; nothing on the request path takes a lock.

pub mod access_log;
pub mod acme;
pub mod admin;
pub mod balance;
pub mod body;
pub mod config;
pub mod control;
pub mod demo;
pub mod discovery;
mod dormant;
pub mod error;
pub mod events;
pub mod fleet;
pub mod fleet_limits;
pub mod fleet_sticky;
pub mod gateway;
pub mod health;
pub mod keeper;
pub mod listeners;
pub mod live_certs;
pub mod metrics;
pub mod notify;
pub mod ocsp;
pub mod proxy;
mod redis_link;
pub mod reload;
pub mod route;
pub mod server;
pub mod shutdown;
pub mod snapshot;
pub mod tls;
pub mod upstream;
