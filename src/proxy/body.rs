//! The response body type: an upstream body streamed through untouched (holding the backend's
//! in-flight count until it ends), or a short local body for errors.

use crate::upstream::InFlightGuard;
use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use std::pin::Pin;
use std::task::{Context, Poll};

/// A body sent to the client.
#[derive(Debug)]
pub struct ProxyBody {
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    /// Streamed from the upstream; the guard is released at the end of the stream or on drop.
    Upstream {
        body: Incoming,
        in_flight: Option<InFlightGuard>,
    },
    /// Generated here; `None` once sent.
    Local(Option<Bytes>),
}

impl ProxyBody {
    /// Streams an upstream body, keeping the request in flight until the body ends.
    pub fn upstream(body: Incoming, in_flight: InFlightGuard) -> Self {
        Self {
            kind: Kind::Upstream {
                body,
                in_flight: Some(in_flight),
            },
        }
    }

    /// A complete body made by the proxy.
    pub fn local(bytes: Bytes) -> Self {
        Self {
            kind: Kind::Local(Some(bytes)),
        }
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match &mut self.get_mut().kind {
            Kind::Upstream { body, in_flight } => {
                let frame = Pin::new(body).poll_frame(cx);
                if matches!(frame, Poll::Ready(None | Some(Err(_)))) {
                    // The response is over: the backend is free as of now, not when hyper
                    // gets around to dropping the body.
                    in_flight.take();
                }
                frame
            }
            Kind::Local(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Upstream { body, .. } => body.is_end_stream(),
            Kind::Local(bytes) => bytes.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Upstream { body, .. } => body.size_hint(),
            Kind::Local(Some(bytes)) => SizeHint::with_exact(bytes.len() as u64),
            Kind::Local(None) => SizeHint::with_exact(0),
        }
    }
}
