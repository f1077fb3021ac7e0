//! OCSP stapling: for every served certificate (from files or ACME) whose leaf names an OCSP
//! responder and whose chain carries its issuer, the response is fetched in the background,
//! checked (successful, this certificate, `good`, not stale), and stapled to new handshakes;
//! fetched again half-way to its `nextUpdate`. A failed fetch keeps the last response while it
//! is valid. Never on a handshake: a handshake reads what is stapled.

use crate::live_certs::{LiveCerts, Staples};
use crate::metrics::Metrics;
use bytes::Bytes;
use der::{Decode, Encode};
use http_body_util::{BodyExt, Full, Limited};
use rustls::sign::CertifiedKey;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio_util::sync::CancellationToken;
use x509_ocsp::builder::OcspRequestBuilder;
use x509_ocsp::{BasicOcspResponse, CertStatus, OcspResponse, OcspResponseStatus, Request};

/// How often served certificates are looked at (new ones are stapled within this time).
const LOOK_EVERY: Duration = Duration::from_secs(60);
/// The wait after a failed fetch.
const RETRY: Duration = Duration::from_secs(300);
/// How long one fetch may take.
const FETCH_WITHIN: Duration = Duration::from_secs(10);
/// The largest response read (a response is a few KiB).
const MAX_RESPONSE: usize = 64 * 1024;
/// A certificate that cannot be stapled (no responder named, no issuer in its chain) is looked
/// at again after this.
const UNSTAPLEABLE_AGAIN: Duration = Duration::from_secs(3600);
/// A response without `nextUpdate` is fetched again after this.
const NO_NEXT_UPDATE: Duration = Duration::from_secs(3600);

/// One leaf's staple and when to fetch it again.
struct Kept {
    stapled: Option<(Arc<CertifiedKey>, SystemTime)>,
    fetch_at: SystemTime,
}

/// Staples OCSP responses to the certificates `live` serves, until `shutdown`.
pub async fn run(live: Arc<LiveCerts>, metrics: Metrics, shutdown: CancellationToken) {
    let counter = |result| metrics.counter(crate::metrics::OCSP_FETCHES, &[("result", result)]);
    let (stapled, refused, failed) = (counter("stapled"), counter("refused"), counter("failed"));
    let mut kept: HashMap<Box<[u8]>, Kept> = HashMap::new();
    loop {
        let served = live.served();
        let now = SystemTime::now();
        kept.retain(|leaf, _| {
            served
                .iter()
                .any(|k| k.cert.first().is_some_and(|l| l.as_ref() == &**leaf))
        });
        for key in &served {
            let Some(leaf) = key.cert.first() else {
                continue;
            };
            let entry = kept.entry(leaf.as_ref().into()).or_insert(Kept {
                stapled: None,
                fetch_at: now,
            });
            if entry.fetch_at > now {
                continue;
            }
            match staple(key).await {
                Ok(None) => entry.fetch_at = now + UNSTAPLEABLE_AGAIN,
                Ok(Some((key, next_update, fetch_at))) => {
                    stapled.increment(1);
                    entry.stapled = Some((key, next_update));
                    entry.fetch_at = fetch_at;
                }
                Err(err) => {
                    match err {
                        Failure::Refused(_) => refused.increment(1),
                        Failure::Unanswered(_) => failed.increment(1),
                    }
                    tracing::warn!(%err, "OCSP response not stapled: the last one (if still valid) stays");
                    entry.fetch_at = now + RETRY;
                }
            }
            // A response past its nextUpdate is no longer stapled.
            if entry.stapled.as_ref().is_some_and(|(_, next)| *next <= now) {
                entry.stapled = None;
            }
        }
        let staples: Staples = kept
            .iter()
            .filter_map(|(leaf, k)| Some((leaf.clone(), Arc::clone(&k.stapled.as_ref()?.0))))
            .collect();
        live.set_staples(staples);
        tokio::select! {
            () = tokio::time::sleep(LOOK_EVERY) => {}
            () = shutdown.cancelled() => return,
        }
    }
}

/// Why a certificate got no new staple.
#[derive(Debug, thiserror::Error)]
enum Failure {
    /// The responder answered, but not a current `good` answer for this certificate.
    #[error("{0}")]
    Refused(String),
    /// No usable answer: the responder unreachable, slow, or the request not made.
    #[error("{0}")]
    Unanswered(String),
}

