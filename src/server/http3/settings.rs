//! A listener's HTTP/3 settings: quinn's config made from the listener's rustls config, the
//! transport limits, and its QUIC counters.

use crate::config::{Http3, Timeouts};
use crate::metrics::{self, Metrics};
use crate::tls::{HandshakeFailure, Terminator};
use quinn::crypto::rustls::QuicServerConfig;
use std::sync::Arc;
use std::time::Duration;

/// A listener's HTTP/3 settings, built with its TLS settings on every reload.
pub struct Http3Settings {
    /// quinn's config: the listener's rustls config with ALPN `h3`, and the transport limits.
    pub server_config: quinn::ServerConfig,
    /// The UDP port.
    pub port: u16,
    /// `Alt-Svc` for the listener's HTTP/1.1 and HTTP/2 responses.
    pub alt_svc: http::HeaderValue,
    /// Whether 0-RTT is on.
    pub early_data: bool,
    /// Whether every new client is sent a Retry first.
    pub(super) always_retry: bool,
    pub(super) handshake_timeout: Duration,
    pub(super) metrics: QuicMetrics,
}

impl std::fmt::Debug for Http3Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Http3Settings")
            .field("early_data", &self.early_data)
            .finish_non_exhaustive()
    }
}

impl Http3Settings {
    /// HTTP/3 on listener `listener`, UDP port `port`, with the TLS of `terminator`.
    pub fn new(
        listener: &str,
        port: u16,
        terminator: &Terminator,
        http3: &Http3,
        timeouts: &Timeouts,
        metrics: &Metrics,
    ) -> Result<Self, rustls::Error> {
        let mut tls = (**terminator.rustls_config()).clone();
        tls.alpn_protocols = vec![b"h3".to_vec()];
        if http3.early_data {
            // quinn takes early data all or nothing; which requests may use it is decided per
            // request. rustls accepts it only on stateful resumption, whose single-use session
            // cache keeps a ticket from being replayed against this proxy.
            tls.max_early_data_size = u32::MAX;
            tls.ticketer = Arc::new(NoTickets);
        }
        let crypto = QuicServerConfig::try_from(tls)
            .map_err(|err| rustls::Error::General(format!("QUIC needs TLS 1.3: {err}")))?;
        let mut server_config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        let mut transport = quinn::TransportConfig::default();
        // As hyper's HTTP/2 server: 1 MiB per stream; a connection buffers at most 8 MiB of
        // request bodies, however many streams (so a 1 GiB upload stays a few MiB here).
        transport
            .max_concurrent_bidi_streams(100u32.into())
            .max_concurrent_uni_streams(8u32.into())
            .stream_receive_window((1u32 << 20).into())
            .receive_window((8u32 << 20).into())
            .send_window(8 << 20)
            .max_idle_timeout(quinn::IdleTimeout::try_from(timeouts.idle).ok());
        server_config.transport_config(Arc::new(transport));
        let advertised = http3.advertised_port.unwrap_or(port);
        Ok(Self {
            server_config,
            port,
            alt_svc: http::HeaderValue::try_from(format!("h3=\":{advertised}\"; ma=86400"))
                .expect("digits and quotes are a valid header value"),
            early_data: http3.early_data,
            always_retry: http3.retry,
            handshake_timeout: terminator.handshake_timeout(),
            metrics: QuicMetrics::new(metrics, listener),
        })
    }
}

/// Session resumption by the listener's cache only, no stateless tickets.
#[derive(Debug)]
struct NoTickets;

impl rustls::server::ProducesTickets for NoTickets {
    fn enabled(&self) -> bool {
        false
    }

    fn lifetime(&self) -> u32 {
        0
    }

    fn encrypt(&self, _plain: &[u8]) -> Option<Vec<u8>> {
        None
    }

    fn decrypt(&self, _cipher: &[u8]) -> Option<Vec<u8>> {
        None
    }
}

/// QUIC counters of one listener.
pub(super) struct QuicMetrics {
    pub(super) handshakes: ::metrics::Counter,
    pub(super) failures: [::metrics::Counter; HandshakeFailure::ALL.len()],
    pub(super) retries: ::metrics::Counter,
    pub(super) connections: ::metrics::Gauge,
    pub(super) in_progress: ::metrics::Gauge,
    pub(super) streams: ::metrics::Counter,
    pub(super) lost_packets: ::metrics::Counter,
}

impl QuicMetrics {
    fn new(metrics: &Metrics, listener: &str) -> Self {
        let labels = [("listener", listener)];
        Self {
            handshakes: metrics.counter(metrics::QUIC_HANDSHAKES, &labels),
            failures: HandshakeFailure::ALL.map(|f| {
                metrics.counter(
                    metrics::QUIC_HANDSHAKE_FAILURES,
                    &[("listener", listener), ("reason", f.reason())],
                )
            }),
            retries: metrics.counter(metrics::QUIC_RETRIES, &labels),
            connections: metrics.gauge(metrics::QUIC_CONNECTIONS, &labels),
            in_progress: metrics.gauge(metrics::QUIC_HANDSHAKES_IN_PROGRESS, &labels),
            streams: metrics.counter(metrics::QUIC_STREAMS, &labels),
            lost_packets: metrics.counter(metrics::QUIC_LOST_PACKETS, &labels),
        }
    }
}
