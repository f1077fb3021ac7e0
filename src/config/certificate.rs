//! TLS settings of a listener and the certificates they serve: PEM files read, keys checked
//! against their certificate, names and expiry taken from the certificate, all while the config
//! is validated, so `switchyard check` and a reload report a bad file before anything changes.

use super::file::{CertificateFile, ListenerTlsFile};
use super::validate::Checker;
use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use toml::Spanned;

/// The one crypto provider: aws-lc-rs, for its faster handshakes (its P-256 signatures and
/// X25519 come from the same assembly as BoringSSL's; see the README for the measured rate).
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

impl Checker {
    /// Validates a `[listeners.tls]` table, loading every certificate it names.
    pub(super) fn listener_tls(
        &mut self,
        tls: &Spanned<ListenerTlsFile>,
        field: &str,
    ) -> Option<ListenerTls> {
        let span = tls.span();
        let tls = tls.get_ref();
        if tls.certificates.is_empty() {
            self.report(
                span,
                format!(
                    "{field}.certificates: a TLS listener needs at least one [[{field}.certificates]] table"
                ),
            );
        }
        let certificates: Vec<Certificate> = tls
            .certificates
            .iter()
            .enumerate()
            .filter_map(|(j, c)| {
                self.certificate(c.get_ref(), &format!("{field}.certificates[{j}]"))
            })
            .collect();
        let min_version = match tls.min_version.as_ref().map(|v| (v, v.get_ref().as_str())) {
            None | Some((_, "1.2")) => TlsVersion::Tls12,
            Some((_, "1.3")) => TlsVersion::Tls13,
            Some((v, other)) => {
                self.report(
                    v.span(),
                    format!("{field}.min_version: {other:?} is not \"1.2\" or \"1.3\""),
                );
                TlsVersion::Tls12
            }
        };
        let alpn = match &tls.alpn {
            None => ListenerTls::DEFAULT_ALPN.to_vec(),
            Some(list) => list
                .iter()
                .filter_map(|p| match p.get_ref().as_str() {
                    "h2" => Some("h2"),
                    "http/1.1" => Some("http/1.1"),
                    other => {
                        self.report(
                            p.span(),
                            format!("{field}.alpn: {other:?} is not \"h2\" or \"http/1.1\""),
                        );
                        None
                    }
                })
                .collect(),
        };
        let handshake_timeout = self.duration(
            &tls.handshake_timeout,
            &format!("{field}.handshake_timeout"),
            ListenerTls::DEFAULT_HANDSHAKE_TIMEOUT,
        );
        (certificates.len() == tls.certificates.len() && !certificates.is_empty()).then(|| {
            ListenerTls {
                certificates,
                strict_sni: tls.strict_sni.unwrap_or(false),
                min_version,
                alpn,
                handshake_timeout,
            }
        })
    }

    fn certificate(&mut self, file: &CertificateFile, field: &str) -> Option<Certificate> {
        let cert_path = self.resolve(file.cert.get_ref());
        let key_path = self.resolve(file.key.get_ref());
        let chain = self.certificates(&file.cert, field, "cert")?;
        let key = match read_pem(&key_path, PrivateKeyDer::from_pem_slice) {
            Ok(key) => key,
            Err(reason) => return self.bad(&file.key, field, "key", &reason),
        };
        let Ok((_, leaf)) = x509_parser::parse_x509_certificate(&chain[0]) else {
            return self.bad(
                &file.cert,
                field,
                "cert",
                "the first certificate is not valid X.509",
            );
        };
        let not_after = UNIX_EPOCH
            + Duration::from_secs(leaf.validity().not_after.timestamp().max(0).unsigned_abs());
        let mut names: Vec<String> = match &file.names {
            Some(names) => names
                .iter()
                .map(|n| n.get_ref().to_ascii_lowercase())
                .collect(),
            None => certificate_names(&leaf),
        };
        names.dedup();
        if names.is_empty() && file.names.is_none() {
            tracing::info!(cert = %cert_path.display(), "certificate names no host; it serves only as a default");
        }
        if let Some(bad) = file
            .names
            .iter()
            .flatten()
            .find(|n| !is_sni_name(n.get_ref()))
        {
            self.report(
                bad.span(),
                format!(
                    "{field}.names: {:?} is not a host name or \"*.\" wildcard",
                    bad.get_ref()
                ),
            );
            return None;
        }
        let key = match CertifiedKey::from_der(chain, key, &crypto_provider()) {
            Ok(key) => key,
            Err(rustls::Error::InconsistentKeys(_)) => {
                return self.bad(
                    &file.key,
                    field,
                    "key",
                    "the key does not belong to the certificate",
                );
            }
            Err(err) => return self.bad(&file.key, field, "key", &format!("unusable key: {err}")),
        };
        if not_after < SystemTime::now() {
            tracing::warn!(
                cert = %cert_path.display(),
                expired = %humantime::format_rfc3339_seconds(not_after),
                "CERTIFICATE EXPIRED: serving it anyway; clients will reject it"
            );
        }
        Some(Certificate {
            cert_path,
            key_path,
            names,
            key: Arc::new(key),
            not_after,
        })
    }

    /// The certificates of the PEM file at `at` (`field.key` in messages): at least one.
    pub(super) fn certificates(
        &mut self,
        at: &Spanned<String>,
        field: &str,
        key: &str,
    ) -> Option<Vec<CertificateDer<'static>>> {
        match read_pem(&self.resolve(at.get_ref()), |pem| {
            CertificateDer::pem_slice_iter(pem).collect::<Result<Vec<_>, _>>()
        }) {
            Ok(certs) if !certs.is_empty() => Some(certs),
            Ok(_) => self.bad(at, field, key, "no CERTIFICATE block in it"),
            Err(reason) => self.bad(at, field, key, &reason),
        }
    }

    pub(super) fn bad<T>(
        &mut self,
        at: &Spanned<String>,
        field: &str,
        key: &str,
        reason: &str,
    ) -> Option<T> {
        let path = self.resolve(at.get_ref());
        self.report(
            at.span(),
            format!("{field}.{key}: {}: {reason}", path.display()),
        );
        None
    }

    /// A path from the file, relative to the config file's directory.
    pub(super) fn resolve(&self, path: &str) -> PathBuf {
        self.base.join(path)
    }
}

pub(super) fn read_pem<T>(
    path: &Path,
    parse: impl FnOnce(&[u8]) -> Result<T, rustls_pki_types::pem::Error>,
) -> Result<T, String> {
    let bytes = std::fs::read(path).map_err(|err| format!("cannot read: {err}"))?;
    parse(&bytes).map_err(|err| match err {
        rustls_pki_types::pem::Error::NoItemsFound => {
            "no PEM block of the expected kind".to_owned()
        }
        other => format!("malformed PEM: {other}"),
    })
}

/// The DNS names of a certificate's subjectAltName, or its common name when it has none.
fn certificate_names(leaf: &x509_parser::certificate::X509Certificate<'_>) -> Vec<String> {
    use x509_parser::extensions::GeneralName;
    let from_san: Vec<String> = leaf
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|name| match name {
                    GeneralName::DNSName(dns) => Some(dns.to_ascii_lowercase()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    if !from_san.is_empty() {
        return from_san;
    }
    leaf.subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok())
        .filter(|cn| is_sni_name(cn))
        .map(str::to_ascii_lowercase)
        .collect()
}

/// A host name, or `*.` followed by one.
fn is_sni_name(name: &str) -> bool {
    super::validate::is_dns_name(name.strip_prefix("*.").unwrap_or(name))
}