/// `key` with a fresh OCSP response stapled, its `nextUpdate` and when to fetch again; `None`
/// when it cannot be stapled (no responder named, no issuer in the chain).
async fn staple(
    key: &CertifiedKey,
) -> Result<Option<(Arc<CertifiedKey>, SystemTime, SystemTime)>, Failure> {
    let (Some(leaf), Some(issuer)) = (key.cert.first(), key.cert.get(1)) else {
        return Ok(None);
    };
    let Some(url) = responder(leaf) else {
        return Ok(None);
    };
    let unanswered = |e: String| Failure::Unanswered(format!("{url}: {e}"));
    let leaf_cert =
        x509_cert::Certificate::from_der(leaf).map_err(|e| unanswered(e.to_string()))?;
    let issuer_cert =
        x509_cert::Certificate::from_der(issuer).map_err(|e| unanswered(e.to_string()))?;
    let request = Request::from_cert::<sha1::Sha1>(&issuer_cert, &leaf_cert)
        .map_err(|e| unanswered(e.to_string()))?;
    let request = OcspRequestBuilder::default()
        .with_request(request)
        .build()
        .to_der()
        .map_err(|e| unanswered(e.to_string()))?;
    let body = tokio::time::timeout(FETCH_WITHIN, post(&url, request))
        .await
        .map_err(|_| unanswered(format!("no answer within {FETCH_WITHIN:?}")))?
        .map_err(unanswered)?;
    let serial = &leaf_cert.tbs_certificate.serial_number;
    let next_update = check(&body, serial, SystemTime::now())
        .map_err(|e| Failure::Refused(format!("{url}: {e}")))?;
    let now = SystemTime::now();
    let fetch_at = match next_update {
        Some(next) => now + next.duration_since(now).unwrap_or_default() / 2,
        None => now + NO_NEXT_UPDATE,
    };
    let stapled = CertifiedKey {
        ocsp: Some(body.to_vec()),
        ..key.clone()
    };
    tracing::info!(%url, "OCSP response stapled");
    Ok(Some((
        Arc::new(stapled),
        next_update.unwrap_or(now + NO_NEXT_UPDATE * 2),
        fetch_at,
    )))
}

/// The OCSP responder's URL the leaf names (its Authority Information Access), if `http://`.
fn responder(leaf: &[u8]) -> Option<String> {
    use x509_parser::extensions::{GeneralName, ParsedExtension};
    let (_, cert) = x509_parser::parse_x509_certificate(leaf).ok()?;
    cert.extensions()
        .iter()
        .find_map(|ext| match ext.parsed_extension() {
            ParsedExtension::AuthorityInfoAccess(aia) => {
                aia.accessdescs
                    .iter()
                    .find_map(|d| match (&d.access_method, &d.access_location) {
                        (method, GeneralName::URI(uri))
                            if *method
                                == x509_parser::oid_registry::OID_PKIX_ACCESS_DESCRIPTOR_OCSP
                                && uri.starts_with("http://") =>
                        {
                            Some((*uri).to_owned())
                        }
                        _ => None,
                    })
            }
            _ => None,
        })
}

/// The response's `nextUpdate` if it is a successful, current `good` answer for `serial`.
fn check(
    body: &[u8],
    serial: &x509_cert::serial_number::SerialNumber,
    now: SystemTime,
) -> Result<Option<SystemTime>, String> {
    let response =
        OcspResponse::from_der(body).map_err(|e| format!("not an OCSP response: {e}"))?;
    if response.response_status != OcspResponseStatus::Successful {
        return Err(format!("the responder says {:?}", response.response_status));
    }
    let bytes = response
        .response_bytes
        .ok_or("a successful response without a body")?;
    let basic = BasicOcspResponse::from_der(bytes.response.as_bytes())
        .map_err(|e| format!("not a basic OCSP response: {e}"))?;
    let single = basic
        .tbs_response_data
        .responses
        .iter()
        .find(|r| r.cert_id.serial_number == *serial)
        .ok_or("no answer for this certificate")?;
    if !matches!(single.cert_status, CertStatus::Good(_)) {
        return Err(format!(
            "the certificate's status is {:?}",
            single.cert_status
        ));
    }
    let at = |t: &x509_ocsp::OcspGeneralizedTime| UNIX_EPOCH + t.0.to_unix_duration();
    // Five minutes of clock skew allowed, as browsers allow.
    if at(&single.this_update) > now + Duration::from_secs(300) {
        return Err("a response from the future".into());
    }
    let next_update = single.next_update.as_ref().map(at);
    if next_update.is_some_and(|next| next <= now) {
        return Err("a stale response (past its nextUpdate)".into());
    }
    Ok(next_update)
}

/// POSTs `request` to the responder at `url` (plain HTTP/1.1), returning the response body.
async fn post(url: &str, request: Vec<u8>) -> Result<Bytes, String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("{e}"))?;
    let host = uri.host().ok_or("no host")?;
    let port = uri.port_u16().unwrap_or(80);
    let stream = tokio::net::TcpStream::connect((host, port))
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let authority = uri.authority().map_or(host, |a| a.as_str()).to_owned();
    let req = http::Request::post(uri.path_and_query().map_or("/", |p| p.as_str()))
        .header(http::header::HOST, authority)
        .header(http::header::CONTENT_TYPE, "application/ocsp-request")
        .body(Full::new(Bytes::from(request)))
        .map_err(|e| e.to_string())?;
    let response = sender.send_request(req).await.map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        return Err(format!("status {}", response.status()));
    }
    Limited::new(response.into_body(), MAX_RESPONSE)
        .collect()
        .await
        .map(|body| body.to_bytes())
        .map_err(|e| e.to_string())
}
