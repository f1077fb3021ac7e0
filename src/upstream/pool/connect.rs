//! Opening one connection to a backend: TCP (`TCP_NODELAY`) under the connect timeout, then
//! TLS when the pool asks for it (SNI and verified name from the pool or the backend's host,
//! ALPN checked for HTTP/2), then the HTTP handshake with the connection driven by its own task.

use super::SendError;
use crate::body::UpstreamBody;
use crate::config::{Protocol, UpstreamTls};
use crate::dormant::Dormant;
use http::uri::Authority;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// A connection to a backend, plain or TLS.
#[derive(Debug)]
pub enum Stream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP (boxed: the TLS state is large and most pools are plain).
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

/// How long HTTP/2 connections wait between keep-alive PINGs, and for their answer.
#[derive(Debug, Clone, Copy)]
pub struct Pings {
    /// Between PINGs.
    pub interval: Duration,
    /// For the answer.
    pub timeout: Duration,
}

/// Opens a connection to `authority` in `upstream`'s protocol and TLS settings: TCP, then
/// `preface` (a PROXY protocol header) if given, then TLS if the pool has it, all within
/// `timeout`.
pub async fn open(
    authority: &Authority,
    upstream: &super::Upstream,
    timeout: Duration,
    preface: Option<&[u8]>,
) -> Result<Stream, SendError> {
    let tls: Option<&UpstreamTls> = upstream.config.tls.as_deref();
    let protocol = upstream.config.protocol;
    let connecting = async {
        let tcp = TcpStream::connect(authority.as_str())
            .await
            .map_err(|err| SendError::Connect(Box::new(err)))?;
        tcp.set_nodelay(true)
            .map_err(|err| SendError::Connect(Box::new(err)))?;
        if let Some(preface) = preface {
            use tokio::io::AsyncWriteExt as _;
            let mut tcp = tcp;
            tcp.write_all(preface)
                .await
                .map_err(|err| SendError::Connect(Box::new(err)))?;
            return finish(tcp, tls, authority, protocol).await;
        }
        finish(tcp, tls, authority, protocol).await
    };
    tokio::time::timeout(timeout, connecting)
        .await
        .unwrap_or(Err(SendError::ConnectTimeout))
}

/// TLS over `tcp` if the pool has it.
async fn finish(
    tcp: TcpStream,
    tls: Option<&UpstreamTls>,
    authority: &Authority,
    protocol: Protocol,
) -> Result<Stream, SendError> {
    {
        let Some(tls) = tls else {
            return Ok(Stream::Plain(tcp));
        };
        let name = match &tls.server_name {
            Some(name) => name.clone(),
            None => backend_name(authority)?,
        };
        let stream = tokio_rustls::TlsConnector::from(Arc::clone(&tls.client))
            .connect(name, tcp)
            .await
            .map_err(|err| SendError::Connect(Box::new(err)))?;
        if protocol == Protocol::H2 && stream.get_ref().1.alpn_protocol() != Some(b"h2") {
            return Err(SendError::Connect(
                "the backend did not agree to HTTP/2 (ALPN h2)".into(),
            ));
        }
        Ok(Stream::Tls(Box::new(stream)))
    }
}

/// The backend's host as a TLS server name (an IP address without its brackets).
fn backend_name(authority: &Authority) -> Result<ServerName<'static>, SendError> {
    let host = authority.host();
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    ServerName::try_from(host.to_owned())
        .map_err(|_| SendError::Connect(format!("{host:?} is not a TLS server name").into()))
}

/// Counts a connection as open until dropped (by the task driving it).
#[derive(Debug)]
pub struct OpenGuard {
    /// Already incremented for this connection.
    count: Arc<AtomicU32>,
    gauge: metrics::Gauge,
    /// The backend's signal to close its connections (a drain deadline).
    pub(super) cut: CancellationToken,
}

impl OpenGuard {
    /// Holds one unit of `count` (already taken) and of `gauge` (taken now), for a connection
    /// closed when `cut` is cancelled.
    pub fn new(count: Arc<AtomicU32>, gauge: metrics::Gauge, cut: CancellationToken) -> Self {
        gauge.increment(1.0);
        Self { count, gauge, cut }
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        // Relaxed: a count for limits and metrics.
        self.count.fetch_sub(1, Ordering::Relaxed);
        self.gauge.decrement(1.0);
    }
}

/// An HTTP/1.1 handshake; the connection is driven by its own task (upgrades allowed) until
/// the sender is dropped or the backend closes it.
pub async fn http1(
    stream: Stream,
    open: OpenGuard,
) -> Result<http1::SendRequest<UpstreamBody>, SendError> {
    let (sender, connection) = http1::Builder::new()
        // One flattened write per request, as on client connections.
        .writev(false)
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|err| SendError::Connect(Box::new(err)))?;
    tokio::spawn(async move {
        // Dormant: the cut signal is polled only when it fires, not on each of the connection's
        // several wake-ups per request (polling it each time cost ~650 instructions a request).
        let cut = open.cut.clone();
        tokio::select! {
            biased;
            result = connection.with_upgrades() => if let Err(err) = result {
                tracing::debug!(error = %crate::error::chain(&err), "upstream connection ended");
            },
            () = Dormant::new(cut.cancelled()) => tracing::debug!("upstream connection closed by a drain deadline"),
        }
        drop(open);
    });
    Ok(sender)
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(s) => s.is_write_vectored(),
            Self::Tls(s) => s.is_write_vectored(),
        }
    }
}
