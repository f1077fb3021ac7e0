//! Challenge answers: served by this replica's listeners and, in fleet mode, by every replica,
//! since the CA's validation may reach any of them (through DNS or an L4 balancer). The
//! ordering replica puts its answers in Redis and announces them; every replica's watcher
//! installs them and acknowledges; the order goes on once all that heard have acknowledged.

use super::storage::Storage;
use crate::config::crypto_provider;
use crate::live_certs::LiveCerts;
use rcgen::{CertificateParams, CustomExtension, KeyPair};
use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::sync::Arc;

/// One challenge's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The key authorization served at `/.well-known/acme-challenge/<token>`.
    Http01 {
        /// The challenge's token.
        token: String,
        /// What the CA expects to read.
        key_authorization: String,
    },
    /// A certificate for `name` carrying the key authorization's digest, for `acme-tls/1`.
    TlsAlpn01 {
        /// The name being validated.
        name: String,
        /// The key authorization the digest is made of.
        key_authorization: String,
    },
}

impl Answer {
    /// How it is stored in Redis: `(field, value)`.
    pub fn to_field(&self) -> (String, String) {
        match self {
            Self::Http01 {
                token,
                key_authorization,
            } => (format!("http-01:{token}"), key_authorization.clone()),
            Self::TlsAlpn01 {
                name,
                key_authorization,
            } => (format!("tls-alpn-01:{name}"), key_authorization.clone()),
        }
    }

    /// The answer stored as `field` = `value`, if both are well formed (they come from Redis).
    pub fn from_field(field: &str, value: &str) -> Option<Self> {
        let printable =
            |s: &str| !s.is_empty() && s.len() <= 512 && s.bytes().all(|b| b.is_ascii_graphic());
        if !printable(value) {
            return None;
        }
        let key_authorization = value.to_owned();
        match field.split_once(':')? {
            ("http-01", token) if printable(token) && !token.contains('/') => Some(Self::Http01 {
                token: token.to_owned(),
                key_authorization,
            }),
            ("tls-alpn-01", name) if printable(name) => Some(Self::TlsAlpn01 {
                name: name.to_ascii_lowercase(),
                key_authorization,
            }),
            _ => None,
        }
    }

    /// Serves this answer on this replica's listeners.
    pub fn install(&self, live: &LiveCerts) -> Result<(), String> {
        match self {
            Self::Http01 {
                token,
                key_authorization,
            } => live.answer_http01(token, key_authorization),
            Self::TlsAlpn01 {
                name,
                key_authorization,
            } => {
                let digest = aws_lc_rs::digest::digest(
                    &aws_lc_rs::digest::SHA256,
                    key_authorization.as_bytes(),
                );
                let certificate = validation_certificate(name, digest.as_ref())
                    .map_err(|e| format!("tls-alpn-01 certificate for {name}: {e}"))?;
                live.answer_tls_alpn01(name, certificate);
            }
        }
        Ok(())
    }

    /// Stops serving this answer here.
    pub fn withdraw(&self, live: &LiveCerts) {
        match self {
            Self::Http01 { token, .. } => live.forget_http01(token),
            Self::TlsAlpn01 { name, .. } => live.forget_tls_alpn01(name),
        }
    }
}

/// The self-signed certificate a tls-alpn-01 validation of `name` is answered with: the name
/// and the key authorization's SHA-256 digest in a critical `acmeIdentifier` extension
/// (RFC 8737).
fn validation_certificate(name: &str, digest: &[u8]) -> Result<Arc<CertifiedKey>, String> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|e| e.to_string())?;
    let mut params = CertificateParams::new(vec![name.to_owned()]).map_err(|e| e.to_string())?;
    params.custom_extensions = vec![CustomExtension::new_acme_identifier(digest)];
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let signing = crypto_provider()
        .key_provider
        .load_private_key(der)
        .map_err(|e| e.to_string())?;
    Ok(Arc::new(CertifiedKey::new(
        vec![CertificateDer::from(cert.der().to_vec())],
        signing,
    )))
}

/// The answers of one order: served here at once, shared with the fleet before the CA is told
/// to validate, withdrawn everywhere by `finish`.
pub struct Solver<'a> {
    live: &'a LiveCerts,
    storage: &'a Storage,
    answers: Vec<Answer>,
}

impl<'a> Solver<'a> {
    /// No answers yet.
    pub fn new(live: &'a LiveCerts, storage: &'a Storage) -> Self {
        Self {
            live,
            storage,
            answers: Vec::new(),
        }
    }

    /// Serves `answer` here.
    pub fn add(&mut self, answer: Answer) -> Result<(), String> {
        answer.install(self.live)?;
        self.answers.push(answer);
        Ok(())
    }

    /// Shares the answers with every replica, waiting until those listening have them.
    pub async fn publish(&self) -> Result<(), String> {
        self.storage.share(&self.answers).await
    }

    /// Withdraws the answers here and from the fleet.
    pub async fn finish(self) {
        for answer in &self.answers {
            answer.withdraw(self.live);
        }
        self.storage.unshare(&self.answers).await;
    }
}
