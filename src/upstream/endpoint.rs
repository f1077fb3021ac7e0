//! One URL the control plane calls now and then (a webhook, a JWKS document): its host, its
//! path, and a connection of its own per request, over TLS verified with the system's CAs for
//! `https`.

use super::pool::{self, Dial, Pings, Upstream};
use crate::body::UpstreamBody;
use crate::config::{Protocol, UpstreamConfig, UpstreamTls};
use http::{Request, Response, header};
use hyper::body::Incoming;
use std::sync::Arc;
use std::time::Duration;

/// Where requests to one URL go.
#[derive(Debug)]
pub struct Endpoint {
    /// Host and port (the scheme's default when the URL names none).
    pub authority: http::uri::Authority,
    /// The URL's path and query: requests go in origin form.
    pub path: http::Uri,
    upstream: Upstream,
}

impl Endpoint {
    /// The endpoint of an `http://` or `https://` URL.
    pub fn new(url: &http::Uri) -> Result<Self, String> {
        let https = url.scheme_str() == Some("https");
        let authority = url.authority().ok_or("the URL has no host")?.clone();
        let authority = if authority.port().is_some() {
            authority
        } else {
            let port = if https { 443 } else { 80 };
            format!("{}:{port}", authority.host())
                .parse()
                .map_err(|err| format!("{err}"))?
        };
        let tls = if https {
            Some(Arc::new(
                UpstreamTls::system().ok_or("no system CA certificates to verify https with")?,
            ))
        } else {
            None
        };
        Ok(Self {
            authority,
            path: url
                .path_and_query()
                .map_or_else(|| http::Uri::from_static("/"), |p| p.clone().into()),
            upstream: Upstream::new(UpstreamConfig {
                protocol: Protocol::Http1,
                tls,
                ..UpstreamConfig::default()
            }),
        })
    }

    /// A request to the URL with `Host` and `User-Agent` set.
    pub fn request(&self, method: http::Method, body: UpstreamBody) -> Request<UpstreamBody> {
        let mut request = Request::new(body);
        *request.method_mut() = method;
        *request.uri_mut() = self.path.clone();
        let headers = request.headers_mut();
        if let Ok(host) = http::HeaderValue::from_str(self.authority.as_str()) {
            headers.insert(header::HOST, host);
        }
        headers.insert(
            header::USER_AGENT,
            http::HeaderValue::from_static(concat!("switchyard/", env!("CARGO_PKG_VERSION"))),
        );
        request
    }

    /// Sends `request` on a connection of its own; the whole exchange up to the response
    /// headers within `timeout`.
    pub async fn send(
        &self,
        request: Request<UpstreamBody>,
        timeout: Duration,
    ) -> Result<Response<Incoming>, String> {
        let dial = Dial {
            connect_timeout: timeout,
            pings: Pings {
                interval: timeout,
                timeout,
            },
        };
        let sent = pool::send_alone(&self.authority, &self.upstream, &dial, request);
        match tokio::time::timeout(timeout, sent).await {
            Err(_) => Err(format!("no answer within {timeout:?}")),
            Ok(Err(err)) => Err(crate::error::chain(&err)),
            Ok(Ok(response)) => Ok(response),
        }
    }
}
