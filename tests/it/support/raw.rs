//! Raw bytes over TCP, for requests no well-behaved client would send: a client that writes
//! exactly the bytes given, and a backend that records exactly the bytes it receives.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Connects, writes `request`, and reads until the proxy closes the connection or `DEADLINE`.
/// The proxy may answer and close before it has read everything (an oversized head), so a
/// failed write is not an error: the answer already sent is still read.
pub async fn exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr)
        .await
        .expect("connect to the proxy");
    if let Err(err) = stream.write_all(request).await {
        println!("write cut short ({err}); reading the answer");
    }
    read_to_close(&mut stream).await
}

/// Reads until the peer closes (or resets) the connection; fails the test after `DEADLINE`.
pub async fn read_to_close(stream: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    let read = tokio::time::timeout(super::DEADLINE, async {
        let mut buf = [0u8; 8192];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "the proxy kept the connection open; got so far: {:?}",
        String::from_utf8_lossy(&answer)
    );
    String::from_utf8_lossy(&answer).into_owned()
}

/// The status code of the first response in `answer`.
pub fn status(answer: &str) -> u16 {
    answer
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {answer:?}"))
}

/// A backend that records every byte it receives, and answers each complete request (head,
/// then a body by `Content-Length` or chunked up to its last chunk) with `200 ok`.
pub struct Recorder {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<u8>>>,
}

impl Recorder {
    /// Listens on an ephemeral port.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind recorder");
        let addr = listener.local_addr().expect("recorder addr");
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&received);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(record(stream, Arc::clone(&log)));
            }
        });
        Self { addr, received }
    }

    /// Everything received so far, on every connection, in arrival order.
    pub fn received(&self) -> String {
        String::from_utf8_lossy(&self.received.lock().unwrap()).into_owned()
    }
}

async fn record(mut stream: TcpStream, log: Arc<Mutex<Vec<u8>>>) {
    let mut pending = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        log.lock().unwrap().extend_from_slice(&buf[..n]);
        pending.extend_from_slice(&buf[..n]);
        while let Some(len) = complete_request(&pending) {
            pending.drain(..len);
            let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
            if stream.write_all(reply).await.is_err() {
                return;
            }
        }
    }
}

/// The length of the first complete request in `bytes`, if it is all there.
fn complete_request(bytes: &[u8]) -> Option<usize> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    let httparse::Status::Complete(head) = req.parse(bytes).ok()? else {
        return None;
    };
    let header = |name: &str| {
        req.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).to_ascii_lowercase())
    };
    if header("transfer-encoding").is_some_and(|te| te.contains("chunked")) {
        let body = &bytes[head..];
        let end = body.windows(5).position(|w| w == b"0\r\n\r\n")?;
        return Some(head + end + 5);
    }
    let length: usize = header("content-length").map_or(Some(0), |l| l.trim().parse().ok())?;
    (bytes.len() >= head + length).then_some(head + length)
}
