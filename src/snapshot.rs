//! The immutable view of routes and pools that the data plane reads, rebuilt and swapped whole.

use crate::balance::Balancer;
use crate::config::{Config, Timeouts};
use crate::route::Router;
use crate::upstream::BackendState;
use std::collections::HashMap;
use std::sync::Arc;

/// Everything one request needs to be routed and balanced.
#[derive(Debug)]
pub struct Snapshot {
    /// Host and path to pool.
    pub router: Router,
    /// Pools, indexed by `Route::pool`.
    pub pools: Vec<Pool>,
    /// Timeouts in force.
    pub timeouts: Timeouts,
}

/// A pool of backends and the balancer built for exactly that list.
#[derive(Debug)]
pub struct Pool {
    /// The pool's name.
    pub name: Arc<str>,
    /// Backends in config order; `balancer` indexes into this.
    pub backends: Vec<Arc<BackendState>>,
    /// Chooses among `backends`.
    pub balancer: Balancer,
}

impl Pool {
    /// The backend for the next request, if any can take it.
    pub fn pick(&self) -> Option<&Arc<BackendState>> {
        self.balancer
            .pick(&self.backends)
            .map(|i| &self.backends[i])
    }
}

impl Snapshot {
    /// Builds a snapshot with fresh backend state from a validated config.
    pub fn build(config: &Config) -> Self {
        let pools: Vec<Pool> = config
            .pools
            .iter()
            .map(|pool| {
                let name: Arc<str> = pool.name.as_str().into();
                let backends: Vec<Arc<BackendState>> = pool
                    .backends
                    .iter()
                    .map(|b| Arc::new(BackendState::new(Arc::clone(&name), b)))
                    .collect();
                let weights: Vec<u32> = backends.iter().map(|b| b.weight).collect();
                Pool {
                    name,
                    balancer: Balancer::new(pool.algorithm, &weights),
                    backends,
                }
            })
            .collect();
        let pool_index: HashMap<&str, usize> = pools
            .iter()
            .enumerate()
            .map(|(i, p)| (&*p.name, i))
            .collect();
        let router = Router::new(&config.routes, |name| pool_index.get(name).copied());
        Self {
            router,
            pools,
            timeouts: config.timeouts,
        }
    }
}
