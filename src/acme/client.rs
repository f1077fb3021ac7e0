//! The HTTPS client ACME requests go over: hyper-util's pooled client on rustls, trusting the
//! system's roots, or every certificate of `[acme] ca` for a private CA. A few requests a day
//! on the control plane, so its pool's lock is of no concern here; the request path uses our
//! own upstream pools.

use crate::config::crypto_provider;
use bytes::Bytes;
use hyper_rustls::HttpsConnectorBuilder;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use instant_acme::{BodyWrapper, HttpClient};
use rustls::RootCertStore;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use std::path::Path;

/// A client for the CA's directory: `ca`'s certificates as the only roots, if given.
pub fn for_directory(ca: Option<&Path>) -> Result<Box<dyn HttpClient>, String> {
    let builder = HttpsConnectorBuilder::new();
    let builder = match ca {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in
                CertificateDer::pem_file_iter(ca).map_err(|e| format!("{}: {e}", ca.display()))?
            {
                let cert = cert.map_err(|e| format!("{}: {e}", ca.display()))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("{}: {e}", ca.display()))?;
            }
            let config = rustls::ClientConfig::builder_with_provider(crypto_provider())
                .with_safe_default_protocol_versions()
                .map_err(|e| e.to_string())?
                .with_root_certificates(roots)
                .with_no_client_auth();
            builder.with_tls_config(config)
        }
        None => builder
            .with_provider_and_platform_verifier(crypto_provider())
            .map_err(|e| e.to_string())?,
    };
    let connector = builder.https_only().enable_http1().enable_http2().build();
    let client: Client<_, BodyWrapper<Bytes>> =
        Client::builder(TokioExecutor::new()).build(connector);
    Ok(Box::new(client))
}
