//! DNS discovery: A/AAAA records (every address a backend on the configured port) or SRV
//! records (targets' addresses on the records' ports, the records' weights as weights),
//! resolved again when the records' TTL runs out, within bounds.

use super::Reporter;
use crate::config::BackendConfig;
use hickory_resolver::config::{
    LookupIpStrategy, NameServerConfig, NameServerConfigGroup, ResolverConfig,
};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::{ResolveError, TokioResolver};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The shortest time between two resolutions, whatever the TTL says.
const MIN_REFRESH: Duration = Duration::from_secs(1);

/// What is asked.
#[derive(Debug)]
pub(super) enum Query {
    /// A and AAAA records of `name`.
    Addresses { name: String, port: u16 },
    /// SRV records of `name`.
    Srv { name: String },
}

/// Resolves `query` until `stop`: again after the records' TTL, at least `MIN_REFRESH` and at
/// most `refresh` later. A failed resolution keeps the last known set.
pub(super) async fn follow(
    query: Query,
    server: Option<SocketAddr>,
    refresh: Duration,
    mut reporter: Reporter,
    stop: CancellationToken,
) {
    let resolver = match resolver(server) {
        Ok(resolver) => resolver,
        Err(err) => {
            reporter.failed(&err);
            return;
        }
    };
    loop {
        // A lookup in progress does not hold up shutdown.
        let found = tokio::select! {
            found = resolve(&resolver, &query) => found,
            () = stop.cancelled() => return,
        };
        let wait = match found {
            Ok((backends, valid_until)) => {
                reporter.found(backends);
                valid_until
                    .saturating_duration_since(Instant::now().into_std())
                    .clamp(MIN_REFRESH, refresh.max(MIN_REFRESH))
            }
            Err(err) => {
                reporter.failed(&err);
                refresh.min(Duration::from_secs(5)).max(MIN_REFRESH)
            }
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = stop.cancelled() => return,
        }
    }
}

fn resolver(server: Option<SocketAddr>) -> Result<TokioResolver, ResolveError> {
    let mut builder = match server {
        Some(address) => {
            let servers = NameServerConfigGroup::from(vec![
                NameServerConfig::new(address, Protocol::Udp),
                NameServerConfig::new(address, Protocol::Tcp),
            ]);
            TokioResolver::builder_with_config(
                ResolverConfig::from_parts(None, vec![], servers),
                TokioConnectionProvider::default(),
            )
        }
        None => TokioResolver::builder_tokio()?,
    };
    let options = builder.options_mut();
    options.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
    // Every refresh asks the server: the records' TTL decides when, not a cache.
    options.cache_size = 0;
    options.timeout = Duration::from_secs(2);
    options.attempts = 2;
    Ok(builder.build())
}

/// The backends `query` names now, and until when the answer holds.
async fn resolve(
    resolver: &TokioResolver,
    query: &Query,
) -> Result<(Vec<BackendConfig>, std::time::Instant), ResolveError> {
    match query {
        Query::Addresses { name, port } => {
            let found = resolver.lookup_ip(name.as_str()).await?;
            let backends = found
                .iter()
                .filter_map(|ip| super::backend(&SocketAddr::new(ip, *port).to_string(), 1))
                .collect();
            Ok((backends, found.valid_until()))
        }
        Query::Srv { name } => {
            let found = resolver.srv_lookup(name.as_str()).await?;
            let mut valid_until = found.as_lookup().valid_until();
            // Lower priorities are backups: only the most preferred group is served.
            let best = found.iter().map(|srv| srv.priority()).min();
            let mut backends = Vec::new();
            for srv in found.iter().filter(|srv| Some(srv.priority()) == best) {
                let target = srv.target().to_ascii();
                let addresses = resolver.lookup_ip(target.as_str()).await?;
                valid_until = valid_until.min(addresses.valid_until());
                let weight = u32::from(srv.weight());
                backends.extend(addresses.iter().filter_map(|ip| {
                    super::backend(&SocketAddr::new(ip, srv.port()).to_string(), weight)
                }));
            }
            Ok((backends, valid_until))
        }
    }
}
