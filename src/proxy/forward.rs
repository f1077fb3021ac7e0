//! Sending one attempt to a backend over one of its pooled HTTP/1.1 connections (or a new one),
//! under timeouts, and classifying what went wrong: whether anything was sent, whose fault.

use crate::error::ProxyError;
use crate::upstream::pool::Connection;
use crate::upstream::{BackendState, Failure, UpstreamBody};
use http::header::HOST;
use http::request::Parts;
use http::uri::{PathAndQuery, Uri};
use http::{HeaderValue, Method, Request, Response, Version};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::time::Duration;
use tokio::net::TcpStream;

/// The request for one attempt: the client's method, path and (rewritten) headers, sent over
/// HTTP/1.1 in origin form; `Host` is the backend's address if the client sent none.
pub fn upstream_request(
    parts: &Parts,
    body: UpstreamBody,
    backend: &BackendState,
) -> Result<Request<UpstreamBody>, ProxyError> {
    let path_and_query = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    let mut request = Request::new(body);
    *request.method_mut() = parts.method.clone();
    *request.uri_mut() = Uri::from(path_and_query);
    *request.version_mut() = Version::HTTP_11;
    *request.headers_mut() = parts.headers.clone();
    if !request.headers().contains_key(HOST) {
        let host = HeaderValue::from_str(backend.authority.as_str())
            .map_err(|_| ProxyError::BadRequest("invalid request target\n"))?;
        request.headers_mut().insert(HOST, host);
    }
    Ok(request)
}

/// Sends one attempt to `backend`: on an idle pooled connection if there is one that still
/// works, else on a new one. Returns the response and the connection, which goes back to the
/// pool once the response body has been read.
pub async fn send(
    mut request: Request<UpstreamBody>,
    backend: &BackendState,
    connect_timeout: Duration,
    response_timeout: Duration,
) -> Result<(Response<Incoming>, Connection), ProxyError> {
    loop {
        let (mut connection, reused) = match backend.connections.check_out() {
            Some(connection) => (connection, true),
            None => (connect(backend, connect_timeout).await?, false),
        };
        if let Err(err) = connection.ready().await {
            if reused {
                continue; // closed while idle: try the next one
            }
            return Err(protocol_error(backend, err));
        }
        let sent = connection.try_send_request(request);
        match tokio::time::timeout(response_timeout, sent).await {
            Ok(Ok(response)) => return Ok((response, connection)),
            Ok(Err(mut err)) => match err.take_message() {
                // The request never left: an idle connection the backend had closed means
                // trying again; a new connection that died at once is a failure to connect.
                Some(unsent) if reused => request = unsent,
                Some(_) => {
                    return Err(ProxyError::UpstreamConnect {
                        backend: backend.name.clone(),
                        source: err.into_error().into(),
                    });
                }
                None => return Err(protocol_error(backend, err.into_error())),
            },
            Err(_elapsed) => {
                return Err(ProxyError::UpstreamTimeout {
                    backend: backend.name.clone(),
                    connecting: false,
                });
            }
        }
    }
}

fn protocol_error(backend: &BackendState, err: hyper::Error) -> ProxyError {
    ProxyError::UpstreamProtocol {
        backend: backend.name.clone(),
        source: err.into(),
    }
}

/// Opens a new connection to `backend` and starts the task that drives it.
async fn connect(backend: &BackendState, timeout: Duration) -> Result<Connection, ProxyError> {
    let connect = TcpStream::connect(backend.authority.as_str());
    let stream = match tokio::time::timeout(timeout, connect).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(err)) => {
            return Err(ProxyError::UpstreamConnect {
                backend: backend.name.clone(),
                source: err.into(),
            });
        }
        Err(_elapsed) => {
            return Err(ProxyError::UpstreamTimeout {
                backend: backend.name.clone(),
                connecting: true,
            });
        }
    };
    if let Err(err) = stream.set_nodelay(true) {
        tracing::debug!(%err, backend = %backend.name, "cannot set TCP_NODELAY");
    }
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|err| ProxyError::UpstreamConnect {
            backend: backend.name.clone(),
            source: err.into(),
        })?;
    let name = backend.name.clone();
    tokio::spawn(async move {
        if let Err(err) = connection.await {
            tracing::debug!(backend = %name, error = %err, "upstream connection ended with an error");
        }
    });
    Ok(sender)
}

/// The passive-health failure an upstream error counts as, if it is the backend's fault.
pub fn failure_of(err: &ProxyError) -> Option<Failure> {
    match err {
        ProxyError::UpstreamConnect { .. } => Some(Failure::Connect),
        ProxyError::UpstreamTimeout {
            connecting: true, ..
        } => Some(Failure::Connect),
        ProxyError::UpstreamTimeout {
            connecting: false, ..
        } => Some(Failure::Timeout),
        ProxyError::UpstreamProtocol { .. } => Some(Failure::Reset),
        ProxyError::NoRoute
        | ProxyError::NoBackend { .. }
        | ProxyError::IncompleteBody(_)
        | ProxyError::BadRequest(_) => None,
    }
}

/// Whether another backend may be tried after `err`. A connection never established sent
/// nothing, so any request may go elsewhere; a reset before the response only for idempotent
/// methods (RFC 9110 §9.2.2); a response timeout never, since the backend may still be working.
pub fn may_retry(err: &ProxyError, method: &Method) -> bool {
    match err {
        ProxyError::UpstreamConnect { .. }
        | ProxyError::UpstreamTimeout {
            connecting: true, ..
        } => true,
        ProxyError::UpstreamProtocol { .. } => is_idempotent(method),
        ProxyError::UpstreamTimeout {
            connecting: false, ..
        }
        | ProxyError::NoRoute
        | ProxyError::NoBackend { .. }
        | ProxyError::IncompleteBody(_)
        | ProxyError::BadRequest(_) => false,
    }
}

fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}
