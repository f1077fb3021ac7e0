//! ACME: the `[acme]` account and each listener's `[[listeners.tls.acme]]` certificates,
//! checked without contacting the CA.

use super::Checker;
use super::values::{is_dns_name, read_pem};
use crate::config::file::{AcmeCertificateFile, AcmeFile};
use crate::config::model::{AcmeCertificate, AcmeConfig, AcmeStorage, Challenge, Eab, KeyType};
use base64::Engine;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use toml::Spanned;

const CHALLENGES: &[(&str, Challenge)] = &[
    ("http-01", Challenge::Http01),
    ("tls-alpn-01", Challenge::TlsAlpn01),
];
const KEY_TYPES: &[(&str, KeyType)] = &[
    ("ecdsa-p256", KeyType::EcdsaP256),
    ("rsa2048", KeyType::Rsa2048),
];

/// What `[acme]` gives every certificate that does not say, and where http-01 is asked for.
#[derive(Debug, Clone)]
pub(super) struct AcmeDefaults {
    challenge: Challenge,
    key_type: KeyType,
}

impl Default for AcmeDefaults {
    fn default() -> Self {
        Self {
            challenge: Challenge::Http01,
            key_type: KeyType::EcdsaP256,
        }
    }
}

impl Checker {
    /// The challenge and key type `[acme]` sets for every certificate.
    pub(super) fn acme_defaults(&mut self, file: Option<&AcmeFile>) -> AcmeDefaults {
        let mut defaults = AcmeDefaults::default();
        if let Some(file) = file {
            if let Some(c) = &file.challenge {
                defaults.challenge = self
                    .word(c, "acme.challenge", CHALLENGES)
                    .unwrap_or(defaults.challenge);
            }
            if let Some(k) = &file.key_type {
                defaults.key_type = self
                    .word(k, "acme.key_type", KEY_TYPES)
                    .unwrap_or(defaults.key_type);
            }
        }
        defaults
    }

    /// A TLS listener's ACME certificates.
    pub(super) fn acme_certificates(
        &mut self,
        list: &[Spanned<AcmeCertificateFile>],
        field: &str,
    ) -> Vec<AcmeCertificate> {
        let defaults = self.acme_defaults.clone();
        list.iter()
            .enumerate()
            .filter_map(|(i, entry)| {
                let field = format!("{field}.acme[{i}]");
                let file = entry.get_ref();
                let challenge = match &file.challenge {
                    Some(c) => self.word(c, &format!("{field}.challenge"), CHALLENGES)?,
                    None => defaults.challenge,
                };
                let key_type = match &file.key_type {
                    Some(k) => self.word(k, &format!("{field}.key_type"), KEY_TYPES)?,
                    None => defaults.key_type,
                };
                let names = self.acme_names(&file.names, &field)?;
                if challenge == Challenge::Http01 {
                    self.acme_http01.push(entry.span());
                }
                Some(AcmeCertificate {
                    names,
                    challenge,
                    key_type,
                })
            })
            .collect()
    }

    fn acme_names(
        &mut self,
        names: &Spanned<Vec<Spanned<String>>>,
        field: &str,
    ) -> Option<Vec<String>> {
        if names.get_ref().is_empty() {
            self.report(
                names.span(),
                format!("{field}.names: at least one DNS name"),
            );
            return None;
        }
        let before = self.problem_count();
        let mut out: Vec<String> = Vec::new();
        for name in names.get_ref() {
            let lower = name.get_ref().to_ascii_lowercase();
            if lower.starts_with("*.") {
                self.report(
                    name.span(),
                    format!(
                        "{field}.names: {lower:?} is a wildcard, which ACME issues only by the dns-01 challenge; Switchyard answers http-01 and tls-alpn-01, so list each name (or serve a wildcard certificate from files)"
                    ),
                );
            } else if lower.parse::<std::net::IpAddr>().is_ok() || !is_dns_name(&lower) {
                self.report(
                    name.span(),
                    format!("{field}.names: {lower:?} is not a DNS name"),
                );
            } else if out.contains(&lower) || !self.acme_seen.insert(lower.clone()) {
                self.report(
                    name.span(),
                    format!("{field}.names: {lower:?} is listed by another ACME certificate too"),
                );
            } else {
                out.push(lower);
            }
        }
        (self.problem_count() == before).then_some(out)
    }

