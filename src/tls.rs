//! TLS termination: a listener's rustls `ServerConfig` with its SNI resolver, the handshake
//! under a timeout, and what a finished or failed handshake tells the access log and metrics.
//!
//! Longer than most files on purpose: a listener's rustls setup, its SNI resolver and its
//! handshake accounting change together.

use crate::config::{Challenge, ListenerTls, TlsVersion, crypto_provider};
use crate::live_certs::{ACME_TLS_ALPN, LiveCerts};
use crate::metrics::{self, Metrics};
use rustls::server::{ClientHello, ProducesTickets, ResolvesServerCert, StoresServerSessions};
use rustls::sign::CertifiedKey;
use rustls::{ProtocolVersion, ServerConfig};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

/// Session resumption state of one listener, kept across reloads so that a certificate change
/// does not force every returning client into a full handshake.
#[derive(Debug, Clone)]
pub struct Resumption {
    tickets: Arc<dyn ProducesTickets>,
    cache: Arc<dyn StoresServerSessions>,
}

impl Resumption {
    /// Sessions resumed by ticket (stateless, keys rotated every 6 hours) or, for TLS 1.2
    /// clients without tickets, by session id from a cache of this many entries.
    const CACHE_ENTRIES: usize = 10_240;

    /// Fresh ticket keys and an empty session cache.
    pub fn new() -> Result<Self, rustls::Error> {
        Ok(Self {
            tickets: rustls::crypto::aws_lc_rs::Ticketer::new()?,
            cache: rustls::server::ServerSessionMemoryCache::new(Self::CACHE_ENTRIES),
        })
    }
}

/// What the accept loop needs to terminate TLS on one listener (shared through the listener's
/// settings, so nothing in it needs to be cloned).
pub struct Terminator {
    acceptor: tokio_rustls::TlsAcceptor,
    handshake_timeout: Duration,
    metrics: HandshakeMetrics,
}

impl Terminator {
    /// Builds the rustls config for `tls` on listener `listener`, serving ACME certificates
    /// from `live` once obtained.
    pub fn new(
        listener: &str,
        tls: &ListenerTls,
        resumption: &Resumption,
        live: &Arc<LiveCerts>,
        metrics: &Metrics,
    ) -> Result<Self, rustls::Error> {
        let versions: &[&rustls::SupportedProtocolVersion] = match tls.min_version {
            TlsVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
            TlsVersion::Tls13 => &[&rustls::version::TLS13],
        };
        let mut config = ServerConfig::builder_with_provider(crypto_provider())
            .with_protocol_versions(versions)?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(SniResolver::new(tls, live)));
        config.alpn_protocols = tls.alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        // Last: only an ACME server's validation asks for it, and asks for nothing else.
        if tls.acme.iter().any(|c| c.challenge == Challenge::TlsAlpn01) {
            config.alpn_protocols.push(ACME_TLS_ALPN.to_vec());
        }
        config.ticketer = Arc::clone(&resumption.tickets);
        config.session_storage = Arc::clone(&resumption.cache);
        Ok(Self {
            acceptor: Arc::new(config).into(),
            handshake_timeout: tls.handshake_timeout,
            metrics: HandshakeMetrics::new(metrics, listener),
        })
    }

    /// Completes the handshake within the timeout; a failure is counted by reason. The stream
    /// comes boxed: rustls' connection state is a few KiB, and a connection's task holds the
    /// stream in several places.
    pub async fn accept(
        &self,
        stream: TcpStream,
    ) -> Result<(Box<TlsStream<TcpStream>>, TlsInfo), HandshakeFailure> {
        let outcome =
            tokio::time::timeout(self.handshake_timeout, self.acceptor.accept(stream)).await;
        let failure = match outcome {
            Ok(Ok(mut stream)) if stream.get_ref().1.alpn_protocol() == Some(ACME_TLS_ALPN) => {
                // The validation was the handshake itself (RFC 8737): nothing is served.
                let _ = stream.shutdown().await;
                return Err(HandshakeFailure::AcmeValidation);
            }
            Ok(Ok(stream)) => {
                let info = TlsInfo::of(stream.get_ref().1);
                self.metrics.handshake(&info).increment(1);
                return Ok((Box::new(stream), info));
            }
            Ok(Err(err)) => HandshakeFailure::of(&err),
            Err(_) => HandshakeFailure::Timeout,
        };
        self.metrics.failures[failure as usize].increment(1);
        Err(failure)
    }

    /// The rustls config, for QUIC's own copy.
    pub fn rustls_config(&self) -> &Arc<ServerConfig> {
        self.acceptor.config()
    }

    /// How long a handshake may take.
    pub fn handshake_timeout(&self) -> Duration {
        self.handshake_timeout
    }
}

