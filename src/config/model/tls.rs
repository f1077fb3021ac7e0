//! TLS termination on a listener: versions, the certificates served and their names.

use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

/// The one crypto provider: aws-lc-rs, for its faster handshakes (its P-256 signatures and
/// X25519 come from the same assembly as BoringSSL's; see docs/src/performance.md for the measured rate).
pub fn crypto_provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    Arc::clone(PROVIDER.get_or_init(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider())))
}

/// TLS termination on a listener.
#[derive(Debug, Clone)]
pub struct ListenerTls {
    /// Certificates chosen by SNI; the first is the default.
    pub certificates: Vec<Certificate>,
    /// Refuse handshakes whose SNI matches no certificate (HAProxy's `strict-sni`).
    pub strict_sni: bool,
    /// The oldest TLS version accepted.
    pub min_version: TlsVersion,
    /// ALPN protocols offered, in order of preference.
    pub alpn: Vec<&'static str>,
    /// A client that has not finished its handshake in this time is disconnected.
    pub handshake_timeout: Duration,
    /// The `Strict-Transport-Security` value every response of the listener carries, if any.
    pub hsts: Option<String>,
}

impl ListenerTls {
    /// The handshake timeout when the file does not say (NGINX's `ssl_handshake_timeout` is 60 s;
    /// a handshake takes milliseconds, so a tighter bound frees idle sockets sooner).
    pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
    /// ALPN protocols when the file does not say: HTTP/2 first, HTTP/1.1 on the same port.
    pub const DEFAULT_ALPN: [&'static str; 2] = ["h2", "http/1.1"];
}

/// TLS protocol versions a listener can be limited to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    /// TLS 1.2.
    Tls12,
    /// TLS 1.3.
    Tls13,
}

/// A certificate chain with its key, and the host names it is served for.
#[derive(Debug, Clone)]
pub struct Certificate {
    /// The chain's PEM file, leaf first.
    pub cert_path: PathBuf,
    /// The private key's PEM file (PKCS#8, PKCS#1 or SEC1).
    pub key_path: PathBuf,
    /// Lower-case host names (`a.test`, or `*.example.test` for one label) for SNI.
    pub names: Vec<String>,
    /// The chain and the loaded signing key.
    pub key: Arc<CertifiedKey>,
    /// When the leaf certificate expires.
    pub not_after: SystemTime,
}

impl Certificate {
    /// The name this certificate is known by in logs and metrics: its first host name.
    pub fn label(&self) -> &str {
        self.names.first().map_or("-", String::as_str)
    }
}
