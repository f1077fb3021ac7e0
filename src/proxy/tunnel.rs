//! Copying both ways between a tunnel's two connections with buffers sized to what is in
//! flight: a read borrows the thread's one read buffer, and what the other side takes at once
//! never leaves it; only bytes the other side cannot take yet are kept, in a buffer of their
//! size, freed when written. An idle tunnel holds no buffer at all (a fixed pair of 8 KiB
//! buffers per tunnel would be most of its memory).

use std::cell::RefCell;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The read buffer's size: what one read may take.
const READ: usize = 16 * 1024;

thread_local! {
    static READ_BUFFER: RefCell<Box<[u8]>> = RefCell::new(vec![0; READ].into_boxed_slice());
}

/// Copies `a` to `b` and `b` to `a` until both have ended (each end shuts the other side's
/// writing down); returns the bytes copied each way, or the first error.
pub async fn both_ways<A, B>(a: &mut A, b: &mut B) -> io::Result<(u64, u64)>
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let (mut a_to_b, mut b_to_a) = (Direction::default(), Direction::default());
    poll_fn(|cx| {
        let forth = a_to_b.poll(cx, &mut *a, &mut *b)?;
        let back = b_to_a.poll(cx, &mut *b, &mut *a)?;
        match (forth, back) {
            (Poll::Ready(forth), Poll::Ready(back)) => Poll::Ready(Ok((forth, back))),
            _ => Poll::Pending,
        }
    })
    .await
}

/// One way's state.
#[derive(Default)]
struct Direction {
    /// Read but not yet written: only while the writer is behind.
    held: Option<Held>,
    /// Written since the last flush.
    unflushed: bool,
    /// The reader has ended.
    ended: bool,
    /// The writer is shut down: this way is done.
    done: bool,
    copied: u64,
}

/// Bytes waiting for the writer.
struct Held {
    bytes: Box<[u8]>,
    from: usize,
}

impl Direction {
    /// Moves what can move from `reader` to `writer`; ready with the byte count when done.
    fn poll<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        reader: &mut R,
        writer: &mut W,
    ) -> Poll<io::Result<u64>>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        loop {
            if self.done {
                return Poll::Ready(Ok(self.copied));
            }
            if let Some(mut held) = self.held.take() {
                held.from += self.write_some(cx, writer, &held.bytes[held.from..])?;
                if held.from < held.bytes.len() {
                    self.held = Some(held);
                    return Poll::Pending;
                }
            }
            if self.ended {
                ready!(Pin::new(&mut *writer).poll_shutdown(cx))?;
                self.done = true;
                continue;
            }
            match self.read_and_write(cx, reader, writer)? {
                Poll::Ready(()) => {}
                Poll::Pending => {
                    if self.unflushed {
                        ready!(Pin::new(&mut *writer).poll_flush(cx))?;
                        self.unflushed = false;
                    }
                    return Poll::Pending;
                }
            }
        }
    }

    /// One read into the thread's buffer, written on at once as far as the writer takes it;
    /// the rest is held. Pending only when the reader has nothing.
    fn read_and_write<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        reader: &mut R,
        writer: &mut W,
    ) -> Poll<io::Result<()>>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        READ_BUFFER.with_borrow_mut(|buffer| {
            let mut read = ReadBuf::new(buffer);
            ready!(Pin::new(&mut *reader).poll_read(cx, &mut read))?;
            let bytes = read.filled();
            if bytes.is_empty() {
                self.ended = true;
                return Poll::Ready(Ok(()));
            }
            let written = self.write_some(cx, writer, bytes)?;
            if written < bytes.len() {
                self.held = Some(Held {
                    bytes: bytes[written..].into(),
                    from: 0,
                });
            }
            Poll::Ready(Ok(()))
        })
    }

    /// Writes `bytes` on as far as `writer` takes them now; how many it took (fewer only when
    /// it is behind, and then it wakes this task when it can take more).
    fn write_some<W: AsyncWrite + Unpin>(
        &mut self,
        cx: &mut Context<'_>,
        writer: &mut W,
        bytes: &[u8],
    ) -> io::Result<usize> {
        let mut from = 0;
        while from < bytes.len() {
            match Pin::new(&mut *writer).poll_write(cx, &bytes[from..]) {
                Poll::Ready(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
                Poll::Ready(Ok(n)) => {
                    from += n;
                    self.copied += n as u64;
                    self.unflushed = true;
                }
                Poll::Ready(Err(err)) => return Err(err),
                Poll::Pending => break,
            }
        }
        Ok(from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, duplex};

    /// `n` bytes of a pattern that shows a lost or reordered byte.
    fn pattern(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i % 251) as u8).collect()
    }

    #[tokio::test]
    async fn copies_both_ways_through_a_slow_writer_and_ends_when_both_sides_have() {
        // 64-byte pipes: almost every write is partial, so bytes are held and resumed.
        let (client, mut near) = duplex(64);
        let (mut far, mut server) = duplex(64);
        let tunnel = tokio::spawn(async move { both_ways(&mut near, &mut far).await });
        let up = pattern(100_000);
        let down = pattern(70_000);
        let (sent_up, sent_down) = (up.clone(), down.clone());
        let client_side = tokio::spawn(async move {
            let (mut read, mut write) = tokio::io::split(client);
            let writing = async {
                write.write_all(&sent_up).await.unwrap();
                write.shutdown().await.unwrap();
            };
            let mut got = Vec::new();
            let reading = read.read_to_end(&mut got);
            let ((), n) = tokio::join!(writing, reading);
            n.unwrap();
            got
        });
        let mut got_up = Vec::new();
        let (mut read, mut write) = tokio::io::split(&mut server);
        let reading = read.read_to_end(&mut got_up);
        let writing = async {
            write.write_all(&sent_down).await.unwrap();
            write.shutdown().await.unwrap();
        };
        let (n, ()) = tokio::join!(reading, writing);
        n.unwrap();
        assert_eq!(got_up, up);
        assert_eq!(client_side.await.unwrap(), down);
        let copied = tunnel.await.unwrap().unwrap();
        assert_eq!(copied, (100_000, 70_000));
    }

    #[tokio::test]
    async fn an_idle_tunnel_holds_no_bytes() {
        let (_client, mut near) = duplex(64);
        let (mut far, _server) = duplex(64);
        let mut way = Direction::default();
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        assert!(way.poll(&mut cx, &mut near, &mut far).is_pending());
        assert!(way.held.is_none());
        // Fill the far pipe, then send more than it takes: only the rest is held.
        let (mut client, mut near) = duplex(1024);
        client.write_all(&[7; 100]).await.unwrap();
        let (mut far, _server) = duplex(40);
        assert!(way.poll(&mut cx, &mut near, &mut far).is_pending());
        assert_eq!(way.held.as_ref().map(|h| h.bytes.len() - h.from), Some(60));
    }
}