impl std::fmt::Debug for Terminator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Terminator")
            .field("handshake_timeout", &self.handshake_timeout)
            .finish_non_exhaustive()
    }
}

/// What the handshake negotiated, for the access log.
#[derive(Debug)]
pub struct TlsInfo {
    /// `TLSv1.2` or `TLSv1.3`.
    pub version: &'static str,
    /// The cipher suite's IANA name.
    pub cipher: &'static str,
    /// The server name the client asked for.
    pub sni: Option<Box<str>>,
    /// The negotiated application protocol.
    pub alpn: Option<&'static str>,
}

impl TlsInfo {
    fn of(conn: &rustls::ServerConnection) -> Self {
        Self {
            version: match conn.protocol_version() {
                Some(ProtocolVersion::TLSv1_3) => "TLSv1.3",
                Some(ProtocolVersion::TLSv1_2) => "TLSv1.2",
                _ => "-",
            },
            cipher: conn
                .negotiated_cipher_suite()
                .and_then(|s| s.suite().as_str())
                .unwrap_or("-"),
            sni: conn.server_name().map(Box::from),
            alpn: match conn.alpn_protocol() {
                Some(b"h2") => Some("h2"),
                Some(b"http/1.1") => Some("http/1.1"),
                _ => None,
            },
        }
    }
}

/// Why a handshake failed, as counted in `switchyard_tls_handshake_failures_total{reason}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeFailure {
    /// Not finished within the handshake timeout.
    Timeout,
    /// The client closed or reset the connection mid-handshake.
    ClientClosed,
    /// The client offered no TLS version the listener accepts.
    ProtocolVersion,
    /// No cipher suite, group or signature scheme in common.
    NoSharedParameters,
    /// The client asked only for application protocols the listener does not offer.
    NoApplicationProtocol,
    /// Strict SNI: the client asked for a name no certificate has.
    UnknownServerName,
    /// The client sent an alert (often: it does not trust the certificate).
    ClientAlert,
    /// The client sent something that is not TLS, or broken TLS.
    BadMessage,
    /// Not a failure: an ACME server's tls-alpn-01 validation, closed after its handshake
    /// (not counted).
    AcmeValidation,
}

impl HandshakeFailure {
    /// Every counted failure, in the order of their counters.
    pub const ALL: [Self; 8] = [
        Self::Timeout,
        Self::ClientClosed,
        Self::ProtocolVersion,
        Self::NoSharedParameters,
        Self::NoApplicationProtocol,
        Self::UnknownServerName,
        Self::ClientAlert,
        Self::BadMessage,
    ];

    /// The metric label.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::ClientClosed => "client_closed",
            Self::ProtocolVersion => "protocol_version",
            Self::NoSharedParameters => "no_shared_parameters",
            Self::NoApplicationProtocol => "no_application_protocol",
            Self::UnknownServerName => "unknown_server_name",
            Self::ClientAlert => "client_alert",
            Self::BadMessage => "bad_message",
            Self::AcmeValidation => "acme_validation",
        }
    }

    fn of(err: &std::io::Error) -> Self {
        use rustls::PeerIncompatible as P;
        let Some(tls) = err
            .get_ref()
            .and_then(|e| e.downcast_ref::<rustls::Error>())
        else {
            return Self::ClientClosed;
        };
        match tls {
            // Clients that do not offer TLS 1.2 also send no signature_algorithms extension (it
            // came with 1.2), and rustls refuses them for that before it looks at the version.
            rustls::Error::PeerIncompatible(
                P::Tls12NotOffered
                | P::Tls12NotOfferedOrEnabled
                | P::SupportedVersionsExtensionRequired
                | P::SignatureAlgorithmsExtensionRequired,
            ) => Self::ProtocolVersion,
            rustls::Error::PeerIncompatible(_) => Self::NoSharedParameters,
            rustls::Error::NoApplicationProtocol => Self::NoApplicationProtocol,
            rustls::Error::AlertReceived(_) => Self::ClientAlert,
            // Only the resolver's refusal (strict SNI) ends a handshake with a general error.
            rustls::Error::General(_) => Self::UnknownServerName,
            _ => Self::BadMessage,
        }
    }
}

