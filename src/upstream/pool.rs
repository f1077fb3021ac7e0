//! A backend's idle upstream connections: a lock-free queue of HTTP/1.1 connections, checked out
//! for a request and checked back in once its response body has been read to the end. It lives in
//! `BackendState`, so a backend's connections survive reloads. This module holds connections; it
//! does no IO (connecting is the data plane's job).

use super::body::UpstreamBody;
use crossbeam_queue::SegQueue;
use hyper::client::conn::http1::SendRequest;
use std::time::{Duration, Instant};

/// One upstream connection's request handle.
pub type Connection = SendRequest<UpstreamBody>;

/// Idle connections kept per backend (enough for HTTP/2 clients multiplexing hundreds of
/// streams); one returned to a full pool is closed instead.
pub const MAX_IDLE_PER_BACKEND: usize = 1024;

#[derive(Debug)]
struct Idle {
    connection: Connection,
    since: Instant,
}

/// The idle connections of one backend.
#[derive(Debug, Default)]
pub struct ConnectionPool {
    /// Unbounded lock-free queue (memory grows only with use); `check_in` enforces the cap.
    idle: SegQueue<Idle>,
}

impl ConnectionPool {
    /// An idle connection that is still open, if any.
    pub fn check_out(&self) -> Option<Connection> {
        while let Some(idle) = self.idle.pop() {
            if !idle.connection.is_closed() {
                return Some(idle.connection);
            }
        }
        None
    }

    /// Returns a connection whose last response was read to the end.
    pub fn check_in(&self, connection: Connection) {
        if connection.is_closed() {
            return;
        }
        // A full pool drops (and so closes) the connection: enough are idle already. The check
        // races with other check-ins, so the cap may be overshot by a few.
        if self.idle.len() < MAX_IDLE_PER_BACKEND {
            self.idle.push(Idle {
                connection,
                since: Instant::now(),
            });
        }
    }

    /// Closes connections idle for longer than `max_idle` and those the backend closed.
    pub fn close_idle(&self, max_idle: Duration) {
        for _ in 0..self.idle.len() {
            let Some(idle) = self.idle.pop() else { break };
            if !idle.connection.is_closed() && idle.since.elapsed() < max_idle {
                self.idle.push(idle);
            }
        }
    }

    /// Idle connections right now.
    pub fn idle(&self) -> usize {
        self.idle.len()
    }
}
