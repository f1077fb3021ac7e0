//! The client's request body as read by the proxy: cut off when the client stops sending for
//! `timeouts.request_body`, and remembering whether it failed by the client's fault, so that a
//! failed upstream exchange can be blamed on the client rather than on the backend.

use hyper::body::{Body, Frame, Incoming, SizeHint};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

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

    /// A body that ended early (EOF before the declared length or the last chunk) or on a
    /// reset was abandoned; anything else hyper refuses is malformed framing.
    fn of(err: &hyper::Error) -> Self {
        use std::error::Error as _;
        use std::io::ErrorKind;
        let io = err
            .source()
            .and_then(|e| e.downcast_ref::<std::io::Error>());
        let abandoned = err.is_incomplete_message()
            || io.is_some_and(|io| {
                matches!(
                    io.kind(),
                    ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset | ErrorKind::BrokenPipe
                )
            });
        if abandoned {
            Self::Abandoned
        } else {
            Self::Malformed
        }
    }
}

/// The error a client body yields; the upstream client passes it on as the cause of its own.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// Reading the client's body failed.
    #[error("client request body: {0}")]
    Client(#[source] hyper::Error),
    /// The client sent nothing for the request-body timeout.
    #[error("client request body: no data for {0:?}")]
    Timeout(Duration),
    /// The body grew past the route's limit.
    #[error("client request body: more than {0} bytes")]
    TooLarge(u64),
}

/// What became of a client body, shared with the request that forwards it: the bytes read so
/// far and, if the client broke it, how.
#[derive(Debug, Default)]
pub struct Progress {
    bytes: AtomicU64,
    fault: AtomicU8,
}

impl Progress {
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
    inner: Incoming,
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
        inner: Incoming,
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
                this.progress.bytes.fetch_add(len, Ordering::Relaxed);
                let idle = this.idle;
                this.timer.as_mut().reset(Instant::now() + idle);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(err))) => {
                this.fail(ClientFault::of(&err));
                Poll::Ready(Some(Err(BodyError::Client(err))))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => match this.timer.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    this.fail(ClientFault::Timeout);
                    Poll::Ready(Some(Err(BodyError::Timeout(this.idle))))
                }
                Poll::Pending => Poll::Pending,
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