impl std::fmt::Display for HandshakeFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.reason())
    }
}

/// Handshake counters of one listener, registered when its TLS settings are built.
#[derive(Debug)]
struct HandshakeMetrics {
    /// By version (1.2, 1.3) and ALPN (`h2`, `http/1.1`, none).
    done: [[::metrics::Counter; 3]; 2],
    failures: [::metrics::Counter; HandshakeFailure::ALL.len()],
}

impl HandshakeMetrics {
    fn new(metrics: &Metrics, listener: &str) -> Self {
        let done = |version| {
            ["h2", "http/1.1", "none"].map(|alpn| {
                metrics.counter(
                    metrics::TLS_HANDSHAKES,
                    &[("listener", listener), ("version", version), ("alpn", alpn)],
                )
            })
        };
        Self {
            done: [done("TLSv1.2"), done("TLSv1.3")],
            failures: HandshakeFailure::ALL.map(|f| {
                metrics.counter(
                    metrics::TLS_HANDSHAKE_FAILURES,
                    &[("listener", listener), ("reason", f.reason())],
                )
            }),
        }
    }

    fn handshake(&self, info: &TlsInfo) -> &::metrics::Counter {
        let version = usize::from(info.version == "TLSv1.3");
        let alpn = match info.alpn {
            Some("h2") => 0,
            Some(_) => 1,
            None => 2,
        };
        &self.done[version][alpn]
    }
}

/// Chooses a certificate by SNI: the listener's ACME certificate for the name once obtained,
/// then an exact name, then a `*.` wildcard for the first label, then the default (the
/// listener's first certificate file) unless SNI is strict. Names are compared without regard to
/// case. An ACME server's `acme-tls/1` handshake gets the validation certificate for its name.
#[derive(Debug)]
struct SniResolver {
    exact: HashMap<String, Arc<CertifiedKey>>,
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Option<Arc<CertifiedKey>>,
    /// The names this listener's ACME certificates are for, served from `live`.
    acme: HashSet<String>,
    /// Whether tls-alpn-01 validations are answered here.
    tls_alpn01: bool,
    live: Arc<LiveCerts>,
}

impl SniResolver {
    fn new(tls: &ListenerTls, live: &Arc<LiveCerts>) -> Self {
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        // The first certificate to claim a name keeps it, as the first one listed is preferred.
        for certificate in &tls.certificates {
            for name in &certificate.names {
                let map = match name.strip_prefix("*.") {
                    Some(suffix) => wildcard.entry(suffix.to_owned()),
                    None => exact.entry(name.clone()),
                };
                map.or_insert_with(|| Arc::clone(&certificate.key));
            }
        }
        Self {
            exact,
            wildcard,
            default: (!tls.strict_sni)
                .then(|| tls.certificates.first().map(|c| Arc::clone(&c.key)))
                .flatten(),
            acme: tls.acme.iter().flat_map(|c| c.names.clone()).collect(),
            tls_alpn01: tls.acme.iter().any(|c| c.challenge == Challenge::TlsAlpn01),
            live: Arc::clone(live),
        }
    }

    fn find(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        if self.acme.contains(name) {
            if let Some(obtained) = self.live.cert(name) {
                return Some(obtained);
            }
        }
        self.exact
            .get(name)
            .or_else(|| {
                let (_, parent) = name.split_once('.')?;
                self.wildcard.get(parent)
            })
            .cloned()
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let name = hello.server_name().map(|name| {
            let name = name.trim_end_matches('.');
            if name.bytes().any(|b| b.is_ascii_uppercase()) {
                std::borrow::Cow::Owned(name.to_ascii_lowercase())
            } else {
                std::borrow::Cow::Borrowed(name)
            }
        });
        if self.tls_alpn01
            && hello
                .alpn()
                .is_some_and(|mut offered| offered.any(|p| p == ACME_TLS_ALPN))
        {
            return name.and_then(|name| self.live.tls_alpn01(&name));
        }
        let found = name.and_then(|name| self.find(&name));
        let key = found.or_else(|| self.default.clone())?;
        Some(self.live.stapled(key))
    }
}
