//! Why a request failed, who is to blame, and the one place that maps each reason to an HTTP
//! status. A failed attempt on a backend carries its `UpstreamFault` (`upstream.rs`).

mod upstream;

pub use upstream::{Failure, UpstreamError, UpstreamFault, is_idempotent};

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
    /// An attempt on a backend failed.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// The client broke its request body: malformed, abandoned or too slow. Never the
    /// backend's fault.
    #[error("client request body: {0:?}")]
    ClientBody(ClientFault),
    /// The client's request is refused before anything is sent: malformed (400) or beyond
    /// what the proxy accepts (405, 413, 414, 431, 501).
    #[error("request refused with {0}: {1}")]
    Refused(StatusCode, &'static str),
    /// The route does not let the client's address in (403).
    #[error("the route's ip_rules refuse the client's address")]
    Forbidden,
    /// The pool's admission turned the request away (503).
    #[error("pool {pool} shed the request: {}", reason.as_str())]
    Shed {
        /// The pool's name.
        pool: Arc<str>,
        /// Why.
        reason: Shed,
        /// Seconds the client is asked to wait.
        retry_after: u32,
    },
}

/// Why a pool's admission shed a request rather than admit it; the `reason` label of
/// `switchyard_admission_shed_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shed {
    /// The queue already held its `queue` requests.
    QueueFull = 0,
    /// It waited `queue_timeout` without a place freeing.
    QueueTimeout = 1,
}

impl Shed {
    /// Every reason, in label order.
    pub const ALL: [Shed; 2] = [Shed::QueueFull, Shed::QueueTimeout];

    /// The metric label and access-log word.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::QueueFull => "queue_full",
            Self::QueueTimeout => "queue_timeout",
        }
    }
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
            Self::NoBackend { .. } | Self::Shed { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Upstream(err) => err.fault.status(),
            Self::Refused(status, _) => *status,
            Self::Forbidden => StatusCode::FORBIDDEN,
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
            Self::NoBackend { .. } => "no backend available, try again shortly\n",
            Self::Shed { .. } => "server busy, try again shortly\n",
            Self::Upstream(err) => match err.fault {
                UpstreamFault::Saturated => "no backend available, try again shortly\n",
                UpstreamFault::Connect | UpstreamFault::Reset | UpstreamFault::Invalid(_) => {
                    "upstream connection failed\n"
                }
                UpstreamFault::ConnectTimeout | UpstreamFault::ResponseTimeout => {
                    "upstream timed out\n"
                }
                UpstreamFault::DrainCut => "upstream connection closed\n",
            },
            Self::ClientBody(ClientFault::Malformed) => "malformed request body\n",
            Self::ClientBody(ClientFault::Timeout) => "request body timed out\n",
            Self::ClientBody(ClientFault::Abandoned) => "client closed the request\n",
            Self::ClientBody(ClientFault::TooLarge) => "request body too large\n",
            Self::Refused(_, reason) => reason,
            Self::Forbidden => "forbidden\n",
        }
    }

    /// How the attempt on a backend failed, if that is what went wrong.
    pub fn upstream_fault(&self) -> Option<UpstreamFault> {
        match self {
            Self::Upstream(err) => Some(err.fault),
            Self::NoRoute
            | Self::NoBackend { .. }
            | Self::Shed { .. }
            | Self::ClientBody(_)
            | Self::Refused(..)
            | Self::Forbidden => None,
        }
    }

    /// What went wrong upstream, as the access log's `upstream_error` says it: one fixed word
    /// per cause; `None` when no backend was at fault or involved.
    pub fn upstream_error(&self) -> Option<&'static str> {
        let err = match self {
            Self::Upstream(err) => err,
            Self::Shed { reason, .. } => return Some(reason.as_str()),
            _ => return None,
        };
        Some(match err.fault {
            UpstreamFault::Connect if err.source.as_deref().is_some_and(is_tls) => "tls_handshake",
            UpstreamFault::Connect => "connect",
            UpstreamFault::ConnectTimeout => "connect_timeout",
            UpstreamFault::ResponseTimeout => "response_timeout",
            UpstreamFault::Saturated => "saturated",
            UpstreamFault::Reset => "reset",
            UpstreamFault::Invalid(_) => "invalid_response",
            UpstreamFault::DrainCut => "drain_deadline",
        })
    }
}

/// Whether a connect failure came from the TLS handshake (tokio-rustls wraps rustls' error
/// in an `io::Error`).
fn is_tls(err: &(dyn std::error::Error + Send + Sync + 'static)) -> bool {
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
