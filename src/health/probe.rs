//! One probe: a TCP connect, or an HTTP request on a fresh connection in the pool's protocol
//! and TLS settings, under the timeout.

use crate::body::{UpstreamBody, grpc_status};
use crate::config::{HealthCheckConfig, Probe};
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
            Probe::Grpc { service } => grpc_check(target, authority, service).await,
        }
    };
    match tokio::time::timeout(check.timeout, probe).await {
        Ok(result) => result,
        Err(_) => Err(format!("timed out after {:?}", check.timeout)),
    }
}

/// `grpc.health.v1.Health/Check` for `service`: passes when the answer is `SERVING` with
/// `grpc-status: 0`. The messages are tiny, so they are written and read by hand: a request is
/// the 5-byte gRPC frame prefix and field 1 (`service`, a string); the answer's field 1 is the
/// status enum (`SERVING` is 1).
async fn grpc_check(
    target: &ProbeTarget,
    authority: &Authority,
    service: &str,
) -> Result<(), String> {
    use http_body_util::BodyExt;
    let mut message = Vec::with_capacity(7 + service.len());
    if !service.is_empty() {
        message.push(0x0a); // field 1, length-delimited
        push_varint(&mut message, service.len() as u64);
        message.extend_from_slice(service.as_bytes());
    }
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
    frame.extend_from_slice(&message);
    let mut request = probe_request(
        target,
        &http::Method::POST,
        authority.as_str(),
        "/grpc.health.v1.Health/Check",
    )?;
    *request.body_mut() = UpstreamBody::Bytes(Full::new(Bytes::from(frame)));
    let headers = request.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    headers.insert(header::TE, HeaderValue::from_static("trailers"));
    let response = pool::send_alone(authority, &target.upstream, &target.dial, request)
        .await
        .map_err(|err| crate::error::chain(&err))?;
    if response.status() != http::StatusCode::OK {
        return Err(format!("status {}", response.status().as_u16()));
    }
    let (parts, body) = response.into_parts();
    let collected = body
        .collect()
        .await
        .map_err(|err| format!("body: {}", crate::error::chain(&err)))?;
    let status = collected
        .trailers()
        .and_then(grpc_status)
        .or_else(|| grpc_status(&parts.headers));
    if status != Some(0) {
        return Err(status.map_or_else(
            || "no grpc-status".to_owned(),
            |status| format!("grpc-status {status}"),
        ));
    }
    let bytes = collected.to_bytes();
    match serving_status(bytes.get(5..).unwrap_or_default()) {
        1 => Ok(()),
        2 => Err("NOT_SERVING".to_owned()),
        other => Err(format!("serving status {other}")),
    }
}

/// Field 1 of a `HealthCheckResponse` (0, `UNKNOWN`, when absent).
fn serving_status(message: &[u8]) -> u64 {
    match message {
        [0x08, rest @ ..] => read_varint(rest),
        _ => 0,
    }
}

fn push_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn read_varint(bytes: &[u8]) -> u64 {
    let mut value = 0u64;
    for (i, byte) in bytes.iter().take(10).enumerate() {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            break;
        }
    }
    value
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_serving_status_of_a_health_answer() {
        assert_eq!(serving_status(&[0x08, 0x01]), 1);
        assert_eq!(serving_status(&[0x08, 0x02]), 2);
        assert_eq!(serving_status(&[]), 0, "an empty message is UNKNOWN");
        let mut long = Vec::new();
        push_varint(&mut long, 300);
        assert_eq!(long, [0xac, 0x02]);
        assert_eq!(read_varint(&long), 300);
    }
}
