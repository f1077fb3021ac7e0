//! A failed attempt on a backend: what went wrong (`UpstreamFault`), and what follows from
//! it, each decided once here: whether the request reached the backend, whether it counts
//! against the backend's passive health, whether another backend may take it, which status
//! the client gets.

use crate::config::RetryOn;
use http::{Method, StatusCode};
use std::sync::Arc;

/// An attempt on a backend that brought no usable response.
#[derive(Debug)]
pub struct UpstreamError {
    /// The backend's name.
    pub backend: Arc<str>,
    /// What went wrong, which decides everything that follows.
    pub fault: UpstreamFault,
    /// The cause, where there is one: refused, unreachable, TLS, what hyper said.
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

/// How an attempt on a backend failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamFault {
    /// The connection could not be established: refused, unreachable, TLS refused.
    Connect,
    /// The connection was not established within the connect timeout.
    ConnectTimeout,
    /// Every connection the backend's `max_connections` allows stayed busy.
    Saturated,
    /// The backend broke the protocol or closed the connection before a response.
    Reset,
    /// The backend answered something the proxy will not pass on (an unsolicited `101`, a
    /// `Transfer-Encoding` other than `chunked`).
    Invalid(&'static str),
    /// No response headers in time.
    ResponseTimeout,
    /// A drain deadline closed the connection the request was on.
    DrainCut,
}

/// A failure seen on real traffic, as the backend's passive health counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Connection refused or connect timeout.
    Connect,
    /// No response headers within the timeout.
    Timeout,
    /// Connection reset or broken response.
    Reset,
    /// A 5xx response.
    Status5xx,
}

impl Failure {
    /// Every kind, in a fixed order (see `index`).
    pub const ALL: [Self; 4] = [Self::Connect, Self::Timeout, Self::Reset, Self::Status5xx];

    /// The position of this kind in `ALL`.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The failure's name everywhere: logs, reasons, the `reason` label of ejections.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connect => "connect_failure",
            Self::Timeout => "timeout",
            Self::Reset => "reset",
            Self::Status5xx => "5xx",
        }
    }
}

impl UpstreamFault {
    /// Whether the request may have reached the backend. A connection never made sent
    /// nothing: any request may go elsewhere, and its retry costs the backends nothing.
    pub const fn sent(self) -> bool {
        match self {
            Self::Connect | Self::ConnectTimeout | Self::Saturated => false,
            Self::Reset | Self::Invalid(_) | Self::ResponseTimeout | Self::DrainCut => true,
        }
    }

    /// The failure this counts as against the backend's passive health, if it is the
    /// backend's fault. A full pool is the proxy's own limit; a drain deadline the operator's.
    pub const fn failure(self) -> Option<Failure> {
        match self {
            Self::Connect | Self::ConnectTimeout => Some(Failure::Connect),
            Self::Reset | Self::Invalid(_) => Some(Failure::Reset),
            Self::ResponseTimeout => Some(Failure::Timeout),
            Self::Saturated | Self::DrainCut => None,
        }
    }

    /// Whether another backend may take the request. Anything unsent may go; a reset or an
    /// unusable response only for idempotent methods (RFC 9110 §9.2.2) and when the pool's
    /// `retry_on` says so, likewise a response timeout (by default resets are retried,
    /// timeouts not: the backend may still be working); a drain cut never (the request may
    /// have run, and the operator ended it).
    pub fn may_retry(self, method: &Method, retry_on: &RetryOn) -> bool {
        match self {
            Self::Connect | Self::ConnectTimeout | Self::Saturated => true,
            Self::Reset | Self::Invalid(_) => retry_on.reset && is_idempotent(method),
            Self::ResponseTimeout => retry_on.timeout && is_idempotent(method),
            Self::DrainCut => false,
        }
    }

    /// The status the client receives.
    pub const fn status(self) -> StatusCode {
        match self {
            Self::Saturated => StatusCode::SERVICE_UNAVAILABLE,
            Self::Connect | Self::Reset | Self::Invalid(_) | Self::DrainCut => {
                StatusCode::BAD_GATEWAY
            }
            Self::ConnectTimeout | Self::ResponseTimeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }
}

/// Whether `method` may be repeated without changing the outcome (RFC 9110 §9.2.2).
pub fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

impl UpstreamError {
    /// A failure of `backend` without a cause of its own.
    pub fn new(backend: Arc<str>, fault: UpstreamFault) -> Self {
        Self {
            backend,
            fault,
            source: None,
        }
    }

