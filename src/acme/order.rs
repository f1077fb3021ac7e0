//! One ACME order: the CA's challenges answered (`solver`), a fresh key and its CSR, the
//! certificate fetched.

use super::solver::{Answer, Solver};
use crate::config::{AcmeCertificate, Challenge, KeyType};
use instant_acme::{
    Account, AuthorizationStatus, ChallengeType, Identifier, NewOrder, OrderStatus, RetryPolicy,
};
use rcgen::{CertificateParams, DistinguishedName, KeyPair};
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

/// How many times a step is tried again after the CA refused its nonce (`badNonce`), on top of
/// the client's own three tries: CAs reject nonces now and then (RFC 8555, section 6.5), and
/// an order must not fail for it.
pub(super) const NONCE_TRIES: u32 = 5;

/// Whether the CA refused the request's nonce.
pub(super) fn bad_nonce(err: &instant_acme::Error) -> bool {
    matches!(err, instant_acme::Error::Api(problem)
        if problem.r#type.as_deref() == Some("urn:ietf:params:acme:error:badNonce"))
}

/// `$call` (an `.await`ed request), tried again while the CA refuses the nonce.
macro_rules! patiently {
    ($call:expr) => {{
        let mut tries = 0;
        loop {
            match $call {
                Err(err) if bad_nonce(&err) && tries < NONCE_TRIES => tries += 1,
                other => break other,
            }
        }
    }};
}

/// Orders a certificate for `cert` with `account`, answering its challenges through `solver`
/// (withdrawn by the caller, however the order ends).
pub async fn obtain(
    account: &Account,
    cert: &AcmeCertificate,
    solver: &mut Solver<'_>,
) -> Result<Issued, OrderError> {
    let identifiers: Vec<Identifier> = cert.names.iter().cloned().map(Identifier::Dns).collect();
    let mut order = patiently!(account.new_order(&NewOrder::new(&identifiers)).await)?;
    let kind = match cert.challenge {
        Challenge::Http01 => ChallengeType::Http01,
        Challenge::TlsAlpn01 => ChallengeType::TlsAlpn01,
    };
    // Every answer in place (here and across the fleet) before the CA is told to look. A pass
    // over the authorizations that meets a refused nonce starts again: the ones fetched are
    // kept, and the ones answered are skipped.
    let mut answered: Vec<String> = Vec::new();
    let mut tries = 0;
    'answering: loop {
        let mut authorizations = order.authorizations();
        while let Some(authorization) = authorizations.next().await {
            let mut authorization = match authorization {
                Err(err) if bad_nonce(&err) && tries < NONCE_TRIES => {
                    tries += 1;
                    continue 'answering;
                }
                other => other?,
            };
            let name = authorization.identifier().to_string();
            match authorization.status {
                AuthorizationStatus::Pending if !answered.contains(&name) => {}
                AuthorizationStatus::Pending | AuthorizationStatus::Valid => continue,
                other => {
                    return Err(OrderError::Authorization(format!(
                        "authorization for {name} is {other:?}"
                    )));
                }
            }
            let challenge = authorization.challenge(kind.clone()).ok_or_else(|| {
                OrderError::Authorization(format!("the CA offers no {kind:?} challenge for {name}"))
            })?;
            let key_authorization = challenge.key_authorization().as_str().to_owned();
            let answer = match cert.challenge {
                Challenge::Http01 => Answer::Http01 {
                    token: challenge.token.clone(),
                    key_authorization,
                },
                Challenge::TlsAlpn01 => Answer::TlsAlpn01 {
                    name: name.clone(),
                    key_authorization,
                },
            };
            solver.add(answer).map_err(OrderError::Authorization)?;
            answered.push(name);
        }
        break;
    }
    if !answered.is_empty() {
        solver
            .publish()
            .await
            .map_err(|e| OrderError::Authorization(format!("sharing the answers: {e}")))?;
        let mut told: Vec<String> = Vec::new();
        let mut tries = 0;
        'telling: loop {
            let mut authorizations = order.authorizations();
            while let Some(authorization) = authorizations.next().await {
                let mut authorization = authorization?;
                let name = authorization.identifier().to_string();
                if !answered.contains(&name) || told.contains(&name) {
                    continue;
                }
                if let Some(mut challenge) = authorization.challenge(kind.clone()) {
                    match challenge.set_ready().await {
                        Err(err) if bad_nonce(&err) && tries < NONCE_TRIES => {
                            tries += 1;
                            continue 'telling;
                        }
                        other => other?,
                    }
                }
                told.push(name);
            }
            break;
        }
    }
    match patiently!(order.poll_ready(&patience()).await)? {
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
    let key = match cert.key_type {
        KeyType::EcdsaP256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?,
        KeyType::Rsa2048 => KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256)?,
    };
    let mut params = CertificateParams::new(cert.names.clone())?;
    params.distinguished_name = DistinguishedName::new();
    let csr = params.serialize_request(&key)?;
    patiently!(order.finalize_csr(csr.der()).await)?;
    let chain_pem = patiently!(order.poll_certificate(&patience()).await)?;
    Ok(Issued {
        chain_pem,
        key_pem: key.serialize_pem(),
    })
}
