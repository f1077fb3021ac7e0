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
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The longest `Retry-After` obeyed: a CA asking for more is waited for this long.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(7 * 86_400);

/// When the CA last asked to be retried no sooner (`Retry-After` on a refusal), as unix seconds;
/// 0 when it did not. Taken by the backoff after a failed order.
#[derive(Debug, Clone, Default)]
pub struct RetryAfter(Arc<AtomicU64>);

impl RetryAfter {
    /// How long from now the CA asked to wait, if it did since the last call.
    pub fn take(&self, now: SystemTime) -> Option<Duration> {
        let at = self.0.swap(0, Ordering::Relaxed);
        let at = UNIX_EPOCH.checked_add(Duration::from_secs(at))?;
        at.duration_since(now).ok().filter(|wait| !wait.is_zero())
    }

    fn note(&self, header: &http::HeaderValue, now: SystemTime) {
        let Some(wait) = parse_retry_after(header, now) else {
            return;
        };
        let at = (now + wait.min(MAX_RETRY_AFTER))
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.0.fetch_max(at, Ordering::Relaxed);
    }
}

/// A `Retry-After` value: delta-seconds or an HTTP date (RFC 9110, section 10.2.3).
fn parse_retry_after(header: &http::HeaderValue, now: SystemTime) -> Option<Duration> {
    let text = header.to_str().ok()?.trim();
    if let Ok(seconds) = text.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(text).ok()?;
    Some(at.duration_since(now).unwrap_or_default())
}

/// The client, noting the CA's `Retry-After` on refusals.
struct Noting<C> {
    inner: C,
    retry_after: RetryAfter,
}

impl<C: HttpClient> HttpClient for Noting<C> {
    fn request(
        &self,
        req: http::Request<BodyWrapper<Bytes>>,
    ) -> Pin<
        Box<dyn Future<Output = Result<instant_acme::BytesResponse, instant_acme::Error>> + Send>,
    > {
        let sent = self.inner.request(req);
        let retry_after = self.retry_after.clone();
        Box::pin(async move {
            let response = sent.await?;
            let status = response.parts.status;
            if status == http::StatusCode::TOO_MANY_REQUESTS
                || status == http::StatusCode::SERVICE_UNAVAILABLE
            {
                if let Some(header) = response.parts.headers.get(http::header::RETRY_AFTER) {
                    retry_after.note(header, SystemTime::now());
                }
            }
            Ok(response)
        })
    }
}

/// A client for the CA's directory: `ca`'s certificates as the only roots, if given; the CA's
/// `Retry-After` on refusals noted in `retry_after`.
pub fn for_directory(
    ca: Option<&Path>,
    retry_after: &RetryAfter,
) -> Result<Box<dyn HttpClient>, String> {
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
    Ok(Box::new(Noting {
        inner: client,
        retry_after: retry_after.clone(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_read_as_seconds_or_a_date_and_bounded() {
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let value = http::HeaderValue::from_static;
        assert_eq!(
            parse_retry_after(&value("120"), now),
            Some(Duration::from_secs(120))
        );
        let date = httpdate::fmt_http_date(now + Duration::from_secs(3600));
        let date = http::HeaderValue::from_str(&date).unwrap();
        assert_eq!(
            parse_retry_after(&date, now),
            Some(Duration::from_secs(3600))
        );
        assert_eq!(parse_retry_after(&value("soon"), now), None);
        let noted = RetryAfter::default();
        noted.note(&value("99999999999"), now);
        assert_eq!(noted.take(now), Some(MAX_RETRY_AFTER), "bounded");
        assert_eq!(noted.take(now), None, "taken once");
    }
}
