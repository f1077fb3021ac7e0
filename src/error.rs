//! Why a request failed, and the one place that maps each reason to an HTTP status.

use crate::body::ClientFault;
use http::StatusCode;
use std::sync::Arc;

/// A request the proxy could not complete, with who is to blame.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// No route matches the host and path.
    #[error("no route for this host and path")]
    NoRoute,
    /// The pool has no backend that can take a request.
    #[error("no backend available in pool {pool}")]
    NoBackend {
        /// The pool's name.
        pool: Arc<str>,
    },
    /// The upstream connection could not be established (nothing was sent).
    #[error("cannot connect to upstream {backend}")]
    UpstreamConnect {
        /// The backend's name.
        backend: Arc<str>,
        /// Why: refused, unreachable, TLS verification failed, ...
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Every connection the backend's `max_connections` allows stayed busy (nothing was sent).
    #[error("upstream {backend} has no free connection")]
    UpstreamSaturated {
        /// The backend's name.
        backend: Arc<str>,
    },
    /// The upstream broke the protocol or closed the connection before a response.
    #[error("upstream {backend} failed before responding")]
    UpstreamProtocol {
        /// The backend's name.
        backend: Arc<str>,
        /// What the connection said.
        #[source]
        source: hyper::Error,
    },
    /// The upstream answered something the proxy will not pass on (an unsolicited `101`, a
    /// `Transfer-Encoding` other than `chunked`).
    #[error("upstream {backend} sent an invalid response: {reason}")]
    UpstreamInvalid {
        /// The backend's name.
        backend: Arc<str>,
        /// What was wrong.
        reason: &'static str,
    },
    /// The upstream did not connect or send response headers in time.
    #[error("upstream {backend} timed out {}", if *.connecting { "connecting" } else { "before responding" })]
    UpstreamTimeout {
        /// The backend's name.
        backend: Arc<str>,
        /// Whether the connection was never established (so nothing was sent).
        connecting: bool,
    },
    /// A drain deadline closed the connection the request was on. The request may have run,
    /// so it is never retried; nor is it the backend's failure.
    #[error("upstream {backend}: connection closed by its drain deadline")]
    DrainCut {
        /// The backend's name.
        backend: Arc<str>,
    },
    /// The client broke its request body: malformed, abandoned or too slow. Never the
    /// backend's fault.
    #[error("client request body: {0:?}")]
    ClientBody(ClientFault),
    /// The client's request is refused before anything is sent: malformed (400) or beyond
    /// what the proxy accepts (405, 413, 414, 431, 501).
    #[error("request refused with {0}: {1}")]
    Refused(StatusCode, &'static str),
}

impl ProxyError {
    /// A malformed request: 400 with `reason` as the body.
    pub const fn bad_request(reason: &'static str) -> Self {
        Self::Refused(StatusCode::BAD_REQUEST, reason)
    }

    /// The status the client receives.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::NoRoute => StatusCode::NOT_FOUND,
            Self::NoBackend { .. } | Self::UpstreamSaturated { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::UpstreamConnect { .. }
            | Self::UpstreamProtocol { .. }
            | Self::UpstreamInvalid { .. }
            | Self::DrainCut { .. } => StatusCode::BAD_GATEWAY,
            Self::UpstreamTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            Self::Refused(status, _) => *status,
            Self::ClientBody(ClientFault::Malformed) => StatusCode::BAD_REQUEST,
            Self::ClientBody(ClientFault::TooLarge) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::ClientBody(ClientFault::Timeout) => StatusCode::REQUEST_TIMEOUT,
            Self::ClientBody(ClientFault::Abandoned) => CLIENT_CLOSED_REQUEST,
        }
    }

    /// The short plain-text body sent with the status; never includes upstream details.
    pub fn client_message(&self) -> &'static str {
        match self {
            Self::NoRoute => "no route for this host and path\n",
            Self::NoBackend { .. } | Self::UpstreamSaturated { .. } => {
                "no backend available, try again shortly\n"
            }
            Self::UpstreamConnect { .. }
            | Self::UpstreamProtocol { .. }
            | Self::UpstreamInvalid { .. } => "upstream connection failed\n",
            Self::UpstreamTimeout { .. } => "upstream timed out\n",
            Self::DrainCut { .. } => "upstream connection closed\n",
            Self::ClientBody(ClientFault::Malformed) => "malformed request body\n",
            Self::ClientBody(ClientFault::Timeout) => "request body timed out\n",
            Self::ClientBody(ClientFault::Abandoned) => "client closed the request\n",
            Self::ClientBody(ClientFault::TooLarge) => "request body too large\n",
            Self::Refused(_, reason) => reason,
        }
    }
}

impl ProxyError {
    /// What went wrong upstream, as the access log's `upstream_error` says it: one fixed word
    /// per cause; `None` when no backend was at fault or involved.
    pub fn upstream_error(&self) -> Option<&'static str> {
        match self {
            Self::UpstreamConnect { source, .. } if is_tls(source.as_ref()) => {
                Some("tls_handshake")
            }
            Self::UpstreamConnect { .. } => Some("connect"),
            Self::UpstreamTimeout {
                connecting: true, ..
            } => Some("connect_timeout"),
            Self::UpstreamTimeout {
                connecting: false, ..
            } => Some("response_timeout"),
            Self::UpstreamSaturated { .. } => Some("saturated"),
            Self::UpstreamProtocol { .. } => Some("reset"),
            Self::UpstreamInvalid { .. } => Some("invalid_response"),
            Self::DrainCut { .. } => Some("drain_deadline"),
            Self::NoRoute | Self::NoBackend { .. } | Self::ClientBody(_) | Self::Refused(..) => {
                None
            }
        }
    }
}

/// Whether a connect failure came from the TLS handshake (tokio-rustls wraps rustls' error
/// in an `io::Error`).
fn is_tls(err: &(dyn std::error::Error + 'static)) -> bool {
    err.downcast_ref::<std::io::Error>()
        .and_then(std::io::Error::get_ref)
        .is_some_and(|inner| inner.is::<rustls::Error>())
}

/// NGINX's 499: the client closed the connection before the response; logged, never sent.
pub const CLIENT_CLOSED_REQUEST: StatusCode = match StatusCode::from_u16(499) {
    Ok(status) => status,
    Err(_) => panic!("499 is a valid status code"),
};

/// An error and its chain of causes on one line (`a: b: c`): hyper's errors say little alone.
pub fn chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}
