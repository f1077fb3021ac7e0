//! The body vocabulary every tier speaks: the client's request body as the proxy reads it (cut
//! off when the client stops sending, remembering whether the client broke it, so a failed
//! exchange can be blamed on the client rather than the backend), the body sent upstream, and
//! gRPC's status field.

use bytes::Bytes;
use http::HeaderName;
use http_body_util::Full;
use hyper::body::{Body, Frame, SizeHint};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

mod inbound;

pub use inbound::{ClientRequest, Http3Body, Inbound, InboundError};

/// How a client broke its own request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientFault {
    /// Invalid framing (a bad chunk size, a body shorter or longer than declared).
    Malformed,
    /// The client closed the connection before its body was complete.
    Abandoned,
    /// The client stopped sending for longer than `timeouts.request_body`.
    Timeout,
    /// The body grew past the route's `max_body_bytes`.
    TooLarge,
}

impl ClientFault {
    fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(Self::Malformed),
            2 => Some(Self::Abandoned),
            3 => Some(Self::Timeout),
            4 => Some(Self::TooLarge),
            _ => None,
        }
    }

    fn code(self) -> u8 {
        match self {
            Self::Malformed => 1,
            Self::Abandoned => 2,
            Self::Timeout => 3,
            Self::TooLarge => 4,
        }
    }
}

/// The error a client body yields; the upstream client passes it on as the cause of its own.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// Reading the client's body failed.
    #[error("client request body: {0}")]
    Client(#[source] InboundError),
    /// The client sent nothing for the request-body timeout.
    #[error("client request body: no data for {0:?}")]
    Timeout(Duration),
    /// The body grew past the route's limit.
    #[error("client request body: more than {0} bytes")]
    TooLarge(u64),
}

/// What became of a client body, shared with the request that forwards it: the bytes read so
/// far, if the client broke it, how, and whether the proxy is waiting on the client, so that
/// the response-header timeout measures only the backend's silence.
#[derive(Debug)]
pub struct Progress {
    bytes: AtomicU64,
    fault: AtomicU8,
    /// Set while the body's reader waits for the client's next bytes.
    waiting: AtomicBool,
    /// When the last piece was handed on (ms since `base`): the backend was taking the body.
    last_piece_ms: AtomicU64,
    base: Instant,
}

impl Default for Progress {
    fn default() -> Self {
        Self {
            bytes: AtomicU64::new(0),
            fault: AtomicU8::new(0),
            waiting: AtomicBool::new(false),
            last_piece_ms: AtomicU64::new(0),
            base: Instant::now(),
        }
    }
}

impl Progress {
    /// When the backend's silence began, as seen from the body: `None` while the proxy waits on
    /// the client (the client's silence is the request-body timeout's business), else the
    /// later of `since` and the last piece of body the backend took.
    pub fn backend_silent_since(&self, since: Instant) -> Option<Instant> {
        // Relaxed: a hint for a timer on the same request; a stale read only delays it by one
        // re-arm.
        if self.waiting.load(Ordering::Relaxed) {
            return None;
        }
        let last = self.base + Duration::from_millis(self.last_piece_ms.load(Ordering::Relaxed));
        Some(last.max(since))
    }