    /// `[acme]`, when a listener has ACME certificates (or the table is there); `fleet` says
    /// whether `[fleet]` is configured, for the Redis storage.
    pub(super) fn acme(&mut self, file: Option<&AcmeFile>, fleet: bool) -> Option<AcmeConfig> {
        let wanted = !self.acme_seen.is_empty();
        if !wanted && file.is_none() {
            return None;
        }
        let http01 = std::mem::take(&mut self.acme_http01);
        if !self.plain_listener {
            for span in http01 {
                self.report(
                    span,
                    "listeners.tls.acme: the http-01 challenge is answered on a plain listener (the CA connects to port 80), and there is none; add one or use challenge = \"tls-alpn-01\"".into(),
                );
            }
        }
        let empty;
        let file = match file {
            Some(file) => file,
            None => {
                empty = AcmeFile::default();
                &empty
            }
        };
        let directory = match &file.directory {
            None => AcmeConfig::LETSENCRYPT.to_owned(),
            Some(d) => match d.get_ref().as_str() {
                "letsencrypt" => AcmeConfig::LETSENCRYPT.to_owned(),
                "letsencrypt-staging" => AcmeConfig::LETSENCRYPT_STAGING.to_owned(),
                url if url.starts_with("https://") && url.parse::<http::Uri>().is_ok() => {
                    url.to_owned()
                }
                other => {
                    self.report(
                        d.span(),
                        format!(
                            "acme.directory: {other:?} is not \"letsencrypt\", \"letsencrypt-staging\" or an https:// URL"
                        ),
                    );
                    return None;
                }
            },
        };
        let contact = match &file.contact {
            None => Vec::new(),
            Some(c) => {
                let email = c.get_ref().strip_prefix("mailto:").unwrap_or(c.get_ref());
                let valid = email.split_once('@').is_some_and(|(user, host)| {
                    !user.is_empty() && is_dns_name(host) && !email.contains(char::is_whitespace)
                });
                if !valid {
                    self.report(
                        c.span(),
                        format!("acme.contact: {email:?} is not an email address"),
                    );
                    return None;
                }
                vec![format!("mailto:{email}")]
            }
        };
        let eab = match &file.eab {
            None => None,
            Some(eab) => Some(self.eab(eab)?),
        };
        let ca = match &file.ca {
            None => None,
            Some(ca) => {
                let path = self.resolve(ca.get_ref());
                let certs: Result<Vec<_>, _> = read_pem(&path, |bytes| {
                    CertificateDer::pem_slice_iter(bytes).collect::<Result<Vec<_>, _>>()
                });
                match certs {
                    Ok(certs) if !certs.is_empty() => Some(path),
                    Ok(_) => return self.bad(ca, "acme", "ca", "no PEM certificate in it"),
                    Err(reason) => return self.bad(ca, "acme", "ca", &reason),
                }
            }
        };
        let storage = match &file.storage {
            Some(s) if s.get_ref() == "redis" => {
                if !fleet {
                    self.report(
                        s.span(),
                        "acme.storage: \"redis\" is the fleet's Redis, and there is no [fleet]"
                            .into(),
                    );
                }
                AcmeStorage::Redis
            }
            Some(s) if s.get_ref().is_empty() => {
                self.report(s.span(), "acme.storage: an empty path".into());
                return None;
            }
            Some(s) => AcmeStorage::Directory(self.resolve(s.get_ref())),
            None if fleet => AcmeStorage::Redis,
            None => AcmeStorage::Directory(AcmeConfig::DEFAULT_STORAGE.into()),
        };
        Some(AcmeConfig {
            directory,
            contact,
            eab,
            ca,
            storage,
        })
    }

    fn eab(&mut self, eab: &Spanned<crate::config::file::EabFile>) -> Option<Eab> {
        let file = eab.get_ref();
        let kid = file.kid.get_ref();
        if kid.is_empty() || kid.contains(char::is_control) {
            self.report(
                file.kid.span(),
                "acme.eab.kid: an empty or unprintable key id".into(),
            );
            return None;
        }
        let text = file.hmac_key.get_ref().trim_end_matches('=');
        match base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text) {
            Ok(key) if !key.is_empty() => Some(Eab {
                kid: kid.clone(),
                hmac_key: key,
            }),
            _ => {
                self.report(
                    file.hmac_key.span(),
                    "acme.eab.hmac_key: not a base64url key, as the CA gives it".into(),
                );
                None
            }
        }
    }
}
