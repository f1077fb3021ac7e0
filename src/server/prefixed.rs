//! A client connection with bytes already read from it put back in front: the first bytes read
//! to tell HTTP/2's preface from HTTP/1.1, or what hyper had read when its connection was taken
//! apart (parked, or upgraded to a tunnel).

use bytes::{Buf, Bytes};
use std::io::IoSlice;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// What a client speaking HTTP/2 with prior knowledge sends first.
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// A stream read from `prefix` first, then from `io`.
#[derive(Debug)]
pub(super) struct Prefixed<S> {
    prefix: Bytes,
    io: S,
}

impl<S> Prefixed<S> {
    pub(super) fn new(io: S) -> Self {
        Self {
            prefix: Bytes::new(),
            io,
        }
    }

    /// Puts a copy of `bytes` in front of what is still to be read: a copy, as they are often a
    /// slice of a larger buffer (hyper's read buffer) that would otherwise stay allocated.
    pub(super) fn unread(&mut self, bytes: &[u8]) {
        if !bytes.is_empty() {
            self.prefix = [bytes, &self.prefix].concat().into();
        }
    }

    /// Whether bytes read earlier are waiting.
    pub(super) fn has_unread(&self) -> bool {
        !self.prefix.is_empty()
    }

    pub(super) fn get_ref(&self) -> &S {
        &self.io
    }
}

impl<S: AsyncRead + Unpin> Prefixed<S> {
    /// Whether the connection starts with HTTP/2's preface; what was read is put back.
    pub(super) async fn sniff_http2(&mut self) -> std::io::Result<bool> {
        let mut first = [0u8; PREFACE.len()];
        let mut read = 0;
        while read < first.len() {
            let n = self.read(&mut first[read..]).await?;
            if n == 0 {
                break; // hyper sees the end of the stream next
            }
            read += n;
            if first[..read] != PREFACE[..read] {
                break;
            }
        }
        self.unread(&first[..read]);
        Ok(&first[..read] == PREFACE)
    }
}

/// A client connection whose socket can be waited on directly while no one reads it.
pub(super) trait Socket {
    /// The TCP socket underneath.
    fn tcp(&self) -> &TcpStream;
}

impl Socket for TcpStream {
    fn tcp(&self) -> &TcpStream {
        self
    }
}

impl Socket for Box<tokio_rustls::server::TlsStream<TcpStream>> {
    fn tcp(&self) -> &TcpStream {
        self.get_ref().0
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.prefix.is_empty() {
            return Pin::new(&mut self.io).poll_read(cx, buf);
        }
        let n = self.prefix.len().min(buf.remaining());
        buf.put_slice(&self.prefix[..n]);
        if n == self.prefix.len() {
            self.prefix = Bytes::new(); // its allocation goes now
        } else {
            self.prefix.advance(n);
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn the_unread_bytes_come_first_then_the_stream_in_order() {
        let (client, server) = tokio::io::duplex(64);
        let mut prefixed = Prefixed::new(server);
        prefixed.unread(b"cd");
        prefixed.unread(b"ab");
        assert!(prefixed.has_unread());
        let mut client = client;
        client.write_all(b"ef").await.unwrap();
        drop(client);
        let mut all = Vec::new();
        prefixed.read_to_end(&mut all).await.unwrap();
        assert_eq!(all, b"abcdef");
        assert!(!prefixed.has_unread());
    }

    #[tokio::test]
    async fn a_small_read_takes_part_of_the_prefix_and_leaves_the_rest() {
        let (_client, server) = tokio::io::duplex(64);
        let mut prefixed = Prefixed::new(server);
        prefixed.unread(b"hello");
        let mut two = [0u8; 2];
        prefixed.read_exact(&mut two).await.unwrap();
        assert_eq!(&two, b"he");
        let mut three = [0u8; 3];
        prefixed.read_exact(&mut three).await.unwrap();
        assert_eq!(&three, b"llo");
    }
}
