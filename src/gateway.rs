//! Assembles a running proxy: the control plane, the data plane and its listeners, and the
//! shutdown that drains them.

use crate::config::Config;
use crate::control::Control;
use crate::proxy::{Proxy, forward};
use crate::server::{self, StartError};
use crate::snapshot::Snapshot;
use arc_swap::ArcSwap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A running proxy: its bound addresses and the handles to stop it.
#[derive(Debug)]
pub struct Gateway {
    local_addrs: Vec<(String, SocketAddr)>,
    snapshot: Arc<ArcSwap<Snapshot>>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

impl Gateway {
    /// Starts the control plane, binds every listener and starts serving `config`.
    pub async fn start(config: &Config) -> Result<Self, StartError> {
        let shutdown = CancellationToken::new();
        let tasks = TaskTracker::new();
        let (control, handle) = Control::new(config, tasks.clone(), shutdown.clone());
        let proxy = Arc::new(Proxy::new(
            Arc::clone(&handle.snapshot),
            forward::client(&config.timeouts),
            handle.outliers.clone(),
        ));
        let mut local_addrs = Vec::new();
        let mut listeners = Vec::new();
        for listener in &config.listeners {
            let bound = server::bind(listener).await?;
            let addr = bound.local_addr().map_err(|source| StartError::Bind {
                name: listener.name.clone(),
                bind: listener.bind,
                source,
            })?;
            local_addrs.push((listener.name.clone(), addr));
            listeners.push(bound);
        }
        // Serve only once every listener is bound, so a failed start leaves nothing running.
        tasks.spawn(control.run());
        for (bound, (name, addr)) in listeners.into_iter().zip(&local_addrs) {
            tracing::info!(listener = %name, %addr, "listening");
            server::serve(
                bound,
                Arc::clone(&proxy),
                config.timeouts,
                shutdown.clone(),
                &tasks,
            );
        }
        Ok(Self {
            local_addrs,
            snapshot: handle.snapshot,
            shutdown,
            tasks,
        })
    }

    /// The address each listener is bound to, by listener name (useful with port 0).
    pub fn local_addrs(&self) -> &[(String, SocketAddr)] {
        &self.local_addrs
    }

    /// The bound address of the first listener.
    pub fn first_addr(&self) -> SocketAddr {
        self.local_addrs
            .first()
            .map(|(_, addr)| *addr)
            .expect("validation requires at least one listener")
    }

    /// The snapshot the data plane reads.
    pub fn snapshot(&self) -> &Arc<ArcSwap<Snapshot>> {
        &self.snapshot
    }

    /// Stops accepting, lets in-flight requests finish for up to `grace`, then closes the rest.
    /// Returns whether everything finished within `grace`.
    pub async fn shutdown(self, grace: Duration) -> bool {
        self.shutdown.cancel();
        self.tasks.close();
        let drained = tokio::time::timeout(grace, self.tasks.wait()).await.is_ok();
        if !drained {
            tracing::warn!(
                ?grace,
                "connections still open after the shutdown grace period; closing them"
            );
        }
        drained
    }
}
