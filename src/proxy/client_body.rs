//! The client's request body as read by the proxy: cut off when the client stops sending for
//! `timeouts.request_body`, and remembering whether it failed by the client's fault, so that a
//! failed upstream exchange can be blamed on the client rather than on the backend.

use hyper::body::{Body, Frame, Incoming, SizeHint};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
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

/// Where a body's fault is recorded, shared with the request that forwards it.
#[derive(Debug, Clone, Default)]
pub struct FaultCell(Arc<AtomicU8>);

impl FaultCell {
    /// The fault recorded, if the client broke its body.
    pub fn get(&self) -> Option<ClientFault> {
        // Relaxed: read after the exchange that set it has returned to this task.
        ClientFault::from_code(self.0.load(Ordering::Relaxed))
    }

    fn set(&self, fault: ClientFault) {
        self.0.store(fault.code(), Ordering::Relaxed);
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
    fault: FaultCell,
}

impl ClientBody {
    /// Wraps `inner`; a wait of `idle` for the next piece, or more than `limit` bytes, fails
    /// the body.
    pub fn new(inner: Incoming, idle: Duration, limit: Option<u64>, fault: FaultCell) -> Self {
        Self {
            inner,
            idle,
            timer: Box::pin(tokio::time::sleep(idle)),
            limit: limit.map(|l| (l, l)),
            fault,
        }
    }

    fn fail(&mut self, fault: ClientFault) {
        self.fault.set(fault);
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
                if let (Some((limit, left)), Some(data)) = (&mut this.limit, frame.data_ref()) {
                    let Some(rest) = left.checked_sub(data.len() as u64) else {
                        let limit = *limit;
                        this.fail(ClientFault::TooLarge);
                        return Poll::Ready(Some(Err(BodyError::TooLarge(limit))));
                    };
                    *left = rest;
                }
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
