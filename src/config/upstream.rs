//! How a pool reaches its backends: the protocol, TLS (CA, server name, client certificate)
//! and idle-connection bound. PEM files are read and the rustls client config built while the
//! config is validated, so a bad file is reported with its place in the config.

use super::certificate::{crypto_provider, read_pem};
use super::file::{PoolFile, ProtocolFile, UpstreamTlsFile};
use super::validate::Checker;
use rustls::ClientConfig;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use std::sync::{Arc, OnceLock};
use toml::Spanned;

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
    source: Vec<Vec<u8>>,
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

impl Checker {
    /// Validates a pool's `protocol`, `[pools.tls]` and `max_idle_per_backend`.
    pub(super) fn upstream(&mut self, pool: &PoolFile, field: &str) -> Option<UpstreamConfig> {
        let protocol = match pool.protocol.as_ref().map(|p| *p.get_ref()) {
            None | Some(ProtocolFile::Http1) => Protocol::Http1,
            Some(ProtocolFile::H2) => Protocol::H2,
            Some(ProtocolFile::H2c) => Protocol::H2c,
        };
        match (&pool.protocol, protocol, &pool.tls) {
            (Some(p), Protocol::H2, None) => self.report(
                p.span(),
                format!(
                    "{field}.protocol: \"h2\" is HTTP/2 over TLS and needs a [{field}.tls] table; use \"h2c\" for HTTP/2 without TLS"
                ),
            ),
            (Some(p), Protocol::H2c, Some(_)) => self.report(
                p.span(),
                format!(
                    "{field}.protocol: \"h2c\" is HTTP/2 without TLS; use \"h2\" with a [{field}.tls] table"
                ),
            ),
            _ => {}
        }
        let max_idle_per_backend = self.int(
            &pool.max_idle_per_backend,
            &format!("{field}.max_idle_per_backend"),
            0..=UpstreamConfig::MAX_IDLE_LIMIT as i64,
            UpstreamConfig::DEFAULT_MAX_IDLE,
        );
        let tls = match &pool.tls {
            None => None,
            Some(tls) => Some(Arc::new(self.upstream_tls(
                tls,
                protocol,
                &format!("{field}.tls"),
            )?)),
        };
        Some(UpstreamConfig {
            protocol,
            tls,
            max_idle_per_backend,
        })
    }

    fn upstream_tls(
        &mut self,
        tls: &Spanned<UpstreamTlsFile>,
        protocol: Protocol,
        field: &str,
    ) -> Option<UpstreamTls> {
        let span = tls.span();
        let tls = tls.get_ref();
        let insecure = tls.insecure_skip_verify.unwrap_or(false);
        let mut source = vec![vec![u8::from(insecure)]];
        let roots = match (&tls.ca, insecure) {
            (Some(ca), true) => {
                self.report(
                    ca.span(),
                    format!("{field}.ca: a CA has no use with insecure_skip_verify = true"),
                );
                return None;
            }
            (Some(ca), false) => {
                let certs = self.certificates(ca, field, "ca")?;
                let mut roots = rustls::RootCertStore::empty();
                for cert in certs {
                    source.push(cert.to_vec());
                    if let Err(err) = roots.add(cert) {
                        return self.bad(ca, field, "ca", &format!("unusable CA: {err}"));
                    }
                }
                Some(Arc::new(roots))
            }
            (None, false) => match system_roots() {
                Some(roots) => Some(roots),
                None => {
                    self.report(
                        span,
                        format!(
                            "{field}: no system CA certificates were found to verify backends with; set {field}.ca"
                        ),
                    );
                    return None;
                }
            },
            (None, true) => None,
        };
        if insecure {
            tracing::warn!(
                "{field}.insecure_skip_verify: backends' certificates are NOT verified; anyone on the path can impersonate them"
            );
        }
        let server_name = match &tls.server_name {
            None => None,
            Some(name) => match ServerName::try_from(name.get_ref().clone()) {
                Ok(parsed) => {
                    source.push(name.get_ref().as_bytes().to_vec());
                    Some(parsed)
                }
                Err(_) => {
                    self.report(
                        name.span(),
                        format!(
                            "{field}.server_name: {:?} is not a host name or IP address",
                            name.get_ref()
                        ),
                    );
                    return None;
                }
            },
        };
        let client_auth = match (&tls.cert, &tls.key) {
            (None, None) => None,
            (Some(cert), Some(key)) => {
                let chain = self.certificates(cert, field, "cert")?;
                let secret =
                    match read_pem(&self.resolve(key.get_ref()), PrivateKeyDer::from_pem_slice) {
                        Ok(secret) => secret,
                        Err(reason) => return self.bad(key, field, "key", &reason),
                    };
                source.extend(chain.iter().map(|c| c.to_vec()));
                source.push(secret.secret_der().to_vec());
                Some((chain, secret, key))
            }
            (Some(only), None) | (None, Some(only)) => {
                self.report(
                    only.span(),
                    format!("{field}: a client certificate needs both cert and key"),
                );
                return None;
            }
        };
        let provider = crypto_provider();
        let builder = match ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
        {
            Ok(builder) => builder,
            Err(err) => {
                self.report(span, format!("{field}: {err}"));
                return None;
            }
        };
        let builder = match roots {
            Some(roots) => builder.with_root_certificates(roots),
            None => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(SkipVerify(provider))),
        };
        let mut client = match client_auth {
            None => builder.with_no_client_auth(),
            Some((chain, secret, key)) => match builder.with_client_auth_cert(chain, secret) {
                Ok(client) => client,
                Err(err) => {
                    return self.bad(key, field, "key", &format!("unusable client key: {err}"));
                }
            },
        };
        client.alpn_protocols = vec![match protocol {
            Protocol::H2 | Protocol::H2c => b"h2".to_vec(),
            Protocol::Http1 => b"http/1.1".to_vec(),
        }];
        source.push(client.alpn_protocols[0].clone());
        Some(UpstreamTls {
            client: Arc::new(client),
            server_name,
            source,
        })
    }
}

/// The system's trusted CAs, read once; `None` when there are none.
fn system_roots() -> Option<Arc<rustls::RootCertStore>> {
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
