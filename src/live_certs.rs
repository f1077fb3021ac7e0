//! Certificates and challenge answers made while running (ACME), shared by the task that
//! obtains them, the only writer, and the listeners that serve them: read at a handshake or
//! a challenge request, never per proxied request.

use arc_swap::ArcSwap;
use rustls::sign::CertifiedKey;
use std::collections::HashMap;
use std::sync::Arc;

/// The path under which the CA fetches http-01 answers (RFC 8555, section 8.3).
pub const HTTP01_PREFIX: &str = "/.well-known/acme-challenge/";

/// The ALPN protocol of a tls-alpn-01 validation (RFC 8737).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// What the listeners serve that was obtained while running.
#[derive(Debug, Default)]
pub struct LiveCerts {
    /// Obtained certificates, by each of their names.
    certs: ArcSwap<HashMap<String, Arc<CertifiedKey>>>,
    /// http-01 answers: key authorization by token.
    http01: ArcSwap<HashMap<String, String>>,
    /// tls-alpn-01 certificates, by the name being validated.
    tls_alpn01: ArcSwap<HashMap<String, Arc<CertifiedKey>>>,
}

impl LiveCerts {
    /// The obtained certificate for `name` (lower case), if any.
    pub fn cert(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        self.certs.load().get(name).cloned()
    }

    /// Serves `key` for each of `names` from now on (new handshakes only).
    pub fn install(&self, names: &[String], key: &Arc<CertifiedKey>) {
        self.certs.rcu(|certs| {
            let mut certs = HashMap::clone(certs);
            for name in names {
                certs.insert(name.clone(), Arc::clone(key));
            }
            certs
        });
    }

    /// The http-01 answer for `token`, if a validation is under way.
    pub fn http01(&self, token: &str) -> Option<String> {
        self.http01.load().get(token).cloned()
    }

    /// Answers `token` with `key_authorization` until `forget_http01`.
    pub fn answer_http01(&self, token: &str, key_authorization: &str) {
        self.http01.rcu(|answers| {
            let mut answers = HashMap::clone(answers);
            answers.insert(token.to_owned(), key_authorization.to_owned());
            answers
        });
    }

    /// Stops answering `token`.
    pub fn forget_http01(&self, token: &str) {
        self.http01.rcu(|answers| {
            let mut answers = HashMap::clone(answers);
            answers.remove(token);
            answers
        });
    }

    /// The tls-alpn-01 certificate for `name`, if a validation is under way.
    pub fn tls_alpn01(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        self.tls_alpn01.load().get(name).cloned()
    }

    /// Presents `key` to `acme-tls/1` handshakes for `name` until `forget_tls_alpn01`.
    pub fn answer_tls_alpn01(&self, name: &str, key: Arc<CertifiedKey>) {
        self.tls_alpn01.rcu(|answers| {
            let mut answers = HashMap::clone(answers);
            answers.insert(name.to_owned(), Arc::clone(&key));
            answers
        });
    }

    /// Stops presenting a tls-alpn-01 certificate for `name`.
    pub fn forget_tls_alpn01(&self, name: &str) {
        self.tls_alpn01.rcu(|answers| {
            let mut answers = HashMap::clone(answers);
            answers.remove(name);
            answers
        });
    }
}
