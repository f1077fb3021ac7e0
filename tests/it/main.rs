//! The integration tests: one crate, so the support code and every dependency are compiled and
//! linked once. A module per feature; each starts real upstreams and the real proxy on
//! `127.0.0.1` ephemeral ports and talks to them over sockets (`support/` has the harness).
//! Run one feature with `bash tests/run.sh failover::` (a name filter).

mod support;

mod access;
mod access_log_formats;
mod acme;
mod acme_config;
mod admin_api;
mod admin_guard;
mod admission;
mod architecture;
mod balancing;
mod browser_routes;
mod browser_sticky;
mod client_identity;
mod compression;
mod config_files;
mod control_plane;
mod discovery_dns;
mod discovery_redis;
mod drain;
mod edge;
mod edge_framing;
mod failover;
mod fleet;
mod fleet_limits;
mod forwarding;
mod grpc;
mod hashing;
mod health;
mod http3;
mod http3_lifecycle;
mod jwt;
mod observability;
mod ocsp;
mod parking;
mod proxy_protocol_out;
mod rate_limits;
mod reload;
mod route_policies;
mod routing;
mod signals;
mod status_page;
mod sticky;
mod streaming;
mod tls;
mod tls_config;
mod tls_reload;
mod upstream_pool;
mod upstream_tls;
mod webhooks;
mod websocket;
