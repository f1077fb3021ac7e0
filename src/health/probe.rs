//! One probe: a TCP connect or an HTTP request on a fresh connection, under the timeout.

use crate::config::{HealthCheckConfig, Probe};
use bytes::Bytes;
use http::uri::Authority;
use http::{HeaderValue, Request, header};
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpStream;

/// The client probes use: no connection reuse, so every probe tests a new connection.
pub type ProbeClient = Client<HttpConnector, Empty<Bytes>>;

/// A client that opens a new connection for every probe.
pub fn probe_client() -> ProbeClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build(connector)
}

/// Runs one probe; `Err` says why it failed.
pub async fn run_probe(
    client: &ProbeClient,
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
                let host = match host {
                    Some(host) => HeaderValue::from_str(host),
                    None => HeaderValue::from_str(authority.as_str()),
                }
                .map_err(|err| format!("host header: {err}"))?;
                let request = Request::builder()
                    .method(method.clone())
                    .uri(format!("http://{authority}{path}"))
                    .header(header::HOST, host)
                    .header(header::USER_AGENT, "switchyard-health-check")
                    .header(header::CONNECTION, "close")
                    .body(Empty::new())
                    .map_err(|err| format!("request: {err}"))?;
                let response = client
                    .request(request)
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
