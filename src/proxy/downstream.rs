//! How a client reached the proxy, as the request path needs it.

use crate::tls::TlsInfo;
use http::HeaderValue;
use std::net::SocketAddr;
use std::sync::Arc;

/// How the client reached us, for `X-Forwarded-*`; built once per connection.
#[derive(Debug, Clone)]
pub struct Downstream {
    /// The client's address.
    pub peer: SocketAddr,
    /// What the TLS handshake negotiated, if the client connection is TLS.
    pub tls: Option<Arc<TlsInfo>>,
    /// The client's IP as a header value, formatted once per connection rather than per request.
    pub forwarded_for: HeaderValue,
}

impl Downstream {
    /// The downstream of a connection from `peer`.
    pub fn new(peer: SocketAddr, tls: Option<Arc<TlsInfo>>) -> Self {
        let forwarded_for = HeaderValue::from_str(&peer.ip().to_string())
            .expect("an IP address is a valid header value");
        Self {
            peer,
            tls,
            forwarded_for,
        }
    }
}
