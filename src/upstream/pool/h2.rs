//! HTTP/2 connections to one backend: each multiplexes streams up to the limit the backend
//! announced (`SETTINGS_MAX_CONCURRENT_STREAMS`); a request finding every connection full makes
//! the pool open another.

use super::connect::StreamLimit;
use crate::proxy::UpstreamBody;
use hyper::client::conn::http2::SendRequest;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// One HTTP/2 connection and its stream count.
#[derive(Debug)]
pub struct H2Connection {
    sender: SendRequest<UpstreamBody>,
    /// Streams open on it now (ours: requests whose response has not ended).
    active: AtomicUsize,
    /// The backend's current limit, kept up to date by the task driving the connection.
    limit: Arc<StreamLimit>,
    /// The pool settings it was opened under.
    pub generation: u64,
    /// Coarse time (`super::ticks`) its last stream ended.
    last_used: AtomicU64,
}

impl H2Connection {
    /// A connection whose driver publishes the backend's stream limit in `limit`.
    pub fn new(
        sender: SendRequest<UpstreamBody>,
        limit: Arc<StreamLimit>,
        generation: u64,
    ) -> Self {
        Self {
            sender,
            active: AtomicUsize::new(0),
            limit,
            generation,
            last_used: AtomicU64::new(super::ticks()),
        }
    }

    /// Whether the connection is gone (closed by either side, or dead on a PING timeout).
    pub fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }

    /// Takes a stream if one is free; `force` takes one even past the limit (the connection
    /// then queues the request until a stream ends).
    pub fn try_stream(self: &Arc<Self>, force: bool) -> Option<H2Stream> {
        // Relaxed: a count; the HTTP/2 layer enforces the real limit.
        let active = self.active.fetch_add(1, Ordering::Relaxed);
        if !force && active >= self.limit.max.load(Ordering::Relaxed) {
            self.active.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        Some(H2Stream(Arc::clone(self)))
    }

    /// Streams open now.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    /// Whether no stream is open and none ended for `idle` ticks.
    pub fn idle_for(&self, now: u64, idle: u64) -> bool {
        self.active() == 0 && now.saturating_sub(self.last_used.load(Ordering::Relaxed)) >= idle
    }
}

/// One stream on an HTTP/2 connection, held until the response ends.
#[derive(Debug)]
pub struct H2Stream(Arc<H2Connection>);

impl H2Stream {
    /// A handle to send the request with.
    pub fn sender(&self) -> SendRequest<UpstreamBody> {
        self.0.sender.clone()
    }

    /// The connection the stream is on.
    pub fn connection(&self) -> &Arc<H2Connection> {
        &self.0
    }
}

impl Drop for H2Stream {
    fn drop(&mut self) {
        self.0.last_used.store(super::ticks(), Ordering::Relaxed);
        self.0.active.fetch_sub(1, Ordering::Relaxed);
        self.0.limit.refresh.notify_one();
    }
}