    /// A failure of `backend` caused by `source`.
    pub fn caused(
        backend: Arc<str>,
        fault: UpstreamFault,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self {
            backend,
            fault,
            source: Some(source.into()),
        }
    }
}

impl std::fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let backend = &self.backend;
        match self.fault {
            UpstreamFault::Connect => write!(f, "cannot connect to upstream {backend}"),
            UpstreamFault::ConnectTimeout => write!(f, "upstream {backend} timed out connecting"),
            UpstreamFault::Saturated => write!(f, "upstream {backend} has no free connection"),
            UpstreamFault::Reset => write!(f, "upstream {backend} failed before responding"),
            UpstreamFault::Invalid(reason) => {
                write!(f, "upstream {backend} sent an invalid response: {reason}")
            }
            UpstreamFault::ResponseTimeout => {
                write!(f, "upstream {backend} timed out before responding")
            }
            UpstreamFault::DrainCut => {
                write!(
                    f,
                    "upstream {backend}: connection closed by its drain deadline"
                )
            }
        }
    }
}

impl std::error::Error for UpstreamError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|source| source as _)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ProxyError;

    const FAULTS: [UpstreamFault; 7] = [
        UpstreamFault::Connect,
        UpstreamFault::ConnectTimeout,
        UpstreamFault::Saturated,
        UpstreamFault::Reset,
        UpstreamFault::Invalid("unsolicited 101 Switching Protocols"),
        UpstreamFault::ResponseTimeout,
        UpstreamFault::DrainCut,
    ];

    fn retry_on(reset: bool, timeout: bool) -> RetryOn {
        RetryOn {
            reset,
            timeout,
            server_error: false,
        }
    }

    #[test]
    fn anything_never_sent_may_go_to_another_backend_whatever_the_method() {
        for fault in FAULTS.into_iter().filter(|f| !f.sent()) {
            assert!(
                fault.may_retry(&Method::POST, &retry_on(false, false)),
                "{fault:?}"
            );
        }
    }

    #[test]
    fn a_sent_request_is_retried_only_when_idempotent_and_retry_on_allows_it() {
        let cases = [
            (UpstreamFault::Reset, retry_on(true, false)),
            (UpstreamFault::Invalid("x"), retry_on(true, false)),
            (UpstreamFault::ResponseTimeout, retry_on(false, true)),
        ];
        for (fault, allowed) in cases {
            assert!(fault.may_retry(&Method::GET, &allowed), "{fault:?}");
            assert!(!fault.may_retry(&Method::POST, &allowed), "{fault:?} POST");
            assert!(
                !fault.may_retry(&Method::PATCH, &allowed),
                "{fault:?} PATCH"
            );
            assert!(
                !fault.may_retry(&Method::GET, &retry_on(false, false)),
                "{fault:?} off"
            );
        }
        // Each condition opens only its own kind.
        assert!(!UpstreamFault::Reset.may_retry(&Method::GET, &retry_on(false, true)));
        assert!(!UpstreamFault::ResponseTimeout.may_retry(&Method::GET, &retry_on(true, false)));
    }

    #[test]
    fn a_drain_cut_is_never_retried_nor_the_backends_failure() {
        let cut = UpstreamFault::DrainCut;
        assert!(cut.sent());
        assert!(!cut.may_retry(&Method::GET, &retry_on(true, true)));
        assert_eq!(cut.failure(), None);
        assert_eq!(cut.status(), StatusCode::BAD_GATEWAY);
    }

    #[test]
    fn each_fault_counts_against_the_backend_as_its_kind_and_answers_its_status() {
        let expected = [
            (Some(Failure::Connect), 502, false, "connect"),
            (Some(Failure::Connect), 504, false, "connect_timeout"),
            (None, 503, false, "saturated"),
            (Some(Failure::Reset), 502, true, "reset"),
            (Some(Failure::Reset), 502, true, "invalid_response"),
            (Some(Failure::Timeout), 504, true, "response_timeout"),
            (None, 502, true, "drain_deadline"),
        ];
        for (fault, (failure, status, sent, word)) in FAULTS.into_iter().zip(expected) {
            let err = ProxyError::from(UpstreamError::new("b".into(), fault));
            assert_eq!(fault.failure(), failure, "{fault:?}");
            assert_eq!(err.status().as_u16(), status, "{fault:?}");
            assert_eq!(fault.sent(), sent, "{fault:?}");
            assert_eq!(err.upstream_error(), Some(word), "{fault:?}");
            assert_eq!(err.upstream_fault(), Some(fault));
        }
    }

    #[test]
    fn idempotent_methods_are_those_of_rfc_9110() {
        for method in ["GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"] {
            assert!(is_idempotent(&method.parse().expect("method")), "{method}");
        }
        for method in ["POST", "PATCH", "CONNECT", "PURGE"] {
            assert!(!is_idempotent(&method.parse().expect("method")), "{method}");
        }
    }
}