    /// Whether the proxy is waiting on the client's body right now.
    pub fn waiting_on_client(&self) -> bool {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Records that the client is to blame for a timeout that struck while its body was due.
    pub fn blame_client_for_timeout(&self) {
        self.fault
            .store(ClientFault::Timeout.code(), Ordering::Relaxed);
    }

    /// Body bytes read from the client so far.
    pub fn bytes(&self) -> u64 {
        // Relaxed (here and below): read after the exchange that wrote it has returned to this
        // task, only for the log and the blame.
        self.bytes.load(Ordering::Relaxed)
    }

    /// The fault recorded, if the client broke its body.
    pub fn fault(&self) -> Option<ClientFault> {
        ClientFault::from_code(self.fault.load(Ordering::Relaxed))
    }
}

/// A client request body with an idle timer between reads.
#[derive(Debug)]
pub struct ClientBody {
    inner: Inbound,
    idle: Duration,
    timer: Pin<Box<Sleep>>,
    /// The route's limit, and the bytes still allowed under it.
    limit: Option<(u64, u64)>,
    progress: Arc<Progress>,
}

impl ClientBody {
    /// Wraps `inner`; a wait of `idle` for the next piece, or more than `limit` bytes, fails
    /// the body.
    pub fn new(
        inner: Inbound,
        idle: Duration,
        limit: Option<u64>,
        progress: Arc<Progress>,
    ) -> Self {
        Self {
            inner,
            idle,
            timer: Box::pin(tokio::time::sleep(idle)),
            limit: limit.map(|l| (l, l)),
            progress,
        }
    }

    fn fail(&mut self, fault: ClientFault) {
        self.progress.fault.store(fault.code(), Ordering::Relaxed);
    }
}

impl Body for ClientBody {
    type Data = bytes::Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<bytes::Bytes>, BodyError>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let len = frame.data_ref().map_or(0, |data| data.len() as u64);
                if let Some((limit, left)) = &mut this.limit {
                    let Some(rest) = left.checked_sub(len) else {
                        let limit = *limit;
                        this.fail(ClientFault::TooLarge);
                        return Poll::Ready(Some(Err(BodyError::TooLarge(limit))));
                    };
                    *left = rest;
                }
                let progress = &this.progress;
                progress.bytes.fetch_add(len, Ordering::Relaxed);
                let now = Instant::now();
                let since_base = now.saturating_duration_since(progress.base).as_millis();
                progress.last_piece_ms.store(
                    u64::try_from(since_base).unwrap_or(u64::MAX),
                    Ordering::Relaxed,
                );
                progress.waiting.store(false, Ordering::Relaxed);
                this.timer.as_mut().reset(now + this.idle);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(err))) => {
                this.progress.waiting.store(false, Ordering::Relaxed);
                this.fail(err.fault());
                Poll::Ready(Some(Err(BodyError::Client(err))))
            }
            Poll::Ready(None) => {
                this.progress.waiting.store(false, Ordering::Relaxed);
                Poll::Ready(None)
            }
            Poll::Pending => match this.timer.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    this.progress.waiting.store(false, Ordering::Relaxed);
                    this.fail(ClientFault::Timeout);
                    Poll::Ready(Some(Err(BodyError::Timeout(this.idle))))
                }
                Poll::Pending => {
                    this.progress.waiting.store(true, Ordering::Relaxed);
                    Poll::Pending
                }
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The body sent to an upstream.
#[derive(Debug)]
pub enum UpstreamBody {
    /// A buffered body.
    Bytes(Full<Bytes>),
    /// The client's body, streamed through (it counts its own bytes).
    Stream(Box<ClientBody>),
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.get_mut() {
            Self::Bytes(body) => poll_full(body, cx),
            Self::Stream(body) => Pin::new(body).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Bytes(body) => body.is_end_stream(),
            Self::Stream(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Bytes(body) => body.size_hint(),
            Self::Stream(body) => body.size_hint(),
        }
    }
}

/// Polls a body that cannot fail, in the error type of the bodies it stands beside.
pub(crate) fn poll_full<E>(
    body: &mut Full<Bytes>,
    cx: &mut Context<'_>,
) -> Poll<Option<Result<Frame<Bytes>, E>>> {
    Pin::new(body)
        .poll_frame(cx)
        .map(|frame| frame.map(|frame| frame.map_err(|never| match never {})))
}

/// The `grpc-status` a gRPC response carries in `fields` (its trailers, or its headers when it
/// has no body), if any.
pub fn grpc_status(fields: &http::HeaderMap) -> Option<u16> {
    // A constant name: looking up by `&str` would parse and check the name on every call.
    const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
    fields
        .get(GRPC_STATUS)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}
