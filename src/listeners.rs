//! The set of client listeners, reconciled on reload: new ones are bound, removed ones stop
//! accepting and drain their connections, unchanged ones are never touched.

use crate::config::ListenerConfig;
use crate::proxy::Proxy;
use crate::server::{self, BindError};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(Debug)]
struct Active {
    config: ListenerConfig,
    addr: SocketAddr,
    stop: CancellationToken,
}

/// Listeners bound by `prepare`, not yet serving.
#[derive(Debug)]
pub struct Prepared {
    keep: Vec<ListenerConfig>,
    bound: Vec<(ListenerConfig, TcpListener, SocketAddr)>,
}

/// The running listeners.
#[derive(Debug)]
pub struct Listeners {
    active: Vec<Active>,
    proxy: Arc<Proxy>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

impl Listeners {
    /// No listeners yet; `shutdown` stops them all.
    pub fn new(proxy: Arc<Proxy>, shutdown: CancellationToken, tasks: TaskTracker) -> Self {
        Self {
            active: Vec::new(),
            proxy,
            shutdown,
            tasks,
        }
    }

    /// Binds the listeners `wanted` adds, so a bind failure can reject a reload before anything
    /// changes.
    pub async fn prepare(&self, wanted: &[ListenerConfig]) -> Result<Prepared, BindError> {
        let mut prepared = Prepared {
            keep: Vec::new(),
            bound: Vec::new(),
        };
        for config in wanted {
            if self.active.iter().any(|a| a.config == *config) {
                prepared.keep.push(config.clone());
                continue;
            }
            let listener = server::bind(config).await?;
            let addr = listener.local_addr().map_err(|source| BindError::Bind {
                name: config.name.clone(),
                bind: config.bind,
                source,
            })?;
            prepared.bound.push((config.clone(), listener, addr));
        }
        Ok(prepared)
    }

    /// Starts serving the newly bound listeners and drains the ones no longer wanted; returns
    /// the names added and removed.
    pub fn commit(&mut self, prepared: Prepared) -> (Vec<String>, Vec<String>) {
        let mut removed = Vec::new();
        self.active.retain(|a| {
            let keep = prepared.keep.contains(&a.config);
            if !keep {
                tracing::info!(listener = %a.config.name, addr = %a.addr, "listener removed: draining");
                a.stop.cancel();
                removed.push(a.config.name.clone());
            }
            keep
        });
        let mut added = Vec::new();
        for (config, listener, addr) in prepared.bound {
            tracing::info!(listener = %config.name, %addr, "listening");
            let stop = self.shutdown.child_token();
            server::serve(listener, Arc::clone(&self.proxy), stop.clone(), &self.tasks);
            added.push(config.name.clone());
            self.active.push(Active { config, addr, stop });
        }
        (added, removed)
    }

    /// Each listener's name and bound address.
    pub fn addrs(&self) -> Vec<(String, SocketAddr)> {
        self.active
            .iter()
            .map(|a| (a.config.name.clone(), a.addr))
            .collect()
    }
}
