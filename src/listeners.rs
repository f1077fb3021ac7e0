//! The set of client listeners, reconciled on reload. A listener is identified by its name: one
//! whose name and address stay keeps its socket and open connections, and only its settings
//! (TLS, certificates, redirect) are swapped for new connections; new ones are bound, removed
//! ones stop accepting and drain their connections.

use crate::config::{Challenge, ListenerConfig, Timeouts};
use crate::live_certs::LiveCerts;
use crate::metrics::Metrics;
use crate::proxy::Proxy;
use crate::server::http3::{self, Http3Settings};
use crate::server::{self, BindError, ListenerSettings};
use crate::tls::{Resumption, Terminator};
use arc_swap::ArcSwap;
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
    settings: Arc<ArcSwap<ListenerSettings>>,
    /// Session tickets and cache, kept while the listener lives.
    resumption: Option<Resumption>,
    /// The HTTP/3 endpoint beside it, if on.
    quic: Option<Quic>,
}

/// A listener's HTTP/3 endpoint: kept across reloads while its address stays.
#[derive(Debug)]
struct Quic {
    endpoint: quinn::Endpoint,
    addr: SocketAddr,
    stop: CancellationToken,
}

/// Starts serving HTTP/3 on `endpoint`, stopped with its listener.
fn serve_quic(
    (proxy, tasks): (&Arc<Proxy>, &TaskTracker),
    (endpoint, addr): (quinn::Endpoint, SocketAddr),
    settings: &Arc<ArcSwap<ListenerSettings>>,
    listener_stop: &CancellationToken,
) -> Quic {
    tracing::info!(%addr, "listening for HTTP/3");
    let stop = listener_stop.child_token();
    http3::serve(
        endpoint.clone(),
        Arc::clone(settings),
        Arc::clone(proxy),
        stop.clone(),
        tasks,
    );
    Quic {
        endpoint,
        addr,
        stop,
    }
}

/// What a listener will serve with once the reload is committed.
#[derive(Debug)]
struct Staged {
    config: ListenerConfig,
    settings: ListenerSettings,
    resumption: Option<Resumption>,
    /// A new HTTP/3 endpoint to serve, bound at `prepare`.
    quic: Option<(quinn::Endpoint, SocketAddr)>,
}

/// Listeners bound and set up by `prepare`, not yet serving.
#[derive(Debug)]
pub struct Prepared {
    keep: Vec<Staged>,
    bound: Vec<(Staged, TcpListener, SocketAddr)>,
}

/// The running listeners.
#[derive(Debug)]
pub struct Listeners {
    active: Vec<Active>,
    proxy: Arc<Proxy>,
    /// Certificates obtained while running, and the ACME challenges being answered.
    live: Arc<LiveCerts>,
    metrics: Metrics,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

impl Listeners {
    /// No listeners yet; `shutdown` stops them all.
    pub fn new(
        proxy: Arc<Proxy>,
        live: Arc<LiveCerts>,
        metrics: Metrics,
        shutdown: CancellationToken,
        tasks: TaskTracker,
    ) -> Self {
        Self {
            active: Vec::new(),
            proxy,
            live,
            metrics,
            shutdown,
            tasks,
        }
    }

    /// Binds the listeners `wanted` adds and builds every listener's settings, so a bind or TLS
    /// failure can reject a reload before anything changes. `timeouts` are the new config's.
    pub async fn prepare(
        &self,
        wanted: &[ListenerConfig],
        timeouts: &Timeouts,
    ) -> Result<Prepared, BindError> {
        let mut prepared = Prepared {
            keep: Vec::new(),
            bound: Vec::new(),
        };
        // The CA fetches http-01 answers from port 80, so every plain listener answers them.
        let http01 = wanted
            .iter()
            .filter_map(|l| l.tls.as_ref())
            .flat_map(|tls| &tls.acme)
            .any(|c| c.challenge == Challenge::Http01);
        for config in wanted {
            let running = self
                .active
                .iter()
                .find(|a| a.config.name == config.name && a.config.bind == config.bind);
            let resumption = running.and_then(|a| a.resumption.clone());
            let mut staged = self.stage(config, resumption, http01)?;
            if let Some(running) = running {
                self.stage_http3(&mut staged, running.addr, running.quic.as_ref(), timeouts)?;
                prepared.keep.push(staged);
                continue;
            }
            let listener = server::bind(config).await?;
            let addr = listener.local_addr().map_err(|source| BindError::Bind {
                name: config.name.clone(),
                bind: config.bind,
                source,
            })?;
            self.stage_http3(&mut staged, addr, None, timeouts)?;
            prepared.bound.push((staged, listener, addr));
        }
        Ok(prepared)
    }

    fn stage(
        &self,
        config: &ListenerConfig,
        resumption: Option<Resumption>,
        http01: bool,
    ) -> Result<Staged, BindError> {
        let tls_error = |source| BindError::Tls {
            name: config.name.clone(),
            source,
        };
        let (tls, resumption) = match &config.tls {
            Some(tls) => {
                let resumption = match resumption {
                    Some(resumption) => resumption,
                    None => Resumption::new().map_err(tls_error)?,
                };
                let terminator =
                    Terminator::new(&config.name, tls, &resumption, &self.live, &self.metrics)
                        .map_err(tls_error)?;
                (Some(terminator), Some(resumption))
            }
            None => (None, None),
        };
        Ok(Staged {
            config: config.clone(),
            settings: ListenerSettings {
                tls,
                redirect_to_https: config.redirect_to_https,
                // Checked as a header value when the config was read.
                hsts: config
                    .tls
                    .as_ref()
                    .and_then(|tls| tls.hsts.as_deref())
                    .and_then(|hsts| http::HeaderValue::from_str(hsts).ok()),
                trusted_proxies: config.trusted_proxies.as_slice().into(),
                proxy_protocol: config.proxy_protocol,
                acme_http01: (http01 && config.tls.is_none()).then(|| Arc::clone(&self.live)),
                http3: None,
            },
            resumption,
            quic: None,
        })
    }

