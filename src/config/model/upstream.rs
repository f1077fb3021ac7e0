//! How the proxy talks to a pool's backends: protocol, TLS, idle connections.

use super::tls::crypto_provider;
use rustls::ClientConfig;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use std::sync::{Arc, OnceLock};

/// The protocol a pool speaks to its backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/1.1 with keep-alive, plain or over TLS.
    Http1,
    /// HTTP/2 over TLS, negotiated by ALPN.
    H2,
    /// HTTP/2 over plain TCP with prior knowledge.
    H2c,
}

impl Protocol {
    /// Whether requests are multiplexed over HTTP/2.
    pub fn is_h2(self) -> bool {
        matches!(self, Self::H2 | Self::H2c)
    }
}

/// A pool's connection settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamConfig {
    /// What is spoken on each connection.
    pub protocol: Protocol,
    /// TLS to the backends, if any.
    pub tls: Option<Arc<UpstreamTls>>,
    /// Idle keep-alive connections kept per backend (HTTP/1.1).
    pub max_idle_per_backend: usize,
    /// The PROXY protocol header each connection starts with (`send_proxy_protocol`).
    pub send_proxy_protocol: Option<ProxyVersion>,
}

/// A PROXY protocol version sent to backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyVersion {
    /// The text header.
    V1,
    /// The binary header.
    V2,
}

impl UpstreamConfig {
    /// Idle connections kept per backend when the file does not say.
    pub const DEFAULT_MAX_IDLE: usize = 64;
    /// The largest `max_idle_per_backend` accepted.
    pub const MAX_IDLE_LIMIT: usize = 1024;
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        Self {
            protocol: Protocol::Http1,
            tls: None,
            max_idle_per_backend: Self::DEFAULT_MAX_IDLE,
            send_proxy_protocol: None,
        }
    }
}

/// TLS to a pool's backends: the built client config and what it was built from.
#[derive(Debug)]
pub struct UpstreamTls {
    /// Verification, client certificate and ALPN, with its session cache (resumption).
    pub client: Arc<ClientConfig>,
    /// The name sent as SNI and verified; `None`: each backend's host.
    pub server_name: Option<ServerName<'static>>,
    /// What the config was built from, to tell whether a reload changed it.
    pub(in crate::config) source: Vec<Vec<u8>>,
}

impl PartialEq for UpstreamTls {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Eq for UpstreamTls {}

impl UpstreamTls {
    /// TLS verified against the system's trusted CAs, for HTTP/1.1 (webhook receivers); `None`
    /// when the system has no CA certificates.
    pub fn system() -> Option<Self> {
        let roots = system_roots()?;
        let mut client = ClientConfig::builder_with_provider(crypto_provider())
            .with_safe_default_protocol_versions()
            .ok()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        client.alpn_protocols = vec![b"http/1.1".to_vec()];
        Some(Self {
            client: Arc::new(client),
            server_name: None,
            source: Vec::new(),
        })
    }
}

/// The system's trusted CAs, read once; `None` when there are none.
pub(in crate::config) fn system_roots() -> Option<Arc<rustls::RootCertStore>> {
    static ROOTS: OnceLock<Option<Arc<rustls::RootCertStore>>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            for err in &found.errors {
                tracing::warn!(%err, "reading the system CA certificates");
            }
            let mut roots = rustls::RootCertStore::empty();
            let (added, _ignored) = roots.add_parsable_certificates(found.certs);
            (added > 0).then(|| Arc::new(roots))
        })
        .clone()
}

/// Accepts any certificate (`insecure_skip_verify`), still checking that the handshake is
/// signed by the key the certificate holds.
#[derive(Debug)]
pub struct SkipVerify(pub Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for SkipVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
