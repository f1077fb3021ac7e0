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
    /// Certificates obtained by ACME, served after they are obtained.
    pub acme: Vec<AcmeCertificate>,
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

/// `[acme]`: the ACME account certificates are ordered with, and where they are kept.
#[derive(Clone, PartialEq, Eq)]
pub struct AcmeConfig {
    /// The CA's directory URL.
    pub directory: String,
    /// `mailto:` contacts for the account.
    pub contact: Vec<String>,
    /// External account binding, for CAs that require one.
    pub eab: Option<Eab>,
    /// PEM certificates trusted for the directory's HTTPS instead of the system's roots.
    pub ca: Option<PathBuf>,
    /// Where the account, certificates and order locks are kept.
    pub storage: AcmeStorage,
}

impl AcmeConfig {
    /// Let's Encrypt's production directory, the default.
    pub const LETSENCRYPT: &'static str = "https://acme-v02.api.letsencrypt.org/directory";
    /// Let's Encrypt's staging directory (untrusted certificates, generous rate limits).
    pub const LETSENCRYPT_STAGING: &'static str =
        "https://acme-staging-v02.api.letsencrypt.org/directory";
    /// Where ACME state is kept without `[fleet]` when the file does not say.
    pub const DEFAULT_STORAGE: &'static str = "/var/lib/switchyard/acme";
}

impl std::fmt::Debug for AcmeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AcmeConfig")
            .field("directory", &self.directory)
            .field("contact", &self.contact)
            .field("eab", &self.eab.as_ref().map(|eab| &eab.kid))
            .field("ca", &self.ca)
            .field("storage", &self.storage)
            .finish()
    }
}

/// An external account binding: the key id and MAC key the CA gave.
#[derive(Clone, PartialEq, Eq)]
pub struct Eab {
    /// The key identifier.
    pub kid: String,
    /// The MAC key, decoded from base64url.
    pub hmac_key: Vec<u8>,
}

/// Where ACME state is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AcmeStorage {
    /// Files in this directory (mode 0600), for one replica.
    Directory(PathBuf),
    /// The fleet's Redis: one order per name for the whole fleet.
    Redis,
}

/// One `[[listeners.tls.acme]]` certificate.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AcmeCertificate {
    /// Lower-case DNS names, the first one naming the certificate.
    pub names: Vec<String>,
    /// How the CA checks that we control the names.
    pub challenge: Challenge,
    /// The certificate's key.
    pub key_type: KeyType,
}

/// ACME challenge types answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Challenge {
    /// A token fetched over HTTP on port 80, answered by every plain listener.
    Http01,
    /// A certificate presented for ALPN `acme-tls/1` on port 443, answered by the TLS listener.
    TlsAlpn01,
}

/// Key types of obtained certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyType {
    /// ECDSA on P-256 (the default: small, fast handshakes).
    EcdsaP256,
    /// RSA, 2048 bits (for old clients).
    Rsa2048,
}