    /// A TLS listener's HTTP/3, on the UDP port of `tcp`'s address unless configured: its
    /// settings, and its endpoint bound unless `running` is one on that address already.
    fn stage_http3(
        &self,
        staged: &mut Staged,
        tcp: SocketAddr,
        running: Option<&Quic>,
        timeouts: &Timeouts,
    ) -> Result<(), BindError> {
        let config = &staged.config;
        let (Some(http3), Some(terminator)) = (&config.http3, &staged.settings.tls) else {
            return Ok(());
        };
        // `tcp` is the bound address, so the port is never 0 (nor is a configured one).
        let wanted = SocketAddr::new(tcp.ip(), http3.port.unwrap_or(tcp.port()));
        let settings = Http3Settings::new(
            &config.name,
            wanted.port(),
            terminator,
            http3,
            timeouts,
            &self.metrics,
        )
        .map_err(|source| BindError::Tls {
            name: config.name.clone(),
            source,
        })?;
        if running.is_none_or(|quic| quic.addr != wanted) {
            let endpoint =
                http3::endpoint(wanted, &settings).map_err(|source| BindError::Bind {
                    name: format!("{} (HTTP/3, UDP)", config.name),
                    bind: wanted,
                    source,
                })?;
            staged.quic = Some((endpoint, wanted));
        }
        staged.settings.http3 = Some(settings);
        Ok(())
    }

    /// Starts serving the newly bound listeners, gives the kept ones their new settings and
    /// drains the ones no longer wanted; returns the names added and removed.
    pub fn commit(&mut self, prepared: Prepared) -> (Vec<String>, Vec<String>) {
        let mut removed = Vec::new();
        let mut keep = prepared.keep;
        let serving = (&self.proxy, &self.tasks);
        self.active.retain_mut(|a| {
            let Some(at) = keep.iter().position(|s| s.config.name == a.config.name) else {
                tracing::info!(listener = %a.config.name, addr = %a.addr, "listener removed: draining");
                a.stop.cancel();
                removed.push(a.config.name.clone());
                return false;
            };
            let staged = keep.swap_remove(at);
            let quic_config = staged.settings.http3.as_ref().map(|h| h.server_config.clone());
            a.settings.store(Arc::new(staged.settings));
            a.config = staged.config;
            a.resumption = staged.resumption;
            match (staged.quic, quic_config) {
                // A new address: the old endpoint drains, the new one serves.
                (Some(bound), _) => {
                    if let Some(old) = a.quic.take() {
                        old.stop.cancel();
                    }
                    a.quic = Some(serve_quic(serving, bound, &a.settings, &a.stop));
                }
                // The same address: new handshakes get the new TLS and limits; connections
                // keep theirs.
                (None, Some(config)) => {
                    if let Some(quic) = &a.quic {
                        quic.endpoint.set_server_config(Some(config));
                    }
                }
                (None, None) => {
                    if let Some(old) = a.quic.take() {
                        tracing::info!(listener = %a.config.name, addr = %old.addr, "HTTP/3 off: draining");
                        old.stop.cancel();
                    }
                }
            }
            true
        });
        let mut added = Vec::new();
        for (staged, listener, addr) in prepared.bound {
            let name = staged.config.name.clone();
            tracing::info!(listener = %name, %addr, tls = staged.config.tls.is_some(), "listening");
            let stop = self.shutdown.child_token();
            let settings = Arc::new(ArcSwap::from_pointee(staged.settings));
            server::serve(
                listener,
                Arc::clone(&settings),
                Arc::clone(&self.proxy),
                stop.clone(),
                &self.tasks,
            );
            let quic = staged
                .quic
                .map(|bound| serve_quic(serving, bound, &settings, &stop));
            added.push(name);
            self.active.push(Active {
                config: staged.config,
                addr,
                stop,
                settings,
                resumption: staged.resumption,
                quic,
            });
        }
        // What OCSP stapling looks after: every file certificate served now.
        let files = self
            .active
            .iter()
            .filter_map(|a| a.config.tls.as_ref())
            .flat_map(|tls| tls.certificates.iter().map(|c| Arc::clone(&c.key)))
            .collect();
        self.live.set_files(files);
        (added, removed)
    }

    /// Each listener's name and bound address.
    pub fn addrs(&self) -> Vec<(String, SocketAddr)> {
        self.active
            .iter()
            .map(|a| (a.config.name.clone(), a.addr))
            .collect()
    }

    /// Every certificate and key file the listeners serve from, to watch for changes.
    pub fn certificate_files(&self) -> Vec<std::path::PathBuf> {
        self.active
            .iter()
            .filter_map(|a| a.config.tls.as_ref())
            .flat_map(|tls| &tls.certificates)
            .flat_map(|c| [c.cert_path.clone(), c.key_path.clone()])
            .collect()
    }
}
