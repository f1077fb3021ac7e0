//! How hyper serves a client connection: its HTTP/1.1 and HTTP/2 settings from the
//! connection's limits and timeouts, and the executor of HTTP/2's streams.

use crate::config::{Limits, Timeouts};
use hyper::server::conn::{http1, http2};
use hyper_util::rt::TokioTimer;

/// hyper's own limit on HTTP/1 header fields.
const DEFAULT_MAX_HEADERS: usize = 100;

/// hyper's HTTP/1.1 server settings under `limits`.
pub(super) fn http1_builder(limits: &Limits) -> http1::Builder {
    let mut http1 = http1::Builder::new();
    // A head that does not fit, or has too many fields, is answered 431 by hyper. Its own
    // field limit is 100; setting one, even 100, makes it size its parse arrays at run time
    // (~2.5k instructions per request), so only another value is set.
    if limits.max_headers != DEFAULT_MAX_HEADERS {
        http1.max_headers(limits.max_headers);
    }
    // No timer for HTTP/1: hyper's header-read timer is a timer per request (~600 instructions);
    // `closing::Watch` bounds slow and missing request heads per connection instead.
    http1
        .max_buf_size(limits.max_header_bytes)
        // Copy bodies into the header buffer and write once, instead of queueing buffers for a
        // vectored write: cheaper for the small responses that dominate gateway traffic, and
        // still one system call.
        .writev(false);
    http1
}

/// hyper's HTTP/2 server settings under `timeouts` and `limits`.
pub(super) fn http2_builder(
    timeouts: &Timeouts,
    limits: &Limits,
) -> http2::Builder<StreamExecutor> {
    let mut http2 = http2::Builder::new(StreamExecutor);
    http2
        .timer(TokioTimer::new())
        // PINGs find peers that vanished without closing; one unanswered in time closes the
        // connection.
        .keep_alive_interval(timeouts.http2_ping_interval)
        .keep_alive_timeout(timeouts.http2_ping_timeout)
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
    http2
}

/// Runs hyper's HTTP/2 streams, each a task holding the request's future: boxed, as that future
/// is a few KiB and a task moves what it runs several times (into the task, through its stages
/// as it finishes), while a box moves as a pointer. HTTP/1.1 runs its requests in place and
/// never comes here.
#[derive(Clone, Copy, Debug)]
pub(super) struct StreamExecutor;

impl<F> hyper::rt::Executor<F> for StreamExecutor
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, stream: F) {
        tokio::spawn(Box::pin(stream));
    }
}
