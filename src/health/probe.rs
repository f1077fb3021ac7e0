//! One probe: a TCP connect, or an HTTP request on a fresh connection in the pool's protocol
//! and TLS settings, under the timeout.

use crate::config::{HealthCheckConfig, Probe};
use crate::proxy::UpstreamBody;
use crate::upstream::pool::{self, Dial, Upstream};
use bytes::Bytes;
use http::uri::{Authority, Scheme};
use http::{HeaderValue, Request, Uri, header};
use http_body_util::Full;
use std::sync::Arc;
use tokio::net::TcpStream;

/// How probes reach a pool's backends: its connection settings and `[timeouts]`.
#[derive(Debug, Clone)]
pub struct ProbeTarget {
    /// The pool's protocol and TLS.
    pub upstream: Arc<Upstream>,
    /// Connect timeout and HTTP/2 PINGs.
    pub dial: Dial,
}

/// Runs one probe; `Err` says why it failed.
pub async fn run_probe(
    target: &ProbeTarget,
    authority: &Authority,
    check: &HealthCheckConfig,
) -> Result<(), String> {
    let probe = async {
        match &check.probe {
            Probe::Tcp => TcpStream::connect(authority.as_str())
                .await
                .map(drop)
                .map_err(|err| format!("connect: {err}")),
            Probe::Http {
                method,
                path,
                expected_status,
                host,
            } => {
                let host = host.as_deref().unwrap_or(authority.as_str());
                let request = probe_request(target, method, host, path)?;
                let response = pool::send_alone(authority, &target.upstream, &target.dial, request)
                    .await
                    .map_err(|err| crate::error::chain(&err))?;
                let status = response.status().as_u16();
                if expected_status
                    .iter()
                    .any(|&(lo, hi)| (lo..=hi).contains(&status))
                {
                    Ok(())
                } else {
                    Err(format!("status {status}"))
                }
            }
        }
    };
    match tokio::time::timeout(check.timeout, probe).await {
        Ok(result) => result,
        Err(_) => Err(format!("timed out after {:?}", check.timeout)),
    }
}

/// The probe's request in the pool's protocol: origin form and `Host` for HTTP/1.1, absolute
/// form (`:authority`) for HTTP/2.
fn probe_request(
    target: &ProbeTarget,
    method: &http::Method,
    host: &str,
    path: &str,
) -> Result<Request<UpstreamBody>, String> {
    let protocol = target.upstream.config.protocol;
    let mut request = Request::builder()
        .method(method.clone())
        .header(header::USER_AGENT, "switchyard-health-check");
    request = if protocol.is_h2() {
        let scheme = if target.upstream.config.tls.is_some() {
            Scheme::HTTPS
        } else {
            Scheme::HTTP
        };
        let uri = Uri::builder()
            .scheme(scheme)
            .authority(host)
            .path_and_query(path)
            .build()
            .map_err(|err| format!("request target: {err}"))?;
        request.uri(uri).version(http::Version::HTTP_2)
    } else {
        let host = HeaderValue::from_str(host).map_err(|err| format!("host header: {err}"))?;
        request
            .uri(path)
            .header(header::HOST, host)
            .header(header::CONNECTION, "close")
    };
    request
        .body(UpstreamBody::Bytes(Full::new(Bytes::new())))
        .map_err(|err| format!("request: {err}"))
}
