//! The response body sent to the client: an upstream body streamed through, or a short local
//! body. It finishes the request's record when it ends, and hands the upstream connection back
//! to its pool once the body has been read to the end.

use super::exchange::Exchange;
use crate::access_log::AccessLog;
use crate::upstream::InFlightGuard;
use crate::upstream::pool::Connection;
use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use std::pin::Pin;
use std::task::{Context, Poll};

/// A body sent to the client.
#[derive(Debug)]
pub struct ProxyBody {
    kind: Kind,
    finish: Option<Finish>,
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
    /// Streamed from the upstream; the guard is released at the end of the stream or on drop,
    /// and the connection goes back to the pool only at the end of the stream.
    Upstream {
        body: Incoming,
        in_flight: Option<InFlightGuard>,
        connection: Option<Connection>,
    },
    /// Generated here; `None` once sent.
    Local(Option<Bytes>),
}

impl ProxyBody {
    /// Streams an upstream body, keeping the request in flight until the body ends; then the
    /// connection it came on can carry another request.
    pub fn upstream(body: Incoming, in_flight: InFlightGuard, connection: Connection) -> Self {
        Self {
            kind: Kind::Upstream {
                body,
                in_flight: Some(in_flight),
                connection: Some(connection),
            },
            finish: None,
        }
    }

    /// A complete body made by the proxy.
    pub fn local(bytes: Bytes) -> Self {
        Self {
            kind: Kind::Local(Some(bytes)),
            finish: None,
        }
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

    fn complete(&mut self) {
        if let Some(finish) = self.finish.take() {
            finish.exchange.finish(finish.bytes_out, &finish.log);
        }
    }
}

impl Drop for ProxyBody {
    fn drop(&mut self) {
        if let Kind::Upstream {
            body,
            in_flight,
            connection,
        } = &mut self.kind
        {
            // Dropped after its end (an empty body is never polled): the connection is clean.
            let clean = body.is_end_stream();
            release(in_flight, connection, clean);
        }
        // A client that goes away mid-body still gets its line, with the bytes actually sent.
        self.complete();
    }
}

/// Ends the request on its backend. A connection whose response was read to the end goes back
/// to the pool; one abandoned mid-body is dropped, which closes it.
fn release(
    in_flight: &mut Option<InFlightGuard>,
    connection: &mut Option<Connection>,
    clean: bool,
) {
    let (Some(guard), Some(connection)) = (in_flight.take(), connection.take()) else {
        return;
    };
    if clean {
        guard.backend().connections.check_in(connection);
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let frame = match &mut this.kind {
            Kind::Upstream {
                body,
                in_flight,
                connection,
            } => {
                let frame = Pin::new(&mut *body).poll_frame(cx);
                match &frame {
                    // hyper stops polling once the body says it has ended, so the last data
                    // frame is where a clean end is usually seen.
                    Poll::Ready(None) => release(in_flight, connection, true),
                    Poll::Ready(Some(Ok(_))) if body.is_end_stream() => {
                        release(in_flight, connection, true);
                    }
                    Poll::Ready(Some(Err(_))) => release(in_flight, connection, false),
                    Poll::Ready(Some(Ok(_))) | Poll::Pending => {}
                }
                frame
            }
            Kind::Local(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
        };
        match &frame {
            Poll::Ready(Some(Ok(data))) => {
                if let (Some(finish), Some(data)) = (&mut this.finish, data.data_ref()) {
                    finish.bytes_out += data.len() as u64;
                }
            }
            Poll::Ready(None | Some(Err(_))) => this.complete(),
            Poll::Pending => {}
        }
        frame
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
