//! Body types: the response body sent to the client (an upstream body streamed through, or a
//! short local body), which finishes the request's record when it ends; and the request body
//! sent upstream, read whole when small enough to replay.

use super::compress::{Compressing, Encoder};
use super::downstream::ActiveRequest;
use super::exchange::Exchange;
use crate::access_log::AccessLog;
use crate::body::{ClientBody, ClientFault, Progress, UpstreamBody, poll_full};
use crate::upstream::InFlightGuard;
use crate::upstream::pool::Lease;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// A body sent to the client.
#[derive(Debug)]
pub struct ProxyBody {
    kind: Kind,
    /// Compresses what the body yields, when the route compresses this response.
    compress: Option<Box<Compressing>>,
    finish: Option<Finish>,
    /// The request on its client connection, finished when this body is dropped.
    active: Option<ActiveRequest>,
}

/// What to do when the response is over: measure, log.
#[derive(Debug)]
struct Finish {
    exchange: Exchange,
    log: AccessLog,
    bytes_out: u64,
}

#[derive(Debug)]
enum Kind {
    /// Streamed from the upstream; the guard is released at the end of the stream or on drop.
    Upstream {
        body: Incoming,
        in_flight: Option<InFlightGuard>,
        /// The connection, returned to its pool once the body has ended cleanly.
        lease: Option<Lease>,
    },
    /// Generated here.
    Local(Full<Bytes>),
}

impl ProxyBody {
    /// Streams an upstream body, keeping the request in flight until the body ends.
    pub fn upstream(body: Incoming, in_flight: InFlightGuard, lease: Lease) -> Self {
        Self {
            kind: Kind::Upstream {
                body,
                in_flight: Some(in_flight),
                lease: Some(lease),
            },
            compress: None,
            finish: None,
            active: None,
        }
    }

    /// A complete body made by the proxy.
    pub fn local(bytes: Bytes) -> Self {
        Self {
            kind: Kind::Local(Full::new(bytes)),
            compress: None,
            finish: None,
            active: None,
        }
    }

    /// Compresses the body with `encoder` as it streams, counting bytes in and out.
    pub fn compress(&mut self, encoder: Encoder, counters: (metrics::Counter, metrics::Counter)) {
        self.compress = Some(Box::new(Compressing::new(encoder, counters)));
    }

    /// Finishes `exchange` (duration, access log) when this body ends or is dropped.
    pub fn finishing(mut self, exchange: Exchange, log: &AccessLog) -> Self {
        self.finish = Some(Finish {
            exchange,
            log: log.clone(),
            bytes_out: 0,
        });
        self
    }

    /// Keeps `active` until this body is dropped, so the connection counts the request as in
    /// progress while its body streams.
    pub fn counted(mut self, active: ActiveRequest) -> Self {
        self.active = Some(active);
        self
    }

    fn complete(&mut self) {
        if let Some(finish) = self.finish.take() {
            finish.exchange.finish(finish.bytes_out, &finish.log);
        }
    }
}

impl Drop for ProxyBody {
    fn drop(&mut self) {
        // hyper may stop polling once the body reports its end (a known length reached), so
        // a complete body is recognised here too; anything else closes the connection.
        if let Kind::Upstream {
            body,
            in_flight,
            lease,
        } = &mut self.kind
        {
            if body.is_end_stream() {
                release(in_flight, lease);
            }
        }
        // A client that goes away mid-body still gets its line, with the bytes actually sent.
        self.complete();
    }
}

