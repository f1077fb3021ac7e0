//! A client's request body as each protocol's server reads it: hyper's for HTTP/1.1 and HTTP/2,
//! an HTTP/3 request stream's receiving half; and how a failed read is the client's fault.

use super::ClientFault;
use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use std::pin::Pin;
use std::task::{Context, Poll};

/// A client's request, whichever protocol carried it.
pub type ClientRequest = http::Request<Inbound>;

/// A client's request body as its protocol's server reads it.
#[derive(Debug)]
pub enum Inbound {
    /// HTTP/1.1 or HTTP/2, read by hyper.
    Hyper(Incoming),
    /// HTTP/3: the request stream's receiving half (boxed: the rarer, larger variant).
    Http3(Box<Http3Body>),
}

/// The receiving half of an HTTP/3 request stream, as a body: its data, then its trailers.
pub struct Http3Body {
    stream: h3::server::RequestStream<h3_quinn::RecvStream, Bytes>,
    /// Whether the data has ended and the trailers are next.
    data_done: bool,
    /// Whether the body has ended (seen by `look_ahead`).
    ended: bool,
    /// A frame `look_ahead` read, to be yielded first.
    first: Option<Frame<Bytes>>,
    /// The request's `Content-Length`, if it declared one.
    declared: Option<u64>,
    /// Body bytes received so far.
    received: u64,
}

impl Http3Body {
    /// The body of a request read from `stream`, which declared `declared` bytes.
    pub fn new(
        stream: h3::server::RequestStream<h3_quinn::RecvStream, Bytes>,
        declared: Option<u64>,
    ) -> Self {
        Self {
            stream,
            data_done: false,
            ended: false,
            first: None,
            declared,
            received: 0,
        }
    }

    /// Reads what has arrived already, without waiting: a request whose stream ended with its
    /// head (a GET, as clients send one) then has an empty body, as over HTTP/2, and is
    /// buffered and replayable rather than streamed once.
    pub fn look_ahead(&mut self) {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        match self.poll_next(&mut cx) {
            Poll::Ready(None) => self.ended = true,
            Poll::Ready(Some(Ok(frame))) => self.first = Some(frame),
            // An error comes again at the next read.
            Poll::Ready(Some(Err(_))) | Poll::Pending => {}
        }
    }

    fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, InboundError>>> {
        if let Some(frame) = self.first.take() {
            return Poll::Ready(Some(Ok(frame)));
        }
        if self.ended {
            return Poll::Ready(None);
        }
        self.poll_next(cx)
    }

    fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, InboundError>>> {
        use bytes::Buf;
        use std::task::ready;
        if !self.data_done {
            match ready!(self.stream.poll_recv_data(cx)) {
                Ok(Some(mut data)) => {
                    let bytes = data.copy_to_bytes(data.remaining());
                    self.received = self.received.saturating_add(bytes.len() as u64);
                    if let Some(declared) = self.declared.filter(|&d| self.received > d) {
                        return Poll::Ready(Some(Err(self.length_error(declared))));
                    }
                    return Poll::Ready(Some(Ok(Frame::data(bytes))));
                }
                Ok(None) => {
                    self.data_done = true;
                    if let Some(declared) = self.declared.filter(|&d| self.received != d) {
                        return Poll::Ready(Some(Err(self.length_error(declared))));
                    }
                }
                Err(err) => return Poll::Ready(Some(Err(InboundError::Http3(err)))),
            }
        }
        match ready!(self.stream.poll_recv_trailers(cx)) {
            Ok(Some(trailers)) => Poll::Ready(Some(Ok(Frame::trailers(trailers)))),
            Ok(None) => Poll::Ready(None),
            Err(err) => Poll::Ready(Some(Err(InboundError::Http3(err)))),
        }
    }

    fn length_error(&self, declared: u64) -> InboundError {
        InboundError::Length {
            declared,
            received: self.received,
        }
    }
}

impl std::fmt::Debug for Http3Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Http3Body")
            .field("data_done", &self.data_done)
            .finish_non_exhaustive()
    }
}

/// Whether an HTTP/3 stream error means the client went away rather than broke the protocol.
fn is_abandoned(err: &h3::error::StreamError) -> bool {
    use h3::error::StreamError;
    matches!(
        err,
        StreamError::RemoteTerminate { .. }
            | StreamError::ConnectionError { .. }
            | StreamError::RemoteClosing { .. }
    )
}

/// Why reading a client's request body failed.
#[derive(Debug, thiserror::Error)]
pub enum InboundError {
    /// hyper's HTTP/1.1 or HTTP/2 reading.
    #[error(transparent)]
    Hyper(hyper::Error),
    /// h3's reading of an HTTP/3 request stream.
    #[error(transparent)]
    Http3(h3::error::StreamError),
    /// An HTTP/3 body longer or shorter than its `Content-Length` (malformed, RFC 9114 §4.1.2).
    #[error("HTTP/3 request body of {received}+ bytes against a Content-Length of {declared}")]
    Length {
        /// The length declared.
        declared: u64,
        /// The bytes received when the mismatch showed.
        received: u64,
    },
}

impl Body for Inbound {
    type Data = Bytes;
    type Error = InboundError;

    #[inline]
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, InboundError>>> {
        match self.get_mut() {
            Self::Hyper(body) => Pin::new(body)
                .poll_frame(cx)
                .map(|frame| frame.map(|frame| frame.map_err(InboundError::Hyper))),
            Self::Http3(body) => body.poll_frame(cx),
        }
    }

    #[inline]
    fn is_end_stream(&self) -> bool {
        match self {
            Self::Hyper(body) => body.is_end_stream(),
            Self::Http3(body) => body.ended || body.declared == Some(0),
        }
    }

    #[inline]
    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Hyper(body) => body.size_hint(),
            Self::Http3(body) => body
                .declared
                .map_or_else(SizeHint::new, SizeHint::with_exact),
        }
    }
}

impl InboundError {
    /// Whose fault a failed read is: the client's, who abandoned the body or malformed it.
    pub(super) fn fault(&self) -> ClientFault {
        match self {
            Self::Hyper(err) => hyper_fault(err),
            // A stream the client reset or a connection it lost: it stopped sending. Anything
            // else h3 refuses (a bad frame, a field section too large) is malformed.
            Self::Http3(err) if err.is_h3_no_error() || is_abandoned(err) => ClientFault::Abandoned,
            Self::Http3(_) | Self::Length { .. } => ClientFault::Malformed,
        }
    }
}

/// A body that ended early (EOF before the declared length or the last chunk) or on a reset was
/// abandoned; anything else hyper refuses is malformed framing.
fn hyper_fault(err: &hyper::Error) -> ClientFault {
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
        ClientFault::Abandoned
    } else {
        ClientFault::Malformed
    }
}
