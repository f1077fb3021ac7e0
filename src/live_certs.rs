//! Certificates and challenge answers made while running (ACME), shared by the task that
//! obtains them, the only writer, and the listeners that serve them: read at a handshake or
//! a challenge request, never per proxied request.

use arc_swap::ArcSwap;
use crossbeam_queue::SegQueue;
use rustls::sign::CertifiedKey;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::Notify;

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
    /// What the ACME task says of each certificate, for the admin API.
    status: ArcSwap<Vec<AcmeStatus>>,
    /// Renewals an operator asked for (a certificate's first name), taken by the ACME task.
    renewals: SegQueue<String>,
    renewal_asked: Notify,
    /// The certificates the listeners serve from files, for OCSP stapling.
    files: ArcSwap<Vec<Arc<CertifiedKey>>>,
    /// Stapled copies of served certificates, by their leaf (DER).
    staples: ArcSwap<Staples>,
}

/// Stapled certificates by leaf.
pub type Staples = HashMap<Box<[u8]>, Arc<CertifiedKey>, foldhash::fast::RandomState>;

/// One ACME certificate as the admin API shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AcmeStatus {
    /// The listener serving it.
    pub listener: String,
    /// Its names, the first naming it.
    pub names: Vec<String>,
    /// `http-01` or `tls-alpn-01`.
    pub challenge: &'static str,
    /// When the one served expires (RFC 3339), if one is.
    pub not_after: Option<String>,
    /// When it is renewed (RFC 3339), if one is served.
    pub renew_at: Option<String>,
    /// When the next attempt is made after a failure (RFC 3339).
    pub retry_at: Option<String>,
    /// The last failure, until a success.
    pub last_error: Option<String>,
    /// Unix times of `not_after` and `renew_at`, for the metrics.
    #[serde(skip)]
    pub unix: Option<(f64, f64)>,
}

impl LiveCerts {
    /// `key` with its OCSP response stapled, if one is fetched; `key` itself otherwise (without
    /// hashing anything while nothing is stapled).
    pub fn stapled(&self, key: Arc<CertifiedKey>) -> Arc<CertifiedKey> {
        let staples = self.staples.load();
        if staples.is_empty() {
            return key;
        }
        key.cert
            .first()
            .and_then(|leaf| staples.get(leaf.as_ref()).cloned())
            .unwrap_or(key)
    }

    /// Every certificate served: from files and by ACME, each once.
    pub fn served(&self) -> Vec<Arc<CertifiedKey>> {
        let mut served: Vec<Arc<CertifiedKey>> = self.files.load().iter().cloned().collect();
        for key in self.certs.load().values() {
            if !served.iter().any(|k| Arc::ptr_eq(k, key)) {
                served.push(Arc::clone(key));
            }
        }
        served
    }

    /// The certificates the listeners serve from files now (the listeners', at each change).
    pub fn set_files(&self, files: Vec<Arc<CertifiedKey>>) {
        self.files.store(Arc::new(files));
    }

    /// Replaces the stapled certificates (the OCSP task's).
    pub fn set_staples(&self, staples: Staples) {
        self.staples.store(Arc::new(staples));
    }

    /// Every ACME certificate's state.
    pub fn status(&self) -> Arc<Vec<AcmeStatus>> {
        self.status.load_full()
    }

    /// Replaces the ACME certificates' state (the ACME task's).
    pub fn set_status(&self, status: Vec<AcmeStatus>) {
        self.status.store(Arc::new(status));
    }

    /// Asks for the certificate with `name` among its names to be renewed now; `false` when
    /// no ACME certificate has that name.
    pub fn ask_renewal(&self, name: &str) -> bool {
        let status = self.status.load();
        let Some(cert) = status.iter().find(|c| c.names.iter().any(|n| n == name)) else {
            return false;
        };
        self.renewals.push(cert.names[0].clone());
        self.renewal_asked.notify_one();
        true
    }

    /// Renewals asked for since the last call.
    pub fn take_renewals(&self) -> Vec<String> {
        std::iter::from_fn(|| self.renewals.pop()).collect()
    }

    /// Resolves when a renewal is asked for.
    pub async fn renewal_asked(&self) {
        self.renewal_asked.notified().await;
    }

    /// The obtained certificate for `name` (lower case), if any.
    pub fn cert(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        self.certs.load().get(name).cloned()
    }

    /// Serves `key` for each of `names` from now on (new handshakes only).
    pub fn install(&self, names: &[String], key: &Arc<CertifiedKey>) {
        edit(&self.certs, |certs| {
            for name in names {
                certs.insert(name.clone(), Arc::clone(key));
            }
        });
    }

    /// The http-01 answer for `token`, if a validation is under way.
    pub fn http01(&self, token: &str) -> Option<String> {
        self.http01.load().get(token).cloned()
    }

    /// Answers `token` with `key_authorization` until `forget_http01`.
    pub fn answer_http01(&self, token: &str, key_authorization: &str) {
        edit(&self.http01, |answers| {
            answers.insert(token.to_owned(), key_authorization.to_owned());
        });
    }

    /// Stops answering `token`.
    pub fn forget_http01(&self, token: &str) {
        edit(&self.http01, |answers| {
            answers.remove(token);
        });
    }

    /// The tls-alpn-01 certificate for `name`, if a validation is under way.
    pub fn tls_alpn01(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        self.tls_alpn01.load().get(name).cloned()
    }

    /// Presents `key` to `acme-tls/1` handshakes for `name` until `forget_tls_alpn01`.
    pub fn answer_tls_alpn01(&self, name: &str, key: Arc<CertifiedKey>) {
        edit(&self.tls_alpn01, |answers| {
            answers.insert(name.to_owned(), Arc::clone(&key));
        });
    }

    /// Stops presenting a tls-alpn-01 certificate for `name`.
    pub fn forget_tls_alpn01(&self, name: &str) {
        edit(&self.tls_alpn01, |answers| {
            answers.remove(name);
        });
    }
}

/// Swaps in a copy of `map` changed by `change` (retried if another writer swapped first).
fn edit<V: Clone>(map: &ArcSwap<HashMap<String, V>>, change: impl Fn(&mut HashMap<String, V>)) {
    map.rcu(|current| {
        let mut next = HashMap::clone(current);
        change(&mut next);
        next
    });
}