/// The response is over: the backend is free as of now (not when hyper gets around to
/// dropping the body), and its connection goes back to the pool.
fn release(in_flight: &mut Option<InFlightGuard>, lease: &mut Option<Lease>) {
    if in_flight.is_some() {
        if let Some(lease) = lease.take() {
            lease.release();
        }
    }
    in_flight.take();
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let frame = match &mut this.compress {
            None => this.kind.poll_frame(cx),
            Some(compressing) => compressing.poll(|| this.kind.poll_frame(cx)),
        };
        match &frame {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(finish) = &mut this.finish {
                    if let Some(data) = frame.data_ref() {
                        finish.bytes_out += data.len() as u64;
                    } else if let Some(trailers) = frame.trailers_ref() {
                        finish.exchange.record.grpc_status = crate::body::grpc_status(trailers);
                    }
                }
            }
            Poll::Ready(None | Some(Err(_))) => this.complete(),
            Poll::Pending => {}
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        if self.compress.is_some() {
            // The encoder's last bytes come after the inner body's end.
            return false;
        }
        match &self.kind {
            Kind::Upstream { body, .. } => body.is_end_stream(),
            Kind::Local(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        if self.compress.is_some() {
            return SizeHint::default();
        }
        match &self.kind {
            Kind::Upstream { body, .. } => body.size_hint(),
            Kind::Local(body) => body.size_hint(),
        }
    }
}

impl Kind {
    /// The next frame of the body as the backend (or the proxy) made it.
    #[inline]
    fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self {
            Kind::Upstream {
                body,
                in_flight,
                lease,
            } => {
                let frame = Pin::new(&mut *body).poll_frame(cx);
                match &frame {
                    Poll::Ready(None) => release(in_flight, lease),
                    Poll::Ready(Some(Ok(_))) if body.is_end_stream() => release(in_flight, lease),
                    Poll::Ready(Some(Err(_))) => {
                        // A broken body: the connection is not reused.
                        lease.take();
                        in_flight.take();
                    }
                    _ => {}
                }
                frame
            }
            Kind::Local(body) => poll_full(body, cx),
        }
    }
}

/// Request bodies up to this size (by `Content-Length`) are read whole before forwarding so the
/// request can be replayed on another backend; larger or chunked ones stream and are not retried.
pub const REPLAY_LIMIT: u64 = 64 * 1024;

/// A client request body, read whole when small enough to replay.
#[derive(Debug)]
pub enum RequestBody {
    /// Empty or small: can be sent any number of times.
    Buffered(Bytes),
    /// Large or of unknown length: can be sent once; counts the bytes it forwards, and notes
    /// whether the client broke it.
    Streaming(Option<Box<ClientBody>>, Arc<Progress>),
}

impl RequestBody {
    /// Reads a small body whole; leaves a large or chunked one to stream. Either way a client
    /// that sends nothing for `idle` is cut off, and a body over `limit` bytes is refused (by
    /// its declared length before any of it is read, so no `100 Continue` goes out).
    pub async fn read(
        body: crate::body::Inbound,
        idle: std::time::Duration,
        limit: Option<u64>,
    ) -> Result<Self, crate::error::ProxyError> {
        use http_body_util::BodyExt;
        if body.is_end_stream() {
            return Ok(Self::Buffered(Bytes::new()));
        }
        // hyper has parsed and checked `Content-Length`: the exact size hint is its value.
        let declared = body.size_hint().exact();
        if let (Some(declared), Some(limit)) = (declared, limit) {
            if declared > limit {
                return Err(crate::error::ProxyError::ClientBody(ClientFault::TooLarge));
            }
        }
        let small = declared.is_some_and(|len| len <= REPLAY_LIMIT);
        let progress = Arc::new(Progress::default());
        let body = ClientBody::new(body, idle, limit, Arc::clone(&progress));
        if !small {
            // Boxed: the body travels inside the request future and hyper's request, both moved
            // several times per request; a pointer keeps them small.
            return Ok(Self::Streaming(Some(Box::new(body)), progress));
        }
        match body.collect().await {
            Ok(collected) => Ok(Self::Buffered(collected.to_bytes())),
            Err(_) => Err(crate::error::ProxyError::ClientBody(
                progress.fault().unwrap_or(ClientFault::Malformed),
            )),
        }
    }

    /// How the client broke its body, if it did.
    pub fn fault(&self) -> Option<ClientFault> {
        match self {
            Self::Buffered(_) => None,
            Self::Streaming(_, progress) => progress.fault(),
        }
    }

    /// What a streamed body tells of the client's progress; `None` for a buffered one.
    pub fn progress(&self) -> Option<&Progress> {
        match self {
            Self::Buffered(_) => None,
            Self::Streaming(_, progress) => Some(progress),
        }
    }

    /// Whether another attempt could send this body again.
    pub fn is_replayable(&self) -> bool {
        matches!(self, Self::Buffered(_))
    }

    /// The body for the next attempt; `None` if a streamed body was already sent.
    pub fn next_attempt(&mut self) -> Option<UpstreamBody> {
        match self {
            Self::Buffered(bytes) => Some(UpstreamBody::Bytes(Full::new(bytes.clone()))),
            Self::Streaming(body, _) => body.take().map(UpstreamBody::Stream),
        }
    }

    /// Bytes of the body read or forwarded so far.
    pub fn bytes(&self) -> u64 {
        match self {
            Self::Buffered(bytes) => bytes.len() as u64,
            Self::Streaming(_, progress) => progress.bytes(),
        }
    }
}
