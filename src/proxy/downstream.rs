//! How a client reached the proxy, as the request path needs it, and what its connection has
//! in progress.

use crate::tls::TlsInfo;
use http::{HeaderValue, Version};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// How the client reached us, for `X-Forwarded-*`; built once per connection.
#[derive(Debug, Clone)]
pub struct Downstream {
    /// The client's address.
    pub peer: SocketAddr,
    /// What the TLS handshake negotiated, if the client connection is TLS.
    pub tls: Option<Arc<TlsInfo>>,
    /// The client's IP as a header value, formatted once per connection rather than per request.
    pub forwarded_for: HeaderValue,
    /// `Strict-Transport-Security` for every response, when the listener sends it.
    pub hsts: Option<HeaderValue>,
    /// `Alt-Svc` for every response, when the listener serves HTTP/3 too.
    pub alt_svc: Option<HeaderValue>,
    /// The listener's trusted proxies, when the peer is one of them: its requests' forwarding
    /// headers then name the client.
    pub trusted_proxies: Option<Arc<[ipnet::IpNet]>>,
    /// The address the client connected to (the PROXY protocol's destination when the
    /// listener takes one), for pools that send the PROXY protocol.
    pub local: Option<SocketAddr>,
}

impl Downstream {
    /// Notes `trusted` as the listener's trusted proxies, if the peer is one of them.
    pub fn trusting(mut self, trusted: &Arc<[ipnet::IpNet]>) -> Self {
        if crate::route::client::is_trusted(trusted, self.peer.ip()) {
            self.trusted_proxies = Some(Arc::clone(trusted));
        }
        self
    }

    /// The downstream of a connection from `peer`.
    pub fn new(peer: SocketAddr, tls: Option<Arc<TlsInfo>>) -> Self {
        let forwarded_for = HeaderValue::from_str(&peer.ip().to_string())
            .expect("an IP address is a valid header value");
        Self {
            peer,
            tls,
            forwarded_for,
            hsts: None,
            alt_svc: None,
            trusted_proxies: None,
            local: None,
        }
    }
}

/// How many requests one client connection has begun and finished, so its idle check can tell
/// a quiet connection from a slow response. A request finishes when its response body ends
/// (or is dropped), not when its headers go out, so a long download is never "quiet".
#[derive(Debug, Default)]
pub struct ConnActivity {
    started: AtomicU64,
    finished: AtomicU64,
    http2: AtomicBool,
}

impl ConnActivity {
    /// Counts a request of `version` as begun until the returned guard is dropped.
    pub fn begin(self: &Arc<Self>, version: Version) -> ActiveRequest {
        // Relaxed: these values are only read by the connection's own idle check, which needs
        // no ordering with the requests' other memory.
        self.started.fetch_add(1, Ordering::Relaxed);
        if version == Version::HTTP_2 {
            self.http2.store(true, Ordering::Relaxed);
        }
        ActiveRequest(Arc::clone(self))
    }

    /// Requests begun and finished so far.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.started.load(Ordering::Relaxed),
            self.finished.load(Ordering::Relaxed),
        )
    }

    /// Whether the connection has carried an HTTP/2 request.
    pub fn is_http2(&self) -> bool {
        self.http2.load(Ordering::Relaxed)
    }
}

/// A request in progress on its connection; finished when dropped.
#[derive(Debug)]
pub struct ActiveRequest(Arc<ConnActivity>);

impl Drop for ActiveRequest {
    fn drop(&mut self) {
        self.0.finished.fetch_add(1, Ordering::Relaxed);
    }
}
