//! One ACME order: the CA's challenges answered through the listeners, a fresh key and its
//! CSR, the certificate fetched. Answers are withdrawn when the order ends, however it ends.

use crate::config::{AcmeCertificate, Challenge, KeyType, crypto_provider};
use crate::live_certs::LiveCerts;
use instant_acme::{
    Account, AuthorizationStatus, ChallengeType, Identifier, NewOrder, OrderStatus, RetryPolicy,
};
use rcgen::{CertificateParams, CustomExtension, DistinguishedName, KeyPair};
use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::sync::Arc;
use std::time::Duration;

/// A certificate just obtained: the chain as the CA sent it and its key, both PEM.
#[derive(Debug, Clone)]
pub struct Issued {
    /// Leaf first, then intermediates.
    pub chain_pem: String,
    /// The private key, PKCS#8.
    pub key_pem: String,
}

/// Why an order failed: the CA's problem document when it sent one.
#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    /// The CA refused or failed something.
    #[error("{0}")]
    Acme(#[from] instant_acme::Error),
    /// The order ended in a state other than ready or valid.
    #[error("the order is {0:?}: {1}")]
    Order(OrderStatus, String),
    /// An authorization could not be completed.
    #[error("{0}")]
    Authorization(String),
    /// Making a key, CSR or validation certificate failed.
    #[error("key or CSR: {0}")]
    Key(#[from] rcgen::Error),
}

impl OrderError {
    /// How long the CA asked us to wait before trying again (a rate limit), if it said.
    pub fn rate_limited(&self) -> bool {
        match self {
            Self::Acme(instant_acme::Error::Api(problem)) => problem
                .r#type
                .as_deref()
                .is_some_and(|t| t.ends_with(":rateLimited")),
            _ => false,
        }
    }
}

/// How long we wait for the CA to validate and to issue: polled with backoff, as the CA asks.
fn patience() -> RetryPolicy {
    RetryPolicy::new()
        .initial_delay(Duration::from_millis(250))
        .backoff(1.5)
        .timeout(Duration::from_secs(90))
}

/// Orders a certificate for `cert` with `account`, answering its challenges through `live`.
pub async fn obtain(
    account: &Account,
    cert: &AcmeCertificate,
    live: &LiveCerts,
) -> Result<Issued, OrderError> {
    let identifiers: Vec<Identifier> = cert.names.iter().cloned().map(Identifier::Dns).collect();
    let mut order = account.new_order(&NewOrder::new(&identifiers)).await?;
    let mut answers = Answers {
        live,
        tokens: Vec::new(),
        names: Vec::new(),
    };
    let kind = match cert.challenge {
        Challenge::Http01 => ChallengeType::Http01,
        Challenge::TlsAlpn01 => ChallengeType::TlsAlpn01,
    };
    let mut authorizations = order.authorizations();
    while let Some(authorization) = authorizations.next().await {
        let mut authorization = authorization?;
        match authorization.status {
            AuthorizationStatus::Pending => {}
            AuthorizationStatus::Valid => continue,
            other => {
                return Err(OrderError::Authorization(format!(
                    "authorization for {} is {other:?}",
                    authorization.identifier()
                )));
            }
        }
        let name = authorization.identifier().to_string();
        let mut challenge = authorization.challenge(kind.clone()).ok_or_else(|| {
            OrderError::Authorization(format!("the CA offers no {kind:?} challenge for {name}"))
        })?;
        let key_authorization = challenge.key_authorization();
        match cert.challenge {
            Challenge::Http01 => {
                live.answer_http01(&challenge.token, key_authorization.as_str());
                answers.tokens.push(challenge.token.clone());
            }
            Challenge::TlsAlpn01 => {
                let validation = validation_certificate(&name, key_authorization.digest())?;
                live.answer_tls_alpn01(&name, validation);
                answers.names.push(name);
            }
        }
        challenge.set_ready().await?;
    }
    match order.poll_ready(&patience()).await? {
        OrderStatus::Ready => {}
        status => {
            let detail = order
                .state()
                .error
                .as_ref()
                .map_or_else(String::new, ToString::to_string);
            return Err(OrderError::Order(status, detail));
        }
    }
    drop(answers);
    let key = match cert.key_type {
        KeyType::EcdsaP256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?,
        KeyType::Rsa2048 => KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256)?,
    };
    let mut params = CertificateParams::new(cert.names.clone())?;
    params.distinguished_name = DistinguishedName::new();
    let csr = params.serialize_request(&key)?;
    order.finalize_csr(csr.der()).await?;
    let chain_pem = order.poll_certificate(&patience()).await?;
    Ok(Issued {
        chain_pem,
        key_pem: key.serialize_pem(),
    })
}

/// The self-signed certificate a tls-alpn-01 validation of `name` is answered with: the name
/// and the key authorization's digest in a critical `acmeIdentifier` extension (RFC 8737).
fn validation_certificate(
    name: &str,
    digest: impl AsRef<[u8]>,
) -> Result<Arc<CertifiedKey>, OrderError> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::new(vec![name.to_owned()])?;
    params.custom_extensions = vec![CustomExtension::new_acme_identifier(digest.as_ref())];
    let cert = params.self_signed(&key)?;
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let signing = crypto_provider()
        .key_provider
        .load_private_key(der)
        .map_err(|e| OrderError::Authorization(format!("validation key: {e}")))?;
    Ok(Arc::new(CertifiedKey::new(
        vec![CertificateDer::from(cert.der().to_vec())],
        signing,
    )))
}

/// The challenges an order answers, withdrawn when it is dropped.
struct Answers<'a> {
    live: &'a LiveCerts,
    tokens: Vec<String>,
    names: Vec<String>,
}

impl Drop for Answers<'_> {
    fn drop(&mut self) {
        for token in &self.tokens {
            self.live.forget_http01(token);
        }
        for name in &self.names {
            self.live.forget_tls_alpn01(name);
        }
    }
}
