//! TLS settings: a listener's certificates (PEM files read, keys checked against their
//! certificate, names and expiry taken from it, all while the config is checked, so `switchyard
//! check` and a reload report a bad file before anything changes), and TLS to backends.

use super::Checker;
use super::values::{is_dns_name, read_pem};
use crate::config::file::{CertificateFile, ListenerTlsFile, UpstreamTlsFile};
use crate::config::model::{
    Certificate, ListenerTls, Protocol, SkipVerify, TlsVersion, UpstreamTls, crypto_provider,
    system_roots,
};
use rustls::ClientConfig;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use toml::Spanned;

/// The DNS names of a certificate's subjectAltName, or its common name when it has none.
pub fn certificate_names(leaf: &x509_parser::certificate::X509Certificate<'_>) -> Vec<String> {
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
pub(super) fn is_sni_name(name: &str) -> bool {
    is_dns_name(name.strip_prefix("*.").unwrap_or(name))
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
        if tls.certificates.is_empty() && tls.acme.is_empty() {
            self.report(
                span,
                format!(
                    "{field}.certificates: a TLS listener needs at least one [[{field}.certificates]] or [[{field}.acme]] table"
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
        let hsts = tls.hsts.as_ref().and_then(|hsts| self.hsts(hsts, field));
        let acme = self.acme_certificates(&tls.acme, field);
        let complete = certificates.len() == tls.certificates.len() && acme.len() == tls.acme.len();
        (complete && !(certificates.is_empty() && acme.is_empty())).then(|| ListenerTls {
            acme,
            hsts,
            certificates,
            strict_sni: tls.strict_sni.unwrap_or(false),
            min_version,
            alpn,
            handshake_timeout,
        })
    }

    pub(super) fn certificate(
        &mut self,
        file: &CertificateFile,
        field: &str,
    ) -> Option<Certificate> {
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

    pub(super) fn upstream_tls(
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
